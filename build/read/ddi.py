"""Checking a sysext DDI offline, without root, loop devices or dm-verity: its GPT
(build/read/gpt.py), the partition types of the architecture in repart's order, the data and
hash partition UUIDs against the root hash (what systemd's dissect-image.c compares before it
sets up dm-verity), the verity superblock and the whole hash tree recomputed from the data
partition (build/read/veritycheck.py). What passes is the data partition's byte range, for the
file system readers to check what is in it, and the signature partition's, for the signature
check (this module does not read the signature).

The root hash comes from the caller (the one the signature vouches for) or, for an unsigned
verity DDI, from the partition UUIDs themselves (the tree must still match them).
Everything read is hostile; one deadline (veritycheck's) covers the tree; memory is the tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from build.core.safeio import Malformed, map_readonly, refusing_malformed
from build.model.ddi import (
    DDI_PARTITIONS,
    GPT_FLAG_READ_ONLY,
    PartitionKind,
    partition_kinds,
    root_hash_uuids,
)
from build.read.gpt import Gpt, Partition, parse_gpt
from build.read.verity import BLOCK_BYTES, Superblock
from build.read.veritycheck import Region, check_verity
from build.read.veritysig import PARTITION_BYTES as SIGNATURE_PARTITION_BYTES


@dataclass(frozen=True)
class CheckedDdi:
    arch: str  # our name (amd64, arm64), from the partition types
    root_hash: bytes
    data: Region  # the file system image, in bytes of the DDI: the blocks the tree covers
    hashes: Region
    signature: Region | None  # None for an unsigned verity DDI
    superblock: Superblock


def _kind_name(kind: PartitionKind) -> str:
    return f"{kind.label} ({kind.type_uuid})"


def _check_types(table: Gpt, arch: str) -> None:
    kinds = partition_kinds(arch)
    for part, kind in zip(table.partitions, kinds, strict=False):
        if part.type_uuid != kind.type_uuid:
            known = {k.type_uuid: k.label for ks in _all_kinds() for k in ks}
            what = known.get(part.type_uuid, "an unknown type")
            raise Malformed(
                f"GPT partition {part.number} has type {part.type_uuid} ({what}), "
                f"not {_kind_name(kind)} for {arch}"
            )


def _all_kinds() -> list[tuple[PartitionKind, ...]]:
    return [partition_kinds(arch) for arch in DDI_PARTITIONS]


def _arch_of(table: Gpt) -> str:
    """The architecture whose data partition type the first partition has."""
    first = table.partitions[0]
    for arch, kinds in DDI_PARTITIONS.items():
        if kinds[0].type_uuid == first.type_uuid:
            return arch
    known = ", ".join(f"{kinds[0].label} ({kinds[0].type_uuid})" for kinds in _all_kinds())
    raise Malformed(
        f"GPT partition 1 has type {first.type_uuid}, not a sysext's root partition ({known})"
    )


def _check_labels_and_flags(table: Gpt, arch: str) -> None:
    """repart's partition names (its default label: the type's name) and GPT attributes (the
    data and hash partitions read-only, the signature partition none), as systemd-repart
    writes them: anything else was not made by it, or was changed after."""
    for part, kind in zip(table.partitions, partition_kinds(arch), strict=False):
        if part.name != kind.label:
            raise Malformed(
                f"GPT partition {part.number} is named {part.name!r}, not {kind.label!r}"
            )
        if part.attributes != kind.attributes:
            raise Malformed(
                f"GPT partition {part.number} ({kind.label}) has attributes "
                f"{part.attributes:#x}, not {kind.attributes:#x}"
                + (" (read-only)" if kind.attributes & GPT_FLAG_READ_ONLY else "")
            )


def _check_signature_size(table: Gpt, arch: str) -> None:
    """repart's signature partition is VERITY_SIG_SIZE, minimum and maximum: one of another
    size was not made by it (and a larger one would be read only in part)."""
    if len(table.partitions) < 3:
        return
    part, kind = table.partitions[2], partition_kinds(arch)[2]
    if part.size != SIGNATURE_PARTITION_BYTES:
        raise Malformed(
            f"GPT partition {part.number} ({kind.label}) is {part.size} bytes, not the "
            f"{SIGNATURE_PARTITION_BYTES} systemd-repart writes"
        )


def _check_uuids(data: Partition, hashes: Partition, root_hash: bytes) -> None:
    want_data, want_hash = root_hash_uuids(root_hash)
    if (data.uuid, hashes.uuid) != (want_data, want_hash):
        raise Malformed(
            f"the data and hash partition UUIDs {data.uuid} and {hashes.uuid} are not the root "
            f"hash {root_hash.hex()}'s halves {want_data} and {want_hash}"
        )


def _region(part: Partition) -> Region:
    return Region(part.offset, part.size)


def check_ddi(
    path: Path, arch: str | None, signed: bool | None, root_hash: bytes | None = None
) -> CheckedDdi:
    """`path` checked as a DDI for `arch` (amd64, arm64; None: the one its partition types
    name) with a signature partition if `signed` and no other (None: with or without one);
    the root hash is `root_hash` if given, else the partition UUIDs' (the tree must match
    them); one BuildError naming the image otherwise."""
    with refusing_malformed(path, "sysext DDI", "alloy-sysext or systemd-repart"):
        mapped = map_readonly(path)
        try:
            counts = (3,) if signed else (2,) if signed is False else (2, 3)
            table = parse_gpt(mapped, counts if len(counts) > 1 else counts[0])
        finally:
            if not isinstance(mapped, bytes):
                mapped.close()
        arch = arch or _arch_of(table)
        _check_types(table, arch)
        _check_labels_and_flags(table, arch)
        _check_signature_size(table, arch)
        data, hashes = table.partitions[0], table.partitions[1]
        if root_hash is None:
            root_hash = data.uuid.bytes + hashes.uuid.bytes
        _check_uuids(data, hashes, root_hash)
        with path.open("rb") as stream:
            superblock = check_verity(stream, _region(data), _region(hashes), root_hash)
        signature = _region(table.partitions[2]) if len(table.partitions) > 2 else None
        # what dm-verity serves: the blocks the tree covers (the rest was checked to be zeros)
        served = Region(data.offset, superblock.data_blocks * BLOCK_BYTES)
        return CheckedDdi(arch, root_hash, served, _region(hashes), signature, superblock)
    raise AssertionError("unreachable")  # refusing_malformed re-raises
