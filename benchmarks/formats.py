"""EROFS against squashfs on the same tree: mkfs.erofs alone with our flags
(build/formats/erofs.py's), lz4hc at several pcluster sizes and uncompressed, against our squashfs
images; their sizes, pack times, read-back times, and how long systemd-sysext takes to merge each
format."""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks import readback
from benchmarks.bare import bare_pack
from benchmarks.common import BUILD_ARCH, Case, note_command, round_ratios, rounds
from benchmarks.sysext_merge import cannot_time_merges, merge_times
from benchmarks.table import FormatFigures
from build.alloy import NAME
from build.formats.erofs import MKFS_EROFS, PCLUSTER_BYTES, image_uuid, mkfs_erofs_args, pack_erofs

PCLUSTERS = (64 << 10, 128 << 10, PCLUSTER_BYTES, 1 << 20)  # ours: PCLUSTER_BYTES, 256 KiB
DEFAULT_SQUASHFS = "xz"  # the pipeline's default: every EROFS figure is against it
MERGED = ("xz", "zstd", "erofs lz4hc")  # the images whose merge is timed


@dataclass(frozen=True)
class Packed:
    image: Path
    seconds: float


def _size(pcluster: int) -> str:
    return f"{pcluster >> 20} MiB" if pcluster >= 1 << 20 else f"{pcluster >> 10} KiB"


def erofs_label(compression: str, pcluster: int = PCLUSTER_BYTES) -> str:
    if compression == "none":
        return "erofs none"
    ours = " (ours)" if pcluster == PCLUSTER_BYTES else ""
    return f"erofs {compression} {_size(pcluster)}{ours}"


def erofs_pack(case: Case, tree: Path, compression: str, pcluster: int = PCLUSTER_BYTES) -> Packed:
    """`tree` packed as the pipeline packs --format=erofs, but at `pcluster` bytes."""
    image = case.work / f"erofs-{compression}-{pcluster >> 10}k.raw"
    image_id = image_uuid(NAME, case.version, BUILD_ARCH)
    args = mkfs_erofs_args(compression, image_id, pcluster)
    note_command([MKFS_EROFS, *args, str(image), str(tree)])
    started = time.monotonic()
    pack_erofs(tree, image, compression, image_id, pcluster)
    return Packed(image, time.monotonic() - started)


def erofs_rows(
    case: Case, squashfs: dict[str, Path], squashfs_readback: dict[str, float]
) -> list[FormatFigures]:
    """Rows of every EROFS image against the default squashfs one, and the formats table's
    lines. Every pack, squashfs (bare mksquashfs) and EROFS, runs once a round (common.rounds),
    so the drift hits them alike; a ratio's range is over the rounds."""
    tree = case.tree("cold0")
    erofs = {erofs_label("lz4hc", p): ("lz4hc", p) for p in PCLUSTERS}
    erofs[erofs_label("none")] = ("none", PCLUSTER_BYTES)
    images: dict[str, Path] = {}

    def squashfs_pack(compression: str, _: int) -> float:
        return bare_pack(case, compression, tree).seconds

    def erofs_pack_once(label: str, _: int) -> float:
        packed = erofs_pack(case, tree, *erofs[label])
        images[label] = packed.image
        return packed.seconds

    measures: dict[str, Callable[[int], float]]
    measures = {c: functools.partial(squashfs_pack, c) for c in squashfs}
    measures.update({label: functools.partial(erofs_pack_once, label) for label in erofs})
    seconds = rounds(case.heavy, measures)
    packs = {label: statistics.median(values) for label, values in seconds.items()}
    xz = DEFAULT_SQUASHFS

    xz_size = squashfs[xz].stat().st_size
    for label, image in images.items():
        case.row(f"{label} image size vs {xz}", image.stat().st_size, xz_size, "B")
    for label in erofs:
        case.row(
            f"{label} pack (mkfs.erofs) vs {xz} (bare mksquashfs)",
            packs[label],
            packs[xz],
            ratios=round_ratios(seconds, label, xz),
        )
    readbacks: dict[str, float] = {}
    if xz in squashfs_readback:
        for label, image in images.items():
            readbacks[label] = readback.read_back(case, image) or 0.0
            case.row(
                f"read binary from mounted image, {label} vs {xz}",
                readbacks[label],
                squashfs_readback[xz],
            )

    merges = _merge_rows(case, {**squashfs, "erofs lz4hc": images[erofs_label("lz4hc")]})
    lines = [
        FormatFigures(
            f"squashfs {compression}, 1 MiB blocks" + (" (ours)" if compression == xz else ""),
            image.stat().st_size,
            packs[compression],
            squashfs_readback.get(compression),
            merges.get(compression),
        )
        for compression, image in squashfs.items()
    ]
    lines += [
        FormatFigures(
            label,
            image.stat().st_size,
            packs[label],
            readbacks.get(label),
            merges.get("erofs lz4hc") if label == erofs_label("lz4hc") else None,
        )
        for label, image in images.items()
    ]
    return lines


def _merge_rows(case: Case, images: dict[str, Path]) -> dict[str, float]:
    """systemd-sysext merge of xz, zstd and EROFS lz4hc, in rounds (root only); medians."""
    if cannot_time_merges() is not None:
        return {}
    chosen = {label: images[label] for label in MERGED}
    seconds = merge_times(chosen, case.spec("cold0").image.name, case.runs + 2)
    medians = {label: statistics.median(values) for label, values in seconds.items()}
    base = DEFAULT_SQUASHFS
    case.row(f"systemd-sysext merge, {base} image (cold cache)", medians[base])
    for label in MERGED:
        if label != base:
            case.row(
                f"systemd-sysext merge, {label} vs {base}",
                medians[label],
                medians[base],
                ratios=round_ratios(seconds, label, base),
            )
    return medians
