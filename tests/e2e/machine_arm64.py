"""Boot the cached arm64 machine (tests/e2e/make-arm64-machine.sh) in qemu-system-aarch64.

Each boot gets disks of its own, so the cache is only read: the root disk is a raw ext4 made with
`mke2fs -d` from a copy of the cached root with `seed` laid over it (no mount), and the results
disk is a blank file the probe unit writes a tar stream to before it powers the machine off.
The host reads that tar back. qemu runs under a timeout and is killed when it passes.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

from tests.e2e.container import Boot
from tests.needs import unavailable

MACHINE_ENV = "ALLOY_E2E_ARM64_MACHINE"
MACHINE_STAMP = ".alloy-sysext-e2e-arm64"  # written last by make-arm64-machine.sh
TIMEOUT_ENV = "ALLOY_E2E_ARM64_TIMEOUT"
SHARED = "/alloy-e2e"  # where the probe records, in the booted root
ROOT_DISK = "2G"  # sparse: the root takes ~200 MB of it
RESULTS_DISK = 64 << 20

# What the issue found to work with Debian's qemu 7.2 and kernel 6.1; -no-reboot: a reboot or a
# panic (panic=-1) ends qemu instead of looping.
QEMU = [
    "qemu-system-aarch64",
    *("-M", "virt", "-cpu", "cortex-a57", "-smp", "2", "-m", "2048"),
    *("-nographic", "-no-reboot", "-nic", "none"),
]
APPEND = "root=/dev/vda rw console=ttyAMA0 panic=-1 quiet"


def cached_machine() -> Path:
    """The machine make-arm64-machine.sh built, named by ALLOY_E2E_ARM64_MACHINE."""
    if not os.environ.get(MACHINE_ENV):
        unavailable(
            f"the arm64 boot test needs the arm64 machine: run it with `nox -s e2e` (which "
            f"builds it once with tests/e2e/make-arm64-machine.sh and sets {MACHINE_ENV})"
        )
    machine = Path(os.environ[MACHINE_ENV]).resolve()
    if not (machine / MACHINE_STAMP).is_file():
        unavailable(
            f"{MACHINE_ENV}={machine} is not a machine made by tests/e2e/make-arm64-machine.sh: "
            f"run 'tests/e2e/make-arm64-machine.sh {machine}' or 'nox -s e2e'"
        )
    return machine


def _die_with_parent() -> None:
    """If the test run dies, qemu gets SIGKILL."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _root_disk(machine: Path, seed: Path, work: Path) -> Path:
    tree = work / "root"
    subprocess.run(["cp", "-a", "--reflink=auto", f"{machine / 'root'}/.", str(tree)], check=True)
    subprocess.run(["cp", "-a", "--remove-destination", f"{seed}/.", str(tree)], check=True)
    disk = work / "root.img"
    subprocess.run(
        ["mke2fs", "-q", "-F", "-t", "ext4", "-L", "root", "-d", str(tree), str(disk), ROOT_DISK],
        check=True,
        capture_output=True,
    )
    shutil.rmtree(tree)
    return disk


def _read_results(disk: Path, out: Path) -> None:
    """Unpack the probe's tar stream; a disk it never wrote stays blank and gives nothing."""
    try:
        with tarfile.open(disk, "r:") as archive:
            # The "data" filter where this Python has it (3.10.12+, 3.11.4+).
            safe: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            archive.extractall(out, **safe)
    except tarfile.ReadError:
        pass


def boot(machine: Path, seed: Path, work: Path, timeout: float | None = None) -> Boot:
    """Boot the cached `machine` with `seed` laid over its root until it powers off by itself or
    `timeout` seconds pass (then kill qemu). What the probe recorded, and the serial console as
    console.log, end up in work/out."""
    timeout = timeout or float(os.environ.get(TIMEOUT_ENV) or 900)
    work.mkdir(parents=True, exist_ok=True)
    out = work / "out"
    out.mkdir()
    start = time.monotonic()
    root_disk = _root_disk(machine, seed, work)
    results_disk = work / "results.img"
    with results_disk.open("wb") as blank:
        blank.truncate(RESULTS_DISK)
    command = [
        *QEMU,
        *("-kernel", str(machine / "vmlinuz"), "-initrd", str(machine / "initrd.img")),
        *("-append", APPEND),
        *("-drive", f"file={root_disk},format=raw,if=none,id=root"),
        *("-device", "virtio-blk-pci,drive=root"),
        *("-drive", f"file={results_disk},format=raw,if=none,id=results"),
        *("-device", "virtio-blk-pci,drive=results"),
    ]
    with (work / "console.log").open("wb") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        try:
            returncode: int | None = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            returncode = None
    seconds = time.monotonic() - start
    _read_results(results_disk, out)
    shutil.copy(work / "console.log", out / "console.log")
    root_disk.unlink()
    return Boot(returncode, seconds, timeout, out)
