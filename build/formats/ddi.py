"""Assembling a sysext DDI from a file system image, as systemd-repart 255+ does from a root
definition (CopyBlocks= of the image, Verity=data), a root-verity one (Verity=hash,
Minimize=best, VerityDataBlockSizeBytes=4096) and, when signed, a root-verity-sig one
(Verity=signature), with `--offline=yes --empty=create --size=auto --seed=SEED`.

What repart does, in order, and so do we:
- Minimal sizes (repart.c partition_min_size()): the data partition is the image rounded up to
  4096; the hash partition is what libcryptsetup's tree of that many blocks needs (superblock
  block and levels: build/read/verity.py area_bytes()); the signature partition is
  VERITY_SIG_SIZE (16 KiB), also its maximum.
- Placement (build/formats/gpt.py layout()): on a disk of 4 MiB or less the data and hash
  partitions grow into the ~1 MiB libfdisk leaves (context_grow_partitions()); the tree is then
  computed over the whole grown data partition, zero padding included
  (partition_format_verity_hash() hashes the partition, not the copied image).
- The tree's salt and superblock UUID from the seed (build/formats/verity.py); the data and
  hash partition UUIDs are the root hash's halves (model/ddi.py root_hash_uuids()); the
  signature partition's and the disk's UUIDs from the seed.
The data image is read twice, a megabyte at a time (hash, then copy); what is held is the tree
(1/128 of the data). The DDI appears under its name only when complete.
"""

from __future__ import annotations

import io
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from build.core.errors import BuildError
from build.formats.gpt import GRAIN, GptPartition, layout, write_gpt_image
from build.formats.verity import verity_salt, verity_uuid
from build.model.ddi import (
    derived_uuid,
    partition_kinds,
    root_hash_uuids,
    seeded_partition_uuid,
)
from build.read.verity import BLOCK_BYTES, Superblock, Tree, area_bytes, hash_tree

SIGNATURE_BYTES = 16 * 1024  # repart.c VERITY_SIG_SIZE: the signature partition's exact size
DISK_UUID_TOKEN = "disk-uuid"  # repart.c context_acquire_partition_uuids_and_labels()


def _round_up(value: int, to: int) -> int:
    return -(-value // to) * to


class _ZeroPadded(io.RawIOBase):
    """`path`'s bytes followed by zeros up to `size`: the data partition as it sits on the disk,
    without a copy of it."""

    def __init__(self, path: Path, size: int) -> None:
        super().__init__()
        self._file = path.open("rb")
        self._length = path.stat().st_size
        self._size = size
        self._at = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._at, io.SEEK_END: self._size}[whence]
        self._at = base + offset
        return self._at

    def tell(self) -> int:
        return self._at

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        count = max(0, min(len(view), self._size - self._at))
        real = max(0, min(count, self._length - self._at))
        if real:
            self._file.seek(self._at)
            got = self._file.readinto(view[:real])
            if got != real:
                raise BuildError(f"{self._file.name} changed while it was being hashed")
        view[real:count] = bytes(count - real)
        self._at += count
        return count

    def close(self) -> None:
        self._file.close()
        super().close()


def _partitions(arch: str, seed: uuid.UUID, data_image: Path, signed: bool) -> list[GptPartition]:
    """The DDI's partitions at their minimal sizes, UUIDs still the seed's placeholders."""
    kinds = partition_kinds(arch)[: 3 if signed else 2]
    data_bytes = _round_up(data_image.stat().st_size, BLOCK_BYTES)
    sizes = [data_bytes, _round_up(area_bytes(data_bytes // BLOCK_BYTES), GRAIN), SIGNATURE_BYTES]
    return [
        GptPartition(
            kind.type_uuid,
            seeded_partition_uuid(seed, kind.type_uuid),
            kind.label,
            kind.attributes,
            size,
            grows=kind.role != "signature",
        )
        for kind, size in zip(kinds, sizes, strict=False)
    ]


def _check_inputs(data_image: Path) -> None:
    try:
        size = data_image.stat().st_size
    except OSError as error:
        raise BuildError(
            f"cannot read the data image {data_image}: {error.strerror}",
            "build the EROFS or squashfs image first",
        ) from None
    if size == 0:
        raise BuildError(
            f"the data image {data_image} is empty", "build the EROFS or squashfs image first"
        )


def data_tree(data_image: Path, partition_bytes: int, seed: uuid.UUID) -> Tree:
    """The hash tree of the data partition: `data_image` zero-padded to `partition_bytes`."""
    with io.BufferedReader(_ZeroPadded(data_image, partition_bytes), 1 << 20) as stream:
        return hash_tree(stream, 0, partition_bytes // BLOCK_BYTES, verity_salt(seed))


def assemble(
    data_image: Path,
    target: Path,
    arch: str,
    seed: uuid.UUID,
    sign: Callable[[bytes], bytes] | None,
) -> bytes:
    """Write the DDI of `data_image` (an EROFS or squashfs image) for `arch` (amd64, arm64) at
    `target`, with the signature partition holding what `sign` makes of the root hash (None: an
    unsigned verity DDI, no signature partition); returns the root hash."""
    _check_inputs(data_image)
    minimal = _partitions(arch, seed, data_image, sign is not None)
    placed = layout(minimal)
    data_bytes, hash_bytes = placed.sizes[0], placed.sizes[1]
    tree = data_tree(data_image, data_bytes, seed)
    superblock = Superblock(verity_uuid(seed).bytes, verity_salt(seed), data_bytes // BLOCK_BYTES)
    area = tree.area(superblock)
    if len(area) > hash_bytes:  # layout() grows the hash partition at least as much as the data
        raise AssertionError(f"a {len(area)}-byte tree placed in {hash_bytes} bytes")
    data_uuid, hash_uuid = root_hash_uuids(tree.root_hash)
    signature = None if sign is None else sign(tree.root_hash)
    if signature is not None and not 0 < len(signature) <= SIGNATURE_BYTES:
        raise BuildError(
            f"the verity signature is {len(signature)} bytes; its partition holds 1 to "
            f"{SIGNATURE_BYTES}",
            "pass the signature partition's JSON (padded to 16 KiB at most), or None unsigned",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ddi-", dir=target.parent) as scratch:
        hash_file = Path(scratch) / "verity"
        hash_file.write_bytes(area)
        sources: list[Path] = [data_image, hash_file]
        if signature is not None:
            sig_file = Path(scratch) / "signature"
            sig_file.write_bytes(signature)
            sources.append(sig_file)
        uuids = [data_uuid, hash_uuid, *(part.uuid for part in minimal[2:])]
        final = [
            GptPartition(
                part.type_uuid,
                part_uuid,
                part.label,
                part.attributes,
                part.size,
                source,
                part.grows,
            )
            for part, part_uuid, source in zip(minimal, uuids, sources, strict=True)
        ]
        write_gpt_image(target, derived_uuid(seed, DISK_UUID_TOKEN), final)
    return tree.root_hash
