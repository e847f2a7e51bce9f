"""The one way to run an external command: logged, captured, failing with a clean message, and
never outliving the build."""

from __future__ import annotations

import ctypes
import os
import shlex
import shutil
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence

from .errors import BuildError

# Which package brings each external tool, for the error when it is missing.
PACKAGES = {
    "mksquashfs": "squashfs-tools",
    "unsquashfs": "squashfs-tools",
    "mkfs.erofs": "erofs-utils",
    "systemd-sysext": "systemd",
    "unshare": "util-linux",
}

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# Looked up before any fork: dlopen() in a forked child could wait on a lock forever.
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def dies_with_this_process() -> Callable[[], None]:
    """A preexec_fn that has the kernel SIGKILL the child when this process dies, even by
    SIGKILL, which runs no clean-up of ours (a killed build must not leave mksquashfs writing
    on). A process group would not do it, and would keep Ctrl-C from reaching the child.

    preexec_fn is unsafe in a process with threads; the build runs its commands from its one
    (main) thread, and the death signal follows the thread that forked, which is that one."""
    parent = os.getpid()

    def set_death_signal() -> None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the prctl: nobody would kill us
            os.kill(os.getpid(), signal.SIGKILL)

    return set_death_signal


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        package = PACKAGES.get(tool, tool)
        raise BuildError(
            f"{tool} not found on PATH",
            f"install the package {package} (e.g. apt-get install {package})",
        )
    return path


def run(argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """Run `argv`, return its stdout; on failure raise BuildError with its last error line."""
    command = [require(argv[0]), *argv[1:]]
    try:
        result = subprocess.run(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            preexec_fn=dies_with_this_process(),
        )
    except OSError as error:
        raise BuildError(f"cannot run {argv[0]}: {error.strerror}") from None
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        detail = lines[-1] if lines else "no output"
        raise BuildError(
            f"{argv[0]} failed with exit code {result.returncode}: {detail}",
            f"the command was: {shlex.join(argv)}",
        )
    return result.stdout


def run_head(argv: Sequence[str], size: int) -> bytes:
    """The first `size` bytes `argv` writes, without waiting for the rest (e.g. a large file)."""
    command = [require(argv[0]), *argv[1:]]
    with subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        preexec_fn=dies_with_this_process(),
    ) as process:
        assert process.stdout is not None
        head = process.stdout.read(size)
        process.kill()
    return head
