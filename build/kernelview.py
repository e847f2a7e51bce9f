"""An image as the kernel presents it, to hold the readers' view against.

The image is mounted alone (loop, ro, nosuid, nodev, noexec) in a private mount namespace that
nothing else sees, and walked twice: by readdir (the names the kernel lists, each lstat'ed, which
is the kernel's lookup of that name) and by a lookup of each name the reader found, component by
component, never through a symlink. Of each entry it records type, mode, owner, link count,
size, symlink target, device numbers and xattrs, and the sha256 of regular files; nothing in the
image is ever executed or followed. The walk runs in a child (`unshare -m`) that dies with us.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BuildError
from .run import dies_with_this_process

TIMEOUT = 120  # seconds for the mount, the walk and the hashes
MAX_ENTRIES = 10_000  # what the kernel lists; the readers refuse more
MAX_DEPTH = 32
MAX_OUTPUT = 64 << 20  # bytes of the walk's report


@dataclass(frozen=True)
class Seen:
    """One entry as the kernel shows it (`error`: why it could not be looked up or read)."""

    path: str
    kind: str = ""  # the readers' names: "directory", "file", "symlink", ...
    permissions: int = 0
    uid: int = 0
    gid: int = 0
    nlink: int = 0
    size: int = 0
    target: str | None = None
    device: tuple[int, int] | None = None
    xattrs: dict[str, bytes] = field(default_factory=dict)
    sha256: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class KernelView:
    listed: dict[str, Seen]  # found by readdir from the root
    looked_up: dict[str, Seen]  # each name the reader found, looked up from the root


# The child: mounts, walks, prints one JSON document. Runs as `python -I -c WALK IMAGE TYPE
# MOUNTPOINT MAX_HASH` under unshare -m; the reader's paths come on stdin, one JSON list.
_WALK = r"""
import hashlib, json, os, stat, subprocess, sys

image, fstype, top, max_hash, max_entries, max_depth = sys.argv[1:7]
max_hash, max_entries, max_depth = int(max_hash), int(max_entries), int(max_depth)
wanted = json.load(sys.stdin)
subprocess.run(["mount", "--make-rprivate", "/"], check=True)
mounted = subprocess.run(
    ["mount", "-t", fstype, "-o", "loop,ro,nosuid,nodev,noexec", image, top],
    capture_output=True, text=True, errors="replace",
)
if mounted.returncode != 0:
    print(json.dumps({"mount": (mounted.stderr or mounted.stdout).strip()[-300:]}))
    sys.exit(0)
KINDS = {stat.S_IFDIR: "directory", stat.S_IFREG: "file", stat.S_IFLNK: "symlink",
         stat.S_IFBLK: "block device", stat.S_IFCHR: "character device",
         stat.S_IFIFO: "FIFO", stat.S_IFSOCK: "socket"}

def fs(name):
    return os.fsencode(name)

def seen(rel, where):
    try:
        st = os.lstat(where)
        kind = KINDS.get(stat.S_IFMT(st.st_mode), "unknown")
        entry = {"path": rel, "kind": kind, "permissions": stat.S_IMODE(st.st_mode),
                 "uid": st.st_uid, "gid": st.st_gid, "nlink": st.st_nlink}
        if kind == "file":
            entry["size"] = st.st_size
        if kind in ("block device", "character device"):
            entry["device"] = [os.major(st.st_rdev), os.minor(st.st_rdev)]
        if kind == "symlink":
            entry["target"] = os.fsdecode(os.readlink(where))
        entry["xattrs"] = {
            name: os.getxattr(where, name, follow_symlinks=False).hex()
            for name in os.listxattr(where, follow_symlinks=False)
        }
        if kind == "file":
            entry["sha256"] = digest(where, st.st_size)
        return entry
    except OSError as error:
        return {"path": rel, "error": error.strerror or str(error)}

def digest(where, size):
    if size > max_hash:
        return None
    fd = os.open(where, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        sha, total = hashlib.sha256(), 0
        while chunk := os.read(fd, 1 << 20):
            total += len(chunk)
            if total > max_hash:
                return None
            sha.update(chunk)
        return sha.hexdigest()
    finally:
        os.close(fd)

listed, pending, count = {}, [("", 0)], 0
root = seen("", top)
listed[""] = root
while pending:
    rel, depth = pending.pop()
    if depth >= max_depth:
        listed[rel] = {"path": rel, "error": "nested too deep"}
        continue
    try:
        with os.scandir(os.path.join(top, rel) if rel else top) as names:
            children = sorted(entry.name for entry in names)
    except OSError as error:
        listed[rel] = {"path": rel, "error": "readdir: " + (error.strerror or str(error))}
        continue
    for name in children:
        count += 1
        if count > max_entries:
            print(json.dumps({"too_many": max_entries}))
            sys.exit(0)
        child = f"{rel}/{name}" if rel else name
        listed[child] = seen(child, os.path.join(top, child))
        if listed[child].get("kind") == "directory":
            pending.append((child, depth + 1))

looked_up = {}
for rel in wanted[:max_entries]:
    parts, where, ok = rel.split("/") if rel else [], top, True
    for part in parts[:-1]:
        where = os.path.join(where, part)
        try:
            if not stat.S_ISDIR(os.lstat(where).st_mode):
                looked_up[rel] = {"path": rel, "error": f"{part} is not a directory"}
                ok = False
                break
        except OSError as error:
            looked_up[rel] = {"path": rel, "error": error.strerror or str(error)}
            ok = False
            break
    if ok:
        looked_up[rel] = seen(rel, os.path.join(where, parts[-1]) if parts else top)
subprocess.run(["umount", top], check=False)
print(json.dumps({"listed": list(listed.values()), "looked_up": list(looked_up.values())}))
"""


def cannot_mount() -> str | None:
    """Why this machine cannot show an image as the kernel sees it, or None."""
    if os.geteuid() != 0:
        return "needs root (a private mount namespace and a loop device)"
    for tool in ("unshare", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def kernel_view(image: Path, fstype: str, paths: Sequence[str], max_hash: int) -> KernelView:
    """`image` (of `fstype`: squashfs or erofs) as the kernel shows it; `paths` are the reader's,
    each looked up; regular files up to `max_hash` bytes are hashed. BuildError if it cannot be
    mounted or walked in time."""
    mountpoint = Path(tempfile.mkdtemp(prefix="alloy-sysext-kernel-view-"))
    try:
        command = [
            "unshare",
            "-m",
            sys.executable,
            "-I",
            "-c",
            _WALK,
            str(image.resolve()),
            fstype,
            str(mountpoint),
            str(max_hash),
            str(MAX_ENTRIES),
            str(MAX_DEPTH),
        ]
        try:
            result = subprocess.run(
                command,
                input=json.dumps(list(paths)).encode(),
                capture_output=True,
                env={
                    "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                    "LC_ALL": "C",
                },
                preexec_fn=dies_with_this_process(),
                timeout=TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            raise BuildError(
                f"{image}: the kernel's view of it took longer than {TIMEOUT} s",
                "do not install it",
            ) from None
    finally:
        os.rmdir(mountpoint)
    return _parse(image, result)


def _parse(image: Path, result: subprocess.CompletedProcess[bytes]) -> KernelView:
    stderr = result.stderr.decode("utf-8", "replace").strip()[-300:]
    if result.returncode != 0 or len(result.stdout) > MAX_OUTPUT:
        raise BuildError(
            f"cannot show {image} as the kernel sees it: {stderr or f'exit {result.returncode}'}"
        )
    report = json.loads(result.stdout)
    if "mount" in report:
        raise BuildError(
            f"the kernel refuses to mount {image}: {report['mount'] or 'no reason given'}",
            "do not install it: a host cannot merge it",
        )
    if "too_many" in report:
        raise BuildError(f"the kernel lists more than {report['too_many']} entries in {image}")
    return KernelView(
        listed={entry["path"]: _seen(entry) for entry in report["listed"]},
        looked_up={entry["path"]: _seen(entry) for entry in report["looked_up"]},
    )


def _seen(entry: Mapping[str, object]) -> Seen:
    fields = dict(entry)
    if "xattrs" in fields:
        hexed: dict[str, str] = fields["xattrs"]  # type: ignore[assignment]
        fields["xattrs"] = {name: bytes.fromhex(value) for name, value in hexed.items()}
    if "device" in fields:
        fields["device"] = tuple(fields["device"])  # type: ignore[arg-type]
    return Seen(**fields)  # type: ignore[arg-type]


def differences(
    reader: Mapping[str, object], view: KernelView, sha256: Callable[[str], str | None]
) -> list[str]:
    """Where the reader's entries (path -> a node with the readers' fields) and the kernel's
    view disagree, one line per difference; `sha256(path)` is the reader's hash of a file."""
    return list(_differences(reader, view, sha256))


def _differences(
    reader: Mapping[str, object], view: KernelView, sha256: Callable[[str], str | None]
) -> Iterator[str]:
    for path in sorted(set(view.listed) - set(reader)):
        yield f"/{path} is listed by the kernel, not by the reader"
    for path in sorted(set(reader) - set(view.listed)):
        yield f"/{path} is found by the reader, not listed by the kernel"
    for path, node in reader.items():
        both = (("lookup", view.looked_up.get(path)), ("listing", view.listed.get(path)))
        for label, seen in both:
            if seen is None:
                continue
            if seen.error is not None:
                yield f"/{path}: the kernel's {label} fails ({seen.error})"
                continue
            yield from _compare(path, label, node, seen, sha256)


_FIELDS = ("kind", "permissions", "uid", "gid", "nlink", "xattrs")


def _compare(
    path: str, label: str, node: object, seen: Seen, sha256: Callable[[str], str | None]
) -> Iterator[str]:
    for name in _FIELDS:
        mine, theirs = getattr(node, name), getattr(seen, name)
        if mine != theirs:
            yield (
                f"/{path}: {name} is {_shown(theirs, name)} to the kernel ({label}), "
                f"{_shown(mine, name)} to the reader"
            )
    kind = getattr(node, "kind", None)
    if kind != seen.kind:
        return
    if kind == "file":
        if getattr(node, "size", None) != seen.size:
            mine = getattr(node, "size", None)
            yield f"/{path}: size is {seen.size} to the kernel ({label}), {mine} to the reader"
        elif seen.sha256 is not None and sha256(path) != seen.sha256:
            yield f"/{path}: its content differs between the kernel ({label}) and the reader"
    elif kind == "symlink" and getattr(node, "target", None) != seen.target:
        yield f"/{path}: the symlink's target differs between the kernel ({label}) and the reader"
    elif kind in ("block device", "character device") and getattr(node, "device", None) != (
        seen.device
    ):
        yield f"/{path}: the device numbers differ between the kernel ({label}) and the reader"


def _shown(value: object, name: str) -> str:
    if name == "permissions" and isinstance(value, int):
        return f"{value:04o}"
    if name == "xattrs" and isinstance(value, dict):
        return "{" + ", ".join(sorted(value)) + "}" if value else "none"
    return str(value)
