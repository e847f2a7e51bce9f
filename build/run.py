"""The one way to run an external command: logged, captured, and failing with a clean message."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence

from .errors import BuildError

# Which package brings each external tool, for the error when it is missing.
PACKAGES = {
    "mksquashfs": "squashfs-tools",
    "unsquashfs": "squashfs-tools",
    "systemd-sysext": "systemd",
    "unshare": "util-linux",
}


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
            command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True
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
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    ) as process:
        assert process.stdout is not None
        head = process.stdout.read(size)
        process.kill()
    return head
