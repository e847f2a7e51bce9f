"""EROFS images for the reader's tests (tests/test_erofs.py, tests/test_erofs_kernel.py): a tree
as stage lays it out, mkfs.erofs with other options than ours, copies damaged at a byte with
the superblock checksum made right again, and the one refusal reading an image must raise."""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import pytest

from build.core.errors import BuildError
from build.formats.erofs import image_uuid
from build.read import erofs
from build.read.erofs import ErofsReader
from tests.fakes import MACHINES, elf_binary
from tests.trees import write

RELEASE = "usr/lib/extension-release.d/extension-release.alloy"
BINARY = "usr/local/bin/alloy"
UNIT = "usr/lib/systemd/system/alloy.service"
STRICT_XATTR = "user.extension-release.strict"
IMAGE_ID = image_uuid("alloy", "1.10.2", "amd64")
SUPERBLOCK = erofs.SUPERBLOCK_OFFSET
BLOCK = 4096


def alloy_tree(root: Path, binary_size: int = 3 << 20, strict: bool = True) -> Path:
    """What stage lays out, with explicit modes (checkouts and umasks vary)."""
    root.mkdir(parents=True)
    root.chmod(0o755)
    write(root / RELEASE, b"ID=_any\nARCHITECTURE=x86-64\n")
    if strict:
        os.setxattr(root / RELEASE, STRICT_XATTR, b"false")
    write(root / UNIT, b"[Service]\nExecStart=/usr/local/bin/alloy run\n")
    write(root / BINARY, elf_binary(MACHINES["amd64"], size=binary_size), 0o755)
    return root


def mkfs(tree: Path, image: Path, *options: str) -> Path:
    """mkfs.erofs with other options than ours: the reader must read what mkfs.erofs writes."""
    image.parent.mkdir(parents=True, exist_ok=True)
    env = {"PATH": os.environ["PATH"], "LC_ALL": "C"}
    subprocess.run(
        ["mkfs.erofs", *options, str(image), str(tree)], check=True, capture_output=True, env=env
    )
    return image


def patched(image: Path, at: int, data: bytes, checksum: bool = True) -> Path:
    """A copy of `image` with `data` at byte `at` and, unless told not to, the superblock
    checksum made right again: the damage is then all the reader sees."""
    copy = bytearray(image.read_bytes())
    copy[at : at + len(data)] = data
    if checksum:
        fix_checksum(copy)
    out = image.with_name("patched.raw")
    out.write_bytes(bytes(copy))
    return out


def fix_checksum(data: bytearray) -> None:
    block = bytearray(data[SUPERBLOCK:BLOCK])
    block[4:8] = bytes(4)
    data[SUPERBLOCK + 4 : SUPERBLOCK + 8] = struct.pack("<I", erofs.crc32c(bytes(block)))


def refused(image: Path, *fragments: str) -> str:
    """The one BuildError reading `image` (all of it) raises; it names the image."""
    with pytest.raises(BuildError) as caught:
        read_everything(image)
    message = str(caught.value)
    assert str(image) in message
    for fragment in fragments:
        assert fragment in message
    return message


def read_everything(image: Path) -> list:
    reader = ErofsReader(image)
    nodes = reader.nodes()
    heads = [reader.head(node, 1 << 16) for node in nodes if node.kind == "file"]
    return [*nodes, *heads]


def nids(image: Path) -> dict[str, int]:
    return {node.path: node.inode for node in ErofsReader(image).nodes()}


def position_of(image: Path, path: str) -> int:
    """Where the inode of `path` starts (metadata starts at block 0 in mkfs.erofs images)."""
    (meta_blkaddr,) = struct.unpack_from("<I", image.read_bytes(), SUPERBLOCK + 40)
    return meta_blkaddr * BLOCK + nids(image)[path] * erofs.INODE_SLOT
