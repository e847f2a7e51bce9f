"""Boot a cached emulated machine (tests/e2e/make-arm64-machine.sh, make-x86-machine.sh) in qemu.

Each boot gets disks of its own, so the cache is only read: the root disk is a raw ext4 made with
`mke2fs -d` from a copy of a cached root with `seed` laid over it (no mount), and the results
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.container import Boot
from tests.needs import unavailable

SHARED = "/alloy-e2e"  # where the probe records, in the booted root
ROOT_DISK = "2G"  # sparse: a root takes 200-400 MB of it
RESULTS_DISK = 64 << 20


@dataclass(frozen=True)
class Machine:
    """An emulated machine: how to boot it, and where its cache comes from."""

    name: str  # what the messages call it
    script: str  # tests/e2e/make-*-machine.sh, which builds it
    env: str  # the variable that names its directory (nox -s e2e sets it)
    stamp: str  # written last by the script
    timeout_env: str  # seconds before qemu is killed
    qemu: tuple[str, ...]  # qemu's command line up to -kernel
    append: str  # the kernel's command line


def cached_machine(machine: Machine) -> Path:
    """The directory `machine.script` built, named by `machine.env`."""
    if not os.environ.get(machine.env):
        unavailable(
            f"this boot test needs the {machine.name} machine: run it with `nox -s e2e` (which "
            f"builds it once with tests/e2e/{machine.script} and sets {machine.env})"
        )
    directory = Path(os.environ[machine.env]).resolve()
    if not (directory / machine.stamp).is_file():
        unavailable(
            f"{machine.env}={directory} is not a machine made by tests/e2e/{machine.script}: "
            f"run 'tests/e2e/{machine.script} {directory}' or 'nox -s e2e'"
        )
    return directory


def _die_with_parent() -> None:
    """If the test run dies, qemu gets SIGKILL."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _root_disk(root: Path, seed: Path, work: Path) -> Path:
    tree = work / "root"
    subprocess.run(["cp", "-a", "--reflink=auto", f"{root}/.", str(tree)], check=True)
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


def boot(
    machine: Machine,
    directory: Path,
    root: Path,
    seed: Path,
    work: Path,
    timeout: float | None = None,
) -> Boot:
    """Boot the kernel and initramfs in `directory` (a cached `machine`) on a disk of `root` with
    `seed` laid over it, until it powers off by itself or `timeout` seconds pass (then kill
    qemu). What the probe recorded, and the serial console as console.log, end up in work/out."""
    timeout = timeout or float(os.environ.get(machine.timeout_env) or 900)
    work.mkdir(parents=True, exist_ok=True)
    out = work / "out"
    out.mkdir()
    start = time.monotonic()
    root_disk = _root_disk(root, seed, work)
    results_disk = work / "results.img"
    with results_disk.open("wb") as blank:
        blank.truncate(RESULTS_DISK)
    command = [
        *machine.qemu,
        *("-kernel", str(directory / "vmlinuz"), "-initrd", str(directory / "initrd.img")),
        *("-append", machine.append),
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
