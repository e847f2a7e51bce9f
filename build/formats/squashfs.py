"""The mksquashfs command line, running it reproducibly, and what verify expects of a squashfs
image's superblock.

Two runs of the same squashfs-tools and liblzma versions on the same tree give the same bytes:
SOURCE_DATE_EPOCH fixes the image's time and clamps newer file times, -all-root the owners, and
nothing else is read from the environment (README: "Reproducible images").
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from build.core.errors import BuildError, explain_full_disk
from build.core.run import run, tool_environment
from build.core.toolprogress import WRITTEN, io_progress
from build.formats.recipe import Recipe
from build.model.arch import Arch
from build.read.image import ReadImage
from build.read.squashfs import READABLE, STORED_FLAGS

MKSQUASHFS = "mksquashfs"
TOOLS = ("mksquashfs", "liblzma")  # the versions tool_versions() gives, in its order
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
    # Every block stored as it is (-noI -noD -noF -noX): `comp` only names a decompressor the
    # kernel must have to mount the image (super.c looks it up whatever the blocks hold).
    stored: bool = False


# mksquashfs's options that store inodes (and ids), data, fragments and xattrs uncompressed.
STORED = ("-noI", "-noD", "-noF", "-noX")


# Every --compression choice for --format=squashfs, the default first (the format table,
# build/formats/table.py, gives the option table this table's keys).
COMPRESSORS: dict[str, Compressor] = {
    "xz": Compressor("xz"),
    "xz-bcj": Compressor("xz", bcj=True),
    "zstd": Compressor("zstd", ("-Xcompression-level", "19")),
    # For hosts without EROFS (Flatcar LTS, kernel 6.6) sent with invoke release --transport:
    # fast to read like EROFS none, small on the wire. xz is the named compressor: every
    # Flatcar kernel has it, and with no options block mksquashfs writes nothing of it.
    "none": Compressor("xz", STORED, stored=True),
}
UNCOMPRESSED = "none"  # the choice whose images hold no compressed block


def bcj_filter(compression: str, arch: Arch) -> str | None:
    """The BCJ filter an image of this compression for this architecture is packed with
    (unsquashfs -s: "Filters selected: x86"), or None."""
    return arch.bcj if COMPRESSORS[compression].bcj else None


def used_compression(compression: str, arch: Arch) -> str:
    """The --compression choice that packs exactly as `compression` does for `arch`: xz-bcj on
    an architecture without a BCJ filter (arm64) is plain xz, and is recorded so."""
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


def pack_squashfs(tree: Path, image: Path, compression: str, arch: Arch) -> None:
    # Nothing from the caller's environment but PATH: only these can shape the image.
    env = tool_environment(SOURCE_DATE_EPOCH=SOURCE_DATE_EPOCH)
    argv = [MKSQUASHFS, str(tree), str(image), *mksquashfs_args(compression, arch)]
    try:
        # Its own bar (4.5) shows only once it is done, and it reads the whole tree ahead of
        # its compressors: what it has written is what tells how far it got.
        with io_progress("packing, written so far", WRITTEN) as watch:
            run([*argv, "-no-progress"], env=env, watch=watch)
    except BuildError as error:
        raise explain_full_disk(error, image.parent, "mksquashfs", 2 * BLOCK_SIZE_BYTES) from error


def tool_versions() -> dict[str, str | None]:
    """The tools that decide the image's bytes: same versions, same image."""
    match = re.search(r"version (\S+)", run([MKSQUASHFS, "-version"]))
    return {"mksquashfs": match.group(1) if match else None, "liblzma": _liblzma_version()}


def _liblzma_version() -> str | None:
    """xz's library, which mksquashfs links for -comp xz; xz-utils reports it."""
    if shutil.which("xz") is None:
        return None
    match = re.search(r"^liblzma (\S+)", run(["xz", "--version"]), re.M)
    return match.group(1) if match else None


# The format table's interface (build/formats/table.py: Format).


def pack(recipe: Recipe, tree: Path, image: Path) -> None:
    pack_squashfs(tree, image, recipe.compression, recipe.arch)


def args(recipe: Recipe) -> dict[str, Any]:
    return {"mksquashfs": mksquashfs_args(recipe.compression, recipe.arch)}


def fields(recipe: Recipe) -> dict[str, Any]:
    return {
        # What packed it: xz-bcj on arm64 is xz, however it was asked for.
        "compression": used_compression(recipe.compression, recipe.arch),
        "block_size": BLOCK_SIZE_BYTES,
        "mksquashfs_args": mksquashfs_args(recipe.compression, recipe.arch),
    }


def summary(recipe: Recipe, tools: Mapping[str, str | None]) -> str:
    return f"{recipe.compression}, {BLOCK_SIZE} blocks, mksquashfs {tools['mksquashfs']}"


def superblock_check(image: ReadImage, compression: str, arch: Arch | None) -> tuple[str, str]:
    """("ok" or "FAIL", why) for verify's superblock check of a squashfs image: compressor, BCJ
    filter and block size as --compression packs them for `arch`, the architecture of the
    image's binary (None: unknown, which the architecture check fails); for "none", no block
    stored compressed, the flags saying so, and xz named for the kernel's mount."""
    if compression not in COMPRESSORS:
        choices = ", ".join(COMPRESSORS)
        return "FAIL", f"a squashfs image, not {compression} ({choices})"
    compressor = COMPRESSORS[compression]
    superblock = image.superblock
    found = _found(superblock)
    detail = _describe(*found, superblock)
    if compressor.bcj and arch is None:
        # The filter follows the binary's machine, unknown here: the architecture check fails.
        bcj = found[1]
        detail += " (filter not checked: the binary's architecture is unknown)"
    else:
        bcj = bcj_filter(compression, arch) if arch is not None else None
    wanted = (UNCOMPRESSED if compressor.stored else compressor.comp, bcj, str(BLOCK_SIZE_BYTES))
    if found != wanted or superblock.get("Compression") != compressor.comp:
        return "FAIL", f"{detail}; expected {_describe(*wanted, {'Compression': compressor.comp})}"
    return "ok", detail


# What verify --image takes from images made elsewhere (mksquashfs's gzip default, as
# sysext-bakery packs, and the others Flatcar's kernels mount), as unsquashfs -s names them:
# the reader refuses the rest (lzo, lzma) in a line of its own.
IMAGE_COMPRESSIONS = READABLE


def vet_superblock(image: ReadImage, expected: str | None, arch: Arch | None) -> tuple[str, str]:
    """("ok" or "FAIL", why) for verify --image's superblock check of a squashfs image made
    anywhere: any compression and block size a host mounts (the reader refused the others),
    said; `expected` (--expect-compression) pins the compression: xz matches with or without
    a BCJ filter, xz-bcj wants the filter of the binary's architecture `arch`, as
    --compression=xz-bcj packs it; none wants no block stored compressed, as the kernel reads
    them (by each block's bit, whatever the superblock's flags say)."""
    superblock = image.superblock
    found = _found(superblock)
    detail = "squashfs, " + _describe(*found, superblock)
    if expected is None or expected == found[0]:
        return "ok", detail
    if expected == UNCOMPRESSED and superblock.get("Compressed blocks") == "0":
        return "ok", f"{detail} (no block stored compressed)"
    compressor = COMPRESSORS.get(expected)
    if compressor is not None and not compressor.stored and compressor.comp == found[0]:
        bcj = bcj_filter(expected, arch) if arch is not None else found[1]
        if found[1] == bcj:
            return "ok", detail
        filters = f"BCJ filter {bcj}" if bcj is not None else "no BCJ filter"
        return "FAIL", f"{detail}; expected {expected} ({filters}: --expect-compression)"
    return "FAIL", f"{detail}; expected {expected} compression (--expect-compression)"


# What the flags of an image packed with STORED say: everything stored uncompressed.
ALL_STORED = ", ".join(STORED_FLAGS.values())


def _found(superblock: Mapping[str, str]) -> tuple[str | None, str | None, str | None]:
    """(compression, BCJ filter, block size) of a read image: "none" where the flags say
    every table and block is stored uncompressed and none is (mksquashfs -noI -noD -noF -noX),
    else the compressor the superblock names."""
    stored = superblock.get("Stored uncompressed") == ALL_STORED
    held = superblock.get("Compressed blocks") != "0"
    named = UNCOMPRESSED if stored and not held else superblock.get("Compression")
    return named, superblock.get("Filters"), superblock.get("Block size")


def _describe(
    compression: str | None,
    bcj: str | None,
    block_size: str | None,
    superblock: Mapping[str, str],
) -> str:
    filters = f"BCJ filter {bcj}" if bcj is not None else "no BCJ filter"
    said = f"{compression} compression"
    if compression == UNCOMPRESSED:
        said += f" ({superblock.get('Compression')} named for the mount)"
    stored = superblock.get("Stored uncompressed")
    held = superblock.get("Compressed blocks", "0")
    if compression != UNCOMPRESSED and stored and held != "0":
        said += f" ({held} blocks compressed though the flags say {stored} stored uncompressed)"
    return f"{said}, {filters}, {block_size}-byte blocks"
