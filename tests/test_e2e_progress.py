"""The boot tests' machine and roots take minutes to build (tests/e2e/make-arm64-machine.sh,
make-root.sh): they say when each phase starts and, while a long command runs, that it still
does (tests/e2e/progress.sh); the time they state is one that holds."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PROGRESS = REPO / "tests/e2e/progress.sh"
ARM64 = REPO / "tests/e2e/make-arm64-machine.sh"
KERNEL = REPO / "tests/e2e/machine-kernel.sh"


def progress(script: str, heartbeat: str = "1") -> subprocess.CompletedProcess:
    """`script` in bash after sourcing progress.sh, with say() as the builders define it."""
    source = f'set -euo pipefail\nsay() {{ echo "x.sh: $*" >&2; }}\n. "$1"\n{script}'
    return subprocess.run(
        ["bash", "-c", source, "bash", PROGRESS],
        env={"PATH": "/usr/bin:/bin", "ALLOY_E2E_HEARTBEAT": heartbeat},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_long_command_says_it_is_still_running(tmp_path: Path) -> None:
    log = tmp_path / "log"
    result = progress(
        f"with_heartbeat 'sleeping' '{log}' sh -c 'echo out; echo err >&2; sleep 3.5; exit 3' "
        '|| echo "status $?"'
    )
    assert result.stdout == "status 3\n"  # the command's own status
    lines = result.stderr.splitlines()
    assert 2 <= len(lines) <= 4, lines  # one a second, from the first second on
    assert all(
        re.fullmatch(r"x\.sh: \[0:0\d\] still sleeping \(\d s so far\)", line) for line in lines
    )
    assert log.read_text() == "out\nerr\n"  # its output went to its log, not the terminal


def test_a_quick_command_says_nothing(tmp_path: Path) -> None:
    result = progress(f"with_heartbeat 'quick' '{tmp_path / 'log'}' true && phase 'next (2 of 4)'")
    assert result.returncode == 0
    assert result.stderr == "x.sh: [0:00] next (2 of 4)\n"


@pytest.mark.parametrize("heartbeat", ["", "0", "ten"])
def test_a_heartbeat_that_is_not_a_count_of_seconds_is_a_minute(heartbeat: str) -> None:
    assert progress('echo "$heartbeat"', heartbeat).stdout == "60\n"


def test_the_arm64_machine_runs_its_long_commands_with_a_heartbeat() -> None:
    arm64 = ARM64.read_text()
    assert re.search(r"\nfetch_kernel arm64\n", arm64), (
        "the arm64 machine no longer calls fetch_kernel"
    )
    # apt's update and the kernel's download run in fetch_kernel, shared with the x86-64 machine.
    script = arm64 + "\n" + KERNEL.read_text()
    for command in ('"${apt[@]}" update', 'download "linux-image', "debootstrap --foreign", "qemu"):
        pattern = rf"\nif ! with_heartbeat [^\n]*(\\\n[^\n]*)?{re.escape(command)}"
        plain = rf"\n\s*with_heartbeat [^\n]*{re.escape(command)}"
        assert re.search(pattern, script) or re.search(plain, script), command
    assert script.count('phase "') >= 4
    root = (REPO / "tests/e2e/make-root.sh").read_text()
    assert re.search(r"with_heartbeat [^\n]*\\\n\s+debootstrap ", root)


def minutes_range(text: str, where: str) -> tuple[float, float]:
    match = re.search(r"(\d+)-(\d+) minutes", text)
    assert match, f"{where} states no 'A-B minutes'"
    return float(match.group(1)), float(match.group(2))


def test_the_stated_build_time_holds_every_recorded_build() -> None:
    """README and the script state one range; docs/boot-tests.md's timings of cold builds of
    the machine lie in it."""
    readme = (REPO / "README.md").read_text()
    said = readme[readme.index("Building the machine\nthe first time takes") :][:200]
    stated = minutes_range(said, "README.md")
    header = ARM64.read_text().split("\nset -euo pipefail", 1)[0]
    assert minutes_range(header[header.index("# Takes ") :], ARM64.name) == stated
    rows = [
        line
        for line in (REPO / "docs/boot-tests.md").read_text().splitlines()
        if line.startswith("| Building the machine, cold")
    ]
    recorded = [int(s) / 60 for row in rows for s in re.findall(r"(\d+) s \(\d", row)]
    assert len(recorded) >= 3 and max(recorded) >= 19, recorded
    outside = [m for m in recorded if not stated[0] <= m <= stated[1]]
    assert not outside, f"stated {stated} minutes; recorded {outside}"


def test_the_heartbeat_ends_with_the_command(tmp_path: Path) -> None:
    result = progress(f"with_heartbeat 'x' '{tmp_path / 'log'}' sleep 1.5; sleep 2.5")
    assert result.returncode == 0
    # At 1 s and perhaps 2 s (the shell counts whole seconds); none in the 2.5 s after it.
    assert 1 <= len(result.stderr.splitlines()) <= 2, result.stderr


def test_the_heartbeat_ends_with_the_script(tmp_path: Path) -> None:
    """A script that dies (a signal, die) leaves no heartbeat behind, writing on for ever."""
    started = time.monotonic()
    result = progress(f"with_heartbeat 'x' '{tmp_path / 'log'}' sh -c 'kill $PPID; sleep 4'")
    assert result.returncode != 0
    assert time.monotonic() - started < 3  # the heartbeat held stderr open no longer
    assert "still" not in result.stderr


@pytest.mark.parametrize("signal", ["TERM", "INT", "HUP"])
@pytest.mark.parametrize("how", ["program", "function", "timeout"])
def test_a_signal_to_the_script_stops_the_command_it_runs(
    tmp_path: Path, signal: str, how: str
) -> None:
    """Stopping a builder (Ctrl-C, nox or pytest killed) stops what it runs: a program, the
    programs of a function, and a program under `timeout` (as the emulated machine runs)."""
    pid = tmp_path / "pid"
    sleeper = f"sh -c 'echo $$ >{pid}; exec sleep 30'"
    command = {
        "program": sleeper,
        "function": "runs_it",
        "timeout": f"timeout 40 {sleeper}",
    }[how]
    script = (
        f"runs_it() {{ {sleeper}; }}\n"
        "trap 'echo cleaned >&2' EXIT\n"
        f"with_heartbeat 'sleeping' '{tmp_path / 'log'}' {command}\n"
        "echo not-reached\n"
    )
    source = f'set -euo pipefail\nsay() {{ echo "x.sh: $*" >&2; }}\n. "$1"\n{script}'
    started = subprocess.Popen(
        ["bash", "-c", source, "bash", PROGRESS],
        env={"PATH": "/usr/bin:/bin", "ALLOY_E2E_HEARTBEAT": "60"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 10
    while not (pid.exists() and pid.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    sleeping = int(pid.read_text())
    subprocess.run(["kill", f"-{signal}", str(started.pid)], check=True)
    out, err = started.communicate(timeout=10)
    expected = {"TERM": 143, "INT": 130, "HUP": 129}[signal]
    assert started.returncode == expected, err
    assert out == "" and "cleaned" in err  # the script ended there, through its EXIT trap
    deadline = time.monotonic() + 5
    while runs(sleeping) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not runs(sleeping), f"{how}'s sleep {sleeping} still runs: {runs(sleeping)}"


def runs(pid: int) -> str:
    """The state of process `pid` from /proc, "" once it is gone or a zombie (dead, its exit
    not yet collected by its parent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    state = stat.rsplit(")", 1)[1].split()[0]
    return "" if state in ("Z", "X") else f"{state} {stat}"
