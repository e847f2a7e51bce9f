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
