"""An image as the kernel would see it: superblock, every entry with its xattrs, file heads.

Read by build/read/squashfs.py or build/read/erofs.py, without unsquashfs's listing (which loses
xattrs, hard links and names with a newline), without dump.erofs and without root. Which reader
reads a file is the format table's to say (build/formats/table.py: by its magic).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Protocol

from build.read import erofs
from build.read.squashfs import Node, SquashfsReader

Entry = Node


class EntryReader(Protocol):
    """What ReadImage asks of each format's reader."""

    def head(self, node: Entry, size: int) -> bytes: ...

    def sha256(self, node: Entry, limit: int) -> str: ...


class ReadImage:
    """What verify reads of an image, whichever reader (`_reader`) parsed it: `superblock`
    (unsquashfs -s's names), `entries` (path -> Entry), `hard_links()`, `head()`, `sha256()`."""

    format: str  # the name of its entry in the format table
    path: Path
    superblock: dict[str, str]
    entries: dict[str, Entry]
    _reader: EntryReader

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

    def sha256(self, path: str, limit: int) -> str:
        """The sha256 of the whole regular file at `path`, streamed; refused past `limit`."""
        return self._reader.sha256(self.entries[path], limit)


class SquashfsImage(ReadImage):
    format = "squashfs"
    _reader: SquashfsReader

    def __init__(self, path: Path) -> None:
        self.path = path
        self._reader = SquashfsReader(path)
        self.entries: dict[str, Entry] = {node.path: node for node in self._reader.nodes()}
        self.superblock = self._superblock()

    def _superblock(self) -> dict[str, str]:
        """Compression (the compressor the superblock names, which the kernel needs to mount
        it), block size, and the filters (e.g. "x86") where xz was given -Xbcj, under the names
        unsquashfs -s gives them; what the flags say is stored uncompressed (mksquashfs -noI,
        -noD, -noF, -noX), and how many of the blocks the entries use are stored compressed
        (read after every entry: what the kernel decompresses, whatever the flags say)."""
        superblock = self._reader.superblock
        info = {"Compression": superblock.compression, "Block size": str(superblock.block_size)}
        if superblock.filters:
            info["Filters"] = ", ".join(superblock.filters)
        if superblock.stored:
            info["Stored uncompressed"] = ", ".join(superblock.stored)
        info["Compressed blocks"] = str(self._reader.compressed_blocks)
        return info


class ErofsImage(ReadImage):
    """An EROFS image as SquashfsImage shows a squashfs one."""

    format = "erofs"
    _reader: erofs.ErofsReader

    def __init__(self, path: Path) -> None:
        self.path = path
        self._reader = erofs.ErofsReader(path)
        self.entries: dict[str, Entry] = {node.path: node for node in self._reader.nodes()}
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
