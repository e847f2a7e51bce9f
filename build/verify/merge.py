"""Real systemd-sysext merges of an image, each into a scratch root of its own, in a private mount
namespace: neither the host nor any process sees the image merged over the live /usr.

While an image under test is merged, a process that finds programs or shared libraries through
/usr could run the image's own (a usr/bin/sed, a libacl.so.1), as root. So the image is only ever
merged over SCRATCH/usr, a read-only bind mount of the host's /usr in a mount peer group of its
own (nothing propagates back to /usr), and every process started meanwhile (the shell's
builtins, systemd-analyze --root, systemd-sysext --root) is the host's, from the untouched /usr.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from build.core.run import dies_with_this_process
from build.verify.machine import cannot_merge as cannot_merge

TIMEOUT = 120  # seconds for one merge, its checks and the unmerge
MAX_LINES = 200  # of systemd-analyze or merge output kept per merge: the unit is the image's

# The scratch root's mounts, under `unshare -m` with the root in $root; also sets $no_reload.
# Mounts are made private first, so nothing propagates to the host, then shared again, so the
# overlay systemd-sysext mounts in a child namespace is seen here. SCRATCH/usr gets a peer group
# of its own (private, then shared): without that, the overlay would propagate to /usr too.
# (benchmarks/sysext_merge.py times merges in the same scratch roots.)
SCRATCH_MOUNTS = r"""
mount --make-rprivate /
mount --make-rshared /
mount -t tmpfs tmpfs /run
mount --bind /usr "$root/usr"
mount -o remount,bind,ro "$root/usr"
mount --make-private "$root/usr"
# The host's own extension directories under /usr are not the image's: hide them.
for dir in lib/extensions local/lib/extensions; do
    if [ -d "$root/usr/$dir" ]; then mount -t tmpfs tmpfs "$root/usr/$dir"; fi
done
mount --make-shared "$root/usr"
# Where /bin, /lib... are directories of their own (not merged into /usr), the same, read-only.
for dir in bin sbin lib lib32 lib64 libx32; do
    if [ -d "/$dir" ] && [ ! -L "/$dir" ] && [ -d "$root/$dir" ] && [ ! -L "$root/$dir" ]; then
        mount --bind "/$dir" "$root/$dir"
        mount -o remount,bind,ro "$root/$dir"
    fi
done
# systemd 255+ reloads the manager after a merge for EXTENSION_RELOAD_MANAGER=1: not ours to do.
no_reload=
if systemd-sysext --help 2>/dev/null | grep -q -- --no-reload; then no_reload=--no-reload; fi
"""

# Runs under `unshare -m`, as: sh -c SCRIPT merge ROOT NFILES FILE... UNIT...
_SCRIPT = (
    r"""
set -eu
root=$1 nfiles=$2
shift 2
"""
    + SCRATCH_MOUNTS
    + r"""
systemd-sysext $no_reload --root="$root" merge >/run/merge.log 2>&1 || true
i=0
while [ "$i" -lt "$nfiles" ]; do
    if [ -e "$root/$1" ]; then echo "present $1"; else echo "missing $1"; fi
    shift
    i=$((i + 1))
done
for unit in "$@"; do
    echo "analyze $unit"
    systemd-analyze verify --root="$root" --man=no --generators=no -- "$unit" 2>&1 \
        | head -n 200 | sed 's/^/| /' || true
done
systemd-sysext $no_reload --root="$root" unmerge >/dev/null 2>&1 || true
echo "merge-log"
head -n 200 /run/merge.log | sed 's/^/| /'
"""
)

_DEFAULT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Merged:
    present: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    analyze: dict[str, list[str]] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)


@contextlib.contextmanager
def _scratch_dir(near: Path) -> Iterator[Path]:
    """Beside the image when possible, so the image can be hard-linked instead of copied."""
    try:
        directory = tempfile.mkdtemp(prefix=".verify-", dir=near)
    except OSError:
        directory = tempfile.mkdtemp(prefix="alloy-sysext-verify-")
    try:
        yield Path(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _parse(stdout: str) -> Merged:
    merged = Merged()
    current: list[str] | None = None
    for line in stdout.splitlines():
        if line.startswith("present "):
            merged.present.append(line[8:])
        elif line.startswith("missing "):
            merged.missing.append(line[8:])
        elif line.startswith("analyze "):
            current = merged.analyze.setdefault(line[8:], [])
        elif line == "merge-log":
            current = merged.log
        elif line.startswith("| ") and current is not None and len(current) < MAX_LINES:
            current.append(line[2:])
    return merged


def _top_level_like_the_host(root: Path) -> None:
    """/bin, /lib... as the host has them, so a unit's /bin/true resolves in the scratch root:
    the same symlinks into usr/ (merged /usr), else directories the script binds read-only."""
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = Path("/") / name
        if host.is_symlink():
            (root / name).symlink_to(os.readlink(host))
        elif host.is_dir():
            (root / name).mkdir()


@contextlib.contextmanager
def scratch_root(near: Path, os_release: str) -> Iterator[Path]:
    """An empty root for `systemd-sysext --root` (SCRATCH_MOUNTS mounts the host's /usr
    there), with `os_release` and an empty var/lib/extensions; removed afterwards."""
    with _scratch_dir(near) as root:
        for directory in ("usr", "etc", "run", "var/lib/extensions"):
            (root / directory).mkdir(parents=True)
        _top_level_like_the_host(root)
        (root / "etc/os-release").write_text(os_release, encoding="utf-8")
        yield root


def merge_in_scratch_root(
    image: Path,
    name: str,
    os_release: str,
    files: Sequence[str],
    units: Sequence[str] = (),
) -> Merged:
    """Merge `image`, saved as var/lib/extensions/`name` of a scratch root whose /usr is the
    host's, read-only (`--root` ignores symlinks, so the image is hard-linked there, or copied);
    report which of `files` appeared and what `systemd-analyze verify --root` says of `units`
    meanwhile, then unmerge."""
    with scratch_root(image.parent, os_release) as root:
        extensions = root / "var/lib/extensions"
        try:
            os.link(image, extensions / name)
        except OSError:
            shutil.copyfile(image, extensions / name)
        command = ["unshare", "-m", "sh", "-c", _SCRIPT, "merge", str(root), str(len(files))]
        try:
            result = subprocess.run(
                [*command, *files, *units],
                env={"PATH": os.environ.get("PATH", _DEFAULT_PATH), "LC_ALL": "C"},
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                preexec_fn=dies_with_this_process(),  # no merge outlives a killed build
                timeout=TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            return Merged(missing=list(files), log=[f"timed out after {TIMEOUT} s"])
        merged = _parse(result.stdout)
        if result.returncode != 0:
            merged.log.append(result.stderr.strip() or f"exit code {result.returncode}")
        return merged
