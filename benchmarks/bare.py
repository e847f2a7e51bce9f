"""mksquashfs alone with our flags (build/formats/squashfs.py's): the yardstick for `invoke pack`,
and how the images of the other compression choices are packed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import BUILD_ARCH, Case, timed
from benchmarks.memory import time_max_rss_mb
from build.formats.squashfs import mksquashfs_args
from build.model.arch import ARCHES


@dataclass(frozen=True)
class BarePack:
    seconds: float
    rss_mb: float  # mksquashfs's maximum RSS
    image: Path


def bare_pack(case: Case, compression: str, tree: Path) -> BarePack:
    image = case.work / f"bare-{compression}.raw"
    report = case.work / "time.txt"
    cmd = ["mksquashfs", str(tree), str(image), *mksquashfs_args(compression, ARCHES[BUILD_ARCH])]
    seconds = timed(["/usr/bin/time", "-v", "-o", str(report), *cmd, "-no-progress"])
    return BarePack(seconds, time_max_rss_mb(report.read_text()), image)
