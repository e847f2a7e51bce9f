"""Just enough ELF header parsing to refuse a binary that cannot run on the target."""

from __future__ import annotations

import struct

from build.core.errors import BuildError
from build.model.arch import ELF_MACHINE_NAMES, Arch

HEADER_SIZE = 20  # e_ident (16) + e_type (2) + e_machine (2)
_EXECUTABLE_TYPES = {2: "executable", 3: "position-independent executable"}


def check_elf_header(header: bytes, arch: Arch, what: str) -> None:
    """Raise BuildError unless `header` starts a 64-bit little-endian executable for `arch`."""
    if len(header) < HEADER_SIZE or header[:4] != b"\x7fELF":
        raise BuildError(
            f"{what} is not an ELF executable",
            "the release asset is not a Linux binary; check --version and --base-url",
        )
    elf_class, data = header[4], header[5]
    if elf_class != 2 or data != 1:
        raise BuildError(
            f"{what} is not a 64-bit little-endian ELF file",
            f"expected a {arch.elf_name} binary for --arch={arch.name}",
        )
    e_type, e_machine = struct.unpack_from("<HH", header, 16)
    if e_machine != arch.elf_machine:
        found = ELF_MACHINE_NAMES.get(e_machine, f"machine {e_machine}")
        raise BuildError(
            f"{what} is built for {found}, not {arch.elf_name}",
            f"the asset does not match --arch={arch.name}; check the release or the mirror",
        )
    if e_type not in _EXECUTABLE_TYPES:
        raise BuildError(
            f"{what} is an ELF file but not an executable (type {e_type})",
            "the release asset is broken; check the release or the mirror",
        )
