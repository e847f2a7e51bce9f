"""The partitions of a sysext DDI (a GPT disk image): per architecture, the Discoverable
Partitions Specification's type UUIDs of the root file system, its dm-verity hash tree and the
tree's signature, with the labels and GPT attribute bits systemd-repart gives them.

Type UUIDs: systemd's src/shared/gpt.h (SD_GPT_ROOT_X86_64, SD_GPT_ROOT_X86_64_VERITY,
SD_GPT_ROOT_X86_64_VERITY_SIG and the ARM64 ones), the UAPI group's Discoverable Partitions
Specification, and `systemd-id128 show root-x86-64-verity-sig` (checked: the same).
Labels: repart.c partition_acquire_label() takes gpt_partition_type_uuid_to_string() of the
type ("root-x86-64", "root-x86-64-verity", "root-x86-64-verity-sig") when no Label= is set.
Attributes: repart.c partition_merge_flags() sets SD_GPT_FLAG_READ_ONLY where a partition is
read-only; a DDI systemd-repart 257 wrote from Verity=data, Verity=hash and Verity=signature
definitions carries bit 60 on the first two and no bit on the third (sfdisk: attrs="GUID:60").
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass

from build.model.arch import ARCHES

GPT_FLAG_READ_ONLY = 1 << 60  # gpt.h SD_GPT_FLAG_READ_ONLY
ROLES = ("data", "verity", "signature")  # the DDI's partitions, in repart's order


@dataclass(frozen=True)
class PartitionKind:
    role: str  # "data", "verity" or "signature"
    type_uuid: uuid.UUID
    label: str  # repart's default GPT partition name for the type
    attributes: int  # the GPT attribute bits repart sets


def _kinds(systemd_arch: str, data: str, verity: str, signature: str) -> tuple[PartitionKind, ...]:
    root = f"root-{systemd_arch}"
    return (
        PartitionKind("data", uuid.UUID(data), root, GPT_FLAG_READ_ONLY),
        PartitionKind("verity", uuid.UUID(verity), f"{root}-verity", GPT_FLAG_READ_ONLY),
        PartitionKind("signature", uuid.UUID(signature), f"{root}-verity-sig", 0),
    )


# Our architecture name (build/model/arch.py) -> its DDI's partitions, in ROLES' order.
DDI_PARTITIONS: dict[str, tuple[PartitionKind, ...]] = {
    "amd64": _kinds(
        ARCHES["amd64"].systemd,
        data="4f68bce3-e8cd-4db1-96e7-fbcaf984b709",
        verity="2c7357ed-ebd2-46d9-aec1-23d437ec2bf5",
        signature="41092b05-9fc8-4523-994f-2def0408b176",
    ),
    "arm64": _kinds(
        ARCHES["arm64"].systemd,
        data="b921b045-1df0-41c3-af44-4c6f280d3fae",
        verity="df3300ce-d69f-4c92-978c-9bfb0f38d820",
        signature="6db69de6-29f4-4758-a7a5-962190f00ce3",
    ),
}


def partition_kinds(arch: str) -> tuple[PartitionKind, ...]:
    """The DDI partitions of `arch` (our name: amd64, arm64), data first."""
    return DDI_PARTITIONS[arch]


def _v4(digest: bytes) -> uuid.UUID:
    """id128-util.c id128_make_v4_uuid(): the first 16 bytes, version 4, RFC 4122 variant."""
    raw = bytearray(digest[:16])
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return uuid.UUID(bytes=bytes(raw))


def derived_uuid(seed: uuid.UUID, token: str) -> uuid.UUID:
    """repart.c derive_uuid(): HMAC-SHA256 keyed by the seed's 16 bytes over the token, made
    v4. repart's disk UUID is derived_uuid(seed, "disk-uuid"); its verity superblock UUID
    derived_uuid(seed, "verity-uuid")."""
    return _v4(hmac.new(seed.bytes, token.encode(), hashlib.sha256).digest())


def seeded_partition_uuid(seed: uuid.UUID, type_uuid: uuid.UUID) -> uuid.UUID:
    """repart.c partition_acquire_uuid() for the first partition of its type: HMAC-SHA256
    keyed by the seed over the type's 16 bytes (in the UUID string's order), made v4. The
    signature partition's UUID (a DDI has one partition of each type)."""
    return _v4(hmac.new(seed.bytes, type_uuid.bytes, hashlib.sha256).digest())


def root_hash_uuids(root_hash: bytes) -> tuple[uuid.UUID, uuid.UUID]:
    """(data, verity) partition UUIDs: repart.c partition_format_verity_hash() copies the
    root hash's first 16 bytes into the data partition's UUID and its last 16 into the hash
    partition's, as they are (no v4 bits: dissect-image.c compares them raw)."""
    if len(root_hash) < 32:
        raise ValueError(f"a root hash has at least 32 bytes, not {len(root_hash)}")
    return uuid.UUID(bytes=root_hash[:16]), uuid.UUID(bytes=root_hash[-16:])


# The namespace of build_seed's UUIDs: a random UUID drawn once for this project; changing it
# changes every DDI's salt and UUIDs.
SEED_NAMESPACE = uuid.UUID("1820f84f-9025-43ac-81cb-3793c3d7e900")


def build_seed(name: str, version: str, arch: str) -> uuid.UUID:
    """The --seed of the DDI of `name` `version` for `arch` (our name: amd64, arm64):
    uuid5(SEED_NAMESPACE, "NAME VERSION ARCH"), so the same release built anywhere gets the
    same verity salt, superblock UUID, disk UUID and signature partition UUID, and another
    version or architecture others. Reproduce it with Python's
    uuid.uuid5(uuid.UUID("1820f84f-9025-43ac-81cb-3793c3d7e900"), "alloy 1.10.2 amd64")."""
    for part in (name, version, arch):
        if not part or any(character.isspace() for character in part):
            raise ValueError(f"a seed's name, version and arch are single words, not {part!r}")
    return uuid.uuid5(SEED_NAMESPACE, f"{name} {version} {arch}")


# The image policy of a host that merges only signed extensions (systemd-sysext's
# --image-policy): the root (or /usr) partition must be dm-verity protected with a signature
# that verifies against a certificate in /etc/verity.d, or absent. Never
# `verity+signed+absent`: `+` lists alternatives, so a bad signature would fall back to unsigned
# verity and merge anyway (kairos #4425). Every systemd-sysext call on such a host passes it.
SIGNED_IMAGE_POLICY = "root=signed+absent:usr=signed+absent"
