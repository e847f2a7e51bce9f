"""The cached x86-64 machine (tests/e2e/make-x86-machine.sh: Debian 13's amd64 kernel, with
dm_verity) booted in qemu-system-x86_64 under TCG (no KVM needed) on a disk of the cached
Debian 13 root (make-root.sh --suite=trixie: systemd 257), tests/e2e/machine.py."""

from __future__ import annotations

from pathlib import Path

from tests.e2e import machine
from tests.e2e.container import Boot

X86_64 = machine.Machine(
    name="x86-64",
    script="make-x86-machine.sh",
    env="ALLOY_E2E_X86_MACHINE",
    stamp=".alloy-sysext-e2e-x86-64",
    timeout_env="ALLOY_E2E_X86_TIMEOUT",
    qemu=(
        "qemu-system-x86_64",
        *("-M", "q35", "-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "2048"),
        *("-nographic", "-no-reboot", "-nic", "none"),
    ),
    # panic=-1 and -no-reboot: a panic ends qemu instead of looping.
    append="root=/dev/vda rw console=ttyS0 panic=-1 quiet",
)


def cached_machine() -> Path:
    """The machine make-x86-machine.sh built, named by ALLOY_E2E_X86_MACHINE."""
    return machine.cached_machine(X86_64)


def boot(directory: Path, root: Path, seed: Path, work: Path, timeout: float | None = None) -> Boot:
    """Boot the cached x86-64 machine on a disk of `root` with `seed` laid over it."""
    return machine.boot(X86_64, directory, root, seed, work, timeout)
