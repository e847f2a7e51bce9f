"""dm-verity hash trees as libcryptsetup writes them (format 1, sha256, 4096-byte blocks): the
root hash, the hash area with its superblock, and a bounded check of a hash partition against
its data partition and an expected root hash, without dm-verity, root or a loop device.

systemd-repart writes a DDI's hash partition with libcryptsetup: repart.c
partition_format_verity_hash() calls crypt_format(CRYPT_VERITY, ...) with
CRYPT_VERITY_CREATE_HASH, hash_name "sha256", hash_type 1, its block sizes and a 32-byte salt,
and no hash_area_offset (0) and no CRYPT_VERITY_NO_HEADER: so the superblock sits at the
partition's start and the tree in the blocks after it, which is what this module reads and makes.

Byte layouts (cryptsetup lib/verity/):
- verity.c struct verity_sb / VERITY_write_sb: the 512-byte superblock, little-endian;
  VERITY_hash_offset_block: the tree starts at the first hash block after the superblock.
- verity_hash.c hash_levels: level i holds ceil(data_blocks / 128^(i+1)) blocks; the top level
  (one block) is written first, each lower level after it. create_or_verify: a block's digest is
  sha256(salt || block) for hash_type 1; a hash block holds 128 digests, zero-padded at the end.
  The root hash is the digest of the top level's block, or of the only data block when there is
  one (no levels at all).
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from build.core.safeio import Deadline, Malformed

BLOCK_BYTES = 4096  # data and hash blocks: what repart's VerityDataBlockSizeBytes=4096 gives
DIGEST_BYTES = 32  # sha256
HASHES_PER_BLOCK = BLOCK_BYTES // DIGEST_BYTES
SUPERBLOCK_BYTES = 512
MAX_SALT_BYTES = 256  # verity.c: sizeof(sb.salt); VERITY_create refuses more
SIGNATURE = b"verity\0\0"
VERSION = 1
HASH_TYPE = 1  # 0 is Chrome OS's (salt after the block), which repart never writes
ALGORITHM = b"sha256"
# signature, version, hash_type, uuid, algorithm, data_block_size, hash_block_size,
# data_blocks, salt_size, _pad1, salt, _pad2 (verity.c struct verity_sb, packed)
SUPERBLOCK_LAYOUT = struct.Struct("<8sII16s32sIIQH6s256s168s")
assert SUPERBLOCK_LAYOUT.size == SUPERBLOCK_BYTES
READ_BLOCKS = 256  # data blocks read at once (1 MiB): what a check holds of the data


@dataclass(frozen=True)
class Superblock:
    """What a hash partition's superblock says (uuid: the 16 bytes veritysetup shows as UUID)."""

    uuid: bytes
    salt: bytes
    data_blocks: int

    def pack(self) -> bytes:
        """The 512 bytes VERITY_write_sb writes (strncpy of the algorithm name: NUL-padded)."""
        return SUPERBLOCK_LAYOUT.pack(
            SIGNATURE,
            VERSION,
            HASH_TYPE,
            self.uuid,
            ALGORITHM,
            BLOCK_BYTES,
            BLOCK_BYTES,
            self.data_blocks,
            len(self.salt),
            bytes(6),
            self.salt,
            bytes(168),
        )


@dataclass(frozen=True)
class Tree:
    """A hash tree: its levels lowest first (each whole, zero-padded blocks) and root hash."""

    root_hash: bytes
    levels: tuple[bytes, ...]
    hashed_blocks: int  # the blocks hashed to make it (data and hash): the work done

    def area(self, superblock: Superblock) -> bytes:
        """The hash partition as veritysetup format writes it: the superblock in a block of
        its own, then the levels top first."""
        head = superblock.pack().ljust(BLOCK_BYTES, b"\0")
        return head + b"".join(reversed(self.levels))


def level_blocks(data_blocks: int) -> list[int]:
    """Blocks of each level, lowest first (verity_hash.c hash_levels)."""
    sizes: list[int] = []
    count = data_blocks
    while count > 1:
        count = -(-count // HASHES_PER_BLOCK)
        sizes.append(count)
    return sizes


def area_bytes(data_blocks: int) -> int:
    """The least a hash partition holds for `data_blocks`: the superblock's block and the tree."""
    return BLOCK_BYTES * (1 + sum(level_blocks(data_blocks)))


def level_offsets(data_blocks: int) -> list[int]:
    """Each level's byte offset in the hash partition, lowest first (top level first on disk)."""
    sizes = level_blocks(data_blocks)
    offsets = []
    for index in range(len(sizes)):
        offsets.append(BLOCK_BYTES * (1 + sum(sizes[index + 1 :])))
    return offsets


def uuid_text(raw: bytes) -> str:
    """The UUID as veritysetup --uuid takes it and `veritysetup dump` shows it."""
    return str(uuid.UUID(bytes=raw))


def read_exact(stream: BinaryIO, offset: int, size: int, what: str) -> bytes:
    stream.seek(offset)
    data = stream.read(size)
    if len(data) != size:
        raise Malformed(f"{what} is cut short: {len(data)} of {size} bytes at offset {offset}")
    return data


def data_digests(
    stream: BinaryIO, offset: int, blocks: int, salt: bytes, deadline: Deadline | None = None
) -> Iterator[bytes]:
    """sha256(salt || block) of `blocks` data blocks from `offset`, READ_BLOCKS at a time."""
    salted = hashlib.sha256(salt)
    done = 0
    while done < blocks:
        count = min(READ_BLOCKS, blocks - done)
        chunk = memoryview(
            read_exact(stream, offset + done * BLOCK_BYTES, count * BLOCK_BYTES, "the data")
        )
        for start in range(0, len(chunk), BLOCK_BYTES):
            digest = salted.copy()
            digest.update(chunk[start : start + BLOCK_BYTES])
            yield digest.digest()
        done += count
        if deadline is not None:
            deadline.check()


def _pack_level(digests: Iterator[bytes]) -> bytes:
    """Digests packed HASHES_PER_BLOCK to a block, the last block zero-padded (create_or_verify)."""
    level = bytearray()
    for digest in digests:
        level += digest
    level += bytes(-len(level) % BLOCK_BYTES)
    return bytes(level)


def _block_digests(level: bytes, salt: bytes) -> Iterator[bytes]:
    salted = hashlib.sha256(salt)
    view = memoryview(level)
    for start in range(0, len(view), BLOCK_BYTES):
        digest = salted.copy()
        digest.update(view[start : start + BLOCK_BYTES])
        yield digest.digest()


def upper_levels(level0: bytes, salt: bytes) -> tuple[list[bytes], bytes]:
    """The levels above `level0` (lowest first) and the root hash: the digest of the one block
    of the top level."""
    levels = []
    current = level0
    while len(current) > BLOCK_BYTES:
        current = _pack_level(_block_digests(current, salt))
        levels.append(current)
    return levels, next(_block_digests(current, salt))


def hash_tree(
    stream: BinaryIO, offset: int, data_blocks: int, salt: bytes, deadline: Deadline | None = None
) -> Tree:
    """The tree of `data_blocks` data blocks of `stream` from `offset`: the data is read once,
    a megabyte at a time; the tree (1/128 of the data) is held."""
    if data_blocks < 1:
        raise Malformed("there is no data block to hash")
    if data_blocks == 1:
        root = next(data_digests(stream, offset, 1, salt, deadline))
        return Tree(root, (), 1)
    level0 = _pack_level(data_digests(stream, offset, data_blocks, salt, deadline))
    upper, root = upper_levels(level0, salt)
    levels = (level0, *upper)
    return Tree(root, levels, data_blocks + sum(len(level) // BLOCK_BYTES for level in levels))
