"""Alloy sysext trees laid out as stage lays them out, packed with the build's own options: the
images the kernel-view and differential tests start from."""

from __future__ import annotations

import os
from pathlib import Path

from build.formats.recipe import Recipe
from build.formats.table import FORMATS
from build.image.content import IMAGE_BINARY, IMAGE_EXTENSION_RELEASE, IMAGE_UNIT, STRICT_XATTR
from build.model.arch import ARCHES
from tests.fakes import MACHINES, elf_binary

# security.capability's value for cap_sys_admin, effective: version 2, bit 21 permitted.
CAP_SYS_ADMIN = (0x02000001).to_bytes(4, "little") + (1 << 21).to_bytes(4, "little") + bytes(12)

# (format, compression, arch): every layout verify accepts, on both architectures.
LAYOUTS = (
    ("squashfs", "xz", "amd64"),
    ("squashfs", "zstd", "amd64"),
    ("squashfs", "none", "amd64"),  # every block stored: Flatcar LTS sent with --transport
    ("erofs", "lz4hc", "amd64"),
    ("erofs", "none", "amd64"),
    ("squashfs", "xz", "arm64"),
)


def write(path: Path, data: bytes, mode: int = 0o644) -> None:
    for parent in reversed(path.parents):
        if not parent.exists():
            parent.mkdir()
            parent.chmod(0o755)
    path.write_bytes(data)
    path.chmod(mode)


def alloy_tree(root: Path, arch: str = "amd64", binary: bytes | None = None) -> Path:
    """What stage lays out for `arch`, with explicit modes (checkouts and umasks vary)."""
    root.mkdir(parents=True)
    root.chmod(0o755)
    release = root / IMAGE_EXTENSION_RELEASE
    write(release, f"ID=_any\nARCHITECTURE={ARCHES[arch].systemd}\n".encode())
    os.setxattr(release, STRICT_XATTR, b"false")
    write(root / IMAGE_UNIT, b"[Service]\nExecStart=/usr/local/bin/alloy run\n")
    write(root / IMAGE_BINARY, binary or elf_binary(MACHINES[arch]), 0o755)
    return root


def packed(tree: Path, image: Path, fmt: str, compression: str, arch: str = "amd64") -> Path:
    """`tree` packed into `image` as `invoke pack --format=FMT --compression=COMPRESSION`."""
    image.parent.mkdir(parents=True, exist_ok=True)
    FORMATS[fmt].pack(Recipe("alloy", "1.10.2", ARCHES[arch], compression), tree, image)
    return image
