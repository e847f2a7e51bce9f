"""A GPT disk image's partition table (a sysext DDI's), read and checked without loop devices.

Everything in it is hostile. Read: the protective MBR, the primary header (LBA 1), the backup
header (last LBA), both entry arrays; checked as UEFI 2.10 section 5.3 says and as
build/formats/gpt.py writes them: signature, revision 1.0, a 92-byte header, both header CRCs
and both entry-array CRCs, my/alternate LBAs pointing at each other and the backup at the
image's last sector (an image cut short or grown has none there), the same disk UUID, usable
range and entries in both, entries inside the usable range, no two partitions overlapping,
unused entries all zero, exactly the number of partitions the caller expects, in slots 1 to n.
The entry array is bounded (at most 128 entries of 128 bytes: what libfdisk and repart write),
so the work is a constant; the image is only mapped, never read whole.
"""

from __future__ import annotations

import itertools
import mmap
import struct
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

from build.core.safeio import Malformed, map_readonly, refusing_malformed

SECTOR = 512
SIGNATURE = b"EFI PART"
REVISION = 0x00010000
HEADER_SIZE = 92
MAX_ENTRIES = 128
ENTRY_SIZE = 128
_HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")
_ENTRY = struct.Struct("<16s16sQQQ72s")


@dataclass(frozen=True)
class Partition:
    number: int  # 1-based slot in the entry array
    type_uuid: uuid.UUID
    uuid: uuid.UUID
    name: str
    first_lba: int
    last_lba: int
    attributes: int

    @property
    def offset(self) -> int:
        return self.first_lba * SECTOR

    @property
    def size(self) -> int:
        return (self.last_lba - self.first_lba + 1) * SECTOR


@dataclass(frozen=True)
class Gpt:
    disk_uuid: uuid.UUID
    first_usable_lba: int
    last_usable_lba: int
    partitions: tuple[Partition, ...]


@dataclass(frozen=True)
class _Header:
    my_lba: int
    alternate_lba: int
    first_usable: int
    last_usable: int
    disk_uuid: bytes
    entries_lba: int
    entry_count: int
    entries_crc: int


def _protective_mbr(data: bytes) -> int:
    """The sectors the protective MBR says the disk has after LBA 0."""
    if data[510:512] != b"\x55\xaa":
        raise Malformed("LBA 0 holds no MBR signature (0x55AA): no protective MBR")
    records = [data[446 + 16 * i : 462 + 16 * i] for i in range(4)]
    kind = records[0][4]
    start, size = struct.unpack_from("<II", records[0], 8)
    if kind != 0xEE or start != 1 or any(any(r) for r in records[1:]):
        raise Malformed("the MBR is not a protective MBR (one 0xEE partition from LBA 1)")
    return int(size)


def _header(data: bytes | mmap.mmap, lba: int, which: str, sectors: int) -> _Header:
    raw = bytes(data[lba * SECTOR : lba * SECTOR + SECTOR])
    fields = _HEADER.unpack_from(raw)
    signature, revision, size, crc, reserved = fields[:5]
    if signature != SIGNATURE:
        raise Malformed(f"the {which} GPT header at LBA {lba} has no 'EFI PART' signature")
    if revision != REVISION or size != HEADER_SIZE or reserved:
        raise Malformed(
            f"the {which} GPT header is revision {revision:#x} of {size} bytes, "
            f"not revision 1.0 of {HEADER_SIZE}"
        )
    zeroed = raw[:16] + b"\0\0\0\0" + raw[20:HEADER_SIZE]
    if zlib.crc32(zeroed) != crc or any(raw[HEADER_SIZE:]):
        raise Malformed(f"the {which} GPT header's CRC32 does not match its bytes")
    header = _Header(
        my_lba=fields[5],
        alternate_lba=fields[6],
        first_usable=fields[7],
        last_usable=fields[8],
        disk_uuid=fields[9],
        entries_lba=fields[10],
        entry_count=fields[11],
        entries_crc=fields[13],
    )
    if fields[12] != ENTRY_SIZE or not 1 <= header.entry_count <= MAX_ENTRIES:
        raise Malformed(
            f"the {which} GPT header lists {header.entry_count} entries of {fields[12]} bytes, "
            f"not at most {MAX_ENTRIES} of {ENTRY_SIZE}"
        )
    return header


def _entries(data: bytes | mmap.mmap, header: _Header, which: str, sectors: int) -> bytes:
    length = header.entry_count * ENTRY_SIZE
    start = header.entries_lba * SECTOR
    if header.entries_lba < 2 or start + length > sectors * SECTOR:
        raise Malformed(
            f"the {which} GPT entries at LBA {header.entries_lba} lie outside the image"
        )
    entries = bytes(data[start : start + length])
    if zlib.crc32(entries) != header.entries_crc:
        raise Malformed(f"the {which} GPT entry array's CRC32 does not match its bytes")
    return entries


def _check_pair(primary: _Header, backup: _Header, sectors: int) -> None:
    last = sectors - 1
    if (primary.my_lba, primary.alternate_lba) != (1, last):
        raise Malformed(
            f"the primary GPT header points at a backup at LBA {primary.alternate_lba}, "
            f"not the image's last sector {last}: the image was cut short or grown"
        )
    if (backup.my_lba, backup.alternate_lba) != (last, 1):
        raise Malformed("the backup GPT header does not point back at the primary at LBA 1")
    entry_sectors = -(-primary.entry_count * ENTRY_SIZE // SECTOR)
    if primary.entries_lba != 2 or backup.entries_lba != last - entry_sectors:
        raise Malformed("the GPT entry arrays are not at LBA 2 and right before the backup header")
    if not 2 + entry_sectors <= primary.first_usable <= primary.last_usable < backup.entries_lba:
        raise Malformed(
            f"the GPT's usable LBAs {primary.first_usable}-{primary.last_usable} overlap "
            "its own headers or entries"
        )
    same = ("disk_uuid", "first_usable", "last_usable", "entry_count", "entries_crc")
    for name in same:
        if getattr(primary, name) != getattr(backup, name):
            raise Malformed(
                f"the primary and backup GPT headers differ in {name.replace('_', ' ')}"
            )


def _partition(number: int, raw: bytes, header: _Header) -> Partition:
    type_le, uuid_le, first, last, attributes, name_raw = _ENTRY.unpack(raw)
    units = name_raw.decode("utf-16-le", errors="replace")
    name, _, rest = units.partition("\0")
    if "\ufffd" in name or rest.strip("\0"):
        raise Malformed(f"GPT partition {number}'s name is not NUL-terminated UTF-16")
    if not header.first_usable <= first <= last <= header.last_usable:
        raise Malformed(
            f"GPT partition {number} (LBA {first}-{last}) lies outside the usable LBAs "
            f"{header.first_usable}-{header.last_usable}"
        )
    return Partition(
        number,
        uuid.UUID(bytes_le=type_le),
        uuid.UUID(bytes_le=uuid_le),
        name,
        first,
        last,
        attributes,
    )


def _partitions(
    entries: bytes, header: _Header, expected: int | tuple[int, ...]
) -> tuple[Partition, ...]:
    counts = expected if isinstance(expected, tuple) else (expected,)
    said = " or ".join(str(count) for count in counts)
    found: list[Partition] = []
    for index in range(header.entry_count):
        raw = entries[index * ENTRY_SIZE : (index + 1) * ENTRY_SIZE]
        if not any(raw[:16]):
            if any(raw):
                raise Malformed(f"unused GPT entry {index + 1} is not all zero")
            continue
        if index >= max(counts):
            raise Malformed(
                f"GPT entry {index + 1} holds a partition: a sysext DDI has exactly {said}"
            )
        if index > len(found):  # repart fills entries 1 to n
            raise Malformed(
                f"GPT entry {len(found) + 1} is empty, but entry {index + 1} holds a partition"
            )
        found.append(_partition(index + 1, raw, header))
    if len(found) not in counts:
        raise Malformed(f"the GPT holds {len(found)} partitions, not the {said} of a sysext DDI")
    ordered = sorted(found, key=lambda part: part.first_lba)
    for before, after in itertools.pairwise(ordered):
        if after.first_lba <= before.last_lba:
            raise Malformed(f"GPT partitions {before.number} and {after.number} overlap")
    return tuple(found)


def parse_gpt(data: bytes | mmap.mmap, expected: int | tuple[int, ...] = 3) -> Gpt:
    """The GPT of a disk image's bytes (a bytes-like or an mmap) holding `expected`
    partitions (or any of those counts); raises Malformed."""
    if len(data) % SECTOR or len(data) < 3 * SECTOR:
        raise Malformed(f"{len(data)} bytes is not a whole number of 512-byte sectors with a GPT")
    sectors = len(data) // SECTOR
    covered = _protective_mbr(bytes(data[:SECTOR]))
    primary = _header(data, 1, "primary", sectors)
    if primary.alternate_lba != sectors - 1:
        raise Malformed(
            f"the backup GPT header belongs at LBA {primary.alternate_lba}, but the image's "
            f"last sector is {sectors - 1}: the image was cut short or grown"
        )
    if covered != min(sectors - 1, 0xFFFFFFFF):
        raise Malformed(
            f"the protective MBR covers {covered} sectors, not the image's {sectors - 1}"
        )
    backup = _header(data, sectors - 1, "backup", sectors)
    _check_pair(primary, backup, sectors)
    entries = _entries(data, primary, "primary", sectors)
    if _entries(data, backup, "backup", sectors) != entries:
        raise Malformed("the primary and backup GPT entry arrays differ")
    return Gpt(
        uuid.UUID(bytes_le=primary.disk_uuid),
        primary.first_usable,
        primary.last_usable,
        _partitions(entries, primary, expected),
    )


def read_gpt(path: Path, expected: int | tuple[int, ...] = 3) -> Gpt:
    """`path`'s GPT, or one BuildError naming it."""
    with refusing_malformed(path, "GPT disk", "systemd-repart or alloy-sysext"):
        data = map_readonly(path)
        try:
            return parse_gpt(data, expected)
        finally:
            if not isinstance(data, bytes):
                data.close()
    raise AssertionError("unreachable")  # refusing_malformed re-raises
