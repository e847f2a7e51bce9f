"""Memory: the peak RSS of our Python process in a build, and of mksquashfs apart from it."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import ROOT, Case, note_command

PYTHON_RSS_LIMIT_MB = 100


def polled(cmd: list[str]) -> tuple[float, float]:
    """(wall s, peak RSS MB) of the Python process `cmd` starts: its VmHWM from /proc,
    polled until it exits (its children, such as mksquashfs, are not counted)."""
    note_command(cmd)
    started = time.monotonic()
    process = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    status = Path(f"/proc/{process.pid}/status")
    while process.poll() is None:
        try:
            match = re.search(r"^VmHWM:\s+(\d+) kB", status.read_text(), re.M)
        except OSError:
            break
        if match:
            peak = max(peak, int(match.group(1)))
        time.sleep(0.02)
    if process.wait() != 0:
        sys.exit(f"bench: failed: {' '.join(cmd)}")
    return time.monotonic() - started, peak / 1024


def time_max_rss_mb(report: str) -> float:
    """The maximum RSS in MB from a `/usr/bin/time -v` report."""
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", report)
    return int(match.group(1)) / 1024 if match else float("nan")


def memory_rows(case: Case, mksquashfs_rss_mb: list[float]) -> None:
    case.row(
        "peak RSS of our Python process, cold invoke all",
        case.peak_rss_mb,
        unit="MB",
        limit=PYTHON_RSS_LIMIT_MB,
    )
    case.row("peak RSS of mksquashfs (reported apart)", max(mksquashfs_rss_mb), unit="MB")
