"""Either image format, told apart by its magic, behind the one interface verify reads:
`superblock` (unsquashfs -s's names), `entries` (path -> Node), `hard_links()`, `head()`."""

from __future__ import annotations

from pathlib import Path

from build.core.errors import BuildError
from build.formats.erofs import BLOCK_SIZE_BYTES, COMPRESSORS
from build.read import erofs, squashfs
from build.read.image import ReadImage, SquashfsImage
from build.read.squashfs import Node

FORMATS = ("squashfs", "erofs")
MAX_IMAGE_BYTES = max(erofs.MAX_IMAGE_BYTES, squashfs.MAX_IMAGE_BYTES)  # either reader's most


def image_format(path: Path) -> str:
    """ "erofs" where its magic is at byte 1024, else "squashfs": the squashfs reader then says
    what is wrong with anything that is neither, as verify always has."""
    try:
        with path.open("rb") as file:
            file.seek(erofs.SUPERBLOCK_OFFSET)
            magic = file.read(4)
    except OSError as error:
        raise BuildError(f"cannot read {path}: {error.strerror}") from None
    return "erofs" if magic == erofs.MAGIC.to_bytes(4, "little") else "squashfs"


class ErofsImage(ReadImage):
    """An EROFS image as SquashfsImage shows a squashfs one."""

    format = "erofs"
    _reader: erofs.ErofsReader

    def __init__(self, path: Path) -> None:
        self.path = path
        self._reader = erofs.ErofsReader(path)
        self.entries: dict[str, Node] = {node.path: node for node in self._reader.nodes()}
        self.superblock = self._superblock()

    def _superblock(self) -> dict[str, str]:
        """What verify compares: "Compression" is lz4 where any file is compressed, else none
        (lz4 and lz4hc write the same format), and the block size."""
        superblock = self._reader.superblock
        used = sorted(self._reader.used_algorithms)
        return {
            "Compression": ", ".join(used) or "none",
            "Block size": str(superblock.block_size),
            "UUID": str(superblock.uuid),
            "Build time": str(superblock.build_time),
        }


Image = SquashfsImage | ErofsImage


def open_image(path: Path) -> Image:
    """The image at `path`, read by the reader its magic calls for."""
    if image_format(path) == "erofs":
        return ErofsImage(path)
    return SquashfsImage(path)


def erofs_superblock_check(image: ErofsImage, compression: str) -> tuple[str, str]:
    """("ok" or "FAIL", why) for verify's superblock check of an EROFS image: LZ4 or none, as
    --compression asked (lz4 and lz4hc look the same in an image; an image where nothing
    compressed smaller is "none"), in the 4 KiB blocks every Flatcar kernel mounts."""
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
