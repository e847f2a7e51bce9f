"""An EROFS image's metadata, read without mounting, unpacking or root.

Reads the superblock, inodes (compact and extended), directories, symlink targets, device
numbers, inline and shared xattrs, and the first bytes of files (plain, inline, or LZ4-compressed
with full or compact indexes, big pclusters and tail packing), as the kernel would
(fs/erofs/erofs_fs.h, zmap.c, decompressor.c of Linux 6.x; erofs-utils 1.4 to 1.8 write them).
Everything in the image is hostile: every offset is checked against the image, every count,
size, chain and depth is bounded, and anything malformed is one BuildError naming the image.
Nothing is decompressed but what head() is asked for.
"""

from __future__ import annotations

import stat
import struct
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import BuildError
from .safeio import Malformed, map_readonly, refusing_malformed
from .squashfs import Node

MAGIC = 0xE0F5E1E2
SUPERBLOCK_OFFSET = 1024
SUPERBLOCK_SIZE = 128
INODE_SLOT = 32  # a nid counts these from the metadata start
XATTR_SLOT = 4  # a shared xattr id counts these from the xattr start
DIRENT_SIZE = 12
MAX_NAME = 255

# Bounds far above what an Alloy sysext needs (a dozen entries), far below what hurts.
MAX_ENTRIES = 10_000
MAX_DEPTH = 32
MAX_METADATA_BYTES = 64 << 20  # directories, symlinks and xattrs, over the whole walk
MAX_XATTRS = 64  # per inode
MAX_SYMLINK = 4096
MAX_HEAD = 16 << 20  # what head() decompresses at most
MAX_EXTENT_LCLUSTERS = 1 << 16  # lookback steps from an lcluster to its extent's head

COMPAT_SB_CHKSUM = 0x1
COMPAT_FEATURES = {0x1: "sb_csum", 0x2: "mtime", 0x4: "xattr_filter"}
# Bits shared by two names: which one an image means depends on other fields.
INCOMPAT_ZERO_PADDING = 0x1
INCOMPAT_COMPR_CFGS = 0x2
INCOMPAT_FEATURES = {
    0x1: "0padding",
    0x2: "compr_cfgs/big_pcluster",
    0x4: "chunked_file",
    0x8: "device_table/compr_head2",
    0x10: "ztailpacking",
    0x20: "fragments/dedupe",
    0x40: "xattr_prefixes",
}
ALGORITHMS = {0: "lz4", 1: "lzma", 2: "deflate", 3: "zstd"}
READABLE = ("lz4",)

# Data layouts (bits 1-3 of i_format).
FLAT_PLAIN, COMPRESSED_FULL, FLAT_INLINE, COMPRESSED_COMPACT, CHUNK_BASED = range(5)
LAYOUTS = {
    FLAT_PLAIN: "plain",
    COMPRESSED_FULL: "compressed (full indexes)",
    FLAT_INLINE: "plain with an inline tail",
    COMPRESSED_COMPACT: "compressed (compact indexes)",
    CHUNK_BASED: "chunk-based",
}
FORMAT_BITS_KNOWN = 0xF  # version bit and the layout

KINDS = {
    stat.S_IFDIR: "directory",
    stat.S_IFREG: "file",
    stat.S_IFLNK: "symlink",
    stat.S_IFBLK: "block device",
    stat.S_IFCHR: "character device",
    stat.S_IFIFO: "FIFO",
    stat.S_IFSOCK: "socket",
}
DIRENT_TYPES = {
    1: "file",
    2: "directory",
    3: "character device",
    4: "block device",
    5: "FIFO",
    6: "socket",
    7: "symlink",
}
# e_name_index -> the name's prefix; the two ACLs are the whole name.
XATTR_PREFIXES = {
    1: "user.",
    2: "system.posix_acl_access",
    3: "system.posix_acl_default",
    4: "trusted.",
    6: "security.",
}
XATTR_LONG_PREFIX = 0x80

# Compressed files: lcluster types, and the map header's advise bits.
PLAIN, HEAD1, NONHEAD, HEAD2 = range(4)
D0_CBLKCNT = 1 << 11
ADVISE_COMPACTED_2B = 0x1  # compact indexes
ADVISE_EXTENTS = 0x1  # full indexes: extent records instead (newer than Linux 6.12)
ADVISE_BIG_PCLUSTER_1 = 0x2
ADVISE_BIG_PCLUSTER_2 = 0x4
ADVISE_INLINE_PCLUSTER = 0x8
ADVISE_INTERLACED_PCLUSTER = 0x10
ADVISE_FRAGMENT_PCLUSTER = 0x20
FRAGMENT_INODE_BIT = 0x80  # in h_clusterbits: the whole file is in the packed inode


class Unsupported(Exception):
    """A valid image using what this reader does not read: a BuildError of its own."""


@dataclass(frozen=True)
class Superblock:
    block_size: int
    uuid: uuid.UUID
    build_time: int  # seconds since the epoch: compact inodes' mtime
    volume_name: str
    compat: tuple[str, ...]
    incompat: tuple[str, ...]
    # The compressors the image may use: its compression configs' bitmap, or LZ4 where it has
    # none (the format's only one then). An image may declare one and compress nothing.
    algorithms: tuple[str, ...]


@dataclass(frozen=True)
class _Inode:
    nid: int
    kind: str
    extended: bool  # a 64-byte inode, else a compact 32-byte one
    layout: int
    size: int
    raw: int  # i_u: a block address, a device number, or chunk info
    end: int  # where the inode and its inline xattrs end: inline data, or a map header


@dataclass
class _Lcluster:
    type: int
    clusterofs: int = 0
    pblk: int = 0
    delta0: int = 0
    compressed_blocks: int = 0
    next_pack: int = 0  # where the index pack holding it ends


@dataclass(frozen=True)
class _Extent:
    start: int  # logical: where its bytes start in the file
    end: int  # logical: where this map's part of it ends
    at: int  # physical: where its stored bytes start in the image
    stored: int  # their length
    head_type: int
    inline: bool


class ErofsReader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._data = map_readonly(path)
        self._inodes: dict[int, _Inode] = {}
        self._zmaps: dict[int, _Zmap] = {}
        self._metadata_read = 0
        self.used_algorithms: set[str] = set()  # filled by nodes(): what compressed files use
        with _refusing_malformed(self.path):
            self.superblock = self._read_superblock()

    def nodes(self) -> list[Node]:
        """Every entry, parents before children; bounded in number, depth and bytes read."""
        with _refusing_malformed(self.path):
            return list(self._walk())

    def head(self, node: Node, size: int) -> bytes:
        """The first `size` bytes of a regular file (at most MAX_HEAD)."""
        inode = self._inodes.get(node.inode)
        if node.kind != "file" or inode is None:
            raise BuildError(f"/{node.path} in {self.path} is not a regular file")
        with _refusing_malformed(self.path):
            return self._read(inode, min(size, inode.size, MAX_HEAD), f"/{node.path}")

    def layout(self, node: Node) -> tuple[str, str]:
        """("compact" or "extended", how its data is stored) of a node nodes() gave."""
        inode = self._inodes[node.inode]
        return ("extended" if inode.extended else "compact", LAYOUTS[inode.layout])

    # -- superblock -----------------------------------------------------------------------

    def _read_superblock(self) -> Superblock:
        if len(self._data) < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE:
            raise Malformed(f"{len(self._data)} bytes, too short for a superblock")
        sb = SUPERBLOCK_OFFSET
        magic, checksum, compat, blkszbits, extslots, root_nid = struct.unpack_from(
            "<IIIBBH", self._data, sb
        )
        if magic != MAGIC:
            raise Malformed("no EROFS magic at byte 1024")
        if not 9 <= blkszbits <= 16:
            raise Malformed(f"a block size of 2^{blkszbits} bytes")
        self._block = 1 << blkszbits
        self._blkszbits = blkszbits
        if self._block < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE + 16 * extslots:
            raise Malformed(f"a {self._block}-byte block cannot hold its superblock")
        if len(self._data) < self._block:
            raise Malformed(f"{len(self._data)} bytes, shorter than its first block")
        if compat & COMPAT_SB_CHKSUM:
            block = bytearray(self._data[sb : self._block])
            block[4:8] = bytes(4)
            if crc32c(bytes(block)) != checksum:
                raise Malformed("its superblock checksum does not match")
        (build_time, _, blocks, meta_blkaddr, xattr_blkaddr) = struct.unpack_from(
            "<QIIII", self._data, sb + 24
        )
        raw_uuid = bytes(self._data[sb + 48 : sb + 64])
        volume = bytes(self._data[sb + 64 : sb + 80]).split(b"\0")[0]
        incompat, algs_or_distance, extra_devices, _, dirblkbits, prefix_count = struct.unpack_from(
            "<IHHHBB", self._data, sb + 80
        )
        unknown = incompat & ~sum(INCOMPAT_FEATURES)
        if unknown:
            raise Unsupported(f"it uses features this reader does not know ({unknown:#x})")
        if extra_devices:
            raise Unsupported(f"its data spans {extra_devices} more devices")
        if dirblkbits:
            raise Unsupported("its directory blocks are larger than its blocks")
        if prefix_count:
            raise Unsupported("it uses long xattr name prefixes")
        if blocks and blocks * self._block > len(self._data):
            raise Malformed(
                f"it says {blocks * self._block} bytes but holds {len(self._data)}: truncated"
            )
        self._meta = meta_blkaddr * self._block
        self._xattr_start = xattr_blkaddr * self._block
        self._root = root_nid
        self._zero_padding = bool(incompat & INCOMPAT_ZERO_PADDING)
        if incompat & INCOMPAT_COMPR_CFGS:
            bitmap = algs_or_distance
            unknown_algs = bitmap & ~sum(1 << number for number in ALGORITHMS)
            if unknown_algs or not bitmap:
                raise Malformed(f"its compressor bitmap is {bitmap:#x}")
            self._check_compression_configs(bitmap, sb + SUPERBLOCK_SIZE + 16 * extslots)
            self._algorithm_bits = bitmap
        else:
            self._algorithm_bits = 1  # LZ4 only
        algorithms = tuple(name for n, name in ALGORITHMS.items() if self._algorithm_bits >> n & 1)
        unreadable = [name for name in algorithms if name not in READABLE]
        if unreadable:
            raise BuildError(
                f"cannot check {self.path}: it is {'/'.join(unreadable)}-compressed, and verify "
                f"reads {', '.join(READABLE)} EROFS images (Flatcar's kernels mount no other)",
                "repack it with mkfs.erofs -zlz4hc",
            )
        return Superblock(
            block_size=self._block,
            uuid=uuid.UUID(bytes=raw_uuid),
            build_time=build_time,
            volume_name=volume.decode("utf-8", "backslashreplace"),
            compat=tuple(name for bit, name in COMPAT_FEATURES.items() if compat & bit),
            incompat=tuple(name for bit, name in INCOMPAT_FEATURES.items() if incompat & bit),
            algorithms=algorithms,
        )

    def _check_compression_configs(self, bitmap: int, at: int) -> None:
        """One length-prefixed record per declared compressor, after the superblock."""
        for number in ALGORITHMS:
            if bitmap >> number & 1:
                (length,) = struct.unpack("<H", self._bytes(at, 2, "compression configs"))
                self._bytes(at + 2, length, "compression configs")
                at += 2 + length

    # -- bytes ----------------------------------------------------------------------------

    def _bytes(self, start: int, size: int, what: str) -> bytes:
        if start < 0 or size < 0 or start + size > len(self._data):
            raise Malformed(f"its {what} at byte {start} runs past its end")
        return self._data[start : start + size]

    def _count_metadata(self, size: int) -> None:
        self._metadata_read += size
        if self._metadata_read > MAX_METADATA_BYTES:
            raise Malformed(f"more than {MAX_METADATA_BYTES >> 20} MiB of metadata")

    # -- inodes ---------------------------------------------------------------------------

    def _inode(self, nid: int, path: str) -> tuple[_Inode, Node]:
        position = self._meta + nid * INODE_SLOT
        head = self._bytes(position, INODE_SLOT, f"inode of /{path}")
        i_format, icount = struct.unpack_from("<HH", head)
        if i_format & ~FORMAT_BITS_KNOWN:
            raise Malformed(f"/{path} has an inode format of {i_format:#x}")
        layout = (i_format >> 1) & 7
        if layout not in LAYOUTS:
            raise Malformed(f"/{path} has data layout {layout}")
        if i_format & 1:  # extended
            fields = self._bytes(position, 64, f"inode of /{path}")
            _, _, mode, _, size, raw, _, uid, gid, _, _, nlink = struct.unpack_from(
                "<HHHHQIIIIQII", fields
            )
            inode_size = 64
        else:
            _, _, mode, nlink, size, _, raw, _, uid, gid = struct.unpack_from("<HHHHIIIIHH", head)
            inode_size = INODE_SLOT
        kind = KINDS.get(stat.S_IFMT(mode))
        if kind is None:
            raise Malformed(f"/{path} has mode {mode:o}")
        xattr_size = 0 if icount == 0 else 12 + 4 * (icount - 1)
        xattrs = self._xattrs(position + inode_size, xattr_size, path)
        inode = _Inode(
            nid, kind, inode_size == 64, layout, size, raw, position + inode_size + xattr_size
        )
        fields: dict = {}
        if kind in ("block device", "character device"):
            fields["device"] = ((raw & 0xFFF00) >> 8, (raw & 0xFF) | ((raw >> 12) & 0xFFF00))
        elif kind == "symlink":
            if size > MAX_SYMLINK:
                raise Malformed(f"/{path} is a symlink with a {size}-byte target")
            target = self._read(inode, size, f"/{path}")
            self._count_metadata(size)
            fields["target"] = target.decode("utf-8", "surrogateescape")
        elif kind == "file":
            fields["size"] = size
            if layout in (COMPRESSED_FULL, COMPRESSED_COMPACT) and size:
                self.used_algorithms.update(self._zmap(inode, f"/{path}").algorithms)
        self._inodes[nid] = inode
        node = Node(
            path=path,
            kind=kind,
            permissions=stat.S_IMODE(mode),
            uid=uid,
            gid=gid,
            nlink=nlink,
            inode=nid,
            xattrs=xattrs,
            **fields,
        )
        return inode, node

    # -- xattrs ---------------------------------------------------------------------------

    def _xattrs(self, at: int, size: int, path: str) -> dict[str, bytes]:
        if size == 0:
            return {}
        area = self._bytes(at, size, f"xattrs of /{path}")
        self._count_metadata(size)
        shared = area[4]
        inline_at = 12 + 4 * shared
        if inline_at > size:
            raise Malformed(f"/{path} has {shared} shared xattrs that its xattr area cannot hold")
        entries = []
        for index in range(shared):
            (xattr_id,) = struct.unpack_from("<I", area, 12 + 4 * index)
            start = self._xattr_start + xattr_id * XATTR_SLOT
            header = self._bytes(start, 4, f"shared xattr of /{path}")
            length = 4 + header[0] + struct.unpack_from("<H", header, 2)[0]
            entries.append(self._bytes(start, length, f"shared xattr of /{path}"))
            self._count_metadata(length)
        while inline_at < size:
            if inline_at + 4 > size:
                raise Malformed(f"/{path} has an xattr cut short")
            length = 4 + area[inline_at] + struct.unpack_from("<H", area, inline_at + 2)[0]
            if inline_at + length > size:
                raise Malformed(f"/{path} has an xattr that runs past its xattr area")
            entries.append(area[inline_at : inline_at + length])
            inline_at += -(-length // 4) * 4
        if len(entries) > MAX_XATTRS:
            raise Malformed(f"/{path} has {len(entries)} xattrs")
        xattrs: dict[str, bytes] = {}
        for entry in entries:
            name_size, index = entry[0], entry[1]
            if index & XATTR_LONG_PREFIX:
                raise Unsupported(f"/{path} has an xattr with a long name prefix")
            prefix = XATTR_PREFIXES.get(index)
            if prefix is None:
                raise Malformed(f"/{path} has an xattr of unknown type {index}")
            name = prefix + entry[4 : 4 + name_size].decode("utf-8", "backslashreplace")
            if name in xattrs:
                raise Malformed(f"/{path} has the xattr {name} twice")
            xattrs[name] = bytes(entry[4 + name_size :])
        return xattrs

    # -- directories ----------------------------------------------------------------------

    def _walk(self) -> Iterator[Node]:
        root_inode, root = self._inode(self._root, "")
        if root.kind != "directory":
            raise Malformed("its root is not a directory")
        seen = {root.inode}
        yield root
        pending = [(root_inode, root, root.inode, 0)]
        count = 1
        while pending:
            inode, directory, parent, depth = pending.pop()
            if depth >= MAX_DEPTH:
                raise Malformed(f"directories nested deeper than {MAX_DEPTH}")
            children = []
            for name, nid, entry_type in self._listing(inode, directory.path, parent):
                count += 1
                if count > MAX_ENTRIES:
                    raise Malformed(f"more than {MAX_ENTRIES} entries")
                path = f"{directory.path}/{name}".lstrip("/")
                child_inode, node = self._inode(nid, path)
                if DIRENT_TYPES.get(entry_type) != node.kind:
                    raise Malformed(f"/{path}: its directory entry says another type")
                if node.kind == "directory":
                    if node.inode in seen:
                        raise Malformed(f"/{path} is a directory reached twice (a loop)")
                    seen.add(node.inode)
                    children.append((child_inode, node, inode.nid, depth + 1))
                yield node
            pending.extend(reversed(children))

    def _listing(self, inode: _Inode, path: str, parent: int) -> Iterator[tuple[str, int, int]]:
        """(name, nid, type) of each entry of the directory `inode` but . and .."""
        if inode.size > MAX_ENTRIES * (DIRENT_SIZE + MAX_NAME):
            raise Malformed(f"/{path} has a {inode.size}-byte listing")
        if inode.layout not in (FLAT_PLAIN, FLAT_INLINE):
            raise Malformed(f"/{path} is a directory with a {LAYOUTS[inode.layout]} layout")
        data = self._read(inode, inode.size, f"/{path}")
        self._count_metadata(len(data))
        names: set[bytes] = set()
        for start in range(0, len(data), self._block):
            block = data[start : start + self._block]
            (first,) = struct.unpack_from("<H", block, 8)
            if first < DIRENT_SIZE or first >= len(block) or first % DIRENT_SIZE:
                raise Malformed(f"/{path} has a directory block whose names start at {first}")
            count = first // DIRENT_SIZE
            for index in range(count):
                nid, name_at, entry_type = struct.unpack_from("<QHB", block, index * DIRENT_SIZE)
                if index + 1 < count:
                    (name_end,) = struct.unpack_from("<H", block, (index + 1) * DIRENT_SIZE + 8)
                else:
                    name_end = block.find(b"\0", name_at)
                    name_end = len(block) if name_end < 0 else name_end
                if not first <= name_at < name_end <= len(block) or name_end - name_at > MAX_NAME:
                    raise Malformed(f"/{path} has a directory entry with a bad name offset")
                raw = block[name_at:name_end]
                if raw == b".":
                    if nid != inode.nid:
                        raise Malformed(f"/{path}'s . is not itself")
                    continue
                if raw == b"..":
                    if nid != parent:
                        raise Malformed(f"/{path}'s .. is not its parent")
                    continue
                if b"/" in raw or b"\0" in raw or raw in names:
                    raise Malformed(f"/{path} holds an impossible name {raw!r}")
                names.add(raw)
                yield raw.decode("utf-8", "surrogateescape"), nid, entry_type

    # -- file data ------------------------------------------------------------------------

    def _read(self, inode: _Inode, want: int, what: str) -> bytes:
        """The first `want` bytes of the inode's data."""
        want = min(want, inode.size)
        if want <= 0:
            return b""
        if inode.layout in (FLAT_PLAIN, FLAT_INLINE):
            return self._read_flat(inode, want, what)
        if inode.layout == CHUNK_BASED:
            raise Unsupported(f"{what} is stored in chunks (mkfs.erofs --chunksize)")
        return self._zmap(inode, what).read(want)

    def _zmap(self, inode: _Inode, what: str) -> _Zmap:
        if inode.nid not in self._zmaps:
            self._zmaps[inode.nid] = _Zmap(self, inode, what)
        return self._zmaps[inode.nid]

    def _read_flat(self, inode: _Inode, want: int, what: str) -> bytes:
        blocks = -(-inode.size // self._block)
        whole = blocks - 1 if inode.layout == FLAT_INLINE else blocks
        from_blocks = min(want, whole * self._block)
        out = b""
        if from_blocks:  # an inline-only inode's block address is -1
            out = self._bytes(inode.raw * self._block, from_blocks, f"data of {what}")
        if want > from_blocks:
            tail = inode.size - whole * self._block
            if inode.end % self._block + tail > self._block:
                raise Malformed(f"the inline data of {what} crosses a block boundary")
            out += self._bytes(inode.end, tail, f"inline data of {what}")
        return bytes(out[:want])


class _Zmap:
    """A compressed file's logical-cluster indexes, and its extents (the kernel's zmap.c)."""

    def __init__(self, reader: ErofsReader, inode: _Inode, what: str) -> None:
        self._reader = reader
        self._inode = inode
        self._what = what
        header_at = -(-inode.end // 8) * 8
        header = reader._bytes(header_at, 8, f"compression map of {what}")
        _, self._inline_size, self._advise, algorithm_types, cluster_bits = struct.unpack(
            "<HHHBB", header
        )
        # mkfs.erofs interlaces uncompressed pclusters only with fragments.
        fragments = ADVISE_FRAGMENT_PCLUSTER | ADVISE_INTERLACED_PCLUSTER
        if cluster_bits & FRAGMENT_INODE_BIT or self._advise & fragments:
            raise Unsupported(f"{what} is stored in fragments (mkfs.erofs -Efragments)")
        if inode.layout == COMPRESSED_FULL and self._advise & ADVISE_EXTENTS:
            raise Unsupported(f"{what} has extent records (erofs-utils 1.9 and later)")
        self._bits = reader._blkszbits + (cluster_bits & 7)
        self._compact = inode.layout == COMPRESSED_COMPACT
        if self._compact and self._bits != reader._blkszbits:
            raise Malformed(f"{what} has compact indexes for {1 << self._bits}-byte clusters")
        self.algorithms = set()
        for number in (algorithm_types & 0xF, algorithm_types >> 4):
            if not reader._algorithm_bits >> number & 1:
                raise Malformed(f"{what} is compressed with an undeclared algorithm {number}")
            self.algorithms.add(ALGORITHMS[number])
        self._head_algorithms = (algorithm_types & 0xF, algorithm_types >> 4)
        self._indexes = header_at + 8 + (0 if self._compact else 8)
        self._count = -(-inode.size // (1 << self._bits))
        self._tail_head: int | None = None
        self._inline_at = 0
        if self._advise & ADVISE_INLINE_PCLUSTER:
            tail = self._lcluster((inode.size - 1) >> self._bits)
            self._inline_at = tail.next_pack
            self._tail_head = self._map(inode.size - 1, find_tail=True).start >> self._bits

    def read(self, want: int) -> bytes:
        out = bytearray()
        decoded: tuple[_Extent | None, bytes] = (None, b"")
        while len(out) < want:
            extent = self._map(len(out))
            end = min(extent.end, want, self._inode.size)
            if not extent.start <= len(out) < end:
                raise Malformed(f"{self._what} maps byte {len(out)} outside its extent")
            cached, data = decoded
            same = cached is not None and (cached.at, cached.start) == (extent.at, extent.start)
            if not same or len(data) < end - extent.start:
                # Zero padding ends the stream with the extent: decode all `want` needs at once.
                limit = want if self._reader._zero_padding else end
                data = self._decode(extent, limit - extent.start)
                decoded = (extent, data)
            if len(data) < end - extent.start:
                raise Malformed(f"{self._what} decompresses to fewer bytes than it holds")
            out += data[len(out) - extent.start : end - extent.start]
        return bytes(out)

    # -- indexes --------------------------------------------------------------------------

    def _lcluster(self, lcn: int) -> _Lcluster:
        if not 0 <= lcn < self._count:
            raise Malformed(f"{self._what} refers to logical cluster {lcn} of {self._count}")
        if self._compact:
            return self._compact_lcluster(lcn)
        at = self._indexes + 8 * lcn
        advise, clusterofs, word = struct.unpack(
            "<HHI", self._reader._bytes(at, 8, f"indexes of {self._what}")
        )
        kind = advise & 3
        if kind == NONHEAD:
            return self._nonhead(word & 0xFFFF, at + 8)
        return self._head(kind, clusterofs, word, at + 8)

    def _nonhead(self, delta0: int, next_pack: int) -> _Lcluster:
        if delta0 & D0_CBLKCNT:
            if not self._advise & (ADVISE_BIG_PCLUSTER_1 | ADVISE_BIG_PCLUSTER_2):
                raise Malformed(f"{self._what} has a big pcluster it does not declare")
            return _Lcluster(NONHEAD, 1 << self._bits, 0, 1, delta0 & ~D0_CBLKCNT, next_pack)
        return _Lcluster(NONHEAD, 1 << self._bits, 0, delta0, 0, next_pack)

    def _head(self, kind: int, clusterofs: int, pblk: int, next_pack: int) -> _Lcluster:
        if clusterofs >= 1 << self._bits:
            raise Malformed(f"{self._what} has a cluster offset of {clusterofs}")
        return _Lcluster(kind, clusterofs, pblk, 0, 0, next_pack)

    def _compact_lcluster(self, lcn: int) -> _Lcluster:
        ebase = self._indexes
        initial_4b = (32 - ebase % 32) // 4 % 8
        if self._advise & ADVISE_COMPACTED_2B and initial_4b < self._count:
            compacted_2b = (self._count - initial_4b) // 16 * 16
        else:
            compacted_2b = 0
        position, index = ebase, lcn
        if index < initial_4b:
            shift = 2
        else:
            position += initial_4b * 4
            index -= initial_4b
            if index < compacted_2b:
                shift = 1
            else:
                position += compacted_2b * 2
                index -= compacted_2b
                shift = 2
        position += index << shift
        if shift == 2:
            count = 2
        elif self._bits <= 12:
            count = 16
        else:
            raise Malformed(f"{self._what} has 2-byte indexes for large clusters")
        pack_size = count << shift
        pack_at = position - position % pack_size
        pack = self._reader._bytes(pack_at, pack_size, f"indexes of {self._what}") + bytes(4)
        lobits = max(self._bits, 12)
        encodebits = (pack_size - 4) * 8 // count
        i = (position - pack_at) >> shift
        next_pack = pack_at + pack_size

        def decode(slot: int) -> tuple[int, int]:
            bit = encodebits * slot
            value = int.from_bytes(pack[bit // 8 : bit // 8 + 4], "little") >> (bit & 7)
            return (value >> lobits) & 3, value & ((1 << lobits) - 1)

        kind, lo = decode(i)
        if kind == NONHEAD:
            if lo & D0_CBLKCNT or i + 1 != count:
                return self._nonhead(lo, next_pack)
            # The last lcluster of a pack keeps delta[1]: delta[0] follows from the one before.
            previous, lo = decode(i - 1)
            if previous != NONHEAD:
                lo = 0
            elif lo & D0_CBLKCNT:
                lo = 1
            return _Lcluster(NONHEAD, 1 << self._bits, 0, lo + 1, 0, next_pack)
        blocks = 0
        if not self._advise & ADVISE_BIG_PCLUSTER_1:
            blocks = 1
            while i > 0:
                i -= 1
                previous, lo2 = decode(i)
                if previous == NONHEAD:
                    i -= lo2
                if i >= 0:
                    blocks += 1
        else:
            while i > 0:
                i -= 1
                previous, lo2 = decode(i)
                if previous == NONHEAD:
                    if lo2 & D0_CBLKCNT:
                        i -= 1
                        blocks += lo2 & ~D0_CBLKCNT
                        continue
                    if lo2 <= 1:
                        raise Malformed(f"{self._what} has a bad big-pcluster index")
                    i -= lo2 - 2
                    continue
                blocks += 1
        (base,) = struct.unpack_from("<I", pack, pack_size - 4)
        return self._head(kind, lo, base + blocks, next_pack)

    # -- extents --------------------------------------------------------------------------

    def _map(self, offset: int, find_tail: bool = False) -> _Extent:
        bits = self._bits
        lcn = offset >> bits
        lcluster = self._lcluster(lcn)
        end = (lcn + 1) << bits
        if lcluster.type != NONHEAD and offset & ((1 << bits) - 1) >= lcluster.clusterofs:
            head_lcn, head = lcn, lcluster
        elif lcluster.type != NONHEAD:
            if lcn == 0:
                raise Malformed(f"{self._what} does not start with an extent")
            end = (lcn << bits) | lcluster.clusterofs
            head_lcn, head = self._lookback(lcn, 1)
        else:
            head_lcn, head = self._lookback(lcn, lcluster.delta0)
        start = (head_lcn << bits) | head.clusterofs
        end = min(end, self._inode.size)
        if find_tail:
            return _Extent(start, end, 0, 0, head.type, True)
        if head_lcn == self._tail_head:
            return _Extent(start, end, self._inline_at, self._inline_size, head.type, True)
        return _Extent(start, end, head.pblk << self._reader._blkszbits,
                       self._stored_blocks(head_lcn, head) << self._reader._blkszbits,
                       head.type, False)  # fmt: skip

    def _lookback(self, lcn: int, distance: int) -> tuple[int, _Lcluster]:
        for _ in range(MAX_EXTENT_LCLUSTERS):
            if distance == 0 or distance > lcn:
                break
            lcn -= distance
            lcluster = self._lcluster(lcn)
            if lcluster.type != NONHEAD:
                return lcn, lcluster
            distance = lcluster.delta0
        raise Malformed(f"{self._what} has a logical cluster that belongs to no extent")

    def _stored_blocks(self, head_lcn: int, head: _Lcluster) -> int:
        big = ADVISE_BIG_PCLUSTER_1 if head.type == HEAD1 else ADVISE_BIG_PCLUSTER_2
        if head.type == PLAIN or not self._advise & big:
            return 1 << (self._bits - self._reader._blkszbits)
        following = self._lcluster(head_lcn + 1)
        if following.type != NONHEAD:
            return 1 << (self._bits - self._reader._blkszbits)
        if following.delta0 != 1 or not following.compressed_blocks:
            raise Malformed(f"{self._what} has a big pcluster without its block count")
        return following.compressed_blocks

    def _decode(self, extent: _Extent, size: int) -> bytes:
        """Up to `size` bytes of the extent from its start (fewer where its stream ends)."""
        block = self._reader._block
        if extent.inline and extent.at % block + extent.stored > block:
            raise Malformed(f"the inline tail of {self._what} crosses a block boundary")
        raw = self._reader._bytes(extent.at, extent.stored, f"data of {self._what}")
        if extent.head_type == PLAIN:
            if extent.end - extent.start > len(raw):
                raise Malformed(f"{self._what} has an uncompressed extent longer than stored")
            return bytes(raw[:size])
        algorithm = self._head_algorithms[0 if extent.head_type == HEAD1 else 1]
        if ALGORITHMS[algorithm] not in READABLE:
            raise Unsupported(f"{self._what} is {ALGORITHMS[algorithm]}-compressed")
        if self._reader._zero_padding:
            skip = len(raw) - len(bytes(raw).lstrip(b"\0"))
            if skip == len(raw):
                raise Malformed(f"{self._what} has an empty compressed extent")
            raw = raw[skip:]
        return lz4_decompress(bytes(raw), size)


def lz4_decompress(source: bytes, limit: int) -> bytes:
    """The first `limit` bytes an LZ4 block decompresses to (fewer if it ends sooner); a block
    that refers outside its own output is Malformed."""
    out = bytearray()
    at, end = 0, len(source)
    while at < end and len(out) < limit:
        token = source[at]
        at += 1
        literals, at = _lz4_length(source, at, token >> 4)
        if at + literals > end:
            raise Malformed("an LZ4 block's literals run past its end")
        out += source[at : at + literals]
        at += literals
        if at == end or len(out) >= limit:
            break
        if at + 2 > end:
            raise Malformed("an LZ4 block ends inside a match")
        distance = source[at] | source[at + 1] << 8
        at += 2
        if distance == 0 or distance > len(out):
            raise Malformed("an LZ4 block refers before its start")
        length, at = _lz4_length(source, at, token & 15)
        length = min(length + 4, limit - len(out))
        start = len(out) - distance
        if length <= distance:
            out += out[start : start + length]
        else:
            pattern = bytes(out[start:])
            out += (pattern * (length // distance + 1))[:length]
    return bytes(out[:limit])


def _lz4_length(source: bytes, at: int, length: int) -> tuple[int, int]:
    if length != 15:
        return length, at
    while True:
        if at >= len(source):
            raise Malformed("an LZ4 block ends inside a length")
        more = source[at]
        at += 1
        length += more
        if more != 255:
            return length, at


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes, crc: int = 0xFFFFFFFF) -> int:
    """As the kernel's crc32c(~0, ...) for the superblock checksum: no final inversion."""
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


@contextmanager
def _refusing_malformed(path: Path) -> Iterator[None]:
    """refusing_malformed(), and what this reader does not read in a line of its own."""
    try:
        with refusing_malformed(path, "EROFS", "mkfs.erofs"):
            yield
    except Unsupported as error:
        raise BuildError(
            f"cannot check {path}: {error}, which verify does not read",
            "repack it with mkfs.erofs -zlz4hc (no -Efragments, --chunksize or extra devices)",
        ) from None
