"""Real systemd-sysext merges of an image, in a private mount namespace: the host is untouched."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .arch import ARCHES

# Runs under `unshare -m`. Mounts are made private first, so nothing propagates to the host,
# then shared again, so the overlay systemd-sysext mounts in a child is seen here. A tmpfs /run
# keeps its bookkeeping away from the host's; the host's own extension directories are hidden.
_SCRIPT = r"""
set -eu
root=$1 link=$2 image=$3
shift 3
# systemd 255+ reloads the manager after a merge for EXTENSION_RELOAD_MANAGER=1: not ours to do.
no_reload=
if systemd-sysext --help 2>/dev/null | grep -q -- --no-reload; then no_reload=--no-reload; fi
mount --make-rprivate /
mount --make-rshared /
mount -t tmpfs tmpfs /run
if [ "$root" = / ]; then
    for dir in /etc/extensions /var/lib/extensions /usr/lib/extensions /usr/local/lib/extensions; do
        if [ -d "$dir" ]; then mount -t tmpfs tmpfs "$dir"; fi
    done
    mkdir /run/extensions
    ln -s "$image" "/run/extensions/$link"
    systemd-sysext $no_reload merge >/run/merge.log 2>&1 || true
else
    systemd-sysext $no_reload --root="$root" merge >/run/merge.log 2>&1 || true
fi
for path in "$@"; do
    if [ -e "$root/$path" ]; then echo "present $path"; else echo "missing $path"; fi
done
for unit in $UNITS; do
    echo "analyze $unit"
    systemd-analyze verify "/usr/lib/systemd/system/$unit" 2>&1 | sed 's/^/| /' || true
done
if [ "$root" = / ]; then systemd-sysext $no_reload unmerge >/dev/null 2>&1 || true
else systemd-sysext $no_reload --root="$root" unmerge >/dev/null 2>&1 || true; fi
echo "merge-log"
sed 's/^/| /' /run/merge.log
"""

_HOST_ARCH = {"x86_64": "x86-64", "aarch64": "arm64"}


@dataclass
class Merged:
    present: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    analyze: dict[str, list[str]] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)


def cannot_merge(architecture: str) -> str | None:
    """Why this machine cannot merge an image for `architecture`, or None when it can."""
    if os.geteuid() != 0:
        return "needs root (mount namespaces, loop devices)"
    for tool in ("unshare", "systemd-sysext"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    host = _HOST_ARCH.get(platform.machine(), platform.machine())
    if architecture != host:
        return f"the image is for {architecture}, this machine is {host}"
    if architecture not in {arch.systemd for arch in ARCHES.values()}:
        return f"unknown architecture {architecture}"
    return None


def _run(root: str, link: str, image: Path, files: Sequence[str], units: Sequence[str]) -> Merged:
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", _SCRIPT, "merge", root, link, str(image), *files],
        env={**os.environ, "UNITS": " ".join(units), "LC_ALL": "C"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    merged = Merged()
    current: list[str] | None = None
    for line in result.stdout.splitlines():
        if line.startswith("present "):
            merged.present.append(line[8:])
        elif line.startswith("missing "):
            merged.missing.append(line[8:])
        elif line.startswith("analyze "):
            current = merged.analyze.setdefault(line[8:], [])
        elif line == "merge-log":
            current = merged.log
        elif line.startswith("| ") and current is not None:
            current.append(line[2:])
    if result.returncode != 0:
        merged.log.append(result.stderr.strip() or f"exit code {result.returncode}")
    return merged


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


def merge_in_scratch_root(image: Path, name: str, os_release: str, files: Sequence[str]) -> Merged:
    """Merge `image` saved as var/lib/extensions/`name` of an empty root (`--root` ignores
    symlinks, so the image is hard-linked there, or copied)."""
    with _scratch_dir(image.parent) as root:
        (root / "usr/lib").mkdir(parents=True)
        (root / "usr/lib/os-release").write_text(os_release, encoding="utf-8")
        extensions = root / "var/lib/extensions"
        extensions.mkdir(parents=True)
        try:
            os.link(image, extensions / name)
        except OSError:
            shutil.copyfile(image, extensions / name)
        return _run(str(root), "", image, files, ())


def merge_over_host_by_symlink(
    image: Path, link: str, files: Sequence[str], units: Sequence[str]
) -> Merged:
    """Merge over this machine's /usr (in the namespace only) from the symlink
    /run/extensions/`link` -> `image`, and run systemd-analyze verify on `units` meanwhile."""
    return _run("/", link, image.resolve(), files, units)
