"""The mkfs.erofs command line, running it reproducibly, and what verify expects of an EROFS
image's superblock.

Flatcar's kernels decompress only LZ4 in EROFS, so an image is lz4hc-compressed or not at all.
Two runs of the same erofs-utils version on the same tree give the same bytes: the tree's
modes, owners and times do not reach the image (--all-root, -T), the UUID comes from the
image's name, version and architecture (-U), and nothing is read from the environment.
Different erofs-utils versions lay images out differently (README: "EROFS images").
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from build.core.errors import BuildError, explain_full_disk
from build.core.run import run, run_answer, tool_environment
from build.core.toolprogress import READ, io_progress, tree_size
from build.core.tools import package
from build.formats.recipe import Recipe
from build.model.arch import Arch
from build.read.image import ReadImage

MKFS_EROFS = "mkfs.erofs"
PACKAGE = package(MKFS_EROFS)
TOOLS = ("mkfs.erofs",)  # the versions tool_versions() gives
BLOCK_SIZE_BYTES = 4096  # what mkfs.erofs 1.4 and 1.5 always write, and 1.8 on 4 KiB pages
LZ4HC_LEVEL = 12  # lz4hc's highest: ~0.3 % smaller than its default 9, packs in seconds
# The physical cluster: how much is compressed together. 256 KiB gets within 1 % of the
# kernel's 1 MiB maximum (a 24.5 MB binary: 64 KiB 12.20 MB, 256 KiB 11.91, 1 MiB 11.83)
# and a random read decompresses a quarter as much.
PCLUSTER_BYTES = 256 << 10
# The image's build time and every file's time. -T, not SOURCE_DATE_EPOCH: that one overrides
# -T where both are given (so it is kept out of mkfs.erofs's environment), and clamps file
# times where -T fixes them; -T also gives 32-byte inodes (1.5 writes 64-byte ones under
# SOURCE_DATE_EPOCH) and shows in the logged command line.
BUILD_TIME = 0
# uuid5's namespace for image UUIDs: any fixed value would do, it must never change.
UUID_NAMESPACE = uuid.UUID("8b1b5c2e-6a0d-5a43-9f61-2c0e4f7d3a90")


@dataclass(frozen=True)
class ErofsCompressor:
    options: tuple[str, ...]  # mkfs.erofs's, for this choice
    algorithm: str  # what the image's superblock then declares: "lz4" or "none"


# Every --compression choice for --format=erofs. lz4 and lz4hc write the same format; lz4hc
# packs smaller and reads as fast.
COMPRESSORS: dict[str, ErofsCompressor] = {
    "lz4hc": ErofsCompressor(
        (f"-zlz4hc,{LZ4HC_LEVEL}", f"-C{PCLUSTER_BYTES}", "-Eztailpacking"), "lz4"
    ),
    "none": ErofsCompressor((), "none"),
}
DEFAULT_COMPRESSION = "lz4hc"


def image_uuid(name: str, version: str, arch: str) -> uuid.UUID:
    """The image's file system UUID: the same for the same image, different for any other
    (overlayfs may tell layers apart by it; mkfs.erofs would pick a random one)."""
    return uuid.uuid5(UUID_NAMESPACE, f"{name}\n{version}\n{arch}")


def mkfs_erofs_args(
    compression: str, image_id: uuid.UUID, pcluster_bytes: int = PCLUSTER_BYTES
) -> list[str]:
    """Everything between mkfs.erofs and IMAGE TREE. xattrs are kept (mkfs.erofs's default):
    user.extension-release.strict must travel in the image. `pcluster_bytes` is for the bench,
    which compares sizes."""
    return [
        *(
            f"-C{pcluster_bytes}" if o.startswith("-C") else o
            for o in COMPRESSORS[compression].options
        ),
        "--all-root",
        f"-T{BUILD_TIME}",
        f"-U{image_id}",
        "--quiet",
    ]


def pack_erofs(
    tree: Path,
    image: Path,
    compression: str,
    image_id: uuid.UUID,
    pcluster_bytes: int = PCLUSTER_BYTES,
) -> None:
    """Pack `tree` into `image` (replaced if it exists)."""
    image.unlink(missing_ok=True)  # mkfs.erofs would write over an old image's bytes
    try:
        args = mkfs_erofs_args(compression, image_id, pcluster_bytes)
        # It reads as it compresses: how much of the tree it has read is how far it got.
        with io_progress("packing", READ, tree_size(tree)) as watch:
            run([MKFS_EROFS, *args, str(image), str(tree)], env=_environment(), watch=watch)
    except BuildError as error:
        raise explain_full_disk(error, image.parent, "mkfs.erofs", 2 * pcluster_bytes) from error


def _environment() -> dict[str, str]:
    """Nothing from the caller's environment but PATH, and never SOURCE_DATE_EPOCH (see
    BUILD_TIME): only the command line shapes the image."""
    return tool_environment()


def mkfs_erofs_version() -> str:
    """mkfs.erofs's version, e.g. "1.5" or "1.8.6". 1.4 and 1.5 have no --version: they print
    their version before refusing it."""
    command = [MKFS_EROFS, "--version"]
    said = run_answer(command, env=_environment(), timeout=30)
    match = re.search(r"^mkfs\.erofs (?:\(erofs-utils\) )?(\d+\.\d+\S*)", said, re.M)
    if match is None:
        raise BuildError(
            f"{command[0]} --version does not say which version it is",
            f"install {PACKAGE} from your distribution (e.g. apt-get install {PACKAGE})",
        )
    return match.group(1)


def tool_versions() -> dict[str, str | None]:
    """The tools that decide the image's bytes: same versions, same image. liblz4's version
    did not change the bytes between 1.9.4 and 1.10.0; mkfs.erofs's does."""
    return {"mkfs.erofs": mkfs_erofs_version()}


# The format table's interface (build/formats/table.py: Format).


def pack(recipe: Recipe, tree: Path, image: Path) -> None:
    pack_erofs(tree, image, recipe.compression, _uuid(recipe))


def args(recipe: Recipe) -> dict[str, Any]:
    return {"mkfs.erofs": mkfs_erofs_args(recipe.compression, _uuid(recipe))}


def fields(recipe: Recipe) -> dict[str, Any]:
    return {
        "compression": recipe.compression,
        "block_size": BLOCK_SIZE_BYTES,
        "mkfs_erofs_args": mkfs_erofs_args(recipe.compression, _uuid(recipe)),
        "uuid": str(_uuid(recipe)),
    }


def summary(recipe: Recipe, tools: Mapping[str, str | None]) -> str:
    return f"erofs, {recipe.compression}, mkfs.erofs {tools['mkfs.erofs']}"


def used_compression(compression: str, arch: Arch) -> str:
    """Every choice packs as it says, on every architecture."""
    return compression


def _uuid(recipe: Recipe) -> uuid.UUID:
    return image_uuid(recipe.name, recipe.version, recipe.arch.name)


def superblock_check(image: ReadImage, compression: str, arch: Arch | None) -> tuple[str, str]:
    """("ok" or "FAIL", why) for verify's superblock check of an EROFS image: LZ4 or none, as
    --compression asked (lz4 and lz4hc look the same in an image; an image where nothing
    compressed smaller is "none"), in the 4 KiB blocks every Flatcar kernel mounts. The same
    on every architecture."""
    found, block_size = image.superblock["Compression"], image.superblock["Block size"]
    detail = f"EROFS, {found} compression, {block_size}-byte blocks"
    compressor = COMPRESSORS.get(compression)
    if compressor is None:
        choices = ", ".join(COMPRESSORS)
        return "FAIL", f"{detail}; --compression={compression} is not one for EROFS ({choices})"
    allowed = list(dict.fromkeys([compressor.algorithm, "none"]))
    if found not in allowed or block_size != str(BLOCK_SIZE_BYTES):
        expected = f"{' or '.join(allowed)} compression, {BLOCK_SIZE_BYTES}-byte blocks"
        return "FAIL", f"{detail}; expected {expected}"
    return "ok", detail


# What verify --image takes from images made elsewhere, as the image shows it: LZ4 (lz4 or
# lz4hc: one format) or nothing compressed. The reader refuses the others in a line of its own.
IMAGE_COMPRESSIONS = ("lz4", "none")


def vet_superblock(image: ReadImage, expected: str | None, arch: Arch | None) -> tuple[str, str]:
    """("ok" or "FAIL", why) for verify --image's superblock check of an EROFS image made
    anywhere: any compression and block size the reader takes (what Flatcar's kernels mount),
    said; `expected` (--expect-compression) pins it: lz4 or lz4hc also match an image whose
    files all stored smaller uncompressed, as the pack step's check does."""
    found, block_size = image.superblock["Compression"], image.superblock["Block size"]
    detail = f"EROFS, {found} compression, {block_size}-byte blocks"
    if expected is None:
        return "ok", detail
    compressor = COMPRESSORS.get(expected)
    algorithm = compressor.algorithm if compressor is not None else expected
    if found not in (algorithm, "none"):
        return "FAIL", f"{detail}; expected {expected} compression (--expect-compression)"
    if found == "none" and algorithm != "none":
        return "ok", f"{detail} (nothing stored smaller {expected}-compressed)"
    return "ok", detail
