"""An image as the kernel would see it: superblock, every entry with its xattrs, file heads.

Read by build/read/squashfs.py, without unsquashfs's listing (which loses xattrs, hard links and
names with a newline) and without root.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Protocol

from build.read.squashfs import Node, SquashfsReader

Entry = Node


class EntryReader(Protocol):
    """What ReadImage asks of each format's reader."""

    def head(self, node: Entry, size: int) -> bytes: ...

    def sha256(self, node: Entry, limit: int) -> str: ...


class ReadImage:
    """What verify reads of an image, whichever reader (`_reader`) parsed it."""

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
    _reader: SquashfsReader

    def __init__(self, path: Path) -> None:
        self.path = path
        self._reader = SquashfsReader(path)
        self.superblock = self._superblock()
        self.entries: dict[str, Entry] = {node.path: node for node in self._reader.nodes()}

    def _superblock(self) -> dict[str, str]:
        """Compression, block size, and the filters (e.g. "x86") where xz was given -Xbcj,
        under the names unsquashfs -s gives them."""
        superblock = self._reader.superblock
        info = {"Compression": superblock.compression, "Block size": str(superblock.block_size)}
        if superblock.filters:
            info["Filters"] = ", ".join(superblock.filters)
        return info
