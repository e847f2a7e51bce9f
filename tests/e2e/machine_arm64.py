"""The cached arm64 machine (tests/e2e/make-arm64-machine.sh: Debian 12 arm64, systemd 252),
booted in qemu-system-aarch64 on a disk of its own root (tests/e2e/machine.py)."""

from __future__ import annotations

from pathlib import Path

from tests.e2e import machine
from tests.e2e.container import Boot
from tests.e2e.machine import SHARED

__all__ = ["SHARED", "boot", "cached_machine"]

# What the issue found to work with Debian's qemu 7.2 and kernel 6.1; -no-reboot: a reboot or a
# panic (panic=-1) ends qemu instead of looping.
ARM64 = machine.Machine(
    name="arm64",
    script="make-arm64-machine.sh",
    env="ALLOY_E2E_ARM64_MACHINE",
    stamp=".alloy-sysext-e2e-arm64",
    timeout_env="ALLOY_E2E_ARM64_TIMEOUT",
    qemu=(
        "qemu-system-aarch64",
        *("-M", "virt", "-cpu", "cortex-a57", "-smp", "2", "-m", "2048"),
        *("-nographic", "-no-reboot", "-nic", "none"),
    ),
    append="root=/dev/vda rw console=ttyAMA0 panic=-1 quiet",
)


def cached_machine() -> Path:
    """The machine make-arm64-machine.sh built, named by ALLOY_E2E_ARM64_MACHINE."""
    return machine.cached_machine(ARM64)


def boot(directory: Path, seed: Path, work: Path, timeout: float | None = None) -> Boot:
    """Boot the cached arm64 machine on its own root with `seed` laid over it."""
    return machine.boot(ARM64, directory, directory / "root", seed, work, timeout)
