"""A squashfs 4.0 image's metadata, read without mounting, unpacking or root.

Reads the superblock (with the compressor's options), the id, inode and directory tables and the
xattr tables, and small file heads, as the kernel would (Documentation/filesystems/squashfs.rst,
squashfs-tools' squashfs_fs.h). Everything in the image is hostile: every offset is checked
against the image, every count and size is bounded, and anything malformed is one BuildError
naming the image.
"""

from __future__ import annotations

import io
import lzma
import stat
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BuildError
from .safeio import Malformed, map_readonly, refusing_malformed

MAGIC = 0x73717368
SUPERBLOCK_SIZE = 96
METADATA_SIZE = 8192
NO_TABLE = 0xFFFFFFFFFFFFFFFF
NO_XATTR = 0xFFFFFFFF
NO_FRAGMENT = 0xFFFFFFFF
COMP_OPT_FLAG = 0x400
DATA_UNCOMPRESSED = 1 << 24

# Bounds far above what an Alloy sysext needs (a dozen entries), far below what hurts.
MAX_ENTRIES = 10_000
MAX_DEPTH = 32
MAX_METADATA_BYTES = 64 << 20  # decompressed, over the whole walk
MAX_XATTRS = 64  # per inode
MAX_XATTR_VALUE = 64 << 10
MAX_SYMLINK = 4096
ZSTD_MAX_WINDOW = 8 << 20  # mksquashfs's frames need at most the block size

COMPRESSIONS = {1: "gzip", 2: "lzma", 3: "lzo", 4: "xz", 5: "lz4", 6: "zstd"}
READABLE = ("gzip", "xz", "zstd")
# squashfs-tools' xz options: bit i of the filter word is this table's entry i.
XZ_FILTERS = ("x86", "powerpc", "ia64", "arm", "armthumb", "sparc")
XATTR_PREFIXES = {0: "user.", 1: "trusted.", 2: "security."}
XATTR_VALUE_OUT_OF_LINE = 0x100

# Inode types: basic and extended (basic + 7) share a kind.
KINDS = {
    1: "directory",
    2: "file",
    3: "symlink",
    4: "block device",
    5: "character device",
    6: "FIFO",
    7: "socket",
}
FORMAT_BITS = {
    "directory": stat.S_IFDIR,
    "file": stat.S_IFREG,
    "symlink": stat.S_IFLNK,
    "block device": stat.S_IFBLK,
    "character device": stat.S_IFCHR,
    "FIFO": stat.S_IFIFO,
    "socket": stat.S_IFSOCK,
}


@dataclass(frozen=True)
class Superblock:
    compression: str
    block_size: int
    filters: tuple[str, ...]  # xz's BCJ filters, in squashfs-tools' order


@dataclass(frozen=True)
class Node:
    """One entry of the image: a name in a directory, and the inode it names."""

    path: str  # "" for the root; names decoded as UTF-8, undecodable bytes kept as surrogates
    kind: str  # one of KINDS' values
    permissions: int  # the low 12 bits of st_mode: rwx, setuid, setgid, sticky
    uid: int
    gid: int
    nlink: int
    inode: int  # the inode's number; two names with one number are hard links
    xattrs: dict[str, bytes] = field(default_factory=dict)
    target: str | None = None  # a symlink's
    device: tuple[int, int] | None = None  # (major, minor) of a device node
    size: int = 0  # a file's
    # Where its data (start, block sizes, fragment, offset in it) or its listing (start, (),
    # size, offset) is: the reader's own.
    location: tuple[int, tuple[int, ...], int, int] | None = field(default=None, repr=False)

    @property
    def mode(self) -> str:
        """As ls shows it: drwxr-xr-x."""
        return stat.filemode(FORMAT_BITS[self.kind] | self.permissions)

    @property
    def owner(self) -> str:
        return f"{self.uid}/{self.gid}"

    @property
    def is_dir(self) -> bool:
        return self.kind == "directory"

    @property
    def is_file(self) -> bool:
        return self.kind == "file"


class SquashfsReader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._data = map_readonly(path)
        self._blocks: dict[int, tuple[bytes, int]] = {}
        self._metadata_read = 0
        with refusing_malformed(self.path, "squashfs", "mksquashfs"):
            self.superblock = self._read_superblock()
            self._ids = self._read_ids()
            self._xattr_ids = self._read_xattr_ids()

    def nodes(self) -> list[Node]:
        """Every entry, parents before children; bounded in number, depth and bytes read."""
        with refusing_malformed(self.path, "squashfs", "mksquashfs"):
            return list(self._walk())

    def head(self, node: Node, size: int) -> bytes:
        """The first `size` bytes of a regular file."""
        if node.kind != "file" or node.location is None:
            raise BuildError(f"/{node.path} in {self.path} is not a regular file")
        with refusing_malformed(self.path, "squashfs", "mksquashfs"):
            return self._file_head(node, size)

    # -- superblock, ids, xattr ids -------------------------------------------------------

    def _read_superblock(self) -> Superblock:
        if len(self._data) < SUPERBLOCK_SIZE:
            raise Malformed(f"{len(self._data)} bytes, too short for a superblock")
        (magic, _, _, block_size, _, comp_id, block_log, flags, no_ids, major, minor) = (
            struct.unpack_from("<IIIIIHHHHHH", self._data, 0)
        )
        if magic != MAGIC:
            raise Malformed("no squashfs magic at its start")
        if (major, minor) != (4, 0):
            raise Malformed(f"squashfs version {major}.{minor}, not 4.0")
        if not 4096 <= block_size <= 1 << 20 or block_size != 1 << block_log:
            raise Malformed(f"block size {block_size} (log {block_log}) is not valid")
        (
            self._root,
            bytes_used,
            self._id_table,
            self._xattr_table,
            self._inode_table,
            self._dir_table,
            self._fragment_table,
            _,
        ) = struct.unpack_from("<8Q", self._data, 32)
        if bytes_used > len(self._data):
            raise Malformed(f"it says {bytes_used} bytes but holds {len(self._data)}: truncated")
        self._end = bytes_used
        self._no_ids = no_ids
        for name, start in (
            ("inode", self._inode_table),
            ("directory", self._dir_table),
            ("id", self._id_table),
        ):
            if start >= self._end:
                raise Malformed(f"its {name} table starts past its end")
        if self._inode_table >= self._dir_table:
            raise Malformed("its inode table does not come before its directory table")
        compression = COMPRESSIONS.get(comp_id)
        if compression is None:
            raise Malformed(f"unknown compressor id {comp_id}")
        self._compression = compression
        if compression not in READABLE:
            raise BuildError(
                f"cannot check {self.path}: it is {compression}-compressed, and verify reads "
                f"{', '.join(READABLE)} images",
                "repack it with -comp xz or -comp zstd",
            )
        filters: tuple[str, ...] = ()
        if flags & COMP_OPT_FLAG and compression == "xz":
            options = self._metadata_block(SUPERBLOCK_SIZE, compressed_ok=False)[0]
            if len(options) < 8:
                raise Malformed("its xz options are too short")
            _, bits = struct.unpack_from("<II", options, 0)
            filters = tuple(name for i, name in enumerate(XZ_FILTERS) if bits & (1 << i))
        return Superblock(compression, block_size, filters)

    def _read_ids(self) -> list[int]:
        if self._no_ids == 0:
            raise Malformed("its id table is empty")
        return [uid for (uid,) in self._indexed_table(self._id_table, self._no_ids, 4, "<I", "id")]

    def _read_xattr_ids(self) -> list[tuple[int, int]]:
        """Per xattr id: (reference into the key/value area, number of xattrs)."""
        if self._xattr_table == NO_TABLE:
            return []
        header = self._bytes(self._xattr_table, 16, "xattr table")
        self._xattr_kv, count, _ = struct.unpack("<QII", header)
        if self._xattr_kv >= self._xattr_table:
            raise Malformed("its xattr values do not come before their index")
        if count > MAX_ENTRIES:
            raise Malformed(f"{count} xattr ids")
        rows = self._indexed_table(self._xattr_table + 16, count, 16, "<QII", "xattr id")
        return [(ref, n) for ref, n, _ in rows]

    def _indexed_table(
        self, index_at: int, count: int, size: int, fmt: str, what: str
    ) -> Iterator[tuple]:
        """A table of `count` fixed-size rows in metadata blocks whose positions an array of
        u64s at `index_at` gives (the id, xattr id and fragment tables)."""
        per_block = METADATA_SIZE // size
        blocks = -(-count // per_block)
        index = struct.unpack(f"<{blocks}Q", self._bytes(index_at, 8 * blocks, f"{what} index"))
        for row in range(count):
            block, offset = divmod(row * size, METADATA_SIZE)
            data = self._metadata(index[block], offset, size, self._end)
            yield struct.unpack(fmt, data)

    # -- metadata blocks ------------------------------------------------------------------

    def _bytes(self, start: int, size: int, what: str) -> bytes:
        if start + size > self._end:
            raise Malformed(f"its {what} at byte {start} runs past its end")
        return self._data[start : start + size]

    def _metadata_block(self, position: int, compressed_ok: bool = True) -> tuple[bytes, int]:
        """The decompressed metadata block at `position` and where the next one starts."""
        if position in self._blocks:
            return self._blocks[position]
        (word,) = struct.unpack("<H", self._bytes(position, 2, "metadata block header"))
        size = word & 0x7FFF
        raw = self._bytes(position + 2, size, "metadata block")
        if word & 0x8000:
            data = raw
        elif not compressed_ok:
            raise Malformed(f"the metadata block at byte {position} is compressed")
        else:
            data = self._decompress(raw, METADATA_SIZE)
        if not data or len(data) > METADATA_SIZE:
            raise Malformed(f"the metadata block at byte {position} holds {len(data)} bytes")
        self._metadata_read += len(data)
        if self._metadata_read > MAX_METADATA_BYTES:
            raise Malformed(f"more than {MAX_METADATA_BYTES >> 20} MiB of metadata")
        self._blocks[position] = (data, position + 2 + size)
        return self._blocks[position]

    def _metadata(self, block: int, offset: int, size: int, limit: int) -> bytes:
        """`size` bytes from `offset` in the metadata block at `block`, running on into the
        following blocks; none of them may start at or past `limit`."""
        out = b""
        while True:
            if block >= limit:
                raise Malformed(f"a metadata reference (byte {block}) points past its table")
            data, after = self._metadata_block(block)
            if offset > len(data):
                raise Malformed(f"offset {offset} past the metadata block at byte {block}")
            out += data[offset : offset + size - len(out)]
            if len(out) == size:
                return out
            block, offset = after, 0

    def _decompress(self, raw: bytes, limit: int) -> bytes:
        """At most `limit` bytes out: a block that would give more is malformed."""
        try:
            if self._compression == "gzip":
                unzip = zlib.decompressobj()
                data = unzip.decompress(raw, limit + 1)
            elif self._compression == "xz":
                unxz = lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=64 << 20)
                data = unxz.decompress(raw, limit + 1)
            else:
                data = _zstd_decompress(raw, limit + 1)
        except (zlib.error, lzma.LZMAError) as error:
            raise Malformed(f"a {self._compression} block does not decompress: {error}") from None
        if len(data) > limit:
            raise Malformed(f"a {self._compression} block decompresses to more than {limit} bytes")
        return data

    # -- inodes and directories -----------------------------------------------------------

    def _inode(self, ref: int, path: str) -> Node:
        block, offset = self._inode_table + (ref >> 16), ref & 0xFFFF
        take = _Stream(lambda size: self._metadata(block, offset, size, self._dir_table)).take

        inode_type, mode, uid_index, gid_index, _, number = struct.unpack("<HHHHII", take(16))
        extended = inode_type > 7
        kind = KINDS.get(inode_type - 7 if extended else inode_type)
        if kind is None:
            raise Malformed(f"/{path} has inode type {inode_type}")
        fmt_bits = stat.S_IFMT(mode)
        if fmt_bits and fmt_bits != FORMAT_BITS[kind]:
            raise Malformed(f"/{path} is a {kind} whose mode says otherwise ({mode:o})")
        if uid_index >= len(self._ids) or gid_index >= len(self._ids):
            raise Malformed(f"/{path} has an owner index past the id table")
        xattr = NO_XATTR
        nlink = 1
        fields: dict = {}
        if kind == "directory":
            if extended:
                nlink, size, start, _, index_count, dir_offset, xattr = struct.unpack(
                    "<IIIIHHI", take(24)
                )
                for _ in range(min(index_count, MAX_ENTRIES)):
                    _, _, name_size = struct.unpack("<III", take(12))
                    take(name_size + 1)
            else:
                start, nlink, size, dir_offset, _ = struct.unpack("<IIHHI", take(16))
            fields["location"] = (start, (), size, dir_offset)
        elif kind == "file":
            if extended:
                start, size, _, nlink, fragment, frag_offset, xattr = struct.unpack(
                    "<QQQIIII", take(40)
                )
            else:
                start, fragment, frag_offset, size = struct.unpack("<IIII", take(16))
            whole, rest = divmod(size, self.superblock.block_size)
            count = whole + (1 if rest and fragment == NO_FRAGMENT else 0)
            if count * 4 > self._end:
                raise Malformed(f"/{path} claims {size} bytes, more than the image could hold")
            blocks = struct.unpack(f"<{count}I", take(4 * count))
            fields["location"] = (start, blocks, fragment, frag_offset)
            fields["size"] = size
        elif kind == "symlink":
            nlink, target_size = struct.unpack("<II", take(8))
            if target_size > MAX_SYMLINK:
                raise Malformed(f"/{path} is a symlink with a {target_size}-byte target")
            fields["target"] = take(target_size).decode("utf-8", "surrogateescape")
            if extended:
                (xattr,) = struct.unpack("<I", take(4))
        elif kind in ("block device", "character device"):
            nlink, rdev = struct.unpack("<II", take(8))
            fields["device"] = ((rdev & 0xFFF00) >> 8, (rdev & 0xFF) | ((rdev >> 12) & 0xFFF00))
            if extended:
                (xattr,) = struct.unpack("<I", take(4))
        else:
            nlink, *more = struct.unpack("<II" if extended else "<I", take(8 if extended else 4))
            xattr = more[0] if more else NO_XATTR
        return Node(
            path=path,
            kind=kind,
            permissions=stat.S_IMODE(mode),
            uid=self._ids[uid_index],
            gid=self._ids[gid_index],
            nlink=nlink,
            inode=number,
            xattrs=self._xattrs(xattr, path),
            **fields,
        )

    def _walk(self) -> Iterator[Node]:
        seen: dict[int, str] = {}  # inode number -> the first path that named it
        root = self._inode(self._root, "")
        if root.kind != "directory":
            raise Malformed("its root is not a directory")
        seen[root.inode] = ""
        yield root
        pending = [(root, 0)]
        count = 1
        while pending:
            directory, depth = pending.pop()
            if depth >= MAX_DEPTH:
                raise Malformed(f"directories nested deeper than {MAX_DEPTH}")
            children = []
            for name, ref, number, entry_type in self._listing(directory):
                count += 1
                if count > MAX_ENTRIES:
                    raise Malformed(f"more than {MAX_ENTRIES} entries")
                path = f"{directory.path}/{name}".lstrip("/")
                node = self._inode(ref, path)
                if node.inode != number:
                    raise Malformed(f"/{path}: its directory entry and inode disagree")
                if KINDS.get(entry_type) != node.kind:
                    raise Malformed(f"/{path}: its directory entry says another type")
                if node.kind == "directory":
                    if node.inode in seen:
                        raise Malformed(f"/{path} is a directory reached twice (a loop)")
                    children.append((node, depth + 1))
                seen.setdefault(node.inode, path)
                yield node
            pending.extend(reversed(children))

    def _listing(self, directory: Node) -> Iterator[tuple[str, int, int, int]]:
        """(name, inode reference, inode number, type) of each entry of `directory`."""
        assert directory.location is not None
        start, _, size, offset = directory.location
        if size < 3:
            raise Malformed(f"/{directory.path} has a directory size of {size}")
        if size - 3 > METADATA_SIZE * MAX_ENTRIES:
            raise Malformed(f"/{directory.path} has a {size}-byte listing")
        data = self._metadata(self._dir_table + start, offset, size - 3, self._end)
        names: set[bytes] = set()
        at = 0
        while at < len(data):
            count, inode_block, base = struct.unpack_from("<III", data, at)
            at += 12
            if count >= 256:
                raise Malformed(f"/{directory.path} has a listing header of {count + 1} entries")
            for _ in range(count + 1):
                offset_in_block, delta, entry_type, name_size = struct.unpack_from(
                    "<HhHH", data, at
                )
                at += 8
                raw = data[at : at + name_size + 1]
                at += name_size + 1
                if len(raw) != name_size + 1:
                    raise Malformed(f"/{directory.path}'s listing is cut short")
                if raw in (b".", b"..") or b"/" in raw or b"\0" in raw or raw in names:
                    raise Malformed(f"/{directory.path} holds an impossible name {raw!r}")
                names.add(raw)
                ref = (inode_block << 16) | offset_in_block
                number = (base + delta) & 0xFFFFFFFF
                yield raw.decode("utf-8", "surrogateescape"), ref, number, entry_type

    # -- xattrs ---------------------------------------------------------------------------

    def _xattrs(self, index: int, path: str) -> dict[str, bytes]:
        if index == NO_XATTR:
            return {}
        if index >= len(self._xattr_ids):
            raise Malformed(f"/{path} has an xattr index past the xattr table")
        ref, count = self._xattr_ids[index]
        if count > MAX_XATTRS:
            raise Malformed(f"/{path} has {count} xattrs")
        block, offset = self._xattr_kv + (ref >> 16), ref & 0xFFFF
        # The key/value pairs follow each other: read them as one stream from `ref`.
        stream = _Stream(lambda size: self._metadata(block, offset, size, self._xattr_table))
        xattrs: dict[str, bytes] = {}
        for _ in range(count):
            xtype, name_size = struct.unpack("<HH", stream.take(4))
            prefix = XATTR_PREFIXES.get(xtype & 0xFF)
            if prefix is None:
                raise Malformed(f"/{path} has an xattr of unknown type {xtype}")
            name = prefix + stream.take(name_size).decode("utf-8", "backslashreplace")
            (value_size,) = struct.unpack("<I", stream.take(4))
            if value_size > MAX_XATTR_VALUE:
                raise Malformed(f"/{path} has a {value_size}-byte xattr")
            value = stream.take(value_size)
            if xtype & XATTR_VALUE_OUT_OF_LINE:
                if value_size != 8:
                    raise Malformed(f"/{path} has a malformed xattr reference")
                (value_ref,) = struct.unpack("<Q", value)
                vblock, voffset = self._xattr_kv + (value_ref >> 16), value_ref & 0xFFFF
                (size,) = struct.unpack("<I", self._metadata(vblock, voffset, 4, self._xattr_table))
                if size > MAX_XATTR_VALUE:
                    raise Malformed(f"/{path} has a {size}-byte xattr")
                value = self._metadata(vblock, voffset, 4 + size, self._xattr_table)[4:]
            xattrs[name] = value
        return xattrs

    # -- file data ------------------------------------------------------------------------

    def _file_head(self, node: Node, size: int) -> bytes:
        assert node.location is not None
        start, blocks, fragment, frag_offset = node.location
        block_size = self.superblock.block_size
        want = min(size, node.size)
        out = b""
        position = start
        for word in blocks:
            if len(out) >= want:
                return out[:want]
            stored = word & ~DATA_UNCOMPRESSED
            if stored > block_size:
                raise Malformed(f"/{node.path} has a {stored}-byte data block")
            if stored == 0:  # sparse
                out += bytes(min(block_size, node.size - len(out)))
                continue
            raw = self._bytes(position, stored, f"data of /{node.path}")
            position += stored
            out += raw if word & DATA_UNCOMPRESSED else self._decompress(raw, block_size)
        if len(out) < want and fragment != NO_FRAGMENT:
            out += self._fragment(fragment, node)[frag_offset:][: node.size - len(out)]
        if len(out) < want:
            raise Malformed(f"/{node.path} holds fewer bytes than it says")
        return out[:want]

    def _fragment(self, index: int, node: Node) -> bytes:
        if self._fragment_table == NO_TABLE:
            raise Malformed(f"/{node.path} names a fragment, but the image has none")
        # The fragment count is not needed: the index is bounded by the image's end.
        block, offset = divmod(index * 16, METADATA_SIZE)
        (pointer,) = struct.unpack(
            "<Q", self._bytes(self._fragment_table + 8 * block, 8, "fragment index")
        )
        start, word, _ = struct.unpack("<QII", self._metadata(pointer, offset, 16, self._end))
        stored = word & ~DATA_UNCOMPRESSED
        if stored > self.superblock.block_size:
            raise Malformed(f"the fragment of /{node.path} is {stored} bytes")
        raw = self._bytes(start, stored, f"fragment of /{node.path}")
        if word & DATA_UNCOMPRESSED:
            return raw
        return self._decompress(raw, self.superblock.block_size)


class _Stream:
    """Consecutive reads from one metadata position."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read
        self._taken = 0

    def take(self, size: int) -> bytes:
        data = self._read(self._taken + size)[self._taken :]
        self._taken += size
        return data


def _zstd_decompress(raw: bytes, limit: int) -> bytes:
    import zstandard  # only zstd images need it

    # A stream reader, not decompress(): that trusts the frame's own content size.
    unzstd = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
    try:
        with unzstd.stream_reader(io.BytesIO(raw)) as reader:
            return reader.read(limit)
    except zstandard.ZstdError as error:
        raise Malformed(f"a zstd block does not decompress: {error}") from None
