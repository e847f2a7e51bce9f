"""Writing a GPT disk image laid out as systemd-repart lays out a sysext DDI.

What repart 257 (`--empty=create --size=auto`, libfdisk 2.41) wrote for a root + root-verity +
root-verity-sig DDI, byte for byte (tests/test_gpt.py holds hashes of its tables):
- LBA 0: a protective MBR (one partition of type 0xEE from LBA 1 over the rest of the disk,
  CHS 0/0/2 to 0xFFFFFF, no disk signature, 0x55AA).
- LBA 1: the header (revision 1.0, 92 bytes, rest of the sector zero), entries at LBA 2: 128
  entries of 128 bytes (libfdisk's default); last usable LBA = last LBA - 33 - 1.
- The disk's size: repart.c determine_auto_size(), GPT_METADATA_SIZE (1044 KiB) plus every
  partition's minimal size (a multiple of its 4 KiB grain).
- The first usable LBA is libfdisk's: on a disk of more than 4 MiB it aligns to its 1 MiB grain
  (LBA 2048, where the first partition starts: the 1044 KiB leave 20 KiB after the last
  partition, no room to grow); on 4 MiB or less its grain is a sector (LBA 34, the first
  partition at the first 4 KiB boundary, LBA 40) and repart.c context_grow_partitions() hands
  the ~1 MiB left over to the partitions that may grow (seen: 4194304 bytes small, 4198400 not).
- Partitions in definition order, numbered from 1, each right after the one before.
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
from build.core.safeio import copy_at_most

SECTOR = 512
ENTRY_COUNT = 128
ENTRY_SIZE = 128
HEADER_SIZE = 92
REVISION = 0x00010000
SIGNATURE = b"EFI PART"
ENTRY_SECTORS = ENTRY_COUNT * ENTRY_SIZE // SECTOR  # 32
GRAIN = 4096  # repart.c: partitions are placed and sized in 4 KiB
GPT_METADATA_SIZE = 1044 * 1024  # repart.c: what libfdisk takes off a disk for a GPT
SMALL_DISK = 4 * 1024 * 1024  # libfdisk: up to this size, a sector-sized alignment grain
LARGE_FIRST_LBA = 2048  # libfdisk's first usable LBA on larger disks (its 1 MiB grain)
SMALL_FIRST_LBA = 2 + ENTRY_SECTORS  # 34: right after the entries
NAME_UNITS = 36  # UTF-16 code units in an entry's name
WEIGHT = 1000  # repart.c: every partition's default Weight=
COPY_CHUNK = 1 << 20


def _align_up(value: int, to: int) -> int:
    return -(-value // to) * to


@dataclass(frozen=True)
class GptPartition:
    """One partition to write, as a repart definition gives it: `size` is its minimal size
    (a multiple of 4096); one that `grows` may get more on a small disk (see the docstring),
    one that does not keeps it (a verity signature's SizeMaxBytes). Its payload is `source`'s
    bytes (None: zeros), padded with zeros to the partition's final size."""

    type_uuid: uuid.UUID
    uuid: uuid.UUID
    label: str
    attributes: int
    size: int
    source: Path | None = None
    grows: bool = True


@dataclass(frozen=True)
class Layout:
    """Where repart puts a disk's partitions: its size, the first usable LBA, each partition's
    first LBA and final size."""

    disk_bytes: int
    first_usable_lba: int
    offsets: tuple[int, ...]
    sizes: tuple[int, ...]

    @property
    def last_usable_lba(self) -> int:
        return self.disk_bytes // SECTOR - 1 - ENTRY_SECTORS - 1


def _grow(minimums: Sequence[int], grows: Sequence[bool], span: int) -> list[int]:
    """repart.c context_grow_partitions(): the span shared by weight, in whole grains, in
    definition order (the last takes what rounding leaves); a partition whose share is below
    its minimum keeps its minimum, one that may not grow keeps its size, and the rest is
    shared again among the others."""
    sizes: list[int | None] = [None] * len(minimums)
    changed = True
    while changed:  # repart's overcharge and undercharge phases
        changed = False
        open_ = [i for i, size in enumerate(sizes) if size is None]
        share = span // max(1, len(open_))
        for index in open_:
            if minimums[index] > share or not grows[index]:
                sizes[index] = minimums[index]
                span -= minimums[index]
                changed = True
                break
    open_ = [i for i, size in enumerate(sizes) if size is None]
    for count, index in enumerate(open_):
        left = len(open_) - count
        given = span if left == 1 else span * WEIGHT // (WEIGHT * left) // GRAIN * GRAIN
        sizes[index] = given
        span -= given
    return [size or 0 for size in sizes]


def layout(partitions: Sequence[GptPartition]) -> Layout:
    """repart's placement of `partitions` on a disk of --size=auto."""
    if not 1 <= len(partitions) <= ENTRY_COUNT:
        raise ValueError(f"a GPT holds 1 to {ENTRY_COUNT} partitions, not {len(partitions)}")
    for partition in partitions:
        if partition.size <= 0 or partition.size % GRAIN:
            raise ValueError(f"partition size {partition.size} is not a positive multiple of 4096")
    minimums = [partition.size for partition in partitions]
    disk_bytes = GPT_METADATA_SIZE + sum(minimums)
    first_lba = SMALL_FIRST_LBA if disk_bytes <= SMALL_DISK else LARGE_FIRST_LBA
    start = _align_up(first_lba * SECTOR, GRAIN)
    usable_end = (disk_bytes // SECTOR - 1 - ENTRY_SECTORS) * SECTOR
    span = (usable_end - start) // GRAIN * GRAIN
    sizes = _grow(minimums, [partition.grows for partition in partitions], span)
    offsets = [start]
    for size in sizes[:-1]:
        offsets.append(offsets[-1] + size)
    return Layout(disk_bytes, first_lba, tuple(offsets), tuple(sizes))


def _name(label: str) -> bytes:
    encoded = label.encode("utf-16-le")
    if len(encoded) > NAME_UNITS * 2 or "\0" in label:
        raise ValueError(f"partition name {label!r} does not fit a GPT entry (36 UTF-16 units)")
    return encoded.ljust(NAME_UNITS * 2, b"\0")


def entries_bytes(partitions: Sequence[GptPartition], placed: Layout) -> bytes:
    """The partition entry array, all ENTRY_COUNT entries (unused ones zero)."""
    table = bytearray(ENTRY_COUNT * ENTRY_SIZE)
    for index, part in enumerate(partitions):
        first = placed.offsets[index] // SECTOR
        struct.pack_into(
            "<16s16sQQQ72s",
            table,
            index * ENTRY_SIZE,
            part.type_uuid.bytes_le,
            part.uuid.bytes_le,
            first,
            first + placed.sizes[index] // SECTOR - 1,
            part.attributes,
            _name(part.label),
        )
    return bytes(table)


def header_bytes(disk_uuid: uuid.UUID, placed: Layout, entries: bytes, *, backup: bool) -> bytes:
    """One GPT header sector (primary at LBA 1, backup at the last LBA), CRC32 filled in."""
    last = placed.disk_bytes // SECTOR - 1
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
        placed.first_usable_lba,
        placed.last_usable_lba,
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
    disk_uuid: uuid.UUID, partitions: Sequence[GptPartition], placed: Layout
) -> tuple[bytes, bytes]:
    """(the bytes before the first partition, the backup entries and header at the end)."""
    entries = entries_bytes(partitions, placed)
    front = protective_mbr(placed.disk_bytes // SECTOR)
    front += header_bytes(disk_uuid, placed, entries, backup=False) + entries
    back = entries + header_bytes(disk_uuid, placed, entries, backup=True)
    return front.ljust(placed.offsets[0], b"\0"), back


def _copy_payload(part: GptPartition, size: int, out: BinaryIO) -> None:
    """`part`'s payload, streamed, then zeros to `size`."""
    copied = 0
    if part.source is not None:
        with part.source.open("rb") as source:
            payload = copy_at_most(source, out, size)
        if payload is None:
            raise BuildError(
                f"{part.source} holds more than its partition's {size} bytes",
                "give the partition a size that holds its whole payload",
            )
        copied = payload
    _zeros(out, size - copied)


def _zeros(out: BinaryIO, count: int) -> None:
    while count:
        step = min(count, COPY_CHUNK)
        out.write(bytes(step))
        count -= step


def write_gpt_image(
    target: Path, disk_uuid: uuid.UUID, partitions: Sequence[GptPartition]
) -> Layout:
    """Write `partitions` as one GPT disk image at `target` (replaced only when complete),
    laid out as layout() says; returns that layout."""
    placed = layout(partitions)
    front, back = table_regions(disk_uuid, partitions, placed)
    with atomic_path(target) as tmp, tmp.open("wb") as out:
        out.write(front)
        for part, size in zip(partitions, placed.sizes, strict=True):
            _copy_payload(part, size, out)
        _zeros(out, placed.disk_bytes - len(back) - out.tell())
        out.write(back)
    return placed
