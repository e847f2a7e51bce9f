"""A squashfs 4.0 image's metadata, read without mounting, unpacking or root.

Reads the superblock (with the compressor's options), the id, inode and directory tables, the
xattr tables and the export table, and file contents, as the kernel does (Linux fs/squashfs/,
Documentation/filesystems/squashfs.rst, squashfs-tools' squashfs_fs.h). Everything in the image
is hostile: every offset is checked against the image, every count and size is bounded, and
anything malformed is one BuildError naming the image.

The reader walks each directory by its listing; the kernel finds a name by lookup and lists a
directory by readdir. Wherever those two could read different bytes, or the kernel would refuse
what the reader takes, the image is refused: nothing an Alloy sysext needs is lost (mksquashfs
never writes what is refused below for a tree of a few files).

Kernel paths the reader follows (same bytes, same arithmetic):
- super.c squashfs_fill_super: magic, version 4.0, bytes_used <= the device (a loop device is
  the file, rounded down to 512 bytes), block_size == 1 << block_log, 4 KiB .. 1 MiB, root
  inode offset <= 8192, the table chain (xattr ids -> ids -> export -> fragments ->
  directories, each table below the next, the inode table below the directory table).
- id.c squashfs_read_id_index_table, fragment.c squashfs_read_fragment_index_table, export.c
  squashfs_read_inode_lookup_table, xattr_id.c squashfs_read_xattr_id_table: the index of
  each table fits below the next, its entries strictly ascend by at most a metadata block, the
  xattr id index ends exactly at bytes_used; a table the kernel refuses fails the mount, so the
  reader refuses it.
- decompressor.c squashfs_decompressor_setup: the flags the kernel honours are COMP_OPT alone
  (the options block, uncompressed); NO_XATTRS and the others are not read by the kernel, which
  goes by xattr_id_table_start: so does the reader. xz_wrapper.c: the dictionary size is 2^n or
  2^n + 2^(n+1). lz4_wrapper.c: an options block of version 1 (LZ4_LEGACY) is required, and each
  block is one LZ4_decompress_safe into the block's capacity (liblz4, build/read/lz4native.py).
  gzip (zlib streams), xz, zstd and lz4 are read; lzo and lzma are refused in one line.
- cache.c squashfs_read_metadata: a read at an offset at or past its block's length fails;
  reading to a block's end moves to the next block. block.c squashfs_read_data: a metadata
  block stores at most 8192 bytes and gives at most 8192.
- inode.c squashfs_read_inode / squashfs_new_inode: every field; the mode holds no type bits
  (older kernels OR the inode type into them, newer ones refuse the inode: mksquashfs writes
  none); basic files have nlink 1; uid/gid indexes below the id count
  (id.c squashfs_get_id); an inode naming a fragment is looked up when read (fragment.c
  squashfs_frag_lookup: index below the superblock's count, size word below 1 << 25).
- inode.c squashfs_iget: iget_locked() caches inodes by NUMBER: each number must name one inode
  reference (else lookup returns whichever came first, e.g. a directory for a file's name); the
  number must be 1 .. the superblock's inode count, and the directory entry's number must be
  the inode's own.
- dir.c squashfs_readdir, namei.c squashfs_lookup: headers of at most 256 entries, names of at
  most 256 bytes, entry number = header base + (short) delta, inode reference = header
  start_block << 16 | entry offset; the listing must end exactly at i_size - 3.
- namei.c squashfs_lookup stops at the first entry whose first byte is above the name's: names
  must strictly ascend by bytes (as mksquashfs sorts them), so lookup finds each listed name.
- xattr.c squashfs_listxattr / squashfs_xattr_get, xattr_id.c squashfs_xattr_lookup: the
  key/value stream, out-of-line values (an 8-byte reference); getxattr takes the first match,
  so a name twice on one inode is refused.
- symlink.c: the target is i_size bytes after the inode (i_size <= PAGE_SIZE, checked as 4096).
- block.c squashfs_read_data: each block is decompressed or not by its own bit (1 << 15 in a
  metadata block's header, 1 << 24 in a data or fragment block's size word); the superblock's
  NOI/NOD/NOF/NOX flags are never read. The reader counts the blocks stored compressed
  (compressed_blocks) so verify names an image "none" by its blocks, not by its flags.
- file.c squashfs_read_folio / file_cache.c / file_direct.c: block i's position is start plus
  the stored sizes of blocks 0 .. i-1; each block must give exactly the bytes the file needs
  there (file_direct.c fails otherwise, file_cache.c would pad with zeros); the tail is in the
  fragment at its offset.

Kernel paths the reader refuses (one line, Malformed):
- namei.c squashfs_lookup -> get_dir_index_using_name, dir.c squashfs_readdir ->
  get_dir_index_using_f_pos: refused unless i_count == 0. The index makes lookup jump to a
  start_block relative to the whole directory table, not to the listing the reader walks.
- listings over MAX_LISTING_BYTES (mksquashfs indexes any over 8 KiB; without an index the
  kernel's lookup scans the listing for each name); xattrs over XATTR_LIST_MAX on one inode,
  or over MAX_METADATA_BYTES summed entry by entry (what listxattr/getxattr would read).
- listings not strictly ascending by bytes; a name twice; "." or ".."; a "/" or NUL in a name.
- an inode number reached by two inode references (or equal to a directory's), 0, or above the
  superblock's inode count; a directory reached twice; nlink other than the names the walk
  found (directories: 2 + subdirectories; a basic file always shows 1); nlink 0.
- xattr ids on anything but regular files and directories (security.selinux on an SELinux
  build host); an xattr of unknown type bits; sparse blocks
  (squashfs_readpage_sparse: an Alloy binary has none, and an LREG sparse count != 0); blocks
  or fragments outside the data area; a size word with bits above 1 << 24 (squashfs_block_size
  -EIO); a fragment on a file whose size is a whole number of blocks; a fragment tail past its
  fragment block; symlink targets empty, over 4096 bytes, or holding a NUL (readlink stops at
  it); an export table entry (export.c squashfs_inode_lookup, NFS handles) naming another
  inode than the walk found for that number; block and metadata streams that do not end where
  they should (trailing or missing bytes).

Not modelled, where the kernel can only fail where the reader reads (a read error, never other
bytes): xz_wrapper.c's preallocated dictionary (a stream asking more fails in the kernel),
zstd_wrapper.c's window; readdir's ".." inode number (the directory's parent field) is not
compared, the walk's names are.

Bounds (work counted in `Work`, for tests): one deadline (READ_SECONDS, a monotonic clock,
injectable) covers the whole static read (construction and nodes(); head() and sha256() start
their own, longer by what they may decompress); images over MAX_IMAGE_BYTES are refused before
reading; each metadata block is decompressed at most once and at most MAX_METADATA_BYTES in
all; each inode is parsed once per reference and at most MAX_METADATA_BYTES of inodes, listings
and xattrs are parsed in all; each xattr id is parsed once; file contents are decompressed block
by block, never more than the caller's limit (verify gives --max-binary-size). So the work is
at most about 2 x MAX_METADATA_BYTES plus the content asked for, whatever counts the image
claims.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import stat
import struct
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from build.core.errors import BuildError
from build.core.safeio import Deadline, Malformed, Refused, map_readonly, refusing_malformed
from build.read import lz4native

MAGIC = 0x73717368
SUPERBLOCK_SIZE = 96
METADATA_SIZE = 8192
NO_TABLE = 0xFFFFFFFFFFFFFFFF
NO_XATTR = 0xFFFFFFFF
NO_FRAGMENT = 0xFFFFFFFF
COMP_OPT_FLAG = 0x400
# Superblock flags mksquashfs sets for -noI, -noD, -noF, -noX (squashfs_fs.h NOI, NOD, NOF, NOX;
# -noI also stores the id table, which no flag of its own records then). The kernel reads none
# of them (super.c prints two under TRACE): each block's own bit says whether it is compressed.
STORED_FLAGS = {0x1: "inodes", 0x2: "data", 0x8: "fragments", 0x100: "xattrs"}
DATA_UNCOMPRESSED = 1 << 24
NAME_MAX = 256  # SQUASHFS_NAME_LEN
DIR_COUNT_MAX = 256  # SQUASHFS_DIR_COUNT
PAGE_SIZE = 4096

# Bounds far above what an Alloy sysext needs (a dozen entries, a few KiB of metadata), far
# below what hurts.
MAX_IMAGE_BYTES = 8 << 30  # a 4 GiB binary (--max-binary-size's default) stored uncompressed
MAX_FILE_BYTES = 1 << 40  # a file's i_size; what is read of it is the caller's limit
MAX_ENTRIES = 10_000
MAX_DEPTH = 32
MAX_METADATA_BYTES = 8 << 20  # decompressed, and again parsed, over the whole read
MAX_XATTRS = 64  # per inode
MAX_XATTR_VALUE = 64 << 10
MAX_XATTR_LIST = 64 << 10  # XATTR_LIST_MAX: listxattr fails on more names (and so do values)
# mksquashfs indexes any listing over 8 KiB (refused); the kernel's lookup scans an unindexed
# listing from its start for every name, so a longer one costs the kernel view n^2.
MAX_LISTING_BYTES = 16 << 10
# The hints of what a valid image may hold and verify still refuses (safeio.Refused).
_NO_SPARSE = (
    "an Alloy binary needs no sparse blocks: pack it as this tool does (mksquashfs -no-sparse)"
)
_SMALL_LISTINGS = (
    "an Alloy sysext's directories hold a few entries (mksquashfs indexes listings over 8 KiB, "
    "which verify refuses): do not install it"
)
MAX_SYMLINK = PAGE_SIZE
READ_SECONDS = 8.0  # construction and nodes(); head() and sha256() each start their own
CONTENT_SECONDS_PER_GIB = 60.0  # and add this per GiB they may decompress

COMPRESSIONS = {1: "gzip", 2: "lzma", 3: "lzo", 4: "xz", 5: "lz4", 6: "zstd"}
# What the reader decodes: every compressor Flatcar's kernels mount but lzo (Python has no
# decoder for it). lz4 by the system's liblz4, as the EROFS reader.
READABLE = ("gzip", "xz", "zstd", "lz4")
# Why the others are refused: (what, what to do).
UNREADABLE = {
    "lzo": (
        "verify cannot decode lzo (Flatcar's kernels mount it)",
        "repack it with -comp zstd, xz, gzip or lz4 to have it checked",
    ),
    "lzma": (
        "no Linux kernel mounts squashfs lzma (it was never merged), so no host merges it",
        "repack it with -comp xz or -comp zstd",
    ),
}
LZ4_LEGACY = 1  # lz4_wrapper.c: the only LZ4 version the kernel takes in the options block
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
    # What the flags say is stored uncompressed (STORED_FLAGS' names, in their order): only
    # said; the blocks' own bits are what the kernel and the reader go by.
    stored: tuple[str, ...] = ()


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


@dataclass
class Work:
    """What a read did, for tests to bound (not wall time)."""

    metadata_blocks: int = 0  # decompressed (each at most once)
    metadata_bytes: int = 0  # they gave
    parsed_bytes: int = 0  # of inodes, listings and xattrs
    inodes_parsed: int = 0
    xattr_parses: int = 0  # one per xattr id
    data_blocks: int = 0  # file blocks and fragments decompressed
    data_bytes: int = 0  # they gave


class _Budget:
    """The read's one deadline and its metadata caps."""

    def __init__(self, clock: Callable[[], float], seconds: float) -> None:
        self._deadline = Deadline(seconds, clock)
        self.work = Work()

    def restart(self, seconds: float) -> None:
        """A new deadline, for a read the caller starts later (a file's content)."""
        self._deadline.restart(seconds)

    def check(self) -> None:
        self._deadline.check()

    def room(self, size: int) -> None:
        """Refuses before parsing `size` bytes more would pass the cap."""
        if self.work.parsed_bytes + size > MAX_METADATA_BYTES:
            raise Malformed(f"more than {MAX_METADATA_BYTES >> 20} MiB of metadata to parse")

    def parsed(self, size: int) -> None:
        self.work.parsed_bytes += size
        if self.work.parsed_bytes > MAX_METADATA_BYTES:
            raise Malformed(f"more than {MAX_METADATA_BYTES >> 20} MiB of metadata to parse")


class SquashfsReader:
    def __init__(
        self,
        path: Path,
        clock: Callable[[], float] = time.monotonic,
        seconds: float = READ_SECONDS,
    ) -> None:
        self.path = path
        self._budget = _Budget(clock, seconds)
        self.work = self._budget.work
        self._blocks: dict[int, tuple[bytes, int]] = {}
        self._inodes: dict[int, Node] = {}  # inode reference -> its inode (path "")
        self._xattr_sets: dict[int, dict[str, bytes]] = {}  # xattr id -> its xattrs
        self._fragment_cache: tuple[int, bytes] | None = None
        self._refs: dict[int, int] = {}  # inode number -> the inode reference it names
        self._xattrs_shown = 0  # bytes of xattrs over every entry, shared ones each time
        # Blocks read stored compressed: metadata blocks (each read once), data blocks (per
        # file: a count, as a block list may be megabytes), fragments (by index).
        self._compressed = 0
        self._compressed_fragments: set[int] = set()
        with refusing_malformed(self.path, "squashfs", "mksquashfs"):
            size = _size_of(path)
            if size > MAX_IMAGE_BYTES:  # read at call time: tests lower it
                raise Malformed(
                    f"{size} bytes; verify reads images of at most {MAX_IMAGE_BYTES} bytes"
                )
            self._data = map_readonly(path)
            self.superblock = self._read_superblock()
            self._ids = self._read_ids()

    @property
    def compressed_blocks(self) -> int:
        """How many of the blocks read so far (metadata, data and fragment blocks: after
        nodes(), every one the image's entries use; a data block once per file using it) are
        stored compressed, by their own bits, whatever the superblock's flags say."""
        return self._compressed + len(self._compressed_fragments)

    def nodes(self) -> list[Node]:
        """Every entry, parents before children; bounded in number, depth and bytes read."""
        with refusing_malformed(self.path, "squashfs", "mksquashfs"):
            nodes = list(self._walk())
            self._check_links(nodes)
            self._check_exports(nodes)
            return nodes

    def head(self, node: Node, size: int) -> bytes:
        """The first `size` bytes of a regular file."""
        self._regular(node)
        wanted = min(size, node.size)
        self._budget.restart(READ_SECONDS + CONTENT_SECONDS_PER_GIB * wanted / (1 << 30))
        with refusing_malformed(self.path, "squashfs", "mksquashfs"):
            out = bytearray()
            for chunk in self._content(node, wanted):
                out += chunk
            return bytes(out[:size])

    def sha256(self, node: Node, limit: int) -> str:
        """The sha256 of a regular file's whole content, read block by block; refused when the
        file is larger than `limit` bytes. Its deadline grows with the size."""
        self._regular(node)
        if node.size > limit:
            raise BuildError(
                f"{_at(node.path)} in {self.path} is {node.size} bytes, more than {limit}",
                "raise --max-binary-size if the binary really is that large",
            )
        self._budget.restart(READ_SECONDS + CONTENT_SECONDS_PER_GIB * node.size / (1 << 30))
        digest = hashlib.sha256()
        with refusing_malformed(self.path, "squashfs", "mksquashfs"):
            for chunk in self._content(node, node.size):
                digest.update(chunk)
        return digest.hexdigest()

    def _regular(self, node: Node) -> None:
        if node.kind != "file" or node.location is None:
            raise BuildError(f"{_at(node.path)} in {self.path} is not a regular file")

    # -- superblock and tables ------------------------------------------------------------

    def _read_superblock(self) -> Superblock:
        if len(self._data) < SUPERBLOCK_SIZE:
            raise Malformed(f"{len(self._data)} bytes, too short for a superblock")
        (
            magic,
            inodes,
            _,
            block_size,
            fragments,
            comp_id,
            block_log,
            flags,
            no_ids,
            major,
            minor,
        ) = struct.unpack_from("<IIIIIHHHHHH", self._data, 0)
        if magic != MAGIC:
            raise Malformed("no squashfs magic at its start")
        if (major, minor) != (4, 0):
            raise Malformed(f"squashfs version {major}.{minor}, not 4.0")
        if not PAGE_SIZE <= block_size <= 1 << 20 or block_size != 1 << block_log:
            raise Malformed(f"block size {block_size} (log {block_log}) is not valid")
        (
            self._root,
            bytes_used,
            self._id_table,
            self._xattr_table,
            self._inode_table,
            self._dir_table,
            self._fragment_table,
            self._lookup_table,
        ) = struct.unpack_from("<8Q", self._data, 32)
        device = len(self._data) & ~511
        if bytes_used > device:
            raise Malformed(f"it says {bytes_used} bytes but holds {len(self._data)}: truncated")
        self._end = bytes_used
        self._inode_count = inodes
        self._fragments = fragments
        self._no_ids = no_ids
        self._block_size = block_size
        if self._root & 0xFFFF >= METADATA_SIZE:
            raise Malformed("its root inode reference is out of range")
        self._compression = compression = self._compressor(comp_id)
        filters = self._read_options(flags)
        self._check_table_chain()
        stored = tuple(name for bit, name in STORED_FLAGS.items() if flags & bit)
        return Superblock(compression, block_size, filters, stored)

    def _compressor(self, comp_id: int) -> str:
        """The compressor's name, where the reader decodes it; else one line saying why not."""
        compression = COMPRESSIONS.get(comp_id)
        if compression is None:
            raise Malformed(f"unknown compressor id {comp_id}")
        if compression in UNREADABLE:
            why, hint = UNREADABLE[compression]
            raise BuildError(
                f"cannot check {self.path}: it is {compression}-compressed: {why}", hint
            )
        if compression == "lz4" and not lz4native.available():
            raise BuildError(
                f"cannot check {self.path}: it is lz4-compressed, and reading it needs liblz4 "
                f"{lz4native.MIN_VERSION // 10000}.{lz4native.MIN_VERSION // 100 % 100} or newer",
                "install liblz4-1 (apt-get install liblz4-1)",
            )
        return compression

    def _read_options(self, flags: int) -> tuple[str, ...]:
        """The compressor's options block, where the flags say there is one (the data starts
        after it): xz's BCJ filters; lz4's version."""
        self._data_start = SUPERBLOCK_SIZE
        options = None
        if flags & COMP_OPT_FLAG:
            options, self._data_start = self._metadata_block(SUPERBLOCK_SIZE, compressed_ok=False)
        if self._compression == "lz4":
            _check_lz4_options(options)
        return _xz_filters(options) if self._compression == "xz" and options is not None else ()

    def _check_table_chain(self) -> None:
        """super.c's order: each table's index fits below the table after it."""
        next_table = self._end
        self._xattr_ids: list[int] = []  # positions of the xattr id blocks
        self._xattr_count = 0
        if self._xattr_table != NO_TABLE:
            self._xattr_kv, self._xattr_count, _ = struct.unpack(
                "<QII", self._bytes(self._xattr_table, 16, "xattr table")
            )
            if self._xattr_count == 0:
                raise Malformed("its xattr table holds no ids")
            length = 8 * _blocks_for(self._xattr_count, 16)
            if self._xattr_table + 16 + length != self._end:
                raise Malformed("its xattr id index does not end where the image ends")
            self._xattr_ids = self._table_index(
                self._xattr_table + 16, self._xattr_count, 16, self._end, "xattr id"
            )
            if self._xattr_kv >= self._xattr_ids[0]:
                raise Malformed("its xattr values do not come before their index")
            next_table = self._xattr_kv
        self._id_index = self._table_index(self._id_table, self._no_ids, 4, next_table, "id")
        next_table = self._id_index[0]
        self._lookup_index: list[int] = []
        if self._lookup_table != NO_TABLE:
            self._lookup_index = self._table_index(
                self._lookup_table, self._inode_count, 8, next_table, "export"
            )
            next_table = self._lookup_index[0]
        self._fragment_index: list[int] = []
        if self._fragments:
            self._fragment_index = self._table_index(
                self._fragment_table, self._fragments, 16, next_table, "fragment"
            )
            next_table = self._fragment_index[0]
        if self._dir_table > next_table:
            raise Malformed("its directory table overlaps the tables after it")
        if not self._data_start <= self._inode_table < self._dir_table:
            raise Malformed("its inode table does not come before its directory table")

    def _table_index(
        self, start: int, count: int, row: int, next_table: int, what: str
    ) -> list[int]:
        """The positions of a table's metadata blocks, as the kernel checks them at mount."""
        if count == 0:
            raise Malformed(f"its {what} table is empty")
        blocks = _blocks_for(count, row)
        if start + 8 * blocks > next_table:
            raise Malformed(f"its {what} table index runs into the table after it")
        index = list(struct.unpack(f"<{blocks}Q", self._bytes(start, 8 * blocks, what)))
        for here, after in zip(index, [*index[1:], start], strict=True):
            if not here < after <= here + METADATA_SIZE + 2:
                raise Malformed(f"its {what} table index is out of order")
        return index

    def _row(self, index: list[int], number: int, row: int, limit: int) -> bytes:
        block, offset = divmod(number * row, METADATA_SIZE)
        return _Cursor(self, index[block], offset, limit).take(row)

    def _read_ids(self) -> list[int]:
        return [
            struct.unpack("<I", self._row(self._id_index, n, 4, self._id_table))[0]
            for n in range(min(self._no_ids, MAX_ENTRIES))
        ]

    # -- metadata blocks ------------------------------------------------------------------

    def _bytes(self, start: int, size: int, what: str) -> bytes:
        if start < 0 or size < 0 or start + size > self._end:
            raise Malformed(f"its {what} at byte {start} runs past its end")
        return self._data[start : start + size]

    def _metadata_block(self, position: int, compressed_ok: bool = True) -> tuple[bytes, int]:
        """The decompressed metadata block at `position` and where the next one starts."""
        cached = self._blocks.get(position)
        if cached is not None:
            return cached
        self._budget.check()
        (word,) = struct.unpack("<H", self._bytes(position, 2, "metadata block header"))
        size = word & 0x7FFF
        if size > METADATA_SIZE:
            raise Malformed(f"the metadata block at byte {position} stores {size} bytes")
        raw = self._bytes(position + 2, size, "metadata block")
        if word & 0x8000:
            data = bytes(raw)
        elif not compressed_ok:
            raise Malformed(f"the metadata block at byte {position} is compressed")
        else:
            data = self._decompress(raw, METADATA_SIZE)
            self._compressed += 1
        if not data:
            raise Malformed(f"the metadata block at byte {position} is empty")
        work = self.work
        work.metadata_blocks += 1
        work.metadata_bytes += len(data)
        if work.metadata_bytes > MAX_METADATA_BYTES:
            raise Malformed(f"more than {MAX_METADATA_BYTES >> 20} MiB of metadata")
        self._blocks[position] = (data, position + 2 + size)
        return self._blocks[position]

    def _decompress(self, raw: bytes, limit: int) -> bytes:
        """The whole of one compressed stream, at most `limit` bytes out; a stream that would
        give more, ends early or is followed by other bytes is malformed."""
        try:
            if self._compression == "gzip":
                unzip = zlib.decompressobj()
                data = unzip.decompress(raw, limit + 1)
                complete = unzip.eof and not unzip.unused_data and not unzip.unconsumed_tail
            elif self._compression == "xz":
                unxz = lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=64 << 20)
                data = unxz.decompress(raw, limit + 1)
                complete = unxz.eof and not unxz.unused_data
            elif self._compression == "lz4":
                # liblz4 checks the block is whole and stops at `limit` (None: checked above).
                data, complete = lz4native.decompress_block(bytes(raw), limit) or b"", True
            else:
                data, complete = _zstd_decompress(raw, limit, max(self._block_size, METADATA_SIZE))
        except (zlib.error, lzma.LZMAError) as error:
            raise Malformed(f"a {self._compression} block does not decompress: {error}") from None
        if len(data) > limit:
            raise Malformed(f"a {self._compression} block decompresses to more than {limit} bytes")
        if not complete:
            raise Malformed(f"a {self._compression} block is cut short or has bytes after it")
        return data

    # -- inodes ---------------------------------------------------------------------------

    def _inode(self, ref: int, path: str) -> Node:
        cached = self._inodes.get(ref)
        if cached is None:
            cached = self._read_inode(ref, path)
            self._inodes[ref] = cached
        return replace(cached, path=path)

    def _read_inode(self, ref: int, path: str) -> Node:
        self.work.inodes_parsed += 1
        cursor = _Cursor(self, self._inode_table + (ref >> 16), ref & 0xFFFF, self._dir_table)
        take = cursor.take

        inode_type, mode, uid_index, gid_index, _, number = struct.unpack("<HHHHII", take(16))
        extended = inode_type > 7
        kind = KINDS.get(inode_type - 7 if extended else inode_type)
        if kind is None:
            raise Malformed(f"{_at(path)} has inode type {inode_type}")
        if stat.S_IFMT(mode):  # kernels OR the type in, or (since 6.x) refuse the inode
            raise Malformed(f"{_at(path)} is a {kind} whose mode holds type bits ({mode:o})")
        if uid_index >= self._no_ids or gid_index >= self._no_ids:
            raise Malformed(f"{_at(path)} has an owner index past the id table")
        if uid_index >= len(self._ids) or gid_index >= len(self._ids):
            raise Malformed(f"{_at(path)} has an owner index past {MAX_ENTRIES}")
        if not 1 <= number <= self._inode_count:
            raise Malformed(
                f"{_at(path)} has inode number {number} (the image has {self._inode_count})"
            )
        nlink, xattr, fields = self._kind_fields(kind, take, extended, path)
        if nlink == 0:
            raise Malformed(f"{_at(path)} has no links")
        if xattr != NO_XATTR and kind not in ("file", "directory"):
            raise Malformed(
                f"{_at(path)} is a {kind} with xattrs (files and directories carry them)"
            )
        self._budget.parsed(cursor.taken)
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

    def _kind_fields(
        self, kind: str, take: Callable[[int], bytes], extended: bool, path: str
    ) -> tuple[int, int, dict]:
        """What the inode of `kind` holds after the common header: its link count, its xattr
        index, and the Node fields of its kind."""
        xattr = NO_XATTR
        nlink = 1
        fields: dict = {}
        if kind == "directory":
            if extended:
                nlink, size, start, _, index_count, dir_offset, xattr = struct.unpack(
                    "<IIIIHHI", take(24)
                )
                if index_count:
                    raise Refused(
                        f"{_at(path)} has a directory index (the kernel's lookup follows it, "
                        "not the listing)",
                        _SMALL_LISTINGS,
                    )
            else:
                start, nlink, size, dir_offset, _ = struct.unpack("<IIHHI", take(16))
            fields["location"] = (start, (), size, dir_offset)
        elif kind == "file":
            fields.update(self._file_fields(take, extended, path))
            nlink, xattr = fields.pop("nlink"), fields.pop("xattr")
        elif kind == "symlink":
            nlink, target_size = struct.unpack("<II", take(8))
            if not 0 < target_size < MAX_SYMLINK:  # page_get_link keeps 4095 bytes
                raise Malformed(f"{_at(path)} is a symlink with a {target_size}-byte target")
            target = take(target_size)
            if b"\0" in target:
                raise Malformed(f"{_at(path)} is a symlink whose target holds a NUL")
            fields["target"] = target.decode("utf-8", "surrogateescape")
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
        return nlink, xattr, fields

    def _file_fields(self, take: Callable[[int], bytes], extended: bool, path: str) -> dict:
        xattr = NO_XATTR
        nlink = 1
        if extended:
            start, size, sparse, nlink, fragment, frag_offset, xattr = struct.unpack(
                "<QQQIIII", take(40)
            )
            if sparse:
                raise Refused(f"{_at(path)} is a sparse file", _NO_SPARSE)
        else:
            start, fragment, frag_offset, size = struct.unpack("<IIII", take(16))
        if size > MAX_FILE_BYTES:
            raise Malformed(f"{_at(path)} claims {size} bytes")
        block_size = self._block_size
        whole, tail = divmod(size, block_size)
        if fragment == NO_FRAGMENT:
            count = whole + (1 if tail else 0)
        elif not tail:
            raise Malformed(f"{_at(path)} names a fragment but has no tail to put in it")
        else:
            count = whole
            self._fragment_entry(fragment, path)  # squashfs_read_inode looks it up
        room = self._inode_table - start
        if count and (start < self._data_start or count > room):
            raise Malformed(f"{_at(path)} claims {size} bytes, more than the image could hold")
        self._budget.room(4 * count)
        blocks = struct.unpack(f"<{count}I", take(4 * count))
        stored = 0
        for word in blocks:
            if not word & DATA_UNCOMPRESSED:
                self._compressed += 1
            size_of = word & ~DATA_UNCOMPRESSED
            if word >> 25:
                raise Malformed(f"{_at(path)} has a block size word {word:#x}")
            if size_of == 0:
                raise Refused(f"{_at(path)} has a sparse block", _NO_SPARSE)
            if size_of > block_size:
                raise Malformed(f"{_at(path)} has a {size_of}-byte data block")
            stored += size_of
        if stored > room:
            raise Malformed(f"{_at(path)}'s blocks run past the data area")
        return {
            "location": (start, blocks, fragment, frag_offset),
            "size": size,
            "nlink": nlink,
            "xattr": xattr,
        }

    # -- directories ----------------------------------------------------------------------

    def _walk(self) -> Iterator[Node]:
        root = self._inode(self._root, "")
        if root.kind != "directory":
            raise Malformed("its root is not a directory")
        refs = self._refs = {root.inode: self._root}  # inode number -> the one reference
        directories = {self._root}
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
                known = refs.setdefault(number, ref)
                if known != ref:
                    raise Malformed(
                        f"{_at(path)} has inode number {number}, which names another inode"
                    )
                node = self._inode(ref, path)
                if node.inode != number:
                    raise Malformed(f"{_at(path)}: its directory entry and inode disagree")
                if KINDS.get(entry_type) != node.kind:
                    raise Malformed(f"{_at(path)}: its directory entry says another type")
                if node.kind == "directory":
                    if ref in directories:
                        raise Malformed(f"{_at(path)} is a directory reached twice (a loop)")
                    directories.add(ref)
                    children.append((node, depth + 1))
                self._xattrs_shown += sum(len(k) + len(v) for k, v in node.xattrs.items())
                if self._xattrs_shown > MAX_METADATA_BYTES:
                    raise Malformed(
                        f"more than {MAX_METADATA_BYTES >> 20} MiB of xattrs, counted on each "
                        "entry as the kernel lists them"
                    )
                yield node
            pending.extend(reversed(children))

    def _listing(self, directory: Node) -> Iterator[tuple[str, int, int, int]]:
        """(name, inode reference, inode number, type) of each entry of `directory`."""
        assert directory.location is not None
        start, _, size, offset = directory.location
        if size < 3:
            raise Malformed(f"{_at(directory.path)} has a directory size of {size}")
        if size - 3 > MAX_LISTING_BYTES:
            raise Refused(
                f"{_at(directory.path)} has a {size - 3}-byte listing, over "
                f"{MAX_LISTING_BYTES >> 10} KiB with no index (mksquashfs would index it)",
                _SMALL_LISTINGS,
            )
        cursor = _Cursor(self, self._dir_table + start, offset, self._end)
        left = size - 3
        previous = b""
        while left > 0:
            self._budget.check()
            count, inode_block, base = struct.unpack("<III", cursor.take(12))
            left -= 12
            if count >= DIR_COUNT_MAX:
                raise Malformed(
                    f"{_at(directory.path)} has a listing header of {count + 1} entries"
                )
            for _ in range(count + 1):
                offset_in_block, delta, entry_type, name_size = struct.unpack(
                    "<HhHH", cursor.take(8)
                )
                if name_size >= NAME_MAX:
                    raise Malformed(f"{_at(directory.path)} has a {name_size + 1}-byte name")
                raw = cursor.take(name_size + 1)
                left -= 8 + name_size + 1
                if left < 0:
                    raise Malformed(f"{_at(directory.path)}'s listing runs past its size")
                if raw in (b".", b"..") or b"/" in raw or b"\0" in raw:
                    raise Malformed(f"{_at(directory.path)} holds an impossible name {_cut(raw)}")
                if raw <= previous:
                    raise Malformed(
                        f"{_at(directory.path)}'s listing is not sorted ({_cut(raw)} after "
                        f"{_cut(previous)}): the kernel's lookup would miss names"
                    )
                previous = raw
                ref = (inode_block << 16) | offset_in_block
                number = (base + delta) & 0xFFFFFFFF
                yield raw.decode("utf-8", "surrogateescape"), ref, number, entry_type
        self._budget.parsed(cursor.taken)

    def _check_links(self, nodes: list[Node]) -> None:
        """nlink as the kernel shows it must count the names the walk found."""
        names = Counter(node.inode for node in nodes if node.kind != "directory")
        subdirs = Counter(
            node.path.rpartition("/")[0] for node in nodes if node.kind == "directory" and node.path
        )
        for node in nodes:
            want = 2 + subdirs[node.path] if node.kind == "directory" else names[node.inode]
            if node.nlink != want:
                raise Malformed(f"{_at(node.path)} has nlink {node.nlink}, but {want} names")

    def _check_exports(self, nodes: list[Node]) -> None:
        """The export table (NFS handles, open_by_handle_at) must name the inodes the walk
        found."""
        if not self._lookup_index:
            return
        for node in nodes:
            self._budget.check()
            row = self._row(self._lookup_index, node.inode - 1, 8, self._lookup_table)
            if struct.unpack("<Q", row)[0] != self._refs[node.inode]:
                raise Malformed(f"{_at(node.path)}: the export table names another inode")

    # -- xattrs ---------------------------------------------------------------------------

    def _xattrs(self, index: int, path: str) -> dict[str, bytes]:
        if index == NO_XATTR:
            return {}
        cached = self._xattr_sets.get(index)
        if cached is None:
            cached = self._read_xattrs(index, path)
            self._xattr_sets[index] = cached
        return cached  # one dict for every inode sharing the id: nothing changes it

    def _read_xattrs(self, index: int, path: str) -> dict[str, bytes]:
        if index >= self._xattr_count:
            raise Malformed(f"{_at(path)} has an xattr index past the xattr table")
        self.work.xattr_parses += 1
        ref, count, _ = struct.unpack("<QII", self._row(self._xattr_ids, index, 16, self._end))
        if count > MAX_XATTRS:
            raise Malformed(f"{_at(path)} has {count} xattrs")
        limit = self._xattr_ids[0]
        cursor = _Cursor(self, self._xattr_kv + (ref >> 16), ref & 0xFFFF, limit)
        xattrs: dict[str, bytes] = {}
        names_size = values_size = 0
        for _ in range(count):
            self._budget.check()
            xtype, name_size = struct.unpack("<HH", cursor.take(4))
            prefix = XATTR_PREFIXES.get(xtype & 0xFF)
            if prefix is None or xtype & ~(0xFF | XATTR_VALUE_OUT_OF_LINE):
                raise Malformed(f"{_at(path)} has an xattr of unknown type {xtype}")
            raw_name = cursor.take(name_size)
            if not raw_name or b"\0" in raw_name:
                raise Malformed(f"{_at(path)} has an xattr with an empty name or a NUL in it")
            name = prefix + raw_name.decode("utf-8", "backslashreplace")
            (value_size,) = struct.unpack("<I", cursor.take(4))
            if value_size > MAX_XATTR_VALUE:
                raise Malformed(f"{_at(path)} has a {value_size}-byte xattr")
            value = cursor.take(value_size)
            if xtype & XATTR_VALUE_OUT_OF_LINE:
                if value_size != 8:
                    raise Malformed(f"{_at(path)} has a malformed xattr reference")
                (value_ref,) = struct.unpack("<Q", value)
                out_of_line = _Cursor(
                    self, self._xattr_kv + (value_ref >> 16), value_ref & 0xFFFF, limit
                )
                (size,) = struct.unpack("<I", out_of_line.take(4))
                if size > MAX_XATTR_VALUE:
                    raise Malformed(f"{_at(path)} has a {size}-byte xattr")
                value = out_of_line.take(size)
                self._budget.parsed(out_of_line.taken)
            if name in xattrs:
                raise Malformed(f"{_at(path)} has the xattr {name} twice")
            xattrs[name] = value
            names_size += len(name) + 1
            values_size += len(value)
            if names_size > MAX_XATTR_LIST or values_size > MAX_XATTR_LIST:
                raise Malformed(f"{_at(path)} has xattrs over {MAX_XATTR_LIST >> 10} KiB")
        self._budget.parsed(cursor.taken)
        return xattrs

    # -- file data ------------------------------------------------------------------------

    def _content(self, node: Node, want: int) -> Iterator[bytes]:
        """The file's first `want` bytes (at most its size), block by block."""
        assert node.location is not None
        start, blocks, fragment, frag_offset = node.location
        block_size = self._block_size
        position = start
        done = 0
        for word in blocks:
            if done >= want:
                return
            self._budget.check()
            stored = word & ~DATA_UNCOMPRESSED
            expected = min(block_size, node.size - done)
            raw = self._bytes(position, stored, f"data of {_at(node.path)}")
            position += stored
            data = bytes(raw) if word & DATA_UNCOMPRESSED else self._decompress(raw, block_size)
            self.work.data_blocks += 1
            self.work.data_bytes += len(data)
            if len(data) != expected:
                raise Malformed(
                    f"{_at(node.path)} has a block of {len(data)} bytes, not {expected}"
                )
            done += expected
            yield data[: want - done + expected]
        if done < want and fragment != NO_FRAGMENT:
            tail = node.size - done
            block = self._fragment(fragment, node)
            if frag_offset + tail > len(block):
                raise Malformed(f"{_at(node.path)}'s tail runs past its fragment block")
            yield block[frag_offset : frag_offset + min(tail, want - done)]

    def _fragment_entry(self, index: int, path: str) -> tuple[int, int]:
        if index >= self._fragments:
            raise Malformed(f"{_at(path)} names fragment {index}, past the fragment table")
        start, word, _ = struct.unpack(
            "<QII", self._row(self._fragment_index, index, 16, self._fragment_table)
        )
        stored = word & ~DATA_UNCOMPRESSED
        if word >> 25 or not 0 < stored <= self._block_size:
            raise Malformed(f"the fragment of {_at(path)} is {stored} bytes")
        if start < self._data_start or start + stored > self._inode_table:
            raise Malformed(f"the fragment of {_at(path)} lies outside the data area")
        if not word & DATA_UNCOMPRESSED:
            self._compressed_fragments.add(index)
        return start, word

    def _fragment(self, index: int, node: Node) -> bytes:
        if self._fragment_cache is not None and self._fragment_cache[0] == index:
            return self._fragment_cache[1]
        start, word = self._fragment_entry(index, node.path)
        raw = self._bytes(start, word & ~DATA_UNCOMPRESSED, f"fragment of {_at(node.path)}")
        data = bytes(raw) if word & DATA_UNCOMPRESSED else self._decompress(raw, self._block_size)
        self.work.data_blocks += 1
        self.work.data_bytes += len(data)
        self._fragment_cache = (index, data)
        return data


class _Cursor:
    """Consecutive reads through a chain of metadata blocks, as squashfs_read_metadata moves:
    each byte is copied once."""

    def __init__(self, reader: SquashfsReader, block: int, offset: int, limit: int) -> None:
        self._reader = reader
        self._block = block
        self._offset = offset
        self._limit = limit  # no block of this chain starts at or past it
        self.taken = 0

    def take(self, size: int) -> bytes:
        parts = []
        self.taken += size
        while size:
            if not 0 <= self._block < self._limit:
                raise Malformed(f"a metadata reference (byte {self._block}) points past its table")
            data, after = self._reader._metadata_block(self._block)
            if self._offset >= len(data):
                raise Malformed(f"offset {self._offset} past the metadata block at {self._block}")
            piece = data[self._offset : self._offset + size]
            parts.append(piece)
            size -= len(piece)
            self._offset += len(piece)
            if self._offset == len(data):
                self._block, self._offset = after, 0
        return b"".join(parts)


def _at(path: str) -> str:
    """A path in the image as messages show it: at most 100 characters."""
    return _cut(f"/{path}".encode("utf-8", "surrogateescape"))


def _cut(raw: bytes) -> str:
    shown = repr(bytes(raw))[2:-1]  # control characters and non-ASCII bytes escaped
    return shown if len(shown) <= 100 else f"{shown[:60]}…{shown[-39:]}"


def _size_of(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError as error:
        raise BuildError(f"cannot read {path}: {error.strerror}") from None


def _blocks_for(count: int, row: int) -> int:
    return -(-count * row // METADATA_SIZE)


def _xz_filters(options: bytes) -> tuple[str, ...]:
    if len(options) < 8:
        raise Malformed("its xz options are too short")
    dictionary, bits = struct.unpack_from("<II", options, 0)
    low = dictionary & -dictionary
    if dictionary == 0 or dictionary not in (low, low + (low << 1)):
        raise Malformed(f"its xz dictionary size {dictionary} is not 2^n or 2^n + 2^(n+1)")
    return tuple(name for i, name in enumerate(XZ_FILTERS) if bits & (1 << i))


def _check_lz4_options(options: bytes | None) -> None:
    """lz4_wrapper.c lz4_comp_opts: an LZ4 image always has an options block, whose version is
    LZ4_LEGACY (the flags, LZ4_HC, only say how it was packed); else the mount fails."""
    if options is None or len(options) < 8:
        raise Malformed("it is lz4-compressed without its lz4 options, which the kernel needs")
    (version,) = struct.unpack_from("<I", options, 0)
    if version != LZ4_LEGACY:
        raise Malformed(f"its lz4 options say version {version}, not {LZ4_LEGACY} (legacy)")


def _zstd_decompress(raw: bytes, limit: int, window: int) -> tuple[bytes, bool]:
    import zstandard  # only zstd images need it

    # The frame must state its size (mksquashfs's do): a decompressobj does not stop by itself.
    try:
        stated = zstandard.frame_content_size(raw)
    except zstandard.ZstdError as error:
        raise Malformed(f"a zstd block does not decompress: {error}") from None
    if stated < 0 or stated > limit:
        raise Malformed(f"a zstd block states {stated} bytes, more than {limit} or unknown")
    unzstd = zstandard.ZstdDecompressor(max_window_size=window).decompressobj()
    try:
        data = unzstd.decompress(raw)
    except zstandard.ZstdError as error:
        raise Malformed(f"a zstd block does not decompress: {error}") from None
    return data, unzstd.eof and not unzstd.unused_data and len(data) == stated
