"""An EROFS image's metadata and files, read without mounting, unpacking or root, as the kernel
reads them (fs/erofs/ of Linux 6.1 to 6.18), and refused where the kernel could see another tree.

Everything in the image is hostile: every offset is checked against the image, every count,
size and depth is bounded, and anything malformed is one BuildError naming the image.

Kernel paths the reader follows (function names of fs/erofs/ and lib/lz4/):
- super.c erofs_read_superblock: magic, crc32c checksum, block size, root nid, meta and xattr
  block addresses; erofs_load_compr_cfgs (each declared compressor's config must fit).
- inode.c erofs_read_inode: compact (16-bit uid/gid/nlink, 32-bit size, the build time as
  mtime) and extended inodes, mode, new_decode_dev() device numbers; erofs_fill_symlink.
- namei.c erofs_namei, find_target_block_classic, find_target_dirent, erofs_dirnamecmp: a
  binary search over blocks then dirents, so every directory must be strictly sorted as bytes
  (shorter first, '.' and '..' included); dir.c erofs_readdir / erofs_fill_dentries: a name
  ends at the next nameoff, the last one of a block at its first NUL or the listing's end.
- xattr.c erofs_init_inode_xattrs, inline_getxattr, shared_getxattr, erofs_listxattr,
  xattr_foreach: the ibody header, shared xattr ids (each entry parsed once), 4-byte aligned
  inline entries within xattr_isize; user., trusted., security. and the two ACL names.
- data.c erofs_map_blocks: flat plain and flat inline (the tail in the inode's block).
- zmap.c z_erofs_fill_inode_lazy, z_erofs_load_full_lcluster, z_erofs_load_compact_lcluster
  (unpack_compacted_index), z_erofs_extent_lookback, z_erofs_get_extent_compressedlen, the
  ztailpacking tail (EROFS_GET_BLOCKS_FINDTAIL); decompressor.c z_erofs_lz4_decompress with
  0padding (z_erofs_fixup_insize) or without, z_erofs_transform_plain (shifted); lib/lz4's
  LZ4_decompress_safe (by the system's liblz4, build/read/lz4native.py, or Python under its rules).

Kernel paths it refuses (what an Alloy sysext never needs, or where the kernel and a walk could
differ): superblock feature bits other than sb_csum, mtime, 0padding, big_pcluster/compr_cfgs
and ztailpacking, so xattr_filter (a name bloom filter with which getxattr skips names), the
xattr prefix table and long prefixes (erofs_xattr_prefixes_init), chunk-based files
(erofs_map_blocks' chunk path), extra devices (erofs_init_device), fragments and dedupe, 48-bit
layouts, metabox and any bit a later kernel adds; blocks over 4096 bytes; i_format bits it does
not know (EROFS_I_NLINK_1_BIT); erofs_namei over unsorted or duplicate names, nameoffs out of
order or past the block, names with NUL or '/', a last name that lookup reads on past the
listing's end, '.' or '..' missing or naming anything but the directory and its parent; an inode
whose bytes (inode, xattrs, inline data, indexes) overlap another's; an xattr ibody of just its
header (EOPNOTSUPP), xattr indexes without a handler (listxattr hides them), ACL names with a
suffix, xattr names with NUL or empty; symlink targets empty, holding NUL or of 4096 bytes or
more (readlink and page_get_link end them sooner); data blocks past the image's end; compressed
directories and symlinks; HEAD2 lclusters, interlaced and fragment pclusters, extent records
(Z_EROFS_ADVISE_EXTENTS), h_clusterbits past 3 bits, compact indexes whose HEAD1/HEAD2 big-
pcluster bits differ, big pclusters or inline tails the superblock does not declare, pclusters
over its LZ4 config's max_pclusterblks (z_erofs_load_lz4_config), 0padding past the first block,
a lookback that leaves its extent or a chain over MAX_LOOKBACK_STEPS, LZ4 streams that do not
decode to exactly their extent, and two compressed extents sharing a block (zdata.c keeps one
pcluster per start block for the whole mount, so one file could change what another decompresses
to).

Bounds: images over MAX_IMAGE_BYTES are refused before reading, and images whose compressed
files say they hold more than MAX_COMPRESSED_BYTES before their indexes are read. The work is
at most a constant times the image's bytes (each inode read once, each xattr entry parsed once,
each lcluster index loaded about twice, the tail's chain at most MAX_LOOKBACK_STEPS) plus the
bytes head() and sha256() are asked for, the latter capped by the caller's limit
(--max-binary-size). One deadline (READ_SECONDS, monotonic, injectable) covers the whole
read; `work` counts it.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import stat
import struct
import time
import uuid
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from build.core.errors import BuildError
from build.core.report import MAX_ITEM, cut
from build.core.safeio import Deadline, Malformed, map_readonly, refusing_malformed
from build.read import lz4native
from build.read.squashfs import Node

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
MAX_XATTR_AREA = 1 << 16  # an inode's xattr ibody: ours hold one short xattr
# The largest image read at all (refused before reading), as for squashfs: a 4 GiB binary
# (--max-binary-size's default) stored uncompressed. An Alloy sysext of a 420 MB binary is about
# 150 MB. Reading is linear in it, and bounded in time by READ_SECONDS.
MAX_IMAGE_BYTES = 8 << 30
READ_SECONDS = 10.0  # one deadline for the whole read, on a monotonic clock
# ...which a whole-file read extends by its size at this rate: liblz4 decodes ~150 MB/s on a
# loaded 2-core machine, Python ~4 MB/s (where liblz4 is missing, content_rate() allows that).
CONTENT_BYTES_PER_SECOND = 16 << 20
PYTHON_LZ4_BYTES_PER_SECOND = 2 << 20
MAX_PCLUSTER_BYTES = 1 << 20  # the kernel's Z_EROFS_PCLUSTER_MAX_SIZE
LZ4_CONFIG_SIZE = 14  # struct z_erofs_lz4_cfgs
# What compressed files may hold in all: every lcluster of them is read once, so this bounds
# that work (an Alloy binary is about 420 MB; verify caps all content at --max-binary-size).
MAX_COMPRESSED_BYTES = 8 << 30
# Lookback steps from an lcluster to its head: mkfs.erofs needs one per 2047 lclusters, and an
# extent of a 1 MiB pcluster decompresses to at most 255 MiB (31 steps).
MAX_LOOKBACK_STEPS = 64
LZ4_WINDOW = 1 << 16  # how far back an LZ4 match reaches
STREAM_CHUNK = 1 << 20  # what a streamed read holds at once
MAX_NATIVE_EXTENT = 16 << 20  # extents up to this are decoded whole by liblz4 (ours: < 7 MiB)

COMPAT_SB_CHKSUM = 0x1
COMPAT_FEATURES = {0x1: "sb_csum", 0x2: "mtime", 0x4: "xattr_filter"}
# What the reader models: the kernel reads no other compat bit differently from a walk but
# xattr_filter (a bloom filter that makes getxattr skip names), and later kernels add more.
COMPAT_MODELLED = 0x1 | 0x2
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
    0x80: "48bit",
    0x100: "metabox",
}
INCOMPAT_ZTAILPACKING = 0x10
INCOMPAT_MODELLED = INCOMPAT_ZERO_PADDING | INCOMPAT_COMPR_CFGS | INCOMPAT_ZTAILPACKING
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


def content_rate() -> float:
    """Bytes a second a whole-file read may take: Python's LZ4 where liblz4 is missing."""
    return CONTENT_BYTES_PER_SECOND if lz4native.available() else PYTHON_LZ4_BYTES_PER_SECOND


@dataclass
class Work:
    """What a read did, for tests to assert instead of wall time."""

    inodes: int = 0  # inodes parsed (each nid once)
    dirents: int = 0
    xattr_parses: int = 0  # inline areas and shared entries parsed
    lcluster_loads: int = 0  # logical-cluster indexes decoded
    extents: int = 0  # extents decompressed or copied
    bytes_decompressed: int = 0  # LZ4 output
    bytes_copied: int = 0  # plain data read


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
    end: int  # logical: where they end
    at: int  # physical: where its stored bytes start in the image
    stored: int  # their length
    head_type: int
    inline: bool = False  # stored after the indexes (ztailpacking), not in blocks of its own


@dataclass
class _Regions:
    """The byte ranges inodes occupy (inode, xattrs, inline data or indexes): none may overlap,
    or two nids would be two views of the same bytes."""

    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)

    def claim(self, start: int, end: int, what: str) -> None:
        index = bisect_left(self.starts, start)
        if (index < len(self.starts) and self.starts[index] < end) or (
            index and self.ends[index - 1] > start
        ):
            raise Malformed(f"the inode of {what} overlaps another inode")
        self.starts.insert(index, start)
        self.ends.insert(index, end)


def _check_features(
    compat: int, incompat: int, extra_devices: int, dirblkbits: int, prefix_count: int
) -> None:
    """Refuse a superblock that declares what this reader does not model."""
    unknown = incompat & ~sum(INCOMPAT_FEATURES)
    if unknown:
        raise Unsupported(f"it uses features this reader does not know ({unknown:#x})")
    unmodelled = incompat & ~INCOMPAT_MODELLED
    if unmodelled:
        names = [name for bit, name in INCOMPAT_FEATURES.items() if unmodelled & bit]
        raise Unsupported(f"it uses the incompatible feature {', '.join(names)}")
    if compat & ~COMPAT_MODELLED:
        names = [
            COMPAT_FEATURES.get(1 << bit, f"{1 << bit:#x}")
            for bit in range(32)
            if compat & ~COMPAT_MODELLED & (1 << bit)
        ]
        raise Unsupported(f"it uses the compatible feature {', '.join(names)}")
    if extra_devices:
        raise Unsupported(f"its data spans {extra_devices} more devices")
    if dirblkbits:
        raise Unsupported("its directory blocks are larger than its blocks")
    if prefix_count:
        raise Unsupported("it uses long xattr name prefixes")


class ErofsReader:
    def __init__(
        self,
        path: Path,
        clock: Callable[[], float] = time.monotonic,
        seconds: float = READ_SECONDS,
    ) -> None:
        self.path = path
        self.deadline = Deadline(seconds, clock)
        self.work = Work()
        self._data = map_readonly(path)
        if len(self._data) > MAX_IMAGE_BYTES:
            raise BuildError(
                f"refusing {path}: {len(self._data)} bytes, more than the "
                f"{MAX_IMAGE_BYTES >> 20} MiB an EROFS image verify reads may have",
                "an Alloy sysext is far smaller; do not install it",
            )
        self._view = memoryview(self._data)
        self._inodes: dict[int, _Inode] = {}
        self._nodes: dict[int, Node] = {}
        self._zmaps: dict[int, _Zmap] = {}
        self._shared_xattrs: dict[int, tuple[str, bytes]] = {}
        self._regions = _Regions()
        self._pclusters = array("Q")  # start block << 16 | blocks, of every compressed extent
        self._compressed_bytes = 0  # what compressed files say they hold
        self._metadata_read = 0
        self.used_algorithms: set[str] = set()  # filled by nodes(): what compressed files use
        with _refusing_malformed(self.path):
            self.superblock = self._read_superblock()

    def nodes(self) -> list[Node]:
        """Every entry, parents before children; bounded in number, depth and bytes read."""
        with _refusing_malformed(self.path):
            nodes = list(self._walk())
            self._check_pclusters()
            return nodes

    def _check_pclusters(self) -> None:
        """No two compressed extents share a block: the kernel keeps one pcluster per start
        block for the whole mount (zdata.c), so a second file naming it with another length or
        type would change what the first decompresses to, by the order files are read."""
        end = 0
        for value in sorted(self._pclusters):
            start, blocks = value >> 16, value & 0xFFFF
            if start < end:
                raise Malformed(f"two compressed extents share block {start}")
            end = start + blocks

    def head(self, node: Node, size: int) -> bytes:
        """The first `size` bytes of a regular file (at most MAX_HEAD)."""
        inode = self._file(node)
        with _refusing_malformed(self.path):
            return self._read(inode, min(size, inode.size, MAX_HEAD), f"/{node.path}")

    def sha256(self, node: Node, limit: int) -> str:
        """The sha256 of a regular file's whole content, streamed; refused when it is larger
        than `limit` bytes."""
        inode = self._file(node)
        if inode.size > limit:
            raise BuildError(
                f"/{node.path} in {self.path} is {inode.size} bytes, more than {limit}",
                "raise --max-binary-size if the file is right",
            )
        self.deadline.extend(inode.size / content_rate())
        digest = hashlib.sha256()
        read = 0
        with _refusing_malformed(self.path):
            for chunk in self._chunks(inode, inode.size, f"/{node.path}", whole=True):
                digest.update(chunk)
                read += len(chunk)
            if read != inode.size:
                raise Malformed(f"/{node.path} holds {read} bytes, not {inode.size}")
        return digest.hexdigest()

    def layout(self, node: Node) -> tuple[str, str]:
        """("compact" or "extended", how its data is stored) of a node nodes() gave."""
        inode = self._inodes[node.inode]
        return ("extended" if inode.extended else "compact", LAYOUTS[inode.layout])

    def _file(self, node: Node) -> _Inode:
        inode = self._inodes.get(node.inode)
        if node.kind != "file" or inode is None:
            raise BuildError(f"/{node.path} in {self.path} is not a regular file")
        return inode

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
        if blkszbits > 12:  # the kernel mounts blocks up to its page size
            raise Unsupported(f"its blocks are {1 << blkszbits} bytes, larger than a page")
        self._block = 1 << blkszbits
        self._blkszbits: int = blkszbits
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
        _check_features(compat, incompat, extra_devices, dirblkbits, prefix_count)
        if blocks and blocks * self._block > len(self._data):
            raise Malformed(
                f"it says {blocks * self._block} bytes but holds {len(self._data)}: truncated"
            )
        self._meta = meta_blkaddr * self._block
        self._xattr_start = xattr_blkaddr * self._block
        self._root = root_nid
        self._zero_padding = bool(incompat & INCOMPAT_ZERO_PADDING)
        self._max_pcluster_blocks = 1  # without compression configs
        self._big_pcluster = bool(incompat & INCOMPAT_COMPR_CFGS)
        self._ztailpacking = bool(incompat & INCOMPAT_ZTAILPACKING)
        configs_at = sb + SUPERBLOCK_SIZE + 16 * extslots
        algorithms = self._read_algorithms(incompat, algs_or_distance, configs_at)
        return Superblock(
            block_size=self._block,
            uuid=uuid.UUID(bytes=raw_uuid),
            build_time=build_time,
            volume_name=volume.decode("utf-8", "backslashreplace"),
            compat=tuple(name for bit, name in COMPAT_FEATURES.items() if compat & bit),
            incompat=tuple(name for bit, name in INCOMPAT_FEATURES.items() if incompat & bit),
            algorithms=algorithms,
        )

    def _read_algorithms(
        self, incompat: int, algs_or_distance: int, configs_at: int
    ) -> tuple[str, ...]:
        """The compressors the superblock declares (LZ4 alone without compression configs),
        refused unless verify reads them all."""
        if incompat & INCOMPAT_COMPR_CFGS:
            bitmap = algs_or_distance
            unknown_algs = bitmap & ~sum(1 << number for number in ALGORITHMS)
            if unknown_algs or not bitmap:
                raise Malformed(f"its compressor bitmap is {bitmap:#x}")
            self._check_compression_configs(bitmap, configs_at)
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
        return algorithms

    def _check_compression_configs(self, bitmap: int, at: int) -> None:
        """One length-prefixed record per declared compressor, after the superblock; LZ4's
        says how many blocks a pcluster may have (z_erofs_load_lz4_config)."""
        for number in ALGORITHMS:
            if bitmap >> number & 1:
                (length,) = struct.unpack("<H", self._bytes(at, 2, "compression configs"))
                config = self._bytes(at + 2, length, "compression configs")
                if ALGORITHMS[number] == "lz4":
                    if length < LZ4_CONFIG_SIZE:
                        raise Malformed(f"its LZ4 config is {length} bytes")
                    (blocks,) = struct.unpack_from("<H", config, 2)
                    if blocks > MAX_PCLUSTER_BYTES >> self._blkszbits:
                        raise Malformed(f"its pclusters may have {blocks} blocks")
                    self._max_pcluster_blocks = blocks or 1
                at += 2 + length

    # -- bytes ----------------------------------------------------------------------------

    def _check_range(self, start: int, size: int, what: str) -> None:
        if start < 0 or size < 0 or start + size > len(self._data):
            raise Malformed(f"its {what} at byte {start} runs past its end")

    def _bytes(self, start: int, size: int, what: str) -> bytes:
        self._check_range(start, size, what)
        return self._data[start : start + size]

    def _release(self, start: int, size: int) -> None:
        """Drops the mapped pages of a range read once (file data): a whole-file read then
        holds no more of the image in memory than a chunk."""
        if isinstance(self._data, mmap.mmap) and size > 0:
            aligned = start - start % mmap.PAGESIZE
            with contextlib.suppress(ValueError, OSError):
                self._data.madvise(mmap.MADV_DONTNEED, aligned, size + start - aligned)

    def _count_metadata(self, size: int) -> None:
        self._metadata_read += size
        if self._metadata_read > MAX_METADATA_BYTES:
            raise Malformed(f"more than {MAX_METADATA_BYTES >> 20} MiB of metadata")

    # -- inodes ---------------------------------------------------------------------------

    def _inode(self, nid: int, path: str) -> tuple[_Inode, Node]:
        """The inode `nid` as the node at `path`: parsed once, whichever name reaches it."""
        if nid in self._nodes:
            return self._inodes[nid], replace(self._nodes[nid], path=path)
        self.deadline.check()
        self.work.inodes += 1
        position = self._meta + nid * INODE_SLOT
        head = self._bytes(position, INODE_SLOT, f"inode of /{path}")
        i_format, icount = struct.unpack_from("<HH", head)
        if i_format & ~FORMAT_BITS_KNOWN:
            raise Malformed(f"/{path} has an inode format of {i_format:#x}")
        layout = (i_format >> 1) & 7
        if layout not in LAYOUTS:
            raise Malformed(f"/{path} has data layout {layout}")
        if i_format & 1:  # extended
            whole = self._bytes(position, 64, f"inode of /{path}")
            _, _, mode, _, size, raw, _, uid, gid, _, _, nlink = struct.unpack_from(
                "<HHHHQIIIIQII", whole
            )
            inode_size = 64
        else:
            _, _, mode, nlink, size, _, raw, _, uid, gid = struct.unpack_from("<HHHHIIIIHH", head)
            inode_size = INODE_SLOT
        kind = KINDS.get(stat.S_IFMT(mode))
        if kind is None:
            raise Malformed(f"/{path} has mode {mode:o}")
        if icount == 1:  # erofs_init_inode_xattrs: EOPNOTSUPP for every xattr call
            raise Malformed(f"/{path} has an xattr area of just its header")
        xattr_size = 0 if icount == 0 else 12 + 4 * (icount - 1)
        if xattr_size > MAX_XATTR_AREA:
            raise Malformed(f"/{path} has a {xattr_size}-byte xattr area")
        xattrs = self._xattrs(position + inode_size, xattr_size, path)
        inode = _Inode(
            nid, kind, inode_size == 64, layout, size, raw, position + inode_size + xattr_size
        )
        self._claim(inode, position, path)
        fields = self._fields(inode, path)
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
        self._nodes[nid] = node
        return inode, node

    def _claim(self, inode: _Inode, position: int, path: str) -> None:
        """Claim the bytes the inode at `position` holds (with its inline data or compression
        map), and read a compressed file's map."""
        nid, kind, layout, size = inode.nid, inode.kind, inode.layout, inode.size
        compressed = layout in (COMPRESSED_FULL, COMPRESSED_COMPACT)
        if compressed and kind != "file":
            raise Malformed(f"/{path} is a {kind} with a {LAYOUTS[layout]} layout")
        region_end = inode.end
        if layout == FLAT_INLINE and size:  # the tail, up to its block's end (read checks it)
            tail = size - (-(-size // self._block) - 1) * self._block
            region_end = min(region_end + tail, region_end - region_end % self._block + self._block)
        if compressed and size:
            self._compressed_bytes += size
            if self._compressed_bytes > MAX_COMPRESSED_BYTES:
                raise BuildError(
                    f"refusing {self.path}: its compressed files hold more than "
                    f"{MAX_COMPRESSED_BYTES >> 20} MiB, more than verify reads",
                    "an Alloy sysext holds one binary of a few hundred MiB; do not install it",
                )
            zmap = _Zmap(self, inode, f"/{path}")
            region_end = zmap.region_end
            self._regions.claim(position, region_end, f"/{path}")
            if zmap.inline:
                zmap._find_tail()
            for start, blocks in zmap.pclusters():
                self._pclusters.append(start << 16 | blocks)
            self._zmaps[nid] = zmap
            self.used_algorithms.update(zmap.algorithms)
        else:
            self._regions.claim(position, region_end, f"/{path}")

    def _fields(self, inode: _Inode, path: str) -> dict[str, Any]:
        """The Node fields of the inode's kind (device, target, size), its size and data range
        checked."""
        kind, layout, size, raw = inode.kind, inode.layout, inode.size, inode.raw
        fields: dict[str, Any] = {}
        if kind == "directory" and size > MAX_ENTRIES * (DIRENT_SIZE + MAX_NAME):
            raise Malformed(f"/{path} has a {size}-byte listing")
        if kind == "symlink" and size >= MAX_SYMLINK:  # page_get_link ends one at 4095 bytes
            raise Malformed(f"/{path} is a symlink with a {size}-byte target")
        if layout in (FLAT_PLAIN, FLAT_INLINE) and kind in ("file", "directory", "symlink"):
            whole = -(-size // self._block) - (layout == FLAT_INLINE)
            if whole > 0:  # erofs_map_blocks: the kernel reads its blocks from here
                self._check_range(raw * self._block, whole * self._block, f"data of /{path}")
        if kind in ("block device", "character device"):
            fields["device"] = ((raw & 0xFFF00) >> 8, (raw & 0xFF) | ((raw >> 12) & 0xFFF00))
        elif kind == "symlink":
            target = self._read(inode, size, f"/{path}")
            self._count_metadata(size)
            if not target or b"\0" in target:  # readlink ends a target at its first NUL
                raise Malformed(f"/{path} is a symlink to {target!r}")
            fields["target"] = target.decode("utf-8", "surrogateescape")
        elif kind == "file":
            fields["size"] = size
        return fields

    # -- xattrs ---------------------------------------------------------------------------

    def _xattrs(self, at: int, size: int, path: str) -> dict[str, bytes]:
        if size == 0:
            return {}
        area = self._bytes(at, size, f"xattrs of /{path}")
        self._count_metadata(size)
        self.work.xattr_parses += 1
        shared = area[4]
        if shared > MAX_XATTRS:
            raise Malformed(f"/{path} has {shared} shared xattrs")
        inline_at = 12 + 4 * shared
        if inline_at > size:
            raise Malformed(f"/{path} has {shared} shared xattrs that its xattr area cannot hold")
        entries = []
        for index in range(shared):
            (xattr_id,) = struct.unpack_from("<I", area, 12 + 4 * index)
            entries.append(self._shared_xattr(xattr_id, path))
        while inline_at < size:
            if len(entries) >= MAX_XATTRS:
                raise Malformed(f"/{path} has more than {MAX_XATTRS} xattrs")
            if inline_at + 4 > size:
                raise Malformed(f"/{path} has an xattr cut short")
            length = 4 + area[inline_at] + struct.unpack_from("<H", area, inline_at + 2)[0]
            aligned = -(-length // 4) * 4
            if inline_at + aligned > size:  # xattr_foreach: EFSCORRUPTED
                raise Malformed(f"/{path} has an xattr that runs past its xattr area")
            self.work.xattr_parses += 1
            entries.append(self._xattr_entry(area[inline_at : inline_at + length], path))
            inline_at += aligned
        xattrs: dict[str, bytes] = {}
        for name, value in entries:
            if name in xattrs:
                raise Malformed(f"/{path} has the xattr {name} twice")
            xattrs[name] = value
        return xattrs

    def _shared_xattr(self, xattr_id: int, path: str) -> tuple[str, bytes]:
        """A shared xattr, parsed once however many inodes name it."""
        if xattr_id not in self._shared_xattrs:
            start = self._xattr_start + xattr_id * XATTR_SLOT
            header = self._bytes(start, 4, f"shared xattr of /{path}")
            length = 4 + header[0] + struct.unpack_from("<H", header, 2)[0]
            entry = self._bytes(start, length, f"shared xattr of /{path}")
            self._count_metadata(length)
            self.work.xattr_parses += 1
            self._shared_xattrs[xattr_id] = self._xattr_entry(entry, path)
        return self._shared_xattrs[xattr_id]

    def _xattr_entry(self, entry: bytes, path: str) -> tuple[str, bytes]:
        name_size, index = entry[0], entry[1]
        if index & XATTR_LONG_PREFIX:
            raise Unsupported(f"/{path} has an xattr with a long name prefix")
        prefix = XATTR_PREFIXES.get(index)
        if prefix is None:  # listxattr skips what it has no handler for
            raise Malformed(f"/{path} has an xattr of unknown type {index}")
        raw = bytes(entry[4 : 4 + name_size])
        acl = index in (2, 3)
        if (raw if acl else not raw) or b"\0" in raw:
            raise Malformed(f"/{path} has an xattr named {prefix!r} + {raw!r}")
        return prefix + raw.decode("utf-8", "backslashreplace"), bytes(entry[4 + name_size :])

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
        """(name, nid, type) of each entry of the directory `inode` but . and .., refused
        where the kernel's binary search (erofs_namei) could find another entry than this
        walk: names strictly sorted over the whole directory, each ending where readdir and
        lookup both end it."""
        if inode.size > MAX_ENTRIES * (DIRENT_SIZE + MAX_NAME):
            raise Malformed(f"/{path} has a {inode.size}-byte listing")
        if inode.layout not in (FLAT_PLAIN, FLAT_INLINE):
            raise Malformed(f"/{path} is a directory with a {LAYOUTS[inode.layout]} layout")
        data = self._read(inode, inode.size, f"/{path}")
        self._count_metadata(len(data))
        previous: bytes | None = None
        dots = {b".": inode.nid, b"..": parent}
        found: set[bytes] = set()
        for start in range(0, len(data), self._block):
            self.deadline.check()
            block = data[start : start + self._block]
            (first,) = struct.unpack_from("<H", block, 8)
            if first < DIRENT_SIZE or first >= len(block) or first % DIRENT_SIZE:
                raise Malformed(f"/{path} has a directory block whose names start at {first}")
            count = first // DIRENT_SIZE
            for index in range(count):
                self.work.dirents += 1
                nid, name_at, entry_type = struct.unpack_from("<QHB", block, index * DIRENT_SIZE)
                if index + 1 < count:
                    (name_end,) = struct.unpack_from("<H", block, (index + 1) * DIRENT_SIZE + 8)
                else:
                    name_end = block.find(b"\0", name_at)
                    if name_end < 0:
                        name_end = len(block)
                        self._check_name_end(inode, start + name_end, path)
                if not first <= name_at < name_end <= len(block) or name_end - name_at > MAX_NAME:
                    raise Malformed(f"/{path} has a directory entry with a bad name offset")
                raw = block[name_at:name_end]
                if b"/" in raw or b"\0" in raw:
                    raise Malformed(f"/{path} holds an impossible name {raw!r}")
                if previous is not None and raw <= previous:
                    what = "twice" if raw == previous else f"after {previous!r}: not sorted"
                    raise Malformed(f"/{path} lists {raw!r} {what}")
                previous = raw
                if raw in dots:
                    if nid != dots[raw] or entry_type != 2:
                        raise Malformed(f"/{path}'s {raw.decode()} is not its own")
                    found.add(raw)
                    continue
                yield raw.decode("utf-8", "surrogateescape"), nid, entry_type
        if found != set(dots):
            raise Malformed(f"/{path} lacks its . or .. entry")

    def _check_name_end(self, inode: _Inode, offset: int, path: str) -> None:
        """The last name of a directory ends at its size for readdir; lookup reads on to the
        end of the block (zeros past an inline tail; the disk's bytes in a plain block), so
        the byte after it must end it too."""
        if offset % self._block == 0 or inode.layout == FLAT_INLINE:
            return
        at = inode.raw * self._block + offset
        if self._bytes(at, 1, f"listing of /{path}") != b"\0":
            raise Malformed(f"/{path} has a last name that runs on past its listing")

    # -- file data ------------------------------------------------------------------------

    def _read(self, inode: _Inode, want: int, what: str) -> bytes:
        """The first `want` bytes of the inode's data."""
        return b"".join(self._chunks(inode, want, what, whole=False))

    def _chunks(self, inode: _Inode, want: int, what: str, whole: bool) -> Iterator[bytes]:
        """The first `want` bytes of the inode's data, in chunks of at most STREAM_CHUNK;
        `whole`: every extent read is checked to decode to exactly its length."""
        want = min(want, inode.size)
        if want <= 0:
            return
        if inode.layout in (FLAT_PLAIN, FLAT_INLINE):
            yield from self._flat_chunks(inode, want, what)
        elif inode.layout == CHUNK_BASED:
            raise Unsupported(f"{what} is stored in chunks (mkfs.erofs --chunksize)")
        else:
            yield from self._zmaps[inode.nid].chunks(want, whole)

    def _flat_chunks(self, inode: _Inode, want: int, what: str) -> Iterator[bytes]:
        blocks = -(-inode.size // self._block)
        whole = blocks - 1 if inode.layout == FLAT_INLINE else blocks
        from_blocks = min(want, whole * self._block)
        if from_blocks:  # an inline-only inode's block address is -1
            start = inode.raw * self._block
            self._check_range(start, from_blocks, f"data of {what}")
            for at in range(start, start + from_blocks, STREAM_CHUNK):
                self.deadline.check()
                chunk = self._data[at : min(at + STREAM_CHUNK, start + from_blocks)]
                self.work.bytes_copied += len(chunk)
                self._release(at, len(chunk))
                yield chunk
        if want > from_blocks:
            tail = inode.size - whole * self._block
            if inode.end % self._block + tail > self._block:
                raise Malformed(f"the inline data of {what} crosses a block boundary")
            chunk = self._bytes(inode.end, tail, f"inline data of {what}")[: want - from_blocks]
            self.work.bytes_copied += len(chunk)
            yield chunk


class _Zmap:
    """A compressed file's logical-cluster indexes, and its extents (the kernel's zmap.c)."""

    _inline_size: int
    _advise: int
    _bits: int

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
        if cluster_bits & ~7:  # later kernels read 4 bits of it
            raise Malformed(f"{what} has cluster bits {cluster_bits:#x}")
        big = self._advise & (ADVISE_BIG_PCLUSTER_1 | ADVISE_BIG_PCLUSTER_2)
        if big and not reader._big_pcluster:
            raise Malformed(f"{what} has big pclusters its superblock does not declare")
        self._bits = reader._blkszbits + (cluster_bits & 7)
        self._compact = inode.layout == COMPRESSED_COMPACT
        if self._compact and self._bits != reader._blkszbits:
            raise Malformed(f"{what} has compact indexes for {1 << self._bits}-byte clusters")
        if self._compact and big not in (0, ADVISE_BIG_PCLUSTER_1 | ADVISE_BIG_PCLUSTER_2):
            raise Malformed(f"{what} has compact indexes with one big-pcluster kind of two")
        if self._advise & ADVISE_INLINE_PCLUSTER and not reader._ztailpacking:
            raise Malformed(f"{what} has an inline tail its superblock does not declare")
        self.algorithms = set()
        for number in (algorithm_types & 0xF, algorithm_types >> 4):
            if not reader._algorithm_bits >> number & 1:
                raise Malformed(f"{what} is compressed with an undeclared algorithm {number}")
            self.algorithms.add(ALGORITHMS[number])
        self._algorithm = algorithm_types & 0xF
        self._indexes = header_at + 8 + (0 if self._compact else 8)
        self._count = -(-inode.size // (1 << self._bits))
        self._index_end = self._indexes_end()
        reader._check_range(self._indexes, self._index_end - self._indexes, f"indexes of {what}")
        self.region_end = self._index_end
        if self._advise & ADVISE_INLINE_PCLUSTER:
            self.region_end += self._inline_size
        self.inline = bool(self._advise & ADVISE_INLINE_PCLUSTER)
        self._last_pack: tuple[int, list[tuple[int, int]], int] | None = None
        self._tail_head: int | None = None
        self._inline_at = 0

    def _indexes_end(self) -> int:
        """Where the pack holding the last lcluster's index ends."""
        if not self._compact:
            return self._indexes + 8 * self._count
        position, shift = self._compact_position(self._count - 1)
        pack_size = (2 << shift) if shift == 2 else 32
        return position - position % pack_size + pack_size

    def _compact_split(self) -> tuple[int, int]:
        initial_4b = (32 - self._indexes % 32) // 4 % 8
        if self._advise & ADVISE_COMPACTED_2B and initial_4b < self._count:
            compacted_2b = (self._count - initial_4b) // 16 * 16
        else:
            compacted_2b = 0
        return initial_4b, compacted_2b

    def _find_tail(self) -> None:
        """The extent the last byte is in, as the kernel finds it (FINDTAIL: the lookback
        chain from the last lcluster); its stored bytes follow the indexes."""
        last_lcn = self._count - 1
        last = self._lcluster(last_lcn)
        self._inline_at = last.next_pack
        if self._inline_at + self._inline_size > self.region_end:
            raise Malformed(f"the inline tail of {self._what} is not where it belongs")
        offset = (self._inode.size - 1) & ((1 << self._bits) - 1)
        if last.type != NONHEAD and offset >= last.clusterofs:
            self._tail_head = last_lcn
        elif last.type != NONHEAD:
            self._tail_head = self._lookback(last_lcn, 1)
        else:
            self._tail_head = self._lookback(last_lcn, last.delta0)

    def _lookback(self, lcn: int, distance: int) -> int:
        """z_erofs_extent_lookback: the head lcluster `distance` and each NONHEAD's delta0
        back; refused when longer than any extent needs (mkfs.erofs points each NONHEAD at its
        head, or 2047 back where that is farther)."""
        for _ in range(MAX_LOOKBACK_STEPS):
            if not 0 < distance <= lcn:
                break
            lcn -= distance
            lcluster = self._lcluster(lcn)
            if lcluster.type != NONHEAD:
                return lcn
            distance = lcluster.delta0
        else:
            raise Malformed(f"{self._what} has a lookback chain over {MAX_LOOKBACK_STEPS} steps")
        raise Malformed(f"{self._what} has a logical cluster that belongs to no extent")

    def pclusters(self) -> Iterator[tuple[int, int]]:
        """(start block, blocks) of each extent stored outside the inode, the whole file's
        lookbacks checked on the way: linear in its lclusters."""
        for extent in self._extents(self._inode.size):
            if not extent.inline:
                blocks = -(-extent.stored // self._reader._block)
                if blocks > self._reader._max_pcluster_blocks:
                    raise Malformed(f"{self._what} has a {extent.stored}-byte pcluster")
                self._reader._check_range(extent.at, extent.stored, f"data of {self._what}")
                yield extent.at // self._reader._block, blocks

    def chunks(self, want: int, whole: bool) -> Iterator[bytes]:
        """The first `want` bytes, extent by extent, each decoded once; `whole`: each extent
        must decode to exactly its length."""
        for extent in self._extents(want):
            self._reader.work.extents += 1
            need = min(extent.end, want) - extent.start
            yield from self._decode(extent, need, whole and extent.end <= want)

    # -- indexes --------------------------------------------------------------------------

    def _lcluster(self, lcn: int) -> _Lcluster:
        if not 0 <= lcn < self._count:
            raise Malformed(f"{self._what} refers to logical cluster {lcn} of {self._count}")
        self._reader.work.lcluster_loads += 1
        if self._reader.work.lcluster_loads & 0x3FF == 0:
            self._reader.deadline.check()
        if self._compact:
            found = self._compact_lcluster(lcn)
        else:
            at = self._indexes + 8 * lcn
            advise, clusterofs, word = struct.unpack(
                "<HHI", self._reader._bytes(at, 8, f"indexes of {self._what}")
            )
            kind = advise & 3
            if kind == NONHEAD:
                found = self._nonhead(word & 0xFFFF, at + 8)
            else:
                found = self._head(kind, clusterofs, word, at + 8)
        if found.type == HEAD2:
            raise Malformed(f"{self._what} has a HEAD2 lcluster and one compressor")
        return found

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

    def _compact_position(self, lcn: int) -> tuple[int, int]:
        """Where lcluster `lcn`'s compact index is, and log2 of its amortized size."""
        initial_4b, compacted_2b = self._compact_split()
        position, index = self._indexes, lcn
        if index < initial_4b:
            return position + (index << 2), 2
        position += initial_4b * 4
        index -= initial_4b
        if index < compacted_2b:
            return position + (index << 1), 1
        return position + compacted_2b * 2 + ((index - compacted_2b) << 2), 2

    def _pack(self, pack_at: int, pack_size: int, count: int) -> tuple[list[tuple[int, int]], int]:
        """A pack of compact indexes: (type, lo) of each lcluster in it, and its block base;
        the last one decoded is kept, as reads go through a pack's lclusters in turn."""
        if self._last_pack is not None and self._last_pack[0] == pack_at:
            return self._last_pack[1], self._last_pack[2]
        pack = self._reader._bytes(pack_at, pack_size, f"indexes of {self._what}")
        value = int.from_bytes(pack[: pack_size - 4], "little")
        encodebits = (pack_size - 4) * 8 // count
        lobits = 12  # compact indexes are for 4 KiB lclusters only
        entries = []
        for _ in range(count):
            entries.append(((value >> lobits) & 3, value & ((1 << lobits) - 1)))
            value >>= encodebits
        (base,) = struct.unpack_from("<I", pack, pack_size - 4)
        self._last_pack = (pack_at, entries, base)
        return entries, base

    def _compact_lcluster(self, lcn: int) -> _Lcluster:
        position, shift = self._compact_position(lcn)
        if shift == 2:
            count = 2
        elif self._bits <= 12:
            count = 16
        else:
            raise Malformed(f"{self._what} has 2-byte indexes for large clusters")
        pack_size = count << shift
        pack_at = position - position % pack_size
        entries, base = self._pack(pack_at, pack_size, count)
        i = (position - pack_at) >> shift
        next_pack = pack_at + pack_size

        def decode(slot: int) -> tuple[int, int]:
            return entries[slot]

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
        return self._head(kind, lo, base + blocks, next_pack)

    # -- extents --------------------------------------------------------------------------

    def _extents(self, want: int) -> Iterator[_Extent]:
        """The extents holding the first `want` bytes, in order, each from a head lcluster's
        offset to the next head's (or the end). Going forwards, each NONHEAD's lookback must
        land in the extent it continues: then, by induction, the kernel's whole chain does,
        and no read follows a chain. Linear in the lclusters read."""
        bits, size = self._bits, self._inode.size
        head: tuple[int, _Lcluster] | None = None
        start = 0
        for lcn in range(self._count):
            if head is not None and lcn << bits >= want:  # the rest is not asked for
                yield self._extent(head, start, lcn << bits)
                return
            lcluster = self._lcluster(lcn)
            if lcluster.type == NONHEAD:
                if head is None:
                    raise Malformed(f"{self._what} does not start with an extent")
                if not 0 < lcluster.delta0 <= lcn - head[0]:
                    raise Malformed(f"{self._what} looks back out of its extent at {lcn}")
                if lcluster.compressed_blocks and (lcn != head[0] + 1 or head[1].type == PLAIN):
                    raise Malformed(f"{self._what} has a big-pcluster count out of place")
                continue
            if lcn == 0 and lcluster.clusterofs:
                raise Malformed(f"{self._what} does not start with an extent")
            boundary = min((lcn << bits) | lcluster.clusterofs, size)
            if head is not None and boundary > start:
                yield self._extent(head, start, boundary)
            head, start = (lcn, lcluster), boundary
        if head is not None and size > start:
            yield self._extent(head, start, size)

    def _extent(self, head: tuple[int, _Lcluster], start: int, end: int) -> _Extent:
        head_lcn, lcluster = head
        if head_lcn == self._tail_head:
            return _Extent(start, end, self._inline_at, self._inline_size, lcluster.type, True)
        blkszbits = self._reader._blkszbits
        stored = self._stored_blocks(head_lcn, lcluster) << blkszbits
        return _Extent(start, end, lcluster.pblk << blkszbits, stored, lcluster.type)

    def _stored_blocks(self, head_lcn: int, head: _Lcluster) -> int:
        one = 1 << (self._bits - self._reader._blkszbits)
        if head.type == PLAIN or not self._advise & ADVISE_BIG_PCLUSTER_1:
            return one
        if head_lcn + 1 >= self._count:
            return one
        following = self._lcluster(head_lcn + 1)
        if following.type != NONHEAD:
            return one
        if following.delta0 != 1 or not following.compressed_blocks:
            raise Malformed(f"{self._what} has a big pcluster without its block count")
        return following.compressed_blocks

    def _decode(self, extent: _Extent, size: int, whole: bool) -> Iterator[bytes]:
        """The first `size` bytes of the extent; `whole`: the extent must decode to exactly
        its length from exactly its stored bytes, as the kernel's full decompression does."""
        reader = self._reader
        block = reader._block
        if extent.stored > MAX_PCLUSTER_BYTES:
            raise Malformed(f"{self._what} has a {extent.stored}-byte pcluster")
        if extent.inline and extent.at % block + extent.stored > block:
            raise Malformed(f"the inline tail of {self._what} crosses a block boundary")
        reader._check_range(extent.at, extent.stored, f"data of {self._what}")
        raw = reader._view[extent.at : extent.at + extent.stored]
        if extent.head_type == PLAIN:
            if extent.end - extent.start > len(raw):
                raise Malformed(f"{self._what} has an uncompressed extent longer than stored")
            reader.work.bytes_copied += size
            yield bytes(raw[:size])
            return
        if ALGORITHMS[self._algorithm] not in READABLE:
            raise Unsupported(f"{self._what} is {ALGORITHMS[self._algorithm]}-compressed")
        # With 0padding the stream ends with the pcluster and must be decoded whole
        # (LZ4_decompress_safe), its leading zeros in its first block (z_erofs_fixup_insize);
        # without, it starts there and is decoded as far as the extent needs.
        skip, exact = 0, False
        if reader._zero_padding:
            first = bytes(raw[: min(block, len(raw))])
            skip = len(first) - len(first.lstrip(b"\0"))
            if skip == len(first):
                raise Malformed(f"{self._what} has an empty compressed extent")
            exact = whole
        reader.deadline.check()
        try:
            yield from self._lz4(raw[skip:], size, exact)
        except Malformed as error:
            raise Malformed(
                f"{self._what} decompresses to other than the bytes it holds ({error})"
            ) from None
        if not extent.inline:
            reader._release(extent.at, extent.stored)

    def _lz4(self, source: bytes | memoryview, size: int, exact: bool) -> Iterator[bytes]:
        """liblz4 for extents up to MAX_NATIVE_EXTENT (memory), else Python, streamed."""
        work = self._reader.work
        native = None
        if size <= MAX_NATIVE_EXTENT:
            native = lz4native.decompress(bytes(source), size, exact)
        if native is not None:
            if len(native) < size:
                raise Malformed(f"{len(native)} bytes, not {size}")
            work.bytes_decompressed += size
            for at in range(0, size, STREAM_CHUNK):
                yield native[at : at + STREAM_CHUNK]
            return
        decoder = Lz4Stream(source, size, self._reader.deadline, exact)
        for chunk in decoder.chunks():
            work.bytes_decompressed += len(chunk)
            yield chunk
        if decoder.produced < size or (exact and not decoder.finished):
            raise Malformed(f"{decoder.produced} bytes, not {size}")


class Lz4Stream:
    """An LZ4 block decoded in chunks, holding only LZ4_WINDOW bytes back: at most `limit`
    bytes; `finished` when its input ended exactly with its last sequence within the limit.
    A block that refers outside its own output is Malformed. `exact`: it must decode to exactly
    `limit` bytes under LZ4_decompress_safe's rules (the kernel's lib/lz4): the last sequence
    ends input and output together, earlier literals leave 12 bytes of output and 8 of input,
    no match ends in the last 5 bytes."""

    def __init__(
        self,
        source: bytes | memoryview,
        limit: int,
        deadline: Deadline | None = None,
        exact: bool = False,
    ):
        self._source = source
        self._limit = limit
        self._deadline = deadline
        self._exact = exact
        self.produced = 0
        self.finished = False

    def chunks(self) -> Iterator[bytes]:
        source, limit = self._source, self._limit
        out = bytearray()
        flushed = 0  # bytes of output already handed out and dropped from `out`
        at, end = 0, len(source)
        sequences = 0
        while at < end and flushed + len(out) < limit:
            sequences += 1
            if self._deadline is not None and sequences & 0xFFF == 0:
                self._deadline.check()
            token = source[at]
            at += 1
            literals, at = _lz4_length(source, at, token >> 4)
            if at + literals > end:
                raise Malformed("an LZ4 block's literals run past its end")
            out += source[at : at + literals]
            at += literals
            ending = self._exact and (flushed + len(out) > limit - 12 or at > end - 8)
            if ending and (at != end or flushed + len(out) != limit):
                raise Malformed("an LZ4 block ends otherwise than its output")
            if at == end:
                self.finished = flushed + len(out) <= limit
                break
            if flushed + len(out) >= limit:
                break
            if at + 2 > end:
                raise Malformed("an LZ4 block ends inside a match")
            distance = source[at] | source[at + 1] << 8
            at += 2
            if distance == 0 or distance > flushed + len(out):
                raise Malformed("an LZ4 block refers before its start")
            length, at = _lz4_length(source, at, token & 15)
            if self._exact and flushed + len(out) + length + 4 > limit - 5:
                raise Malformed("an LZ4 block has a match in its last 5 bytes")
            length = min(length + 4, limit - flushed - len(out))
            start = len(out) - distance
            if length <= distance:
                out += out[start : start + length]
            else:
                pattern = bytes(out[start:])
                out += (pattern * (length // distance + 1))[:length]
            if len(out) >= STREAM_CHUNK + LZ4_WINDOW:
                keep = len(out) - LZ4_WINDOW
                yield bytes(out[:keep])
                del out[:keep]
                flushed += keep
        tail = bytes(out[: max(0, limit - flushed)])
        self.produced = flushed + len(tail)
        if tail:
            yield tail


def lz4_decompress(source: bytes, limit: int) -> bytes:
    """The first `limit` bytes an LZ4 block decompresses to (fewer if it ends sooner); a block
    that refers outside its own output is Malformed."""
    return b"".join(Lz4Stream(source, limit).chunks())


def _lz4_length(source: bytes | memoryview, at: int, length: int) -> tuple[int, int]:
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
    """refusing_malformed(), and what this reader does not read in a line of its own; what
    the image put in the line (paths, names) cut to MAX_ITEM characters."""
    try:
        with refusing_malformed(path, "EROFS", "mkfs.erofs"):
            try:
                yield
            except Malformed as error:
                raise Malformed(cut(str(error), MAX_ITEM)) from None
    except Unsupported as error:
        raise BuildError(
            f"cannot check {path}: {cut(str(error), MAX_ITEM)}, which verify does not read",
            "repack it with mkfs.erofs -zlz4hc (no -Efragments, --chunksize or extra devices)",
        ) from None
