"""What this machine can check for real: merges (systemd-sysext) and the kernel's view of an
image (a mount in a private namespace). Kept apart from merge.py and kernelview.py, which do the
checking: the verify step's up-to-date decision asks these questions on every run and must not
import the checkers."""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
from pathlib import Path

from build.model.arch import ARCHES

LOOP_CONTROL = Path("/dev/loop-control")
_HOST_ARCH = {"x86_64": "x86-64", "aarch64": "arm64"}


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


def cannot_mount(fstype: str, probe: bool = True) -> str | None:
    """Why this machine cannot show an image of `fstype` as the kernel sees it, or None.
    Without `probe`, only what a stat tells: no `unshare -m` is run to try a namespace."""
    if os.geteuid() != 0:
        return "needs root (a private mount namespace and a loop device)"
    for tool in ("unshare", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not kernel_has(fstype):
        return f"this machine's kernel has no {fstype} driver"
    # A container's root may lack both: the machine's limits, not the image's fault.
    if not LOOP_CONTROL.exists():
        return f"no loop devices here ({LOOP_CONTROL} is missing)"
    refused = namespace_refused() if probe else None
    if refused:
        return f"no private mount namespace here ({refused})"
    return None


@functools.cache
def namespace_refused() -> str | None:
    """Why `unshare -m` fails here (an unprivileged container), or None."""
    try:
        subprocess.run(
            ["unshare", "-m", "true"], capture_output=True, check=True, text=True, timeout=30
        )
    except subprocess.CalledProcessError as error:
        return joined_lines(error.stderr) or f"unshare -m exits {error.returncode}"
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    return None


def kernel_has(fstype: str) -> bool:
    """Built in or loaded (/proc/filesystems), or a module mount would load."""
    try:
        loaded = Path("/proc/filesystems").read_text(encoding="utf-8").split()
    except OSError:
        return True  # no /proc to ask: let the mount say
    if fstype in loaded:
        return True
    modules = Path("/lib/modules") / platform.release() / "modules.dep"
    try:
        return f"/{fstype}.ko" in modules.read_text(encoding="utf-8")
    except OSError:
        return False


def joined_lines(text: str) -> str:
    """A tool's stderr on one line (its last 300 characters)."""
    return " / ".join(line.strip() for line in text.strip().splitlines() if line.strip())[-300:]
