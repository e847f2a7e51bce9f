"""Checking a DDI's dm-verity hash partition against its data partition and the root hash the
signature vouches for, offline: what the kernel's dm-verity would check block by block at every
read, checked once for the whole image (cryptsetup's VERITY_verify does the same in userspace:
lib/verity/verity_hash.c create_or_verify with verify=1).

Everything read is hostile. The superblock is refused unless it is exactly one that systemd-repart
(through libcryptsetup) writes: format 1, sha256, 4096-byte blocks, a salt of at most 256 bytes,
data_blocks within the data partition, unused bytes zero. The hash partition must hold the
whole tree, and nothing but zeros after it; so must the data partition after the blocks the tree
covers (repart grows the data partition of a small disk past the image it hashed: dm-verity
serves only the superblock's data blocks). The data is read once, a megabyte at a time; what is
held is the tree (1/128 of the data). One deadline covers the whole check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

from build.core.safeio import Deadline, Malformed
from build.read.verity import (
    ALGORITHM,
    BLOCK_BYTES,
    DIGEST_BYTES,
    HASH_TYPE,
    MAX_SALT_BYTES,
    SIGNATURE,
    SUPERBLOCK_BYTES,
    SUPERBLOCK_LAYOUT,
    VERSION,
    Superblock,
    Tree,
    area_bytes,
    hash_tree,
    level_offsets,
    read_exact,
)

SPARE_CHUNK = 1 << 20  # what the check of the zeros after the tree reads at once
READ_SECONDS = 10.0  # a check's deadline, plus the data's bytes at the rate below
# sha256 of 4 KiB blocks runs at ~1 GB/s here (benchmarks/verity.py); a loaded machine without
# SHA instructions gets 30 times less.
HASH_BYTES_PER_SECOND = 32 << 20


@dataclass(frozen=True)
class Region:
    """A partition's place in the image, in bytes."""

    offset: int
    size: int


def parse_superblock(raw: bytes) -> Superblock:
    """The superblock of a hash partition's first 512 bytes (verity.c VERITY_read_sb's checks,
    then ours: only what repart writes)."""
    (signature, version, hash_type, raw_uuid, algorithm, data_size, hash_size, data_blocks,
     salt_size, _pad1, salt, _pad2) = SUPERBLOCK_LAYOUT.unpack(raw)  # fmt: skip
    if signature != SIGNATURE:
        raise Malformed(f"the hash partition has no verity superblock (it starts {signature!r})")
    if version != VERSION:
        raise Malformed(f"its verity superblock has version {version}, not {VERSION}")
    if hash_type != HASH_TYPE:
        raise Malformed(f"its verity superblock has hash type {hash_type}, not {HASH_TYPE}")
    name = algorithm.rstrip(b"\0")
    if name != ALGORITHM:
        raise Malformed(f"its verity hash algorithm is {name!r}, not {ALGORITHM.decode()}")
    if (data_size, hash_size) != (BLOCK_BYTES, BLOCK_BYTES):
        raise Malformed(
            f"its verity blocks are {data_size} (data) and {hash_size} (hash) bytes, "
            f"not {BLOCK_BYTES}"
        )
    if salt_size > MAX_SALT_BYTES:
        raise Malformed(f"its verity salt is {salt_size} bytes, more than {MAX_SALT_BYTES}")
    if data_blocks < 1:
        raise Malformed("its verity superblock says the data has no block")
    parsed = Superblock(raw_uuid, salt[:salt_size], data_blocks)
    if parsed.pack() != raw:
        raise Malformed("its verity superblock has bytes set that libcryptsetup leaves zero")
    return parsed


def _first_difference(ours: bytes, theirs: bytes) -> int:
    """The first byte where two equally long, different levels differ (a block, then a digest,
    then bytes compared: a level of a 1 GB image is 2 MB)."""
    block = next(
        at
        for at in range(0, len(ours), BLOCK_BYTES)
        if ours[at : at + BLOCK_BYTES] != theirs[at : at + BLOCK_BYTES]
    )
    digest = next(
        at
        for at in range(block, block + BLOCK_BYTES, DIGEST_BYTES)
        if ours[at : at + DIGEST_BYTES] != theirs[at : at + DIGEST_BYTES]
    )
    return next(at for at in range(digest, digest + DIGEST_BYTES) if ours[at] != theirs[at])


def _compare_level(stream: BinaryIO, where: int, index: int, level: bytes, below: int) -> None:
    """The stored level `index` (at byte `where` of the image) against the computed `level`,
    which holds the digests of `below` blocks of the level under it (of the data for level 0)."""
    stored = read_exact(stream, where, len(level), f"level {index} of the hash tree")
    if stored == level:
        return
    at = _first_difference(level, stored)
    block = at // BLOCK_BYTES
    number = at // DIGEST_BYTES  # the block under it whose digest differs
    if number >= below:
        raise Malformed(f"hash level {index} block {block} has bytes after its hashes")
    under = "data partition" if index == 0 else f"hash level {index - 1}"
    raise Malformed(
        f"block {number} of the {under} (bytes {number * BLOCK_BYTES}-"
        f"{(number + 1) * BLOCK_BYTES - 1}) does not match its hash in hash level {index} "
        f"block {block}"
    )


def _check_zeros(stream: BinaryIO, offset: int, size: int, what: str, deadline: Deadline) -> None:
    done = 0
    while done < size:
        deadline.check()
        count = min(SPARE_CHUNK, size - done)
        if read_exact(stream, offset + done, count, what).count(0) != count:
            raise Malformed(f"{what} holds bytes that are not zero")
        done += count


def _compare_tree(stream: BinaryIO, hashes: Region, tree: Tree, data_blocks: int) -> None:
    offsets = level_offsets(data_blocks)
    below = data_blocks
    for index, level in enumerate(tree.levels):
        _compare_level(stream, hashes.offset + offsets[index], index, level, below)
        below = len(level) // BLOCK_BYTES


def check_verity(
    stream: BinaryIO,
    data: Region,
    hashes: Region,
    root_hash: bytes,
    deadline: Deadline | None = None,
) -> Superblock:
    """The hash partition's superblock, once the whole tree recomputed from the data partition
    matches the stored tree and its root is `root_hash`; else Malformed naming the first
    difference (a data block, a hash block, the root)."""
    if deadline is None:
        deadline = Deadline(READ_SECONDS + data.size / HASH_BYTES_PER_SECOND)
    if hashes.size < BLOCK_BYTES:
        raise Malformed(f"the hash partition is {hashes.size} bytes, less than one block")
    superblock = parse_superblock(
        read_exact(stream, hashes.offset, SUPERBLOCK_BYTES, "the verity superblock")
    )
    served = superblock.data_blocks * BLOCK_BYTES
    if data.size < served:
        raise Malformed(
            f"the verity superblock says {superblock.data_blocks} data blocks "
            f"({served} bytes), but the data partition holds {data.size} bytes"
        )
    need = area_bytes(superblock.data_blocks)
    if hashes.size < need:
        raise Malformed(
            f"the hash partition is {hashes.size} bytes, less than the {need} its tree needs"
        )
    _check_zeros(
        stream,
        hashes.offset + SUPERBLOCK_BYTES,
        BLOCK_BYTES - SUPERBLOCK_BYTES,
        "the rest of the verity superblock's block",
        deadline,
    )
    tree = hash_tree(stream, data.offset, superblock.data_blocks, superblock.salt, deadline)
    _compare_tree(stream, hashes, tree, superblock.data_blocks)
    if tree.root_hash != root_hash:
        raise Malformed(
            f"the hash tree's root hash is {tree.root_hash.hex()}, not the signed {root_hash.hex()}"
        )
    _check_zeros(
        stream,
        hashes.offset + need,
        hashes.size - need,
        "the hash partition after its tree",
        deadline,
    )
    _check_zeros(
        stream,
        data.offset + served,
        data.size - served,
        "the data partition after its tree",
        deadline,
    )
    return superblock
