"""Writing a GPT disk image laid out as systemd-repart lays out a sysext DDI.

What repart 257 (`--empty=create --size=auto`, libfdisk 2.41) wrote for a root + root-verity +
root-verity-sig DDI, byte for byte (tests/test_gpt.py holds a copy of its tables' hashes):
- LBA 0: a protective MBR (one partition of type 0xEE from LBA 1 over the rest of the disk,
  CHS 0/0/2 to 0xFFFFFF, no disk signature, 0x55AA).
- LBA 1: the header (revision 1.0, 92 bytes, rest of the sector zero), entries at LBA 2: 128
  entries of 128 bytes (libfdisk's default), first usable LBA 34 (2 + 32 entry sectors: no
  1 MiB alignment gap), last usable LBA = last LBA - 33.
- Partitions in definition order, numbered from 1, from the first 4096-aligned byte at or
  after the first usable LBA (repart.c aligns to its 4 KiB grain: LBA 40), each right after
  the one before, sizes multiples of 4096.
- The disk ends 20 KiB after the last partition: repart's --size=auto makes it
  GPT_METADATA_SIZE (1044 KiB) plus the partitions' minimal sizes and grows the partitions
  until the usable area's last whole 4 KiB; what is left after them is 40 sectors, 33 of
  them the backup entries and backup header (last LBA).
- Disk UUID and partition UUIDs as build/model/ddi.py derives them; names UTF-16LE.

The writer streams each partition's payload from its file (bounded memory), pads with zeros,
and writes under a temporary name that is renamed into place only when all of it is written.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from build.core.errors import BuildError
from build.core.fileio import atomic_path

SECTOR = 512
ENTRY_COUNT = 128
ENTRY_SIZE = 128
HEADER_SIZE = 92
REVISION = 0x00010000
SIGNATURE = b"EFI PART"
ENTRY_SECTORS = ENTRY_COUNT * ENTRY_SIZE // SECTOR  # 32
FIRST_USABLE_LBA = 2 + ENTRY_SECTORS  # 34
GRAIN = 4096  # repart.c: partitions are placed and sized in 4 KiB
TAIL_BYTES = 20 * 1024  # after the last partition (see the module's docstring)
NAME_UNITS = 36  # UTF-16 code units in an entry's name
COPY_CHUNK = 1 << 20


def _align_up(value: int, to: int) -> int:
    return -(-value // to) * to


FIRST_PARTITION_BYTE = _align_up(FIRST_USABLE_LBA * SECTOR, GRAIN)  # 20480: LBA 40


@dataclass(frozen=True)
class GptPartition:
    """One partition to write: its payload is `source`'s bytes (None: zeros), padded with zeros
    to `size` (a multiple of 4096, at least the payload)."""

    type_uuid: uuid.UUID
    uuid: uuid.UUID
    label: str
    attributes: int
    size: int
    source: Path | None = None


@dataclass(frozen=True)
class Placed:
    partition: GptPartition
    first_lba: int
    last_lba: int

    @property
    def offset(self) -> int:
        return self.first_lba * SECTOR


def place(partitions: Sequence[GptPartition]) -> tuple[list[Placed], int]:
    """Where repart puts `partitions` (in order) and the disk's size in bytes."""
    if not 1 <= len(partitions) <= ENTRY_COUNT:
        raise ValueError(f"a GPT holds 1 to {ENTRY_COUNT} partitions, not {len(partitions)}")
    placed = []
    offset = FIRST_PARTITION_BYTE
    for partition in partitions:
        if partition.size <= 0 or partition.size % GRAIN:
            raise ValueError(f"partition size {partition.size} is not a positive multiple of 4096")
        end = offset + partition.size
        placed.append(Placed(partition, offset // SECTOR, end // SECTOR - 1))
        offset = end
    return placed, offset + TAIL_BYTES


def _name(label: str) -> bytes:
    encoded = label.encode("utf-16-le")
    if len(encoded) > NAME_UNITS * 2 or "\0" in label:
        raise ValueError(f"partition name {label!r} does not fit a GPT entry (36 UTF-16 units)")
    return encoded.ljust(NAME_UNITS * 2, b"\0")


def entries_bytes(placed: Sequence[Placed]) -> bytes:
    """The partition entry array, all ENTRY_COUNT entries (unused ones zero)."""
    table = bytearray(ENTRY_COUNT * ENTRY_SIZE)
    for index, item in enumerate(placed):
        part = item.partition
        struct.pack_into(
            "<16s16sQQQ72s",
            table,
            index * ENTRY_SIZE,
            part.type_uuid.bytes_le,
            part.uuid.bytes_le,
            item.first_lba,
            item.last_lba,
            part.attributes,
            _name(part.label),
        )
    return bytes(table)


def header_bytes(disk_uuid: uuid.UUID, disk_sectors: int, entries: bytes, *, backup: bool) -> bytes:
    """One GPT header sector (primary at LBA 1, backup at the last LBA), CRC32 filled in."""
    last = disk_sectors - 1
    my_lba, other_lba = (last, 1) if backup else (1, last)
    entries_lba = last - ENTRY_SECTORS if backup else 2
    fields = (
        SIGNATURE,
        REVISION,
        HEADER_SIZE,
        0,  # header CRC, computed over the header with this field zero
        0,
        my_lba,
        other_lba,
        FIRST_USABLE_LBA,
        last - ENTRY_SECTORS - 1,
        disk_uuid.bytes_le,
        entries_lba,
        ENTRY_COUNT,
        ENTRY_SIZE,
        zlib.crc32(entries),
    )
    header = bytearray(struct.pack("<8sIIIIQQQQ16sQIII", *fields))
    struct.pack_into("<I", header, 16, zlib.crc32(header))
    return bytes(header).ljust(SECTOR, b"\0")


def protective_mbr(disk_sectors: int) -> bytes:
    """LBA 0 as libfdisk writes it for a GPT disk."""
    mbr = bytearray(SECTOR)
    size = min(disk_sectors - 1, 0xFFFFFFFF)
    struct.pack_into("<B3sB3sII", mbr, 446, 0, b"\x00\x02\x00", 0xEE, b"\xff\xff\xff", 1, size)
    mbr[510:512] = b"\x55\xaa"
    return bytes(mbr)


def table_regions(
    disk_uuid: uuid.UUID, placed: Sequence[Placed], disk_bytes: int
) -> tuple[bytes, bytes]:
    """(the bytes before the first partition, the backup entries and header at the end)."""
    sectors = disk_bytes // SECTOR
    entries = entries_bytes(placed)
    front = protective_mbr(sectors) + header_bytes(disk_uuid, sectors, entries, backup=False)
    front += entries
    back = entries + header_bytes(disk_uuid, sectors, entries, backup=True)
    return front.ljust(FIRST_PARTITION_BYTE, b"\0"), back


def _copy_payload(part: GptPartition, out: BinaryIO) -> None:
    """`part`'s payload, streamed, then zeros to its size."""
    copied = 0
    if part.source is not None:
        with part.source.open("rb") as source:
            while chunk := source.read(COPY_CHUNK):
                copied += len(chunk)
                if copied > part.size:
                    raise BuildError(
                        f"{part.source} holds more than its partition's {part.size} bytes",
                        "give the partition a size that holds its whole payload",
                    )
                out.write(chunk)
    _zeros(out, part.size - copied)


def _zeros(out: BinaryIO, count: int) -> None:
    while count:
        step = min(count, COPY_CHUNK)
        out.write(bytes(step))
        count -= step


def write_gpt_image(
    target: Path, disk_uuid: uuid.UUID, partitions: Sequence[GptPartition]
) -> list[Placed]:
    """Write `partitions` as one GPT disk image at `target` (replaced only when complete);
    returns where each partition went."""
    placed, disk_bytes = place(partitions)
    front, back = table_regions(disk_uuid, placed, disk_bytes)
    with atomic_path(target) as tmp, tmp.open("wb") as out:
        out.write(front)
        for item in placed:
            _copy_payload(item.partition, out)
        _zeros(out, disk_bytes - len(back) - out.tell())
        out.write(back)
    return placed
