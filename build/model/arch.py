"""The one table that maps our architecture names to systemd's and ELF's."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Arch:
    name: str  # Alloy's asset suffix and ours: amd64, arm64
    systemd: str  # ARCHITECTURE= in extension-release
    elf_machine: int  # e_machine in the ELF header
    elf_name: str  # how people call that machine
    # mksquashfs's xz BCJ filter for this machine's code (-Xbcj), for --compression=xz-bcj; None
    # where squashfs-tools has none (4.5 knows 32-bit ARM's, not arm64's).
    bcj: str | None
    # Other names --arch takes for it (output names keep `name`): systemd's, and the kernel's.
    aliases: tuple[str, ...] = ()


ARCHES: dict[str, Arch] = {
    "amd64": Arch("amd64", "x86-64", 62, "x86-64", bcj="x86", aliases=("x86-64", "x86_64")),
    "arm64": Arch("arm64", "arm64", 183, "AArch64", bcj=None, aliases=("aarch64",)),
}
# Every name --arch takes -> our name for it.
ARCH_NAMES: dict[str, str] = {
    alias: arch.name
    for arch in ARCHES.values()
    for alias in (arch.name, arch.systemd, *arch.aliases)
}

ELF_MACHINE_NAMES: dict[int, str] = {
    3: "x86 (32-bit)",
    8: "MIPS",
    20: "PowerPC",
    21: "PowerPC64",
    22: "s390",
    40: "ARM (32-bit)",
    62: "x86-64",
    183: "AArch64",
    243: "RISC-V",
}
