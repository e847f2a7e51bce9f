"""Readback: how long the binary takes to read from the mounted image, with cold caches."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from benchmarks.common import Case, drop_caches, fresh, median_of, note_command
from build.image.content import IMAGE_BINARY

CHUNK = 1 << 20


def read_back(case: Case, image: Path, part: tuple[int, int] | None = None) -> float | None:
    """Seconds to read the binary from the mounted image with cold caches (root only); `part`:
    the (offset, size) in bytes of the file system inside `image` (a DDI's data partition),
    loop-mounted as it is, without dm-verity."""
    if os.geteuid() != 0:
        return None
    mnt = fresh(case.work / "mnt")
    options = "loop,ro" + (f",offset={part[0]},sizelimit={part[1]}" if part else "")
    note_command(
        f"mount -o {options} IMAGE {mnt}; echo 3 > /proc/sys/vm/drop_caches; "
        f"read {mnt}/{IMAGE_BINARY} in 1 MiB chunks"
    )
    subprocess.run(["mount", "-o", options, str(image), str(mnt)], check=True)
    try:

        def once(_: int) -> float:
            drop_caches()
            started = time.monotonic()
            with (mnt / IMAGE_BINARY).open("rb") as f:
                while f.read(CHUNK):
                    pass
            return time.monotonic() - started

        return median_of(case.runs, once)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def readback_rows(case: Case, original: Path, images: dict[str, Path]) -> dict[str, float]:
    """Each compression's image against the original script's; their seconds (none when not
    root)."""
    theirs = read_back(case, original)
    if theirs is None:
        return {}
    seconds = {}
    for compression, image in images.items():
        seconds[compression] = read_back(case, image) or 0.0
        case.row(
            f"read binary from mounted image, {compression} vs original",
            seconds[compression],
            theirs,
        )
    return seconds
