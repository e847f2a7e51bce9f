"""Generated stand-ins for Alloy release assets: small ELF files, zips, SHA256SUMS; and stand-ins
for external tools put first on PATH (fake_tool)."""

from __future__ import annotations

import hashlib
import io
import random
import struct
import zipfile
from pathlib import Path

MACHINES = {"amd64": 62, "arm64": 183}


def elf_binary(machine: int, size: int = 96 * 1024, seed: int = 1, elf_type: int = 2) -> bytes:
    """A 64-bit little-endian ELF header with `machine`, then compressible filler."""
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    header = ident + struct.pack(
        "<HHIQQQIHHHHHH", elf_type, machine, 1, 0x401000, 0, 0, 0, 64, 0, 0, 0, 0, 0
    )
    rng = random.Random(seed)
    words = [rng.randbytes(8) for _ in range(64)]
    filler = b"".join(rng.choice(words) for _ in range((size - len(header)) // 8 + 1))
    return (header + filler)[:size]


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            # A fixed time: the same members make the same bytes, whenever the test runs.
            info = zipfile.ZipInfo(name, date_time=(2025, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o755 << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def sums(files: dict[str, bytes]) -> bytes:
    lines = [f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in files.items()]
    return "".join(lines).encode()


def release_assets(seed: int = 1) -> dict[str, bytes]:
    """What a release directory holds: both zips, an unrelated asset, and SHA256SUMS over them."""
    assets = {
        f"alloy-linux-{arch}.zip": zip_bytes(
            {f"alloy-linux-{arch}": elf_binary(machine, seed=seed)}
        )
        for arch, machine in MACHINES.items()
    }
    assets["alloy-1.10.2-1.amd64.deb"] = b"not used"
    assets["SHA256SUMS"] = sums(assets)
    return assets


def fake_tool(directory: Path, name: str, script: str) -> Path:
    """An executable `name` in `directory` running the shell `script`: put `directory` first on
    PATH and the build runs it instead of the real tool."""
    directory.mkdir(parents=True, exist_ok=True)
    tool = directory / name
    tool.write_text("#!/bin/sh\n" + script)
    tool.chmod(0o755)
    return tool
