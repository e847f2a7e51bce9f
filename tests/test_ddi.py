"""A sysext DDI assembled from an EROFS image (build/formats/ddi.py) as systemd-repart lays one
out, checked offline by build/read/ddi.py, cross-checked with systemd-dissect and veritysetup,
and refused in one line when a byte, the length, a partition type or a UUID is wrong."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import subprocess
import uuid
import zlib
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

import build.formats.ddi as ddi_module
from build.core.errors import BuildError
from build.formats.ddi import SIGNATURE_BYTES, assemble, assemble_in_python, data_tree
from build.formats.gpt import GPT_METADATA_SIZE, SMALL_DISK
from build.formats.verity import verity_salt, verity_uuid
from build.model.ddi import derived_uuid, partition_kinds, root_hash_uuids
from build.read.ddi import CheckedDdi, check_ddi
from build.read.gpt import read_gpt
from build.read.verity import BLOCK_BYTES, level_blocks
from tests.erofs_images import alloy_tree, mkfs
from tests.results import refused

pytestmark = pytest.mark.needs("mkfs.erofs")

SEED = uuid.UUID("0123456789abcdef0123456789abcdef")
ENTRIES_AT = 1024  # LBA 2
ENTRIES_BYTES = 128 * 128


def signature_blob(root_hash: bytes = bytes(32)) -> bytes:
    """What the signing helper will hand over: the JSON, NUL-padded to 16 KiB."""
    body = {"rootHash": root_hash.hex(), "signature": "AAAA", "certificateFingerprint": "00"}
    return json.dumps(body).encode().ljust(SIGNATURE_BYTES, b"\0")


def erofs_image(tmp_path: Path, binary_size: int, name: str = "data.erofs") -> Path:
    tree = alloy_tree(tmp_path / f"tree-{name}", binary_size=binary_size)
    return mkfs(tree, tmp_path / name, "--all-root", "-T0", f"-U{SEED}")


@pytest.fixture(params=[300 << 10, 5 << 20], ids=["small-disk", "large-disk"])
def data_image(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    return erofs_image(tmp_path, request.param)


@pytest.fixture
def signed(tmp_path: Path, data_image: Path) -> tuple[Path, bytes]:
    target = tmp_path / "out" / "alloy.raw"
    return target, assemble(data_image, target, "amd64", SEED, lambda _: signature_blob())


def test_our_check_passes_and_names_the_data_partition(
    data_image: Path, signed: tuple[Path, bytes]
) -> None:
    image, root_hash = signed
    checked = check_ddi(image, "amd64", signed=True, root_hash=root_hash)
    raw = image.read_bytes()
    body = data_image.read_bytes()
    data = raw[checked.data.offset : checked.data.offset + checked.data.size]
    assert data[: len(body)] == body and not any(data[len(body) :])
    assert checked.signature is not None
    sig = raw[checked.signature.offset : checked.signature.offset + checked.signature.size]
    assert sig == signature_blob()
    assert checked.superblock.salt == verity_salt(SEED)
    assert checked.superblock.uuid == verity_uuid(SEED).bytes
    assert checked.superblock.data_blocks * BLOCK_BYTES == checked.data.size
    table = read_gpt(image)
    assert table.disk_uuid == derived_uuid(SEED, "disk-uuid")
    assert (table.partitions[0].uuid, table.partitions[1].uuid) == root_hash_uuids(root_hash)
    assert [p.name for p in table.partitions] == [k.label for k in partition_kinds("amd64")]
    assert sorted(p.name for p in image.parent.iterdir()) == ["alloy.raw"]  # no scratch left


def test_a_small_disk_grows_the_data_partition_but_hashes_only_the_image(tmp_path: Path) -> None:
    # repart 257 computes the tree (Minimize=best) before it grows the partitions: the grown
    # zeros are outside it, and dm-verity serves the image's blocks (tests/e2e/test_repart.py)
    data_image = erofs_image(tmp_path, 300 << 10)
    image = tmp_path / "alloy.raw"
    root_hash = assemble(data_image, image, "amd64", SEED, lambda _: signature_blob())
    checked = check_ddi(image, "amd64", signed=True)
    assert image.stat().st_size <= SMALL_DISK
    partition = read_gpt(image).partitions[0]
    assert partition.size > data_image.stat().st_size  # grown, as repart grows it
    assert checked.superblock.data_blocks * BLOCK_BYTES == data_image.stat().st_size
    assert checked.data.size == data_image.stat().st_size  # what dm-verity serves
    assert checked.root_hash == root_hash == data_tree(data_image, SEED).root_hash


def test_bytes_in_the_grown_data_partition_after_the_tree_are_refused(tmp_path: Path) -> None:
    data_image = erofs_image(tmp_path, 300 << 10)
    image = tmp_path / "alloy.raw"
    assemble(data_image, image, "amd64", SEED, None)
    partition = read_gpt(image, 2).partitions[0]
    with image.open("r+b") as out:
        out.seek(partition.offset + partition.size - 1)
        out.write(b"\1")
    refused(
        lambda: check_ddi(image, "amd64", signed=False),
        str(image),
        "the data partition after its tree holds bytes that are not zero",
    )


def test_the_size_is_the_image_plus_at_most_1_percent_and_1_1_mib(tmp_path: Path) -> None:
    data_image = erofs_image(tmp_path, 10 << 20)
    image = tmp_path / "alloy.raw"
    assemble(data_image, image, "amd64", SEED, lambda _: signature_blob())
    bare, ddi = data_image.stat().st_size, image.stat().st_size
    print(f"bare EROFS {bare} bytes, DDI {ddi} bytes, +{ddi - bare} ({(ddi - bare) / bare:.2%})")
    assert ddi - bare <= bare // 100 + int(1.1 * (1 << 20))
    assert ddi - bare >= GPT_METADATA_SIZE  # the tables are there


def test_an_unsigned_verity_ddi_has_no_signature_partition(
    tmp_path: Path, data_image: Path
) -> None:
    image = tmp_path / "alloy.raw"
    root_hash = assemble(data_image, image, "arm64", SEED, None)
    checked = check_ddi(image, "arm64", signed=False)
    assert checked.root_hash == root_hash and checked.signature is None
    assert [p.type_uuid for p in read_gpt(image, 2).partitions] == [
        k.type_uuid for k in partition_kinds("arm64")[:2]
    ]
    refused(lambda: check_ddi(image, "arm64", signed=True), "holds 2 partitions, not the 3")


def test_the_same_inputs_in_two_directories_give_the_same_bytes(tmp_path: Path) -> None:
    images = []
    for where in ("one", "two"):
        data_image = erofs_image(tmp_path / where, 300 << 10)
        image = tmp_path / where / "alloy.raw"
        assemble(data_image, image, "amd64", SEED, lambda _: signature_blob())
        images.append(hashlib.sha256(image.read_bytes()).hexdigest())
    assert images[0] == images[1]
    other = tmp_path / "other.raw"
    assemble(
        tmp_path / "one" / "data.erofs",
        other,
        "amd64",
        uuid.UUID(int=1),
        lambda _: signature_blob(),
    )
    assert hashlib.sha256(other.read_bytes()).hexdigest() != images[0]  # the seed counts


@pytest.mark.needs("systemd-dissect", root="systemd-dissect attaching a loop device")
def test_systemd_dissect_names_the_partitions_and_architecture(
    tmp_path: Path, signed: tuple[Path, bytes]
) -> None:
    image, _ = signed
    shown = subprocess.run(
        ["systemd-dissect", "--json=short", str(image)], check=True, capture_output=True, text=True
    ).stdout
    mounts = json.loads(shown)["mounts"]
    assert [(m["designator"], m["architecture"], m["partno"]) for m in mounts] == [
        ("root", "x86-64", 1),
        ("root-verity", "x86-64", 2),
        ("root-verity-sig", "x86-64", 3),
    ]
    assert mounts[0]["fstype"] == "erofs" and mounts[0]["verity"] == "signed"


@pytest.mark.needs("veritysetup")
def test_veritysetup_verifies_the_extracted_partitions(
    tmp_path: Path, signed: tuple[Path, bytes]
) -> None:
    image, root_hash = signed
    checked = check_ddi(image, "amd64", signed=True)
    raw = image.read_bytes()
    for name, region in (("data", checked.data), ("hash", checked.hashes)):
        (tmp_path / name).write_bytes(raw[region.offset : region.offset + region.size])
    subprocess.run(
        ["veritysetup", "verify", str(tmp_path / "data"), str(tmp_path / "hash"), root_hash.hex()],
        check=True,
        capture_output=True,
    )


# --- refusals: one line naming the image, nothing written ---


def copy_of(image: Path, name: str) -> Path:
    out = image.with_name(name)
    shutil.copyfile(image, out)
    return out


def retabled(image: Path, change: Callable[[bytearray], None]) -> Path:
    """A copy of `image` whose entry arrays `change` edits, with every CRC made right again: the
    edit is then all the checker sees."""
    raw = bytearray(image.read_bytes())
    entries = bytearray(raw[ENTRIES_AT : ENTRIES_AT + ENTRIES_BYTES])
    change(entries)
    backup_header = len(raw) - 512
    for header, array in ((512, ENTRIES_AT), (backup_header, backup_header - ENTRIES_BYTES)):
        raw[array : array + ENTRIES_BYTES] = entries
        struct.pack_into("<I", raw, header + 88, zlib.crc32(entries))
        struct.pack_into("<I", raw, header + 16, 0)
        struct.pack_into("<I", raw, header + 16, zlib.crc32(raw[header : header + 92]))
    out = image.with_name("retabled.raw")
    out.write_bytes(bytes(raw))
    return out


def test_a_flipped_data_byte_is_refused(signed: tuple[Path, bytes]) -> None:
    image, root_hash = signed
    first = read_gpt(image).partitions[0]
    damaged = copy_of(image, "flipped.raw")
    with damaged.open("r+b") as out:
        out.seek(first.offset + 5000)
        byte = out.read(1)
        out.seek(first.offset + 5000)
        out.write(bytes([byte[0] ^ 1]))
    refused(
        lambda: check_ddi(damaged, "amd64", signed=True, root_hash=root_hash),
        str(damaged),
        "block 1 of the data partition (bytes 4096-8191) does not match its hash",
    )


def test_a_truncated_image_is_refused(signed: tuple[Path, bytes]) -> None:
    image, _ = signed
    cut = image.with_name("cut.raw")
    cut.write_bytes(image.read_bytes()[:-BLOCK_BYTES])
    refused(lambda: check_ddi(cut, "amd64", signed=True), str(cut), "cut short or grown")


def test_a_wrong_architecture_is_refused(signed: tuple[Path, bytes]) -> None:
    image, _ = signed
    refused(
        lambda: check_ddi(image, "arm64", signed=True),
        "GPT partition 1 has type 4f68bce3-e8cd-4db1-96e7-fbcaf984b709 (root-x86-64), "
        "not root-arm64 (b921b045-1df0-41c3-af44-4c6f280d3fae) for arm64",
    )


def test_swapped_uuids_are_refused(signed: tuple[Path, bytes]) -> None:
    image, root_hash = signed

    def swap(entries: bytearray) -> None:
        first, second = bytes(entries[16:32]), bytes(entries[128 + 16 : 128 + 32])
        entries[16:32], entries[128 + 16 : 128 + 32] = second, first

    swapped = retabled(image, swap)
    read_gpt(swapped)  # a valid GPT: only the UUIDs lie
    refused(
        lambda: check_ddi(swapped, "amd64", signed=True, root_hash=root_hash),
        "partition UUIDs",
        "are not the root hash",
    )
    # without a root hash to hold them to, the tree still must match the UUIDs
    refused(lambda: check_ddi(swapped, "amd64", signed=True), "root hash is", "not the signed")


def test_a_signature_partition_of_another_size_than_repart_s_is_refused(
    signed: tuple[Path, bytes],
) -> None:
    """repart's signature partition is exactly 16 KiB (VERITY_SIG_SIZE): a smaller one was not
    made by it, and a larger one would be read only in part (and named by a wrong size)."""
    image, _ = signed
    usable_end = read_gpt(image).last_usable_lba
    sig = read_gpt(image).partitions[2]
    for last in (sig.last_lba - 16, usable_end):
        if last == sig.last_lba:
            continue  # a disk with no room after the signature partition to grow it into

        def resize(entries: bytearray, last: int = last) -> None:
            struct.pack_into("<Q", entries, 2 * 128 + 40, last)

        resized = retabled(image, resize)
        size = (last - sig.first_lba + 1) * 512
        refused(
            partial(check_ddi, resized, "amd64", signed=True),
            f"GPT partition 3 (root-x86-64-verity-sig) is {size} bytes, not the "
            f"{SIGNATURE_BYTES} systemd-repart writes",
        )


def test_a_root_hash_other_than_the_signed_one_is_refused(signed: tuple[Path, bytes]) -> None:
    image, root_hash = signed
    other = bytes([root_hash[0] ^ 1]) + root_hash[1:]
    refused(lambda: check_ddi(image, "amd64", signed=True, root_hash=other), "are not the root")


def test_a_signature_too_large_or_a_missing_image_writes_nothing(tmp_path: Path) -> None:
    data_image = erofs_image(tmp_path, 64 << 10)
    target = tmp_path / "out" / "alloy.raw"
    refused(
        lambda: assemble(data_image, target, "amd64", SEED, lambda _: bytes(SIGNATURE_BYTES + 1)),
        "the verity signature is 16385 bytes",
    )
    refused(
        lambda: assemble(tmp_path / "absent.erofs", target, "amd64", SEED, None),
        "cannot read the data image",
    )
    assert not target.parent.exists() or not any(target.parent.iterdir())


def test_checked_ddi_is_what_verify_gets() -> None:
    # verify reads the file system through its byte range; the fields it relies on exist
    assert set(CheckedDdi.__dataclass_fields__) == {
        "arch",
        "root_hash",
        "data",
        "hashes",
        "signature",
        "superblock",
    }


def test_an_image_of_part_blocks_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    # a squashfs image made with -nopad ends mid-block: repart 257 refuses one that is not whole
    # sectors and leaves a part block out of the tree (dm-verity would serve it cut short)
    data_image = tmp_path / "data.squashfs"
    data_image.write_bytes(b"\5" * (3 * BLOCK_BYTES + 512))
    image = tmp_path / "out" / "alloy.raw"
    for build in (assemble, assemble_in_python):
        with pytest.raises(BuildError) as caught:
            build(data_image, image, "amd64", SEED, None)
        assert "\n" not in str(caught.value) and str(data_image) in str(caught.value)
        assert "is 12800 bytes, not whole 4096-byte blocks" in str(caught.value)
    assert not image.parent.exists()


def test_each_block_of_the_image_is_hashed_once(tmp_path: Path) -> None:
    data_image = tmp_path / "data.erofs"
    data_image.write_bytes(b"\7" * (74 * BLOCK_BYTES))
    tree = data_tree(data_image, SEED)
    assert tree.hashed_blocks == 74 + sum(level_blocks(74))


def test_an_image_cut_short_while_it_is_hashed_is_refused_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_image = erofs_image(tmp_path, 64 << 10)
    real = ddi_module.hash_tree

    def cut_first(*args: Any, **kwargs: Any) -> Any:
        with data_image.open("r+b") as file:
            file.truncate(BLOCK_BYTES)
        return real(*args, **kwargs)

    monkeypatch.setattr(ddi_module, "hash_tree", cut_first)
    target = tmp_path / "out" / "alloy.raw"
    refused(
        lambda: assemble_in_python(data_image, target, "amd64", SEED, None),
        f"{data_image} changed while it was being hashed",
    )
    assert not target.parent.exists() or not any(target.parent.iterdir())
