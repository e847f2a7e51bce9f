"""An image as the kernel presents it, to hold the readers' view against.

The image is mounted alone (loop, ro, nosuid, nodev, noexec) in a private mount namespace that
nothing else sees, and walked twice: by readdir (the names the kernel lists, each lstat'ed, which
is the kernel's lookup of that name) and by a lookup of each name the reader found, component by
component, never through a symlink. Of each entry it records type, mode, owner, link count,
size, symlink target, device numbers and xattrs, and the sha256 of regular files; nothing in the
image is ever executed or followed. The walk runs in a child (`unshare -m`) that dies with us.

verify's "kernel view" check and the differential tests (tests/test_differential.py) hold a
reader's entries against it with `differences()`: any difference means the reader and the kernel
see two images, and nothing the reader says about the image can be trusted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from build.core.errors import BuildError
from build.core.report import cut, printable
from build.core.run import dies_with_this_process
from build.formats.table import FORMATS
from build.verify.machine import cannot_mount as cannot_mount
from build.verify.machine import joined_lines

TIMEOUT = 120  # seconds for the mount, the walk and the hashes
MAX_ENTRIES = 10_000  # what the kernel lists; the readers refuse more
MAX_DEPTH = 32
MAX_OUTPUT = 64 << 20  # bytes of the walk's report
MAX_LINE = 400  # characters of one line of differences
# What it may mount -t (a DDI is never mounted itself: its data partition is, as its format).
FSTYPES = tuple(fmt.fstype for fmt in FORMATS.values() if fmt.fstype)


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
    # xattrs this machine's security module shows on every file whatever the image holds (an
    # SELinux host labels each one): not compared. verify allows an SELinux label anyway.
    synthesized: frozenset[str] = frozenset()


# The child: mounts, walks, prints one JSON document. Runs as `python -I -c WALK IMAGE TYPE
# MOUNTPOINT MAX_HASH MAX_TOTAL MAX_ENTRIES MAX_DEPTH` under unshare -m; the reader's paths come
# on stdin, one JSON list. A file over MAX_HASH bytes, or past MAX_TOTAL hashed in all, is an
# error, never an unhashed pass.
_WALK = r"""
import collections, errno, hashlib, json, os, stat, subprocess, sys

image, fstype, top, max_hash, max_total, max_entries, max_depth = sys.argv[1:8]
max_hash, max_total = int(max_hash), int(max_total)
max_entries, max_depth = int(max_entries), int(max_depth)
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

class TooBig(Exception):
    pass

class TooMuch(Exception):
    pass

digests, hashed = {}, [0]  # (device, inode) -> its sha256; bytes hashed over the whole walk

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
            for name in listed_xattrs(where)
        }
        if kind == "file":
            entry["sha256"] = digest(where)
        return entry
    except TooBig:
        return {"path": rel, "error": f"it holds more than {max_hash} bytes"}
    except TooMuch:
        return {"path": rel, "error": f"the image's files hold more than {max_total} bytes"}
    except OSError as error:
        return {"path": rel, "error": error.strerror or str(error)}

def listed_xattrs(where):
    # An image without an xattr table: the kernel has none to show, not an error.
    try:
        return os.listxattr(where, follow_symlinks=False)
    except OSError as error:
        if error.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return []
        raise

def digest(where):
    fd = os.open(where, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):
            raise OSError(0, "not a regular file when opened")
        inode = (opened.st_dev, opened.st_ino)
        if inode in digests:  # listed and looked up, or a hard link: read once
            return digests[inode]
        sha, total = hashlib.sha256(), 0
        while chunk := os.read(fd, 1 << 20):
            total += len(chunk)
            hashed[0] += len(chunk)
            if total > max_hash:
                raise TooBig()
            if hashed[0] > max_total:
                raise TooMuch()
            sha.update(chunk)
        digests[inode] = sha.hexdigest()
        return digests[inode]
    finally:
        os.close(fd)

listed, pending, count = {}, [("", 0)], 0
listed[""] = seen("", top)
while pending:
    rel, depth = pending.pop()
    if depth >= max_depth:
        listed[rel] = {"path": rel, "error": "nested too deep"}
        continue
    try:
        with os.scandir(os.path.join(top, rel) if rel else top) as names:
            children = [entry.name for entry in names]
    except OSError as error:
        listed[rel] = {"path": rel, "error": "readdir: " + (error.strerror or str(error))}
        continue
    times = collections.Counter(children)
    for name in sorted(times):
        count += 1
        if count > max_entries:
            print(json.dumps({"too_many": max_entries}))
            sys.exit(0)
        child = f"{rel}/{name}" if rel else name
        if "/" in name or name in ("", ".", ".."):
            listed[child] = {"path": child, "error": "listed under a name no lookup can take"}
        elif times[name] > 1:
            listed[child] = {"path": child, "error": f"listed {times[name]} times"}
        else:
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


def kernel_view(
    image: Path, fstype: str, paths: Sequence[str], max_hash: int, max_total: int | None = None
) -> KernelView:
    """`image` (of `fstype`: squashfs or erofs) as the kernel shows it; `paths` are the reader's,
    each looked up; regular files are hashed, each inode once, and one over `max_hash` bytes, or
    any once `max_total` bytes (by default `max_hash` and 1 MiB) are hashed in all, is an error.
    One-line BuildError if it cannot be mounted or walked in time."""
    if max_total is None:
        max_total = max_hash + (1 << 20)
    if fstype not in FSTYPES:
        raise BuildError(f"cannot mount {image} as {fstype}: only {', '.join(FSTYPES)}")
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
            str(max_total),
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
    stderr = joined_lines(result.stderr.decode("utf-8", "replace"))
    if result.returncode != 0 or len(result.stdout) > MAX_OUTPUT:
        raise BuildError(
            f"cannot show {image} as the kernel sees it: {stderr or f'exit {result.returncode}'}"
        )
    try:
        report = json.loads(result.stdout)
    except ValueError:
        raise BuildError(f"cannot show {image} as the kernel sees it: no report") from None
    if "mount" in report:
        raise BuildError(
            f"the kernel refuses to mount {image}: {joined_lines(report['mount']) or 'no reason'}",
            "do not install it: a host cannot merge it",
        )
    if "too_many" in report:
        raise BuildError(f"the kernel lists more than {report['too_many']} entries in {image}")
    return KernelView(
        listed={entry["path"]: _seen(entry) for entry in report["listed"]},
        looked_up={entry["path"]: _seen(entry) for entry in report["looked_up"]},
        synthesized=synthesized_xattrs(),
    )


def synthesized_xattrs() -> frozenset[str]:
    """The xattrs a security module of this machine answers for itself, on any file."""
    modules = {"selinux": "security.selinux", "smackfs": "security.SMACK64"}
    return frozenset(name for where, name in modules.items() if Path("/sys/fs", where).is_dir())


def _seen(entry: Mapping[str, object]) -> Seen:
    fields = dict(entry)
    if "xattrs" in fields:
        hexed: dict[str, str] = fields["xattrs"]  # type: ignore[assignment]
        fields["xattrs"] = {name: bytes.fromhex(value) for name, value in hexed.items()}
    if "device" in fields:
        fields["device"] = tuple(fields["device"])  # type: ignore[arg-type]
    return Seen(**fields)  # type: ignore[arg-type]


# The reader's side of the content hashes.


class Hashing(Protocol):
    def sha256(self, path: str, limit: int) -> str: ...


def reader_sha256(image: Hashing, limit: int) -> Callable[[str], str]:
    """`sha256(path)` of a regular file as the image's reader decodes it, each file once; a
    BuildError when the reader cannot (a file over `limit` bytes, or malformed)."""
    known: dict[str, str] = {}

    def sha256(path: str) -> str:
        if path not in known:
            known[path] = image.sha256(path, limit)
        return known[path]

    return sha256


# Where the reader and the kernel disagree.


def differences(
    reader: Mapping[str, object], view: KernelView, sha256: Callable[[str], str]
) -> list[str]:
    """Where the reader's entries (path -> a node with the readers' fields) and the kernel's
    view disagree, one line per difference naming the path and both views; `sha256(path)` is
    the reader's hash of a file (a BuildError from it is a difference too)."""
    return list(_differences(reader, view, sha256))


def _differences(
    reader: Mapping[str, object], view: KernelView, sha256: Callable[[str], str]
) -> Iterator[str]:
    for path in sorted(set(view.listed) - set(reader)):
        yield f"{_path(path)} is listed by the kernel, not by the reader"
    for path in sorted(set(reader) - set(view.listed)):
        yield f"{_path(path)} is found by the reader, not listed by the kernel"
    for path, node in reader.items():
        lookup = list(_against(path, node, view.looked_up.get(path), sha256, view.synthesized))
        listing = list(_against(path, node, view.listed.get(path), sha256, view.synthesized))
        # Where both of the kernel's ways show the same, one line says so.
        if lookup == listing:
            yield from (line.replace(_LABEL, "lookup and listing") for line in lookup)
            continue
        yield from (line.replace(_LABEL, "lookup") for line in lookup)
        yield from (line.replace(_LABEL, "listing") for line in listing)


_LABEL = "\0"  # where the kernel's way (lookup, listing) goes: never in an escaped path


def _against(
    path: str,
    node: object,
    seen: Seen | None,
    sha256: Callable[[str], str],
    synthesized: frozenset[str],
) -> Iterator[str]:
    if seen is None:
        return
    if seen.error is not None:
        yield f"{_path(path)}: the kernel's {_LABEL} fails ({cut(seen.error, 100)})"
    else:
        yield from _compare(path, node, seen, sha256, synthesized)


_FIELDS = ("kind", "permissions", "uid", "gid", "nlink", "xattrs")


def _compare(
    path: str, node: object, seen: Seen, sha256: Callable[[str], str], synthesized: frozenset[str]
) -> Iterator[str]:
    where = _path(path)
    for name in _FIELDS:
        mine, theirs = getattr(node, name, None), getattr(seen, name)
        if name == "xattrs" and synthesized and isinstance(mine, dict):
            mine, theirs = _without(mine, synthesized), _without(theirs, synthesized)
        if mine != theirs:
            shown = _shown_xattrs(theirs, mine) if name == "xattrs" else (theirs, mine)
            yield _both(where, name, *(_shown(value, name) for value in shown))
    kind = getattr(node, "kind", None)
    if kind != seen.kind:
        return
    if kind == "file":
        mine = getattr(node, "size", None)
        if mine != seen.size:
            yield _both(where, "size", str(seen.size), str(mine))
            return
        try:
            hashed = sha256(path)
        except BuildError as error:
            yield f"{where}: the reader cannot hash it ({cut(error.message, 100)})"
            return
        if hashed != seen.sha256:
            yield _both(where, "sha256", _short(seen.sha256), _short(hashed))
    elif kind == "symlink" and getattr(node, "target", None) != seen.target:
        mine = getattr(node, "target", None)
        yield _both(where, "target", cut(repr(seen.target), 100), cut(repr(mine), 100))
    elif kind in ("block device", "character device"):
        mine = getattr(node, "device", None)
        if mine != seen.device:
            yield _both(where, "device", str(seen.device), str(mine))


def _without(xattrs: dict[str, bytes], names: frozenset[str]) -> dict[str, bytes]:
    return {name: value for name, value in xattrs.items() if name not in names}


def _both(where: str, name: str, kernel: str, reader: str) -> str:
    return f"{where}: {name} is {kernel} to the kernel ({_LABEL}), {reader} to the reader"


def _shown_xattrs(kernel: object, reader: object) -> tuple[object, object]:
    """Both sides' xattrs, the values shown only where both name them with other values."""
    if not isinstance(kernel, dict) or not isinstance(reader, dict):
        return kernel, reader
    differ = {name for name in kernel.keys() & reader.keys() if kernel[name] != reader[name]}

    def named(xattrs: dict[str, bytes]) -> dict[str, bytes | None]:
        return {name: value if name in differ else None for name, value in xattrs.items()}

    return named(kernel), named(reader)


def _shown(value: object, name: str) -> str:
    if name == "permissions" and isinstance(value, int):
        return f"{value:04o}"
    if name == "xattrs" and isinstance(value, dict):
        if not value:
            return "none"
        return "{" + ", ".join(_xattr(key, value[key]) for key in sorted(value)) + "}"
    return cut(str(value), 100)


def _xattr(name: str, value: bytes | None) -> str:
    shown = cut(printable(name), 60)
    return shown if value is None else f"{shown}={value[:16].hex()}{'…' if value[16:] else ''}"


def _short(digest: str | None) -> str:
    return "sha256 " + digest[:16] + "…" if digest else "unknown"


def _path(path: str) -> str:
    return cut("/" + printable(path), 160)
