"""dm-verity hash trees (build/read/verity.py, build/read/veritycheck.py, build/formats/verity.py):
bit-identical to `veritysetup format`, the salt and UUID repart derives from --seed, and the
offline check refusing every bad superblock, a short hash area and any changed byte, in one line
naming what differs."""

from __future__ import annotations

import hashlib
import io
import re
import struct
import subprocess
import uuid
from pathlib import Path

import pytest

from build.core.errors import BuildError
from build.core.safeio import Deadline, Malformed, Overtime, refusing_malformed
from build.formats.verity import verity_salt, verity_uuid, write_hash_partition
from build.model.ddi import derived_uuid
from build.read.verity import (
    BLOCK_BYTES,
    READ_BLOCKS,
    SUPERBLOCK_BYTES,
    Superblock,
    area_bytes,
    hash_tree,
    level_blocks,
    level_offsets,
    uuid_text,
)
from build.read.veritycheck import Region, check_verity, parse_superblock

SALT = bytes(range(32))
SB_UUID = bytes.fromhex("12345678123442348234123456789abc")
SEED = uuid.UUID("0f2b6a3e-5c1d-4e8f-9a7b-3c2d1e0f4a5b")


def data_bytes(blocks: int) -> bytes:
    """Blocks that all differ (their number, then a pattern), cheap to make."""
    return b"".join(
        struct.pack("<Q", n) + bytes([n % 251]) * (BLOCK_BYTES - 8) for n in range(blocks)
    )


def tree_of(data: bytes, salt: bytes = SALT) -> tuple[bytes, bytes]:
    """(root hash, whole hash area) of `data`."""
    blocks = len(data) // BLOCK_BYTES
    tree = hash_tree(io.BytesIO(data), 0, blocks, salt)
    return tree.root_hash, tree.area(Superblock(SB_UUID, salt, blocks))


# --- the layout, against libcryptsetup ---


@pytest.mark.parametrize(
    ("blocks", "levels"), [(1, []), (2, [1]), (128, [1]), (129, [2, 1]), (16385, [129, 2, 1])]
)
def test_levels_are_cryptsetup_s_hash_levels(blocks: int, levels: list[int]) -> None:
    assert level_blocks(blocks) == levels
    assert area_bytes(blocks) == BLOCK_BYTES * (1 + sum(levels))
    # top level first on disk, right after the superblock's block
    assert sorted(level_offsets(blocks)) == [
        BLOCK_BYTES * (1 + sum(levels[i + 1 :])) for i in reversed(range(len(levels)))
    ]


@pytest.mark.needs("veritysetup")
@pytest.mark.parametrize("blocks", [1, 2, 128, 129, 769, 16385])
def test_the_hash_area_and_root_are_veritysetup_s_bytes(tmp_path: Path, blocks: int) -> None:
    data = tmp_path / "data"
    data.write_bytes(data_bytes(blocks))
    theirs = tmp_path / "theirs"
    out = subprocess.run(
        ["veritysetup", "format", "--hash=sha256", "--data-block-size=4096",
         "--hash-block-size=4096", f"--salt={SALT.hex()}", f"--uuid={uuid_text(SB_UUID)}",
         str(data), str(theirs)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    root = re.search(r"Root hash:\s+([0-9a-f]{64})", out)
    assert root is not None, out
    ours = tmp_path / "ours"
    tree = write_hash_partition(data, ours, SALT, uuid.UUID(bytes=SB_UUID))
    assert tree.root_hash.hex() == root.group(1)
    assert ours.read_bytes() == theirs.read_bytes()
    # each block hashed once: the data, then every level
    assert tree.hashed_blocks == blocks + sum(level_blocks(blocks))


@pytest.mark.needs("veritysetup")
def test_veritysetup_verify_accepts_what_we_write(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_bytes(data_bytes(300))
    tree = write_hash_partition(data, tmp_path / "hash", SALT, uuid.UUID(bytes=SB_UUID))
    subprocess.run(
        ["veritysetup", "verify", str(data), str(tmp_path / "hash"), tree.root_hash.hex()],
        check=True, capture_output=True,
    )  # fmt: skip


def test_a_data_file_of_part_blocks_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_bytes(bytes(BLOCK_BYTES + 1))
    with pytest.raises(BuildError, match="not whole 4096-byte blocks"):
        write_hash_partition(data, tmp_path / "hash", SALT, uuid.UUID(bytes=SB_UUID))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data"]


# --- the seed recipe (repart.c derive_salt / derive_uuid) ---


@pytest.mark.needs("openssl")
def test_the_salt_is_hmac_sha256_of_the_token_keyed_by_the_seed() -> None:
    out = subprocess.run(
        ["openssl", "dgst", "-sha256", "-mac", "HMAC", "-macopt", f"hexkey:{SEED.hex}"],
        input=b"verity-salt", check=True, capture_output=True,
    ).stdout.decode()  # fmt: skip
    assert verity_salt(SEED).hex() == out.split()[-1]


def test_the_verity_uuid_is_the_hmac_s_first_half_made_v4() -> None:
    mac = hashlib.sha256  # FIPS 198 by hand, apart from Python's hmac
    key = SEED.bytes.ljust(64, b"\0")
    inner = mac(bytes(b ^ 0x36 for b in key) + b"verity-uuid").digest()
    raw = bytearray(mac(bytes(b ^ 0x5C for b in key) + inner).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    made = verity_uuid(SEED)
    assert made.bytes == bytes(raw)
    assert (made.version, made.variant) == (4, uuid.RFC_4122)
    assert verity_uuid(SEED) == made  # the same seed, the same UUID
    assert derived_uuid(SEED, "verity-salt") != made
    assert verity_uuid(uuid.UUID(int=SEED.int ^ 1)) != made


# --- the offline check ---


def image_of(blocks: int, salt: bytes = SALT, spare: int = 0) -> tuple[bytearray, Region, Region]:
    """data partition || hash partition (with `spare` zero bytes after the tree)."""
    data = data_bytes(blocks)
    _, area = tree_of(data, salt)
    image = bytearray(data + area + bytes(spare))
    return image, Region(0, len(data)), Region(len(data), len(area) + spare)


def root_of(blocks: int) -> bytes:
    return tree_of(data_bytes(blocks))[0]


class CountingStream(io.BytesIO):
    """Records each read's size: what a check holds at once."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads: list[int] = []

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.reads.append(len(chunk))
        return chunk


def test_a_good_image_passes_reading_its_data_once_a_megabyte_at_a_time() -> None:
    blocks = 2 * READ_BLOCKS + 129
    image, data, hashes = image_of(blocks, spare=3 * BLOCK_BYTES)
    stream = CountingStream(bytes(image))
    superblock = check_verity(stream, data, hashes, root_of(blocks))
    assert superblock == Superblock(SB_UUID, SALT, blocks)
    assert max(stream.reads) <= READ_BLOCKS * BLOCK_BYTES
    tree_bytes = area_bytes(blocks) - BLOCK_BYTES
    read = sum(stream.reads)
    # the data once, the superblock's block, the tree once, the spare blocks once
    assert read == data.size + BLOCK_BYTES + tree_bytes + 3 * BLOCK_BYTES


@pytest.mark.parametrize("blocks", [1, 128])
def test_small_trees_pass(blocks: int) -> None:
    image, data, hashes = image_of(blocks)
    check_verity(io.BytesIO(bytes(image)), data, hashes, root_of(blocks))


def refusal(
    image: bytes | bytearray,
    data: Region,
    hashes: Region,
    root: bytes,
    deadline: Deadline | None = None,
) -> str:
    with pytest.raises(Malformed) as caught:
        check_verity(io.BytesIO(bytes(image)), data, hashes, root, deadline)
    message = str(caught.value)
    assert "\n" not in message
    return message


def sb_with(image: bytearray, hashes: Region, offset: int, fmt: str, value: object) -> bytearray:
    struct.pack_into(fmt, image, hashes.offset + offset, value)
    return image


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "said"),
    [
        (0, "<8s", b"verity\0\1", "has no verity superblock"),
        (8, "<I", 2, "version 2, not 1"),
        (12, "<I", 0, "hash type 0, not 1"),
        (32, "<32s", b"sha1", "algorithm is b'sha1', not sha256"),
        (32, "<32s", b"sha256\0x", "algorithm is b'sha256\\x00x', not sha256"),
        (64, "<I", 512, "blocks are 512 (data) and 4096 (hash) bytes, not 4096"),
        (68, "<I", 8192, "blocks are 4096 (data) and 8192 (hash) bytes, not 4096"),
        (80, "<H", 257, "salt is 257 bytes, more than 256"),
        (72, "<Q", 0, "says the data has no block"),
        (72, "<Q", 200, "says 200 data blocks (819200 bytes), but the data partition holds 528384"),
        (72, "<Q", 2**64 - 1, "says 18446744073709551615 data blocks"),
        (82, "<B", 1, "bytes set that libcryptsetup leaves zero"),
        (88 + 32, "<B", 1, "bytes set that libcryptsetup leaves zero"),  # past salt_size
        (511, "<B", 1, "bytes set that libcryptsetup leaves zero"),
    ],
)
def test_a_superblock_repart_would_not_write_is_refused(
    offset: int, fmt: str, value: object, said: str
) -> None:
    image, data, hashes = image_of(129)
    sb_with(image, hashes, offset, fmt, value)
    assert said in refusal(image, data, hashes, root_of(129))


def test_parse_superblock_reads_what_pack_wrote() -> None:
    superblock = Superblock(SB_UUID, b"\x01" * 256, 7)
    assert len(superblock.pack()) == SUPERBLOCK_BYTES
    assert parse_superblock(superblock.pack()) == superblock


def test_a_hash_area_shorter_than_the_tree_is_refused() -> None:
    image, data, hashes = image_of(129)
    short = Region(hashes.offset, hashes.size - BLOCK_BYTES)
    said = refusal(image[: short.offset + short.size], data, short, root_of(129))
    assert said == "the hash partition is 12288 bytes, less than the 16384 its tree needs"
    assert "less than one block" in refusal(image, data, Region(hashes.offset, 4095), b"")


def test_a_truncated_image_is_refused() -> None:
    image, data, hashes = image_of(129)
    said = refusal(image[: hashes.offset + hashes.size - 1], data, hashes, root_of(129))
    assert said.startswith("level 0 of the hash tree is cut short: 8191 of 8192 bytes")
    said = refusal(image[:300], data, hashes, root_of(129))
    assert said.startswith("the verity superblock is cut short")


def test_a_flipped_data_byte_is_found_and_named() -> None:
    image, data, hashes = image_of(300)
    image[200 * BLOCK_BYTES + 17] ^= 0x40
    said = refusal(image, data, hashes, root_of(300))
    assert said == (
        "block 200 of the data partition (bytes 819200-823295) does not match its hash "
        "in hash level 0 block 1"
    )


def test_a_changed_hash_in_an_upper_level_is_named() -> None:
    image, data, hashes = image_of(300)
    level1 = hashes.offset + level_offsets(300)[1]
    image[level1 + 2 * 32 + 5] ^= 1
    said = refusal(image, data, hashes, root_of(300))
    assert said == (
        "block 2 of the hash level 0 (bytes 8192-12287) does not match its hash "
        "in hash level 1 block 0"
    )


def test_bytes_after_a_level_s_hashes_are_refused() -> None:
    image, data, hashes = image_of(300)
    level0 = hashes.offset + level_offsets(300)[0]
    image[level0 + 300 * 32] = 1  # the first byte of the last block's zero padding
    said = refusal(image, data, hashes, root_of(300))
    assert said == "hash level 0 block 2 has bytes after its hashes"


def test_a_tree_whose_root_is_not_the_signed_one_is_refused() -> None:
    image, data, hashes = image_of(129)
    said = refusal(image, data, hashes, bytes(32))
    assert said == f"the hash tree's root hash is {root_of(129).hex()}, not the signed {'00' * 32}"


@pytest.mark.parametrize(
    ("where", "said"),
    [
        (
            SUPERBLOCK_BYTES,
            "the rest of the verity superblock's block holds bytes that are not zero",
        ),
        (-1, "the hash partition after its tree holds bytes that are not zero"),
    ],
)
def test_bytes_outside_the_tree_are_refused(where: int, said: str) -> None:
    image, data, hashes = image_of(129, spare=BLOCK_BYTES)
    image[hashes.offset + where if where >= 0 else where] = 0xFF
    assert refusal(image, data, hashes, root_of(129)) == said


def test_a_check_past_its_deadline_stops() -> None:
    image, data, hashes = image_of(3 * READ_BLOCKS)
    ticks = iter(range(100))
    deadline = Deadline(1.5, clock=lambda: float(next(ticks)))
    with pytest.raises(Overtime):
        check_verity(io.BytesIO(bytes(image)), data, hashes, root_of(3 * READ_BLOCKS), deadline)


def test_the_zeros_after_the_tree_are_read_within_the_deadline_too() -> None:
    """A hostile hash partition of one data block's tree and 16 MiB of zeros after it: reading
    those zeros counts against the one deadline like the tree (here a tick a check)."""
    image, data, hashes = image_of(1, spare=16 << 20)
    ticks = iter(range(1000))
    deadline = Deadline(5, clock=lambda: float(next(ticks)))
    with pytest.raises(Overtime):
        check_verity(io.BytesIO(bytes(image)), data, hashes, root_of(1), deadline)


def test_a_refusal_is_one_line_naming_the_image(tmp_path: Path) -> None:
    image, data, hashes = image_of(129)
    image[5] ^= 1
    path = tmp_path / "alloy.raw"
    with (
        pytest.raises(BuildError) as caught,
        refusing_malformed(path, "verity DDI", "alloy-sysext"),
    ):
        check_verity(io.BytesIO(bytes(image)), data, hashes, root_of(129))
    assert str(caught.value).startswith(f"{path} is not a valid verity DDI image: block 0 of")
