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
from build.model.ddi import PartitionKind, partition_kinds, root_hash_uuids
from build.read.gpt import Gpt, Partition, parse_gpt
from build.read.verity import BLOCK_BYTES, Superblock
from build.read.veritycheck import Region, check_verity


@dataclass(frozen=True)
class CheckedDdi:
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
    return [partition_kinds(arch) for arch in ("amd64", "arm64")]


def _check_uuids(data: Partition, hashes: Partition, root_hash: bytes) -> None:
    want_data, want_hash = root_hash_uuids(root_hash)
    if (data.uuid, hashes.uuid) != (want_data, want_hash):
        raise Malformed(
            f"the data and hash partition UUIDs {data.uuid} and {hashes.uuid} are not the root "
            f"hash {root_hash.hex()}'s halves {want_data} and {want_hash}"
        )


def _region(part: Partition) -> Region:
    return Region(part.offset, part.size)


def check_ddi(path: Path, arch: str, signed: bool, root_hash: bytes | None = None) -> CheckedDdi:
    """`path` checked as a DDI for `arch` (amd64, arm64) with a signature partition if `signed`
    and no other; the root hash is `root_hash` if given, else the partition UUIDs' (unsigned);
    one BuildError naming the image otherwise."""
    with refusing_malformed(path, "sysext DDI", "alloy-sysext or systemd-repart"):
        mapped = map_readonly(path)
        try:
            table = parse_gpt(mapped, 3 if signed else 2)
        finally:
            if not isinstance(mapped, bytes):
                mapped.close()
        _check_types(table, arch)
        data, hashes = table.partitions[0], table.partitions[1]
        if root_hash is None:
            root_hash = data.uuid.bytes + hashes.uuid.bytes
        _check_uuids(data, hashes, root_hash)
        with path.open("rb") as stream:
            superblock = check_verity(stream, _region(data), _region(hashes), root_hash)
        signature = _region(table.partitions[2]) if signed else None
        # what dm-verity serves: the blocks the tree covers (the rest was checked to be zeros)
        served = Region(data.offset, superblock.data_blocks * BLOCK_BYTES)
        return CheckedDdi(root_hash, served, _region(hashes), signature, superblock)
    raise AssertionError("unreachable")  # refusing_malformed re-raises
