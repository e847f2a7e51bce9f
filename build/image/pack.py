"""The pack step: the mksquashfs command line, and running it reproducibly."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from build.alloy import NAME
from build.core.errors import BuildError, explain_full_disk
from build.core.report import human_size
from build.core.run import require, run
from build.formats.erofs import BLOCK_SIZE_BYTES as EROFS_BLOCK_SIZE_BYTES
from build.formats.erofs import MKFS_EROFS, image_uuid, mkfs_erofs_args, pack_erofs
from build.formats.erofs import tool_versions as erofs_tool_versions
from build.image import buildinfo
from build.model.arch import Arch

if TYPE_CHECKING:
    from build.config.context import StepContext
    from build.config.spec import BuildSpec

BLOCK_SIZE = "1M"
BLOCK_SIZE_BYTES = 1 << 20
# Any constant would do: it must depend on neither the clock nor the checkout. mksquashfs uses
# it as the image's creation time and clamps every newer file time to it.
SOURCE_DATE_EPOCH = "0"


@dataclass(frozen=True)
class Compressor:
    comp: str  # mksquashfs -comp, and what unsquashfs -s shows as "Compression"
    options: tuple[str, ...] = ()
    # Add -Xbcj with the architecture's filter (Arch.bcj), where squashfs-tools has one:
    # mksquashfs packs each block with and without it and keeps the smaller.
    bcj: bool = False


# Every --compression choice (the option table, build/config/options.py, takes this table's keys).
COMPRESSORS: dict[str, Compressor] = {
    "xz": Compressor("xz"),
    "xz-bcj": Compressor("xz", bcj=True),
    "zstd": Compressor("zstd", ("-Xcompression-level", "19")),
}


def bcj_filter(compression: str, arch: Arch) -> str | None:
    """The BCJ filter an image of this compression for this architecture is packed with
    (unsquashfs -s: "Filters selected: x86"), or None."""
    return arch.bcj if COMPRESSORS[compression].bcj else None


def used_compression(compression: str, arch: Arch) -> str:
    """The --compression choice that packs exactly as `compression` does for `arch`: xz-bcj on
    an architecture without a BCJ filter (arm64) is plain xz, and is recorded so. (EROFS's
    choices pack as they say.)"""
    if compression not in COMPRESSORS:
        return compression
    compressor = COMPRESSORS[compression]
    if compressor.bcj and bcj_filter(compression, arch) is None:
        plain = replace(compressor, bcj=False)
        return next(name for name, other in COMPRESSORS.items() if other == plain)
    return compression


def mksquashfs_args(compression: str, arch: Arch) -> list[str]:
    compressor = COMPRESSORS[compression]
    bcj = bcj_filter(compression, arch)
    return [
        "-noappend",
        "-all-root",
        # A block of zeros is stored as data, not as a sparse block, which verify refuses (the
        # kernel reads it as zeros, but no Alloy binary needs it, and it is work from nothing).
        "-no-sparse",
        "-comp",
        compressor.comp,
        *compressor.options,
        *(["-Xbcj", bcj] if bcj else []),
        "-b",
        BLOCK_SIZE,
    ]


def pack(tree: Path, image: Path, compression: str, arch: Arch) -> None:
    # Nothing from the caller's environment but PATH: only these can shape the image.
    env = {
        "PATH": os.environ.get("PATH", ""),
        "LC_ALL": "C",
        "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH,
    }
    try:
        run(
            [
                "mksquashfs",
                str(tree),
                str(image),
                *mksquashfs_args(compression, arch),
                "-no-progress",
            ],
            env=env,
        )
    except BuildError as error:
        raise explain_full_disk(error, image.parent, "mksquashfs", 2 * BLOCK_SIZE_BYTES) from error


def tool_versions() -> dict[str, str | None]:
    """The tools that decide the image's bytes: same versions, same image."""
    match = re.search(r"version (\S+)", run(["mksquashfs", "-version"]))
    return {"mksquashfs": match.group(1) if match else None, "liblzma": _liblzma_version()}


def _liblzma_version() -> str | None:
    """xz's library, which mksquashfs links for -comp xz; xz-utils reports it."""
    if shutil.which("xz") is None:
        return None
    match = re.search(r"^liblzma (\S+)", run(["xz", "--version"]), re.M)
    return match.group(1) if match else None


def check_tools(runner: StepContext) -> None:
    """Before a download and a staging that could not be packed."""
    if runner.must_run("pack"):
        require(MKFS_EROFS if runner.spec.format == "erofs" else "mksquashfs")


def params(spec: BuildSpec) -> dict[str, Any]:
    """What shapes the image beside the staged tree: a change rebuilds it."""
    if spec.format == "erofs":
        image_id = image_uuid(NAME, spec.version, spec.arch.name)
        return {"mkfs.erofs": mkfs_erofs_args(spec.compression, image_id)}
    return {"mksquashfs": mksquashfs_args(spec.compression, spec.arch)}


def make(runner: StepContext, trust_keys: tuple[str, ...]) -> str:
    """Pack the staged tree into the image in --format, and write its build info
    (`trust_keys`: the fingerprints of the keys the image carries)."""
    spec = runner.spec
    if spec.format == "erofs":
        image_id = image_uuid(NAME, spec.version, spec.arch.name)
        with runner.output(spec.image) as tmp:
            pack_erofs(spec.rootfs, tmp, spec.compression, image_id)
        tools = erofs_tool_versions()
        packed: dict[str, Any] = {
            "format": "erofs",
            "compression": spec.compression,
            "block_size": EROFS_BLOCK_SIZE_BYTES,
            "mkfs_erofs_args": mkfs_erofs_args(spec.compression, image_id),
            "uuid": str(image_id),
        }
        flags = f"erofs, {spec.compression}, mkfs.erofs {tools['mkfs.erofs']}"
    else:
        with runner.output(spec.image) as tmp:
            pack(spec.rootfs, tmp, spec.compression, spec.arch)
        tools = tool_versions()
        packed = {
            "format": "squashfs",
            # What packed it: xz-bcj on arm64 is xz, however it was asked for.
            "compression": used_compression(spec.compression, spec.arch),
            "block_size": BLOCK_SIZE_BYTES,
            "mksquashfs_args": mksquashfs_args(spec.compression, spec.arch),
        }
        flags = f"{spec.compression}, {BLOCK_SIZE} blocks, mksquashfs {tools['mksquashfs']}"
    buildinfo.write(runner, buildinfo.of_pack(spec, packed, tools, trust_keys))
    size = runner.current(spec.image).stat().st_size
    return f"packed {runner.current(spec.image)}: {human_size(size)} ({flags})"
