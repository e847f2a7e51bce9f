"""EROFS images written byte by byte, for what mkfs.erofs never writes: compressed files whose
every NONHEAD lcluster looks back one step (a lookback chain as long as the file), as many as
fit in the image. Used by tests/test_erofs_kernel.py and benchmarks."""

from __future__ import annotations

import struct
from pathlib import Path

from build.read import erofs

BLOCK = 4096
MAP_HEADER = 8
INODE = 32


def zeros_lz4(size: int) -> bytes:
    """An LZ4 block that decodes to `size` zero bytes (size > 32), ending as LZ4 blocks must
    (the last match 12 bytes or more before the end, then literals)."""
    match = size - 1 - 12 - 4  # after one literal zero; then 12 literal zeros
    extra = match - 15
    lengths = b"\xff" * (extra // 255) + bytes([extra % 255])
    return bytes([0x1F, 0]) + b"\x01\x00" + lengths + bytes([0xC0]) + bytes(12)


def _inode(mode: int, layout: int, size: int, raw: int, nlink: int = 1) -> bytes:
    return struct.pack("<HHHHIIIIHHI", layout << 1, 0, mode, nlink, size, 0, raw, 0, 0, 0, 0)


def _superblock(root_nid: int, blocks: int, incompat: int) -> bytearray:
    sb = bytearray(BLOCK)
    struct.pack_into("<IIIBBHQQIIII", sb, 1024, erofs.MAGIC, 0, 1, 12, 0, root_nid, 0, 0, 0,
                     blocks, 1, 0)  # fmt: skip
    struct.pack_into("<I", sb, 1024 + 80, incompat)
    return sb


def lookback_chain_image(
    path: Path, files: int = 100, lclusters: int = 65_000, heads: bool = False
) -> Path:
    """`files` LZ4 files of `lclusters` 4 KiB lclusters each: one extent, its head at lcn 0,
    stored inline after the indexes (ztailpacking), and every NONHEAD's delta0 one (or two,
    the last of a pack): the kernel's lookback from the last lcluster walks the whole file.
    `heads`: every lcluster a head instead, each its own block: as many extents as indexes."""
    tail = zeros_lz4(1 << 16)
    meta = bytearray()
    names = [f"f{index:05}".encode() for index in range(files)]
    dirents = len(names) + 2
    listing = dirents * 12 + 3 + sum(len(name) for name in names)
    root_size = INODE + listing
    root_slots = -(-root_size // INODE)
    nids = []
    position = root_slots * INODE
    file_bytes = []
    for _ in names:
        index_bytes = 4 * lclusters
        body = INODE + MAP_HEADER + index_bytes
        # The inline tail must not cross a block: pad the inode's start.
        while (position + body) % BLOCK + len(tail) > BLOCK:
            position += INODE
        nids.append(position // INODE)
        packs = bytearray()
        for pack in range(0, lclusters, 2):
            entries = []
            for lcn in (pack, pack + 1):
                if lcn == 0 or (heads and lcn < lclusters):
                    entries.append(erofs.HEAD1 << 12)
                elif lcn < lclusters:
                    entries.append(erofs.NONHEAD << 12 | 1)
                else:
                    entries.append(0)
            packs += struct.pack("<HHI", *entries, pack + 10)
        header = struct.pack("<HHHBB", 0, len(tail), erofs.ADVISE_INLINE_PCLUSTER, 0, 0)
        inode = _inode(0o100644, erofs.COMPRESSED_COMPACT, lclusters * BLOCK, 1)
        file_bytes.append((position, inode + header + packs[:index_bytes] + tail))
        position += -(-(body + len(tail)) // INODE) * INODE
    meta = bytearray(position)
    root = _inode(0o40755, erofs.FLAT_INLINE, listing, 0xFFFFFFFF, 2)
    entries_at = root_slots * 0  # the root is nid 0
    dirent_data = bytearray()
    name_at = dirents * 12
    all_names = [(b".", 0, 2), (b"..", 0, 2)] + [
        (name, nid, 1) for name, nid in zip(names, nids, strict=True)
    ]
    name_bytes = b""
    for name, nid, kind in all_names:
        dirent_data += struct.pack("<QHBB", nid, name_at + len(name_bytes), kind, 0)
        name_bytes += name
    dirent_data += name_bytes
    meta[entries_at : entries_at + INODE] = root
    meta[INODE : INODE + len(dirent_data)] = dirent_data
    for at, data in file_bytes:
        meta[at : at + len(data)] = data
    meta += bytes(-len(meta) % BLOCK)
    blocks = 1 + len(meta) // BLOCK
    incompat = 0x1 | 0x10  # 0padding, ztailpacking
    image = _superblock(0, blocks, incompat) + meta
    fix_checksum(image)
    path.write_bytes(bytes(image))
    return path


def fix_checksum(data: bytearray) -> None:
    block = bytearray(data[1024:BLOCK])
    block[4:8] = bytes(4)
    data[1024 + 4 : 1024 + 8] = struct.pack("<I", erofs.crc32c(bytes(block)))
