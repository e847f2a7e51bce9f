"""Writing a DDI's dm-verity hash partition as systemd-repart does where repart cannot (Debian 12's
repart 252 has no --offline, 254 salts at random): the same salt and superblock UUID from the
same --seed, the same bytes as `veritysetup format` (build/read/verity.py has the layout).

The seed recipe is repart.c's (checked in systemd's src/partition/repart.c of v255 and
src/repart/repart.c of main; 254 and older salt at random):
- context_acquire_partition_uuids_and_labels(), for the Verity=hash partition:
  derive_salt(context->seed, "verity-salt", p->verity_salt) and
  derive_uuid(context->seed, "verity-uuid", &p->verity_uuid);
- derive_salt(): HMAC-SHA256 keyed by the seed's 16 bytes over the token (no NUL): 32 bytes;
- derive_uuid(): the same HMAC's first 16 bytes, made a v4 UUID by id128_make_v4_uuid()
  (byte 6: version 4 in the high nibble; byte 8: variant bits 10).
HMAC-SHA256 is FIPS 198's (src/basic/hmac.c), which Python's hmac computes.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from pathlib import Path

from build.core.errors import BuildError
from build.core.fileio import atomic_path
from build.model.ddi import derived_uuid
from build.read.verity import BLOCK_BYTES, Superblock, Tree, hash_tree

SALT_TOKEN = b"verity-salt"
UUID_TOKEN = "verity-uuid"


def derive_salt(seed: uuid.UUID, token: bytes) -> bytes:
    """repart.c derive_salt(): HMAC-SHA256(key = the seed's 16 bytes, message = token)."""
    return hmac.new(seed.bytes, token, hashlib.sha256).digest()


def verity_salt(seed: uuid.UUID) -> bytes:
    """The 32-byte salt repart 255+ gives the hash partition for --seed=`seed`."""
    return derive_salt(seed, SALT_TOKEN)


def verity_uuid(seed: uuid.UUID) -> uuid.UUID:
    """The UUID repart 255+ writes in the verity superblock for --seed=`seed` (not a partition
    UUID: those are the root hash's halves)."""
    return derived_uuid(seed, UUID_TOKEN)


def write_hash_partition(data: Path, target: Path, salt: bytes, verity_id: uuid.UUID) -> Tree:
    """The hash partition of the data partition in `data` written to `target` (atomically), as
    `veritysetup format --hash=sha256 --data-block-size=4096 --hash-block-size=4096
    --salt=SALT --uuid=UUID DATA TARGET` writes it; its tree (root hash) returned. The data is
    read once, a megabyte at a time; `data` must be whole 4096-byte blocks (repart's
    partitions are: it aligns them to 4096)."""
    size = data.stat().st_size
    if size == 0 or size % BLOCK_BYTES:
        raise BuildError(
            f"cannot hash {data}: it is {size} bytes, not whole {BLOCK_BYTES}-byte blocks",
            "a data partition is a file system image padded to 4096-byte blocks",
        )
    blocks = size // BLOCK_BYTES
    with data.open("rb") as stream:
        tree = hash_tree(stream, 0, blocks, salt)
    with atomic_path(target) as temporary:
        temporary.write_bytes(tree.area(Superblock(verity_id.bytes, salt, blocks)))
    return tree
