"""Either image format, told apart by its magic, behind the one interface verify reads:
`superblock` (unsquashfs -s's names), `entries` (path -> Node), `hard_links()`, `head()`."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from . import erofs
from .errors import BuildError
from .image import SquashfsImage
from .squashfs import Node

FORMATS = ("squashfs", "erofs")


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


class ErofsImage:
    """An EROFS image as SquashfsImage shows a squashfs one."""

    format = "erofs"

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

    def hard_links(self) -> dict[str, list[str]]:
        """Each path that shares its inode with other paths -> all those paths."""
        names: dict[int, list[str]] = defaultdict(list)
        for entry in self.entries.values():
            if entry.kind != "directory":
                names[entry.inode].append(entry.path)
        return {path: paths for paths in names.values() if len(paths) > 1 for path in paths}

    def head(self, path: str, size: int) -> bytes:
        """The first `size` bytes of the regular file at `path`."""
        return self._reader.head(self.entries[path], size)


def open_image(path: Path) -> SquashfsImage | ErofsImage:
    """The image at `path`, read by the reader its magic calls for."""
    if image_format(path) == "erofs":
        return ErofsImage(path)
    return SquashfsImage(path)
