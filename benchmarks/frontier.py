"""The cold build's frontier (issue 26): which mksquashfs xz settings pack the stand-in into how
many bytes in how many seconds, against the seed's point (the original script's mksquashfs: xz,
128 KiB blocks). This module is the settings table and the arithmetic (ratios, the issue's box,
the frontier, the Markdown); benchmarks/frontier_run.py packs and times, frontier_plot.py draws.

A setting is our mksquashfs command line (build/formats/squashfs.py: mksquashfs_args) changed
only in what is measured: the block size, the x86 BCJ filter, -Xdict-size, and the options only a
newer squashfs-tools has (4.6's -Xpreset/-Xe, as issue 26 names them).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.original import ORIGINAL_FLAGS
from build.formats.squashfs import BLOCK_SIZE, mksquashfs_args
from build.model.arch import Arch

START = (
    "<!-- frontier: written by nox -s bench; python -m benchmarks.frontier_run rewrites this -->"
)
END = "<!-- /frontier -->"
PNG_NAME = "frontier.png"  # beside docs/benchmarks.md

HOST = "host"  # the squashfs-tools on PATH (Debian 12: 4.5.1)
TRIXIE = "trixie"  # Debian 13's squashfs-tools (4.6.1), unpacked into the bench's cache
BLOCKS = ("128K", "256K", "512K", "1M")


@dataclass(frozen=True)
class Box:
    """Issue 26's goal: at most `size` times the seed's bytes, in at most `time` its seconds."""

    size: float = 0.86
    time: float = 1.3

    def holds(self, size_ratio: float, time_ratio: float) -> bool:
        return size_ratio <= self.size and time_ratio <= self.time


BOX = Box()


@dataclass(frozen=True)
class Setting:
    """One point to measure: which squashfs-tools (HOST or TRIXIE), block size, x86 BCJ filter,
    -Xdict-size (None: mksquashfs's default, the block size) and further xz options; `seed`: the
    original script's command line instead of ours."""

    tools: str = HOST
    block: str = BLOCK_SIZE
    bcj: bool = False
    dict_size: str | None = None
    extra: tuple[str, ...] = ()
    seed: bool = False

    def label(self, versions: dict[str, str]) -> str:
        if self.seed:
            return f"seed: xz {self.block} (original script), {versions[self.tools]}"
        parts = [f"xz {self.block}"]
        parts += ["BCJ x86"] if self.bcj else []
        parts += [f"dict {self.dict_size}"] if self.dict_size else []
        parts += [" ".join(self.extra)] if self.extra else []
        ours = " (ours)" if self == OURS else ""
        return ", ".join(parts) + f"{ours}, {versions[self.tools]}"


SEED = Setting(block="128K", seed=True)
OURS = Setting()  # the pipeline's default: --compression=xz


def settings() -> list[Setting]:
    """Every setting of the frontier run, the seed's first."""
    grid = [SEED]
    grid += [Setting(block=block, bcj=bcj) for block in BLOCKS for bcj in (False, True)]
    grid += [Setting(block=b, dict_size=d) for b in ("512K", "1M") for d in ("25%", "50%")]
    grid += [Setting(TRIXIE, block=block) for block in ("128K", "512K", "1M")]
    grid += [Setting(TRIXIE, extra=extra) for extra in (("-Xpreset", "3"), ("-Xpreset", "6"))]
    grid += [Setting(TRIXIE, extra=("-Xe",))]
    return grid


def setting_args(setting: Setting, arch: Arch) -> list[str]:
    """mksquashfs's options for `setting` (after the tree and the image): the seed's are the
    original script's; ours are mksquashfs_args' with the block size, the xz options and the
    filter as the setting says, nothing else changed."""
    if setting.seed:
        return list(ORIGINAL_FLAGS)  # mksquashfs's default block size: 128K
    args = mksquashfs_args("xz-bcj" if setting.bcj else "xz", arch)
    at = args.index("-b")
    args[at + 1] = setting.block
    options = ["-Xdict-size", setting.dict_size] if setting.dict_size else []
    return args[:at] + options + list(setting.extra) + args[at:]


@dataclass(frozen=True)
class Point:
    """One setting measured: image bytes, and its pack seconds of every round."""

    label: str
    setting: Setting
    size: int
    seconds: tuple[float, ...]


@dataclass(frozen=True)
class Ratios:
    """A point against the seed's: bytes over bytes; the median of the rounds' seconds over
    seconds (each round packed both under the same drift), with the lowest and highest."""

    size: float
    time: float
    time_low: float
    time_high: float


def ratios(point: Point, seed: Point) -> Ratios:
    if len(point.seconds) != len(seed.seconds) or not seed.seconds:
        raise ValueError(
            f"{point.label}: {len(point.seconds)} rounds, the seed {len(seed.seconds)}"
        )
    each = [a / b for a, b in zip(point.seconds, seed.seconds, strict=True)]
    return Ratios(point.size / seed.size, statistics.median(each), min(each), max(each))


def frontier(found: dict[str, Ratios]) -> list[str]:
    """The labels no other point beats on both bytes and time (at least as good on both, better
    on one), fastest first: the edge of what the settings allow."""
    edge = [
        label
        for label, mine in found.items()
        if not any(
            other.size <= mine.size
            and other.time <= mine.time
            and (other.size, other.time) != (mine.size, mine.time)
            for other in found.values()
        )
    ]
    return sorted(edge, key=lambda label: found[label].time)


def in_box(found: dict[str, Ratios], box: Box = BOX) -> list[str]:
    """The labels inside the issue's box, smallest first."""
    inside = [label for label, r in found.items() if box.holds(r.size, r.time)]
    return sorted(inside, key=lambda label: found[label].size)


def all_ratios(points: Sequence[Point]) -> dict[str, Ratios]:
    (seed,) = [point for point in points if point.setting.seed]
    return {point.label: ratios(point, seed) for point in points}


def format_frontier_table(points: Sequence[Point], box: Box = BOX) -> str:
    """The Markdown table: one line per point, in the order measured."""
    found = all_ratios(points)
    edge = set(frontier(found))
    lines = [
        "| setting | image | size vs seed | pack (median) | time vs seed (rounds) "
        "| on the frontier | in the box |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for point in points:
        r = found[point.label]
        spread = f" ({r.time_low:.3f}-{r.time_high:.3f})" if len(point.seconds) > 1 else ""
        inside = "**yes**" if box.holds(r.size, r.time) else "no"
        lines.append(
            f"| {point.label} | {point.size / 1e6:.2f} MB | {r.size:.3f}x "
            f"| {statistics.median(point.seconds):.2f} s | {r.time:.3f}x{spread} "
            f"| {'yes' if point.label in edge else '—'} | {inside} |"
        )
    return "\n".join(lines)


def verdict(points: Sequence[Point], box: Box = BOX) -> str:
    """One sentence: which settings are in the box, or that none is and what comes nearest."""
    found = all_ratios(points)
    inside = in_box(found, box)
    if inside:
        named = "; ".join(f"{label} ({found[label].size:.3f}x, {found[label].time:.3f}x)"
                          for label in inside)  # fmt: skip
        return f"In the box (≤ {box.size}x bytes, ≤ {box.time}x time): {named}."
    fits_time = [label for label, r in found.items() if r.time <= box.time]
    best = min(fits_time, key=lambda label: found[label].size, default=None)
    nearest = (
        f" The smallest within {box.time}x the time: {best}, {found[best].size:.3f}x the bytes"
        f" at {found[best].time:.3f}x."
        if best is not None
        else ""
    )
    return f"No setting is in the box (≤ {box.size}x bytes, ≤ {box.time}x time).{nearest}"
