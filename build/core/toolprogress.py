"""How far a tool that says nothing while it works has got (mksquashfs -no-progress, mkfs.erofs
--quiet): the bytes it has read or written, as /proc/PID/io counts them (rchar, wchar: its
threads, and the children it waited for). Nothing reaches the tool: its arguments, environment
and output stay the same, and so do the image's bytes."""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from build.core.report import Progress, progress
from build.core.run import Watch

# A tool done sooner shows no progress: a small image packs without a line of it.
QUIET_FOR = 3.0
READ, WRITTEN = "rchar", "wchar"  # /proc/PID/io's counters


def tree_size(tree: Path) -> int:
    """The bytes of the regular files under `tree` (symlinks not followed): what a packer
    reads."""
    total = 0
    for directory, _, files in os.walk(tree):
        for name in files:
            st = os.lstat(os.path.join(directory, name))
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def io_bytes(pid: int, counter: str) -> int | None:
    """How many bytes process `pid` has read (READ) or written (WRITTEN) so far, or None where
    that cannot be told."""
    try:
        with open(f"/proc/{pid}/io", encoding="ascii") as io:
            for line in io:
                key, _, value = line.partition(":")
                if key == counter:
                    return int(value)
    except (OSError, ValueError):
        pass
    return None


@contextlib.contextmanager
def io_progress(label: str, counter: str, total: int | None = None) -> Iterator[Watch]:
    """A `watch` for run() that shows the bytes the tool has read or written (`counter`), of
    `total` where that is known, the way a download shows its bytes (a bar on a terminal, else
    a line now and then), once it has run QUIET_FOR seconds."""
    started = time.monotonic()
    bar: Progress | None = None
    shown = 0

    def watch(pid: int) -> None:
        nonlocal bar, shown
        done = io_bytes(pid, counter)
        if done is None or time.monotonic() - started < QUIET_FOR:
            return
        if total is not None:
            done = min(done, total)
        if bar is None:
            bar = progress(label, total)
        if done > shown:
            bar.update(done - shown)
            shown = done

    try:
        yield watch
    finally:
        if bar is not None:
            bar.close()
