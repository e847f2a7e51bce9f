"""Assembling a sysext DDI from a file system image, as systemd-repart 255+ does from a root
definition (CopyBlocks= of the image, Verity=data), a root-verity one (Verity=hash,
Minimize=best, VerityDataBlockSizeBytes=4096) and, when signed, a root-verity-sig one, with
`--offline=yes --empty=create --size=auto --seed=SEED`. Where repart 255+ is on PATH,
assemble() has it build the DDI (build/formats/repart.py); elsewhere it writes the same bytes
itself (assemble_in_python; tests/e2e/test_repart.py compares both with repart 257).

What repart does, in order, and so do we:
- Minimal sizes (repart.c partition_min_size()): the data partition is the image (whole
  4096-byte blocks: see below); the hash partition is what libcryptsetup's tree of that many
  blocks needs (superblock block and levels: build/read/verity.py area_bytes()); the signature
  partition is VERITY_SIG_SIZE (16 KiB), also its maximum.
- The tree covers the image's blocks, computed before placement (Minimize=best: repart 257
  sizes the hash partition by writing the tree; checked byte for byte).
- Placement (build/formats/gpt.py layout()): on a disk of 4 MiB or less the data and hash
  partitions grow into the ~1 MiB libfdisk leaves (context_grow_partitions()); the grown data
  partition's zeros after the image are outside the tree (its superblock counts the image's
  blocks), and dm-verity serves only those blocks.
- The tree's salt and superblock UUID from the seed (build/formats/verity.py); the data and
  hash partition UUIDs are the root hash's halves (model/ddi.py root_hash_uuids()); the
  signature partition's and the disk's UUIDs from the seed.
An image that is not whole 4096-byte blocks is refused: repart 257 refuses one that is not
whole 512-byte sectors and leaves a part block out of the tree (the file system dm-verity
served would be cut short).
The data image is read twice, a megabyte at a time (hash, then copy); what is held is the tree
(1/128 of the data). The DDI appears under its name only when complete.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from build.core.errors import BuildError
from build.core.fileio import TEMP_SUFFIX, fsync_dir, scratch_prefix
from build.core.report import say
from build.core.safeio import Malformed
from build.formats.gpt import GRAIN, GptPartition, layout, write_gpt_image
from build.formats.repart import REPART, WITHOUT_REPART_ENV, build_with_repart, why_not_repart
from build.formats.verity import verity_salt, verity_uuid
from build.model.ddi import (
    derived_uuid,
    partition_kinds,
    root_hash_uuids,
    seeded_partition_uuid,
)
from build.read.gpt import read_gpt
from build.read.verity import BLOCK_BYTES, Superblock, Tree, area_bytes, hash_tree

SIGNATURE_BYTES = 16 * 1024  # repart.c VERITY_SIG_SIZE: the signature partition's exact size
DISK_UUID_TOKEN = "disk-uuid"  # repart.c context_acquire_partition_uuids_and_labels()
PYTHON_ASSEMBLER = "python"  # Assembled.assembler of assemble_in_python()


def _scratch(target: Path) -> tempfile.TemporaryDirectory[str]:
    """A directory beside `target` for what the DDI is made of, and the DDI itself until it is
    complete: what a killed build leaves there the runner's sweep removes (fileio
    sweep_temps)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(
        prefix=scratch_prefix(target), suffix=".ddi" + TEMP_SUFFIX, dir=target.parent
    )


def _place(built: Path, target: Path) -> None:
    os.chmod(built, 0o644)  # whatever the umask
    os.replace(built, target)
    fsync_dir(target.parent)


def _round_up(value: int, to: int) -> int:
    return -(-value // to) * to


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
    if size % BLOCK_BYTES:
        raise BuildError(
            f"the data image {data_image} is {size} bytes, not whole {BLOCK_BYTES}-byte blocks: "
            "dm-verity would leave its last part block unchecked and unserved",
            "pack it with mkfs.erofs, or mksquashfs without -nopad (both pad to 4096 bytes)",
        )


def data_tree(data_image: Path, seed: uuid.UUID) -> Tree:
    """The hash tree of `data_image` (whole 4096-byte blocks) with the seed's salt: what repart
    computes before it places the partitions."""
    blocks = data_image.stat().st_size // BLOCK_BYTES
    with data_image.open("rb") as stream:
        try:
            return hash_tree(stream, 0, blocks, verity_salt(seed))
        except Malformed:  # cut short while it was read
            raise BuildError(
                f"{data_image} changed while it was being hashed", "build the DDI again"
            ) from None


def _signature(sign: Callable[[bytes], bytes], root_hash: bytes) -> bytes:
    signature = sign(root_hash)
    if not 0 < len(signature) <= SIGNATURE_BYTES:
        raise BuildError(
            f"the verity signature is {len(signature)} bytes; its partition holds 1 to "
            f"{SIGNATURE_BYTES}",
            "pass the signature partition's JSON (padded to 16 KiB at most), or None unsigned",
        )
    return signature


@dataclass(frozen=True)
class Assembled:
    root_hash: bytes
    # What wrote it: "systemd-repart 257" or "python" (the same bytes: for the record only)
    assembler: str


def assemble(
    data_image: Path,
    target: Path,
    arch: str,
    seed: uuid.UUID,
    sign: Callable[[bytes], bytes] | None,
) -> bytes:
    """Write the DDI of `data_image` (an EROFS or squashfs image) for `arch` (amd64, arm64) at
    `target`, with the signature partition holding what `sign` makes of the root hash (None: an
    unsigned verity DDI, no signature partition); returns the root hash. systemd-repart 255+
    writes it where it is on PATH, this module elsewhere (or with WITHOUT_REPART_ENV set): the
    same bytes either way; which one did is said in one line."""
    return assemble_recorded(data_image, target, arch, seed, sign).root_hash


def assemble_recorded(
    data_image: Path,
    target: Path,
    arch: str,
    seed: uuid.UUID,
    sign: Callable[[bytes], bytes] | None,
) -> Assembled:
    """assemble(), saying also which way wrote the DDI."""
    _check_inputs(data_image)
    version, why_not = why_not_repart()
    if why_not is not None:
        say("pack", f"{target.name}: DDI assembled in Python: {why_not}")
        root_hash = assemble_in_python(data_image, target, arch, seed, sign)
        return Assembled(root_hash, PYTHON_ASSEMBLER)
    say("pack", f"{target.name}: DDI built with systemd-repart {version}")
    root_hash = assemble_with_repart(data_image, target, arch, seed, sign)
    return Assembled(root_hash, f"{REPART} {version}")


def assemble_in_python(
    data_image: Path,
    target: Path,
    arch: str,
    seed: uuid.UUID,
    sign: Callable[[bytes], bytes] | None,
) -> bytes:
    """assemble() without systemd-repart: the GPT, the tree and the partitions written here."""
    _check_inputs(data_image)
    minimal = _partitions(arch, seed, data_image, sign is not None)
    placed = layout(minimal)
    tree = data_tree(data_image, seed)
    hash_bytes = placed.sizes[1]
    data_blocks = minimal[0].size // BLOCK_BYTES  # the image's: _check_inputs saw whole blocks
    superblock = Superblock(verity_uuid(seed).bytes, verity_salt(seed), data_blocks)
    area = tree.area(superblock)
    if len(area) > hash_bytes:  # layout() grows the hash partition at least as much as the data
        raise AssertionError(f"a {len(area)}-byte tree placed in {hash_bytes} bytes")
    data_uuid, hash_uuid = root_hash_uuids(tree.root_hash)
    signature = None if sign is None else _signature(sign, tree.root_hash)
    with _scratch(target) as scratch:
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
        built = Path(scratch) / target.name
        write_gpt_image(built, derived_uuid(seed, DISK_UUID_TOKEN), final)
        _place(built, target)
    return tree.root_hash


def assemble_with_repart(
    data_image: Path,
    target: Path,
    arch: str,
    seed: uuid.UUID,
    sign: Callable[[bytes], bytes] | None,
) -> bytes:
    """assemble() by systemd-repart 255+ (build/formats/repart.py). Signed, the root hash is
    computed here first, for the signature partition repart copies in; repart's own tree must
    then have the same root, or nothing is written."""
    _check_inputs(data_image)
    signed_hash = None
    with _scratch(target) as scratch:
        sig_file = None
        if sign is not None:
            signed_hash = data_tree(data_image, seed).root_hash
            sig_file = Path(scratch) / "signature"
            sig_file.write_bytes(_signature(sign, signed_hash))
        built = Path(scratch) / target.name
        build_with_repart(data_image.absolute(), built, arch, seed, sig_file)
        table = read_gpt(built, 3 if sign is not None else 2)
        root_hash = table.partitions[0].uuid.bytes + table.partitions[1].uuid.bytes
        if signed_hash is not None and root_hash != signed_hash:
            raise BuildError(
                f"systemd-repart built {target.name} with the root hash {root_hash.hex()}, but "
                f"its signature is for {signed_hash.hex()}; nothing was written",
                f"set {WITHOUT_REPART_ENV}=1 to assemble the DDI in Python, and report it",
            )
        _place(built, target)
    return root_hash
