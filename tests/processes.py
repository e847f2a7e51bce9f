"""A real `invoke` process to interrupt: started in the background, waited on until it is busy,
with a mksquashfs slow enough to catch, whose pids are logged to see whether they outlive it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import INVOKE_CLI
from tests.needs import need


def start(cli_env: dict[str, str], cwd: Path, *args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*INVOKE_CLI, *args],
        cwd=cwd,
        env={**cli_env, **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(what: Callable[[], object], process: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        if process.poll() is not None:
            raise AssertionError(f"exited early: {process.communicate()}")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def slow_mksquashfs(tmp_path: Path, seconds: float) -> tuple[dict[str, str], Path]:
    """A PATH-front mksquashfs that logs its pid, sleeps, then execs the real one (pack's
    environment is PATH only, so the settings are written into the script)."""
    return _mksquashfs_that_waits(tmp_path, "slowbin", f"    time.sleep({seconds})\n")


def gated_mksquashfs(tmp_path: Path) -> tuple[dict[str, str], Path, Path]:
    """As slow_mksquashfs, but it waits until the returned gate file exists (at most 60 s)
    instead of a fixed time: a test opens the gate once it has seen what it waits for."""
    gate = tmp_path / "mksquashfs.gate"
    wait = (
        "    deadline = time.monotonic() + 60\n"
        f"    while not os.path.exists({str(gate)!r}) and time.monotonic() < deadline:\n"
        "        time.sleep(0.01)\n"
    )
    env, log = _mksquashfs_that_waits(tmp_path, "gatedbin", wait)
    return env, log, gate


def _mksquashfs_that_waits(tmp_path: Path, bin_name: str, wait: str) -> tuple[dict[str, str], Path]:
    """A PATH-front mksquashfs in tmp_path/bin_name that logs its pid to tmp_path/mksquashfs.log,
    runs `wait` (indented Python), then execs the real one; `-version` neither logs nor waits."""
    need("mksquashfs")
    real = shutil.which("mksquashfs")
    bin_dir = tmp_path / bin_name
    bin_dir.mkdir()
    log = tmp_path / "mksquashfs.log"
    script = bin_dir / "mksquashfs"
    script.write_text(
        f"#!{sys.executable}\n"
        "import os, sys, time\n"
        "if '-version' not in sys.argv:\n"
        f"    with open({str(log)!r}, 'a') as f:\n"
        "        f.write(f'{os.getpid()}\\n')\n"
        f"{wait}"
        f"os.execv({real!r}, [{real!r}, *sys.argv[1:]])\n"
    )
    script.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}, log


def pids(log: Path) -> list[int]:
    return [int(line) for line in log.read_text().split()] if log.exists() else []


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"
