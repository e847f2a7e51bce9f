"""A DDI's partitions as the DDI builder gives them, for the GPT tests and the bench's tests."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

from build.formats.gpt import GptPartition
from build.model.ddi import partition_kinds, root_hash_uuids, seeded_partition_uuid

SEED = uuid.UUID("0123456789abcdef0123456789abcdef")
ROOT_HASH = bytes.fromhex("ba88fa2e5d5cc43debec74f782d1bae52e6119998321712ffd9df5a2037de874")


def ddi_partitions(
    arch: str,
    sizes: tuple[int, ...],
    sources: Sequence[Path | None] | None = None,
    data_uuids: tuple[uuid.UUID, uuid.UUID] | None = None,
) -> list[GptPartition]:
    """The DDI's three partitions as the DDI builder will give them: minimal sizes, the data
    and hash partitions growable, the signature not (repart: its 16 KiB are a maximum)."""
    kinds = partition_kinds(arch)
    data_uuid, verity_uuid = data_uuids or root_hash_uuids(ROOT_HASH)
    uuids = (data_uuid, verity_uuid, seeded_partition_uuid(SEED, kinds[2].type_uuid))
    sources = sources or [None] * len(kinds)
    return [
        GptPartition(
            kind.type_uuid,
            part_uuid,
            kind.label,
            kind.attributes,
            size,
            source,
            kind.role != "signature",
        )
        for kind, part_uuid, size, source in zip(kinds, uuids, sizes, sources, strict=True)
    ]
