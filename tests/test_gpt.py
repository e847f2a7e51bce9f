"""The GPT of a sysext DDI: written as systemd-repart 257 writes it (build/formats/gpt.py, the
partition table of build/model/ddi.py), read back by the bounded reader (build/read/gpt.py),
cross-checked with sfdisk and systemd-dissect, and refused when damaged or made to mislead."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import uuid
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from build.core.errors import BuildError
from build.core.safeio import Malformed
from build.formats import gpt as write
from build.formats.gpt import GptPartition, place, table_regions, write_gpt_image
from build.model.ddi import (
    GPT_FLAG_READ_ONLY,
    derived_uuid,
    partition_kinds,
    root_hash_uuids,
    seeded_partition_uuid,
)
from build.read.gpt import parse_gpt, read_gpt

SEED = uuid.UUID("0123456789abcdef0123456789abcdef")
ROOT_HASH = bytes.fromhex("ba88fa2e5d5cc43debec74f782d1bae52e6119998321712ffd9df5a2037de874")

# What systemd-repart 257 (Debian 13, libfdisk 2.41) wrote with `--offline=yes --empty=create
# --size=auto --seed=0123456789abcdef0123456789abcdef` and three definitions (Type=root with
# CopyBlocks= of a 303104-byte EROFS image and Verity=data; Type=root-verity, Verity=hash,
# Minimize=best; Type=root-verity-sig, Verity=signature), by --architecture: the partition sizes
# it chose, then the sha256 of the image's first 20480 bytes (MBR, header, entries, up to the
# first partition) and of its last 16896 (backup entries and header). The root hash above is
# the one it computed; the disk is 1396736 bytes.
REPART_257_SIZES = (667648, 671744, 16384)
REPART_257_DISK = 1396736
REPART_257 = {
    "amd64": (
        "218fa82c2f7c90cc88b54a594b58f3d378a3ff92b87e63825e7f8e01512efab0",
        "c18515aec0e3a193d9ffc408e649d9cda4e356a79cb2d731022024c1d1d32f62",
    ),
    "arm64": (
        "9c0bc34e21b712961c6bab3059a98037bb5e9219fbf3f344ff51d98889aa4756",
        "bc2963ebf5b6b952ec2ca072b998476878a0fc3977528aff505cd271562f93b1",
    ),
}


def ddi_partitions(
    arch: str, sizes: tuple[int, ...], sources: Sequence[Path | None] | None = None
) -> list[GptPartition]:
    kinds = partition_kinds(arch)
    data_uuid, verity_uuid = root_hash_uuids(ROOT_HASH)
    uuids = (data_uuid, verity_uuid, seeded_partition_uuid(SEED, kinds[2].type_uuid))
    sources = sources or [None] * len(kinds)
    return [
        GptPartition(kind.type_uuid, part_uuid, kind.label, kind.attributes, size, source)
        for kind, part_uuid, size, source in zip(kinds, uuids, sizes, sources, strict=True)
    ]


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_the_tables_are_systemd_repart_257s_byte_for_byte(arch: str) -> None:
    placed, disk = place(ddi_partitions(arch, REPART_257_SIZES))
    front, back = table_regions(derived_uuid(SEED, "disk-uuid"), placed, disk)
    assert disk == REPART_257_DISK
    assert [item.first_lba for item in placed] == [40, 1344, 2656]
    assert (hashlib.sha256(front).hexdigest(), hashlib.sha256(back).hexdigest()) == REPART_257[arch]


def test_uuids_are_derived_as_repart_derives_them() -> None:
    # repart 257 wrote these for the seed and root hash above (sfdisk -d of its image).
    assert str(derived_uuid(SEED, "disk-uuid")) == "6913f4b6-6690-4a57-a202-f1b53c56dbdf"
    data, verity = root_hash_uuids(ROOT_HASH)
    assert (str(data), str(verity)) == (
        "ba88fa2e-5d5c-c43d-ebec-74f782d1bae5",  # raw: no version 4 bits
        "2e611999-8321-712f-fd9d-f5a2037de874",
    )
    signature = {
        arch: seeded_partition_uuid(SEED, partition_kinds(arch)[2].type_uuid)
        for arch in ("amd64", "arm64")
    }
    assert {arch: str(value) for arch, value in signature.items()} == {
        "amd64": "ca977224-9a98-40c9-bef7-eae884d35446",
        "arm64": "68e7a9f1-8ce6-495d-a2b2-a19aeeac312a",
    }


def test_partition_table_names_and_flags() -> None:
    labels = {arch: [kind.label for kind in partition_kinds(arch)] for arch in ("amd64", "arm64")}
    assert labels == {
        "amd64": ["root-x86-64", "root-x86-64-verity", "root-x86-64-verity-sig"],
        "arm64": ["root-arm64", "root-arm64-verity", "root-arm64-verity-sig"],
    }
    assert [kind.attributes for kind in partition_kinds("amd64")] == [
        GPT_FLAG_READ_ONLY,
        GPT_FLAG_READ_ONLY,
        0,
    ]


@pytest.fixture
def payloads(tmp_path: Path) -> list[Path]:
    # systemd-dissect parses the signature partition's JSON (not the signature in it).
    signature = json.dumps({"rootHash": ROOT_HASH.hex(), "signature": "AAAA"}).encode()
    files = []
    for index, body in enumerate((b"\1" * 303104, b"\2" * 8192, signature)):
        path = tmp_path / f"payload{index}"
        path.write_bytes(body)
        files.append(path)
    return files


def written(tmp_path: Path, payloads: list[Path], arch: str = "amd64") -> Path:
    image = tmp_path / "alloy.raw"
    sizes = (303104 + 4096 * 3, 8192, 16384)
    write_gpt_image(image, derived_uuid(SEED, "disk-uuid"), ddi_partitions(arch, sizes, payloads))
    return image


def test_round_trip(tmp_path: Path, payloads: list[Path]) -> None:
    image = written(tmp_path, payloads)
    table = read_gpt(image)
    data = image.read_bytes()
    expected = ddi_partitions("amd64", (0, 0, 0))
    assert table.disk_uuid == derived_uuid(SEED, "disk-uuid")
    assert [(p.number, p.type_uuid, p.uuid, p.name, p.attributes) for p in table.partitions] == [
        (n, e.type_uuid, e.uuid, e.label, e.attributes) for n, e in enumerate(expected, 1)
    ]
    assert [(p.offset, p.size) for p in table.partitions] == [
        (20480, 315392),
        (335872, 8192),
        (344064, 16384),
    ]
    for part, payload in zip(table.partitions, payloads, strict=True):
        body = payload.read_bytes()
        assert data[part.offset : part.offset + len(body)] == body
        assert not any(data[part.offset + len(body) : part.offset + part.size])
    assert len(data) == 344064 + 16384 + write.TAIL_BYTES
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "alloy.raw",
        "payload0",
        "payload1",
        "payload2",
    ]


def test_a_payload_larger_than_its_partition_leaves_nothing(
    tmp_path: Path, payloads: list[Path]
) -> None:
    partitions = ddi_partitions("amd64", (4096, 8192, 16384), payloads)
    with pytest.raises(BuildError, match="holds more than its partition's 4096 bytes"):
        write_gpt_image(tmp_path / "alloy.raw", SEED, partitions)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["payload0", "payload1", "payload2"]


def test_sizes_and_names_repart_could_not_write_are_refused() -> None:
    kind = partition_kinds("amd64")[0]
    with pytest.raises(ValueError, match="not a positive multiple of 4096"):
        place([GptPartition(kind.type_uuid, SEED, kind.label, 0, 1000)])
    with pytest.raises(ValueError, match="does not fit a GPT entry"):
        write.entries_bytes(place([GptPartition(kind.type_uuid, SEED, "x" * 37, 0, 4096)])[0])


@pytest.mark.needs("sfdisk")
def test_sfdisk_reads_what_we_write(tmp_path: Path, payloads: list[Path]) -> None:
    image = written(tmp_path, payloads, "arm64")
    shown = subprocess.run(
        ["sfdisk", "--json", str(image)], check=True, capture_output=True, text=True
    )
    assert shown.stderr == ""
    table = json.loads(shown.stdout)["partitiontable"]
    expected = ddi_partitions("arm64", (0, 0, 0))
    assert (table["label"], table["id"], table["firstlba"], table["sectorsize"]) == (
        "gpt",
        str(derived_uuid(SEED, "disk-uuid")).upper(),
        34,
        512,
    )
    assert table["lastlba"] == image.stat().st_size // 512 - 34
    assert [
        (p["start"], p["size"], p["type"], p["uuid"], p["name"], p.get("attrs"))
        for p in table["partitions"]
    ] == [
        (
            40,
            616,
            str(expected[0].type_uuid).upper(),
            str(expected[0].uuid).upper(),
            "root-arm64",
            "GUID:60",
        ),
        (
            656,
            16,
            str(expected[1].type_uuid).upper(),
            str(expected[1].uuid).upper(),
            "root-arm64-verity",
            "GUID:60",
        ),
        (
            672,
            32,
            str(expected[2].type_uuid).upper(),
            str(expected[2].uuid).upper(),
            "root-arm64-verity-sig",
            None,
        ),
    ]


@pytest.mark.needs("systemd-dissect", "mkfs.erofs", root="systemd-dissect attaches a loop device")
def test_systemd_dissect_finds_a_ddis_partitions(tmp_path: Path, payloads: list[Path]) -> None:
    # systemd 252's dissect reads the table through the kernel's loop partitions: it names
    # each designator, takes the UUIDs and labels, honours the read-only flag, and reads the
    # data partition's extension-release (it mounts an EROFS one; random bytes it refuses).
    tree = tmp_path / "tree" / "usr/lib/extension-release.d"
    tree.mkdir(parents=True)
    (tree / "extension-release.alloy").write_text("ID=_any\n")
    payloads[0].unlink()
    subprocess.run(
        ["mkfs.erofs", "--all-root", "-T0", str(payloads[0]), str(tmp_path / "tree")],
        check=True,
        capture_output=True,
    )
    image = written(tmp_path, payloads)
    shown = subprocess.run(
        ["systemd-dissect", "--json=short", str(image)], check=True, capture_output=True, text=True
    )
    report = json.loads(shown.stdout)
    expected = ddi_partitions("amd64", (0, 0, 0))
    assert (report["extensionRelease"], report["useSystemExtension"]) == (["ID=_any"], True)
    assert [
        (m["designator"], m["partition_uuid"], m["partition_label"], m["architecture"], m["rw"])
        for m in report["mounts"]
    ] == [
        ("root", str(expected[0].uuid), "root-x86-64", "x86-64", "ro"),
        ("root-verity", str(expected[1].uuid), "root-x86-64-verity", "x86-64", "ro"),
        ("root-verity-sig", str(expected[2].uuid), "root-x86-64-verity-sig", "x86-64", "ro"),
    ]
    assert report["mounts"][0]["fstype"] == "erofs"


# Hostile tables. Each is refused in one Malformed line; a rebuilt table keeps every CRC
# right, so only the damage under test is wrong.

HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")
HEADER_FIELDS = (
    "signature",
    "revision",
    "header_size",
    "crc",
    "reserved",
    "my_lba",
    "alternate_lba",
    "first_usable",
    "last_usable",
    "disk_uuid",
    "entries_lba",
    "entry_count",
    "entry_size",
    "entries_crc",
)


@pytest.fixture
def image_bytes(tmp_path: Path, payloads: list[Path]) -> bytearray:
    return bytearray(written(tmp_path, payloads).read_bytes())


def refused(data: bytes | bytearray, match: str) -> None:
    with pytest.raises(Malformed, match=match) as caught:
        parse_gpt(bytes(data))
    assert "\n" not in str(caught.value)


def reseal_header(data: bytearray, lba: int, **fields: int | bytes) -> None:
    """Set header fields by name (my_lba, entry_count, entry_size, entries_crc...) and its CRC."""
    values = dict(zip(HEADER_FIELDS, HEADER.unpack_from(data, lba * 512), strict=True))
    values.update(fields, crc=0)
    header = bytearray(HEADER.pack(*(values[name] for name in HEADER_FIELDS)))
    struct.pack_into("<I", header, 16, zlib.crc32(header))
    data[lba * 512 : lba * 512 + 92] = header


def reseal_entries(data: bytearray, change: Callable[[bytearray], None]) -> None:
    """Apply `change` to both entry arrays, then set both headers' entry CRCs."""
    last = len(data) // 512 - 1
    for start in (1024, (last - 32) * 512):
        entries = bytearray(data[start : start + 128 * 128])
        change(entries)
        data[start : start + 128 * 128] = entries
    crc = zlib.crc32(bytes(data[1024 : 1024 + 128 * 128]))
    reseal_header(data, 1, entries_crc=crc)
    reseal_header(data, last, entries_crc=crc)


def set_lbas(index: int, first: int, last: int) -> Callable[[bytearray], None]:
    def change(entries: bytearray) -> None:
        struct.pack_into("<QQ", entries, index * 128 + 32, first, last)

    return change


def test_our_image_reads_clean(image_bytes: bytearray) -> None:
    assert len(parse_gpt(bytes(image_bytes)).partitions) == 3


def test_bad_primary_header_crc(image_bytes: bytearray) -> None:
    image_bytes[512 + 40] ^= 1  # first usable LBA
    refused(image_bytes, "the primary GPT header's CRC32 does not match")


def test_bad_backup_header_crc(image_bytes: bytearray) -> None:
    image_bytes[-512 + 40] ^= 1
    refused(image_bytes, "the backup GPT header's CRC32 does not match")


def test_bad_primary_entries_crc(image_bytes: bytearray) -> None:
    image_bytes[1024 + 56] ^= 1  # the first partition's name
    refused(image_bytes, "the primary GPT entry array's CRC32 does not match")


def test_bad_backup_entries_crc(image_bytes: bytearray) -> None:
    image_bytes[-512 - 128 * 128 + 56] ^= 1
    refused(image_bytes, "the backup GPT entry array's CRC32 does not match")


def test_entry_arrays_that_differ_with_right_crcs(image_bytes: bytearray) -> None:
    last = len(image_bytes) // 512 - 1
    entries = bytearray(image_bytes[1024 : 1024 + 128 * 128])
    struct.pack_into("<Q", entries, 48, 1)  # the data partition's attributes
    image_bytes[1024 : 1024 + 128 * 128] = entries
    reseal_header(image_bytes, 1, entries_crc=zlib.crc32(bytes(entries)))
    refused(image_bytes, "differ in entries crc")
    reseal_header(image_bytes, last, entries_crc=zlib.crc32(bytes(entries)))
    refused(image_bytes, "the backup GPT entry array's CRC32 does not match")


def test_overlapping_partitions(image_bytes: bytearray) -> None:
    reseal_entries(image_bytes, set_lbas(1, 600, 700))  # inside the data partition
    refused(image_bytes, "GPT partitions 1 and 2 overlap")


def test_a_partition_past_the_usable_end(image_bytes: bytearray) -> None:
    last_usable = len(image_bytes) // 512 - 34
    reseal_entries(image_bytes, set_lbas(2, 672, last_usable + 1))
    refused(image_bytes, "GPT partition 3 .* lies outside the usable LBAs")


def test_a_partition_ending_before_it_starts(image_bytes: bytearray) -> None:
    reseal_entries(image_bytes, set_lbas(2, 700, 699))
    refused(image_bytes, "GPT partition 3 .* lies outside the usable LBAs")


def test_an_extra_partition(image_bytes: bytearray) -> None:
    def add(entries: bytearray) -> None:
        entries[3 * 128 : 4 * 128] = entries[2 * 128 : 3 * 128]
        struct.pack_into("<QQ", entries, 3 * 128 + 32, 704, 707)

    reseal_entries(image_bytes, add)
    refused(image_bytes, "GPT entry 4 holds a partition: a sysext DDI has exactly 3")


def test_a_missing_partition(image_bytes: bytearray) -> None:
    def drop(entries: bytearray) -> None:
        entries[2 * 128 : 3 * 128] = bytes(128)

    reseal_entries(image_bytes, drop)
    refused(image_bytes, "the GPT holds 2 partitions, not the 3")


def test_leftovers_in_an_unused_entry(image_bytes: bytearray) -> None:
    def smuggle(entries: bytearray) -> None:
        entries[100 * 128 + 56] = 0x41  # a name without a type

    reseal_entries(image_bytes, smuggle)
    refused(image_bytes, "unused GPT entry 101 is not all zero")


def test_a_truncated_image_has_no_backup_header(image_bytes: bytearray) -> None:
    refused(image_bytes[:-4096], "the image was cut short or grown")
    refused(image_bytes[:-1], "not a whole number of 512-byte sectors")
    refused(image_bytes[:1024], "not a whole number|cut short")


def test_a_grown_image(image_bytes: bytearray) -> None:
    refused(image_bytes + bytes(4096), "the image was cut short or grown")


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"entry_count": 1 << 31}, "lists 2147483648 entries of 128 bytes"),
        ({"entry_size": 1 << 20}, "lists 128 entries of 1048576 bytes"),
        ({"entry_count": 0}, "lists 0 entries"),
        ({"header_size": 1 << 30}, "not revision 1.0 of 92"),
        ({"revision": 0x20000}, "revision 0x20000"),
        ({"entries_lba": 1 << 60}, "entry arrays are not at LBA 2"),
        ({"first_usable": 1}, "overlap its own headers or entries"),
    ],
)
def test_huge_or_impossible_primary_header_fields(
    image_bytes: bytearray, fields: dict[str, int], match: str
) -> None:
    reseal_header(image_bytes, 1, **fields)
    refused(image_bytes, match)


def test_a_backup_that_points_elsewhere(image_bytes: bytearray) -> None:
    reseal_header(image_bytes, len(image_bytes) // 512 - 1, alternate_lba=2)
    refused(image_bytes, "does not point back at the primary")


def test_headers_with_different_disk_uuids(image_bytes: bytearray) -> None:
    reseal_header(image_bytes, len(image_bytes) // 512 - 1, disk_uuid=bytes(16))
    refused(image_bytes, "differ in disk uuid")


def test_no_protective_mbr(image_bytes: bytearray) -> None:
    refused(bytes(512) + image_bytes[512:], "no protective MBR")
    image_bytes[446 + 4] = 0x83
    refused(image_bytes, "not a protective MBR")


def test_a_bad_name(image_bytes: bytearray) -> None:
    def garble(entries: bytearray) -> None:
        entries[56:60] = b"\x00\xd8A\x00"  # a lone surrogate

    reseal_entries(image_bytes, garble)
    refused(image_bytes, "name is not NUL-terminated UTF-16")


def test_read_gpt_names_the_file_in_one_line(tmp_path: Path, image_bytes: bytearray) -> None:
    image = tmp_path / "hostile.raw"
    image.write_bytes(bytes(image_bytes[:-4096]))
    with pytest.raises(BuildError) as caught:
        read_gpt(image)
    assert str(caught.value).startswith(f"{image} is not a valid GPT disk image: ")
    assert "cut short" in str(caught.value)
