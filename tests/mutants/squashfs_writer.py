"""A small squashfs 4.0 writer for hostile test images: what mksquashfs will not write (a
directory index aimed elsewhere, listings and inodes no walk reaches, hard links by the
thousand, block lists of 1-byte blocks), laid out as the kernel reads it.

Data blocks are stored uncompressed; metadata blocks are gzip-compressed where `compress` (so a
bomb is small) or stored. No fragments, no export table.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

METADATA = 8192
NO_XATTR = 0xFFFFFFFF
NO_TABLE = 0xFFFFFFFFFFFFFFFF
COMPRESSORS = {"gzip": 1, "xz": 4}
XATTR_TYPES = {"user.": 0, "trusted.": 1, "security.": 2}


@dataclass(eq=False)
class File:
    data: bytes = b""
    mode: int = 0o644
    xattrs: dict[str, bytes] | None = None  # None: a basic inode, no xattr id
    block_words: list[int] | None = None  # stored sizes instead of `data`'s blocks
    size: int | None = None  # i_size instead of len(data)
    nlink: int | None = None


@dataclass(eq=False)
class Symlink:
    target: bytes
    mode: int = 0o777
    xattrs: dict[str, bytes] | None = None  # an extended inode with an xattr id


@dataclass(eq=False)
class Dir:
    children: dict[str, File | Dir | Symlink] = field(default_factory=dict)
    mode: int = 0o755
    # (name, orphan directory): index entries aimed at that directory's listing, which is laid
    # out at the same offset as this one's, in the next metadata block.
    index: list[tuple[bytes, Dir]] = field(default_factory=list)
    xattrs: dict[str, bytes] | None = None  # an extended inode with an xattr id
    size: int | None = None  # i_size instead of the listing's
    padding: int = 0  # zero bytes after the listing in the directory table
    extended: bool = False  # an extended inode anyway (a listing over 64 KiB needs one)


Node = File | Dir | Symlink


def build(
    root: Dir,
    image: Path,
    block_size: int = 4096,
    compress: bool = False,
    orphans: tuple[Dir, ...] = (),
    compressor: str = "gzip",
) -> Path:
    """Write `root` (and `orphans`: directories no listing names) as a squashfs image.
    `compressor` is what the superblock names ("xz": as the build packs); only gzip is
    written, and only where `compress`."""
    writer = _Writer(root, block_size, compress, orphans)
    writer.compressor = COMPRESSORS[compressor]
    return writer.write(image)


class _Writer:
    def __init__(self, root: Dir, block_size: int, compress: bool, orphans: tuple[Dir, ...]):
        self.root = root
        self.block_size = block_size
        self.compress = compress
        self.orphans = orphans
        # Every inode once, in walk order (hard links: one object under several names).
        self.order: list[Node] = []
        self.number: dict[int, int] = {}
        self.links: dict[int, int] = {}
        self._collect(root)
        for orphan in orphans:
            self._collect(orphan)
        self.compressor = COMPRESSORS["gzip"]
        self.xattr_sets: list[dict[str, bytes]] = []
        self.xattr_id: dict[int, int] = {}

    def _collect(self, node: Node) -> None:
        key = id(node)
        self.links[key] = self.links.get(key, 0) + 1
        if key in self.number:
            return
        self.order.append(node)
        self.number[key] = len(self.order)
        if isinstance(node, Dir):
            for name in sorted(node.children, key=str.encode):
                self._collect(node.children[name])

    def write(self, image: Path) -> Path:
        out = bytearray(96)
        data_at: dict[int, tuple[int, list[int]]] = {}
        for node in self.order:
            if isinstance(node, File):
                data_at[id(node)] = (len(out), self._data(node, out))
        for node in self.order:
            if node.xattrs is not None:
                self._xattr_index(node.xattrs)
        sizes = [self._inode_size(node, data_at) for node in self.order]
        positions, position = {}, 0
        for node, size in zip(self.order, sizes, strict=True):
            positions[id(node)] = position
            position += size
        # References name where compressed blocks start: lay out until they stop moving.
        inode_starts: list[int] = []
        dir_starts: list[int] = []
        compress = self.compress
        for attempt in range(20):
            if attempt == 10:  # compressed sizes that keep moving the references: store them
                self.compress = False
            refs = {key: _ref(at, inode_starts) for key, at in positions.items()}
            listings, dir_stream = self._listings(refs)
            self.dir_starts = dir_starts
            inode_stream = b"".join(
                self._inode(node, refs, listings, data_at) for node in self.order
            )
            inodes, new_inode_starts = self._metadata(inode_stream)
            dirs, new_dir_starts = self._metadata(dir_stream)
            if (new_inode_starts, new_dir_starts) == (inode_starts, dir_starts):
                break
            inode_starts, dir_starts = new_inode_starts, new_dir_starts
        else:
            raise RuntimeError("the metadata layout does not settle")
        self.compress = compress
        inode_table = len(out)
        out += inodes
        dir_table = len(out)
        out += dirs
        id_block = len(out)
        out += self._metadata(struct.pack("<I", 0))[0]
        id_table = len(out)
        out += struct.pack("<Q", id_block)
        xattr_table = NO_TABLE
        if self.xattr_sets:
            kv_start = len(out)
            kv_stream, rows = bytearray(), []
            for xattrs in self.xattr_sets:
                rows.append(struct.pack("<QII", len(kv_stream), len(xattrs), 0))
                for name, value in xattrs.items():
                    prefix = next(p for p in XATTR_TYPES if name.startswith(p))
                    raw = name[len(prefix) :].encode()
                    kv_stream += struct.pack("<HH", XATTR_TYPES[prefix], len(raw)) + raw
                    kv_stream += struct.pack("<I", len(value)) + value
            kv, kv_starts = self._metadata(bytes(kv_stream))
            out += kv
            rows = [
                struct.pack("<QII", _ref(ref, kv_starts), count, size)
                for ref, count, size in (struct.unpack("<QII", row) for row in rows)
            ]
            id_stream = b"".join(rows)
            blocks = []
            for start in range(0, len(id_stream), METADATA):
                blocks.append(len(out))
                out += self._metadata(id_stream[start : start + METADATA])[0]
            xattr_table = len(out)
            out += struct.pack("<QII", kv_start, len(self.xattr_sets), 0)
            out += struct.pack(f"<{len(blocks)}Q", *blocks)
        bytes_used = len(out)
        root_ref = refs[id(self.root)]
        struct.pack_into(
            "<IIIIIHHHHHHQQQQQQQQ",
            out,
            0,
            *(0x73717368, len(self.order), 0, self.block_size, 0, self.compressor),
            *(self.block_size.bit_length() - 1, 0, 1, 4, 0),
            *(root_ref, bytes_used, id_table, xattr_table, inode_table, dir_table),
            *(NO_TABLE, NO_TABLE),
        )
        out += bytes(-len(out) % 4096)
        image.parent.mkdir(parents=True, exist_ok=True)
        image.write_bytes(bytes(out))
        return image

    def _data(self, node: File, out: bytearray) -> list[int]:
        if node.block_words is not None:
            for word in node.block_words:
                out += bytes(word & 0xFFFFFF)
            return node.block_words
        words = []
        for start in range(0, len(node.data), self.block_size):
            chunk = node.data[start : start + self.block_size]
            out += chunk
            words.append(len(chunk) | 1 << 24)
        return words

    def _xattr_index(self, xattrs: dict[str, bytes]) -> int:
        for number, known in enumerate(self.xattr_sets):
            if known is xattrs:
                return number
        self.xattr_sets.append(xattrs)
        return len(self.xattr_sets) - 1

    def _inode_size(self, node: Node, data_at: dict) -> int:
        if isinstance(node, Dir):
            extended = (
                node.extended or node.index or node.xattrs is not None or node.size is not None
            )
            return 40 + sum(12 + len(name) for name, _ in node.index) if extended else 32
        if isinstance(node, Symlink):
            return 24 + len(node.target) + (4 if node.xattrs is not None else 0)
        words = data_at[id(node)][1]
        return (56 if node.xattrs is not None else 32) + 4 * len(words)

    def _listings(self, refs: dict[int, int]) -> tuple[dict[int, tuple[int, int]], bytes]:
        """Each directory's (position, size) in the directory table, and the table."""
        stream = bytearray()
        where: dict[int, tuple[int, int]] = {}
        for node in self.order:
            if isinstance(node, Dir) and not any(node is orphan for orphan in self.orphans):
                where[id(node)] = (len(stream), self._listing(node, refs, stream))
        for node in self.order:
            for _, orphan in getattr(node, "index", []):
                aimed_at = where[id(node)][0] % METADATA
                stream += bytes(-len(stream) % METADATA + aimed_at)
                where[id(orphan)] = (len(stream), self._listing(orphan, refs, stream))
        return where, bytes(stream)

    def _listing(self, directory: Dir, refs: dict[int, int], stream: bytearray) -> int:
        start = len(stream)
        names = sorted(directory.children, key=str.encode)
        header: tuple[int, int] | None = None
        pending: list[bytes] = []
        count = 0

        def flush() -> None:
            nonlocal pending, count
            if pending:
                block, base = header  # type: ignore[misc]
                stream.extend(struct.pack("<III", count - 1, block, base) + b"".join(pending))
            pending, count = [], 0

        kinds = {File: 2, Dir: 1, Symlink: 3}
        for name in names:
            child = directory.children[name]
            ref, number = refs[id(child)], self.number[id(child)]
            block = ref >> 16
            if (
                header is None
                or header[0] != block
                or count == 256
                or abs(number - header[1]) > 0x7FFF
            ):
                flush()
                header = (block, number)
            raw = name.encode()
            pending.append(
                struct.pack(
                    "<HhHH", ref & 0xFFFF, number - header[1], kinds[type(child)], len(raw) - 1
                )
                + raw
            )
            count += 1
        flush()
        size = len(stream) - start + 3
        stream.extend(bytes(directory.padding))
        return size

    def _inode(self, node: Node, refs: dict, listings: dict, data_at: dict) -> bytes:
        number = self.number[id(node)]
        links = self.links[id(node)]
        if isinstance(node, Dir):
            position, size = listings[id(node)]
            subdirs = sum(isinstance(child, Dir) for child in node.children.values())
            start, offset = _split(position, self.dir_starts)
            size = size if node.size is None else node.size
            extended = (
                node.extended or node.index or node.xattrs is not None or node.size is not None
            )
            xattr = NO_XATTR if node.xattrs is None else self._xattr_index(node.xattrs)
            head = struct.pack("<HHHHII", 8 if extended else 1, node.mode, 0, 0, 0, number)
            if not extended:
                return head + struct.pack("<IIHHI", start, 2 + subdirs, size, offset, 1)
            out = head + struct.pack(
                "<IIIIHHI", 2 + subdirs, size, start, 1, len(node.index), offset, xattr
            )
            for name, orphan in node.index:
                orphan_block = _split(listings[id(orphan)][0], self.dir_starts)[0]
                out += struct.pack("<III", 0, orphan_block, len(name) - 1) + name
            return out
        if isinstance(node, Symlink):
            extended = node.xattrs is not None
            head = struct.pack("<HHHHII", 10 if extended else 3, node.mode, 0, 0, 0, number)
            out = head + struct.pack("<II", links, len(node.target)) + node.target
            if node.xattrs is not None:
                out += struct.pack("<I", self._xattr_index(node.xattrs))
            return out
        start, words = data_at[id(node)]
        size = len(node.data) if node.size is None else node.size
        nlink = links if node.nlink is None else node.nlink
        blocks = struct.pack(f"<{len(words)}I", *words)
        if node.xattrs is None:
            head = struct.pack("<HHHHII", 2, node.mode, 0, 0, 0, number)
            return head + struct.pack("<IIII", start, 0xFFFFFFFF, 0, size) + blocks
        head = struct.pack("<HHHHII", 9, node.mode, 0, 0, 0, number)
        xattr = self._xattr_index(node.xattrs)
        return head + struct.pack("<QQQIIII", start, size, 0, nlink, 0xFFFFFFFF, 0, xattr) + blocks

    def _metadata(self, stream: bytes) -> tuple[bytes, list[int]]:
        """The stream as metadata blocks, and where each block starts."""
        out = bytearray()
        starts = []
        for start in range(0, max(len(stream), 1), METADATA):
            starts.append(len(out))
            chunk = stream[start : start + METADATA]
            packed = zlib.compress(chunk, 9) if self.compress else chunk
            if self.compress and len(packed) < len(chunk):
                out += struct.pack("<H", len(packed)) + packed
            else:
                out += struct.pack("<H", len(chunk) | 0x8000) + chunk
        return bytes(out), starts


def _split(position: int, starts: list[int]) -> tuple[int, int]:
    """(where its block starts, offset in it) of a stream position; blocks stored whole until
    `starts` says otherwise."""
    block, offset = divmod(position, METADATA)
    start = starts[block] if block < len(starts) else block * (METADATA + 2)
    return start, offset


def _ref(position: int, starts: list[int]) -> int:
    start, offset = _split(position, starts)
    return start << 16 | offset
