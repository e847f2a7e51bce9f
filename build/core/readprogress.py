"""Progress of a command that reads its input and says nothing while it works (mksquashfs
-no-progress, mkfs.erofs --quiet): the bytes it has read, as /proc/PID/io's rchar counts them
(its threads, and the children it waited for), against the input's size. Nothing reaches the
command: its arguments, environment and output stay the same, and so do the image's bytes."""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from build.core.report import Progress, progress
from build.core.run import Watch

# A command done sooner shows no progress: a small image packs without a line of it.
QUIET_FOR = 3.0


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


def bytes_read(pid: int) -> int | None:
    """How many bytes process `pid` has read so far, or None where that cannot be told."""
    try:
        with open(f"/proc/{pid}/io", encoding="ascii") as io:
            for line in io:
                key, _, value = line.partition(":")
                if key == "rchar":
                    return int(value)
    except (OSError, ValueError):
        pass
    return None


@contextlib.contextmanager
def read_progress(label: str, total: int) -> Iterator[Watch]:
    """A `watch` for run() that shows how much of `total` bytes the command has read, the way a
    download shows its bytes (a bar on a terminal, else a line now and then), once it has run
    QUIET_FOR seconds."""
    started = time.monotonic()
    bar: Progress | None = None
    shown = 0

    def watch(pid: int) -> None:
        nonlocal bar, shown
        read = bytes_read(pid)
        if read is None or time.monotonic() - started < QUIET_FOR:
            return
        read = min(read, total)  # mksquashfs reads back blocks to find duplicates
        if bar is None:
            bar = progress(label, total)
        if read > shown:
            bar.update(read - shown)
            shown = read

    try:
        yield watch
    finally:
        if bar is not None:
            bar.close()
