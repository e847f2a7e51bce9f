"""The GPT of a sysext DDI: written as systemd-repart 257 writes it (build/formats/gpt.py, the
partition table of build/model/ddi.py), read back by the bounded reader (build/read/gpt.py),
cross-checked with sfdisk and systemd-dissect, and refused when damaged or made to mislead."""

from __future__ import annotations

import dataclasses
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
from build.formats.gpt import (
    GptPartition,
    entries_bytes,
    layout,
    table_regions,
    write_gpt_image,
)
from build.model.ddi import (
    GPT_FLAG_READ_ONLY,
    derived_uuid,
    partition_kinds,
    root_hash_uuids,
    seeded_partition_uuid,
)
from build.read.gpt import parse_gpt, read_gpt
from tests.gptparts import ROOT_HASH, SEED, ddi_partitions

# What systemd-repart 257 (Debian 13, libfdisk 2.41) wrote with `--offline=yes --empty=create
# --size=auto --seed=0123456789abcdef0123456789abcdef` and three definitions: Type=root with
# CopyBlocks= of a data image and Verity=data; Type=root-verity, Verity=hash, Minimize=best;
# Type=root-verity-sig, Verity=signature. Per image: --architecture, the data image's bytes,
# the hash tree's minimal size (cryptsetup's for those blocks), the data and verity partition
# UUIDs (its root hash's halves), the disk's size, each partition's (first LBA, size), and the
# sha256 of the bytes before the first partition (MBR, header, entries, gap) and of the last
# 16896 (backup entries and header). 303104 and 743 to 751 blocks make disks of 4 MiB or less
# (first LBA 40, partitions grown); 752 blocks one just over (first LBA 2048, none grown).
REPART_257 = {
    "303104-amd64": (
        "amd64",
        303104,
        8192,
        ("ba88fa2e-5d5c-c43d-ebec-74f782d1bae5", "2e611999-8321-712f-fd9d-f5a2037de874"),
        1396736,
        [(40, 667648), (1344, 671744), (2656, 16384)],
        "218fa82c2f7c90cc88b54a594b58f3d378a3ff92b87e63825e7f8e01512efab0",
        "c18515aec0e3a193d9ffc408e649d9cda4e356a79cb2d731022024c1d1d32f62",
    ),
    "303104-arm64": (
        "arm64",
        303104,
        8192,
        ("ba88fa2e-5d5c-c43d-ebec-74f782d1bae5", "2e611999-8321-712f-fd9d-f5a2037de874"),
        1396736,
        [(40, 667648), (1344, 671744), (2656, 16384)],
        "9c0bc34e21b712961c6bab3059a98037bb5e9219fbf3f344ff51d98889aa4756",
        "bc2963ebf5b6b952ec2ca072b998476878a0fc3977528aff505cd271562f93b1",
    ),
    "743-blocks": (
        "amd64",
        743 * 4096,
        8 * 4096,
        ("4925e8f5-10ac-5a90-883b-94d3e63d1e37", "0eef5112-76d4-5b95-be7e-8ee85a0f7ba8"),
        4161536,
        [(40, 3043328), (5984, 1060864), (8056, 16384)],
        "4cd469883aec99fe79050772855ba6bd0b4f1cb44735b2bf5b0431d3e08829ac",
        "052cc3b9b9352de94b318ab3a1fe65fff781df2efa4db3e1f3b16bd1ffeec3d4",
    ),
    "751-blocks": (
        "amd64",
        751 * 4096,
        8 * 4096,
        ("d9309ec7-ac65-3078-a8df-c025e62754b7", "27abca2d-97d2-3eb6-1126-d2df5c4dfdb7"),
        4194304,
        [(40, 3076096), (6048, 1060864), (8120, 16384)],
        "49d8f695cc3829099a3b126b52eec77c8b8beb3ac18bb5cef5148a71dcc89d79",
        "56b3f36092cffbe5d10d58e2e7f2037aced976b5310f722874d31263bb2f70d5",
    ),
    "752-blocks": (
        "amd64",
        752 * 4096,
        8 * 4096,
        ("026a2182-1116-4e9f-4d70-bb02e794a4f7", "db89ee8f-adc3-cbf9-fdc6-19aa67123b49"),
        4198400,
        [(2048, 3080192), (8064, 32768), (8128, 16384)],
        "6b032b05a6c8ee5e2ad88493aeb9e968643c640b503ddde60c54272ea9095311",
        "823041d706414abcea83d14cd1a7ad03938c7654c8e1df811888a7155f08818e",
    ),
}


@pytest.mark.parametrize("case", list(REPART_257))
def test_the_tables_are_systemd_repart_257s_byte_for_byte(case: str) -> None:
    arch, data, tree, halves, disk, places, front_sha, back_sha = REPART_257[case]
    uuids = (uuid.UUID(halves[0]), uuid.UUID(halves[1]))
    partitions = ddi_partitions(arch, (data, tree, 16384), data_uuids=uuids)
    placed = layout(partitions)
    front, back = table_regions(derived_uuid(SEED, "disk-uuid"), partitions, placed)
    assert placed.disk_bytes == disk
    assert list(zip(placed.offsets, placed.sizes, strict=True)) == [
        (lba * 512, size) for lba, size in places
    ]
    assert (hashlib.sha256(front).hexdigest(), hashlib.sha256(back).hexdigest()) == (
        front_sha,
        back_sha,
    )


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


def minimal_sizes(payloads: Sequence[Path]) -> tuple[int, ...]:
    data, tree = (-(-path.stat().st_size // 4096) * 4096 for path in payloads[:2])
    return (data, tree, 16384)


def written(tmp_path: Path, payloads: list[Path], arch: str = "amd64") -> Path:
    image = tmp_path / "alloy.raw"
    partitions = ddi_partitions(arch, minimal_sizes(payloads), payloads)
    write_gpt_image(image, derived_uuid(SEED, "disk-uuid"), partitions)
    return image


@pytest.mark.parametrize("data_bytes", [303104, 5 << 20], ids=["small-disk", "large-disk"])
def test_round_trip(tmp_path: Path, payloads: list[Path], data_bytes: int) -> None:
    payloads[0].write_bytes(b"\1" * data_bytes)
    image = written(tmp_path, payloads)
    placed = layout(ddi_partitions("amd64", minimal_sizes(payloads)))
    table = read_gpt(image)
    data = image.read_bytes()
    expected = ddi_partitions("amd64", (0, 0, 0))
    assert table.disk_uuid == derived_uuid(SEED, "disk-uuid")
    assert (table.first_usable_lba, table.last_usable_lba) == (
        placed.first_usable_lba,
        placed.last_usable_lba,
    )
    assert [(p.number, p.type_uuid, p.uuid, p.name, p.attributes) for p in table.partitions] == [
        (n, e.type_uuid, e.uuid, e.label, e.attributes) for n, e in enumerate(expected, 1)
    ]
    assert [(p.offset, p.size) for p in table.partitions] == list(
        zip(placed.offsets, placed.sizes, strict=True)
    )
    for part, payload in zip(table.partitions, payloads, strict=True):
        body = payload.read_bytes()
        assert data[part.offset : part.offset + len(body)] == body
        assert not any(data[part.offset + len(body) : part.offset + part.size])
    assert len(data) == placed.disk_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "alloy.raw",
        "payload0",
        "payload1",
        "payload2",
    ]


def test_a_payload_larger_than_its_partition_leaves_nothing(
    tmp_path: Path, payloads: list[Path]
) -> None:
    partitions = [
        dataclasses.replace(part, grows=False)
        for part in ddi_partitions("amd64", (4096, 8192, 16384), payloads)
    ]
    with pytest.raises(BuildError, match="holds more than its partition's 4096 bytes"):
        write_gpt_image(tmp_path / "alloy.raw", SEED, partitions)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["payload0", "payload1", "payload2"]


def test_sizes_and_names_repart_could_not_write_are_refused() -> None:
    kind = partition_kinds("amd64")[0]
    with pytest.raises(ValueError, match="not a positive multiple of 4096"):
        layout([GptPartition(kind.type_uuid, SEED, kind.label, 0, 1000)])
    with pytest.raises(ValueError, match="1 to 128 partitions, not 0"):
        layout([])
    odd = [GptPartition(kind.type_uuid, SEED, "x" * 37, 0, 4096)]
    with pytest.raises(ValueError, match="does not fit a GPT entry"):
        entries_bytes(odd, layout(odd))


@pytest.mark.needs("sfdisk")
def test_sfdisk_reads_what_we_write(tmp_path: Path, payloads: list[Path]) -> None:
    image = written(tmp_path, payloads, "arm64")
    placed = layout(ddi_partitions("arm64", minimal_sizes(payloads)))
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
    attrs = ["GUID:60", "GUID:60", None]
    assert [
        (p["start"], p["size"], p["type"], p["uuid"], p["name"], p.get("attrs"))
        for p in table["partitions"]
    ] == [
        (offset // 512, size // 512, str(e.type_uuid).upper(), str(e.uuid).upper(), e.label, attr)
        for offset, size, e, attr in zip(placed.offsets, placed.sizes, expected, attrs, strict=True)
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


def test_an_empty_entry_between_partitions(image_bytes: bytearray) -> None:
    """Two partitions in entries 1 and 3 are not an unsigned DDI's two: repart fills entries 1
    to n, and a reader taking the second partition found as the hash partition must not be
    handed one from another slot."""

    def hole(entries: bytearray) -> None:
        entries[1 * 128 : 2 * 128] = bytes(128)

    reseal_entries(image_bytes, hole)
    with pytest.raises(Malformed, match="GPT entry 2 is empty, but entry 3 holds a partition"):
        parse_gpt(bytes(image_bytes), (2, 3))


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
