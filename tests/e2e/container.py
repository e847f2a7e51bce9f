"""Boot a root with systemd as PID 1 in systemd-nspawn, without touching the host.

Everything happens in private mount and PID namespaces (`unshare`): a tmpfs /run, so neither
nspawn nor the container's systemd-sysext writes to the host's; the cached root read-only under a
per-boot overlayfs whose upper layer (on that tmpfs) starts as a copy of `seed`; loop device
nodes made on that tmpfs, for the container's systemd-sysext to attach raw images. Killing
`unshare` kills its PID namespace, and with it nspawn and the whole container.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SHARED = "/alloy-e2e"  # where the container sees the host directory the check writes to

# $1 root, $2 seed, $3 number of loop device nodes, $4 their minor shift; then the command.
NAMESPACE = r"""
set -eu
root=$1 seed=$2 loops=$3 shift=$4
shift 4
mount --make-rprivate /
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir /run/alloy-e2e /run/alloy-e2e/upper /run/alloy-e2e/work /run/alloy-e2e/root \
    /run/alloy-e2e/dev
cp -a "$seed/." /run/alloy-e2e/upper/
mount -t overlay overlay \
    -o "lowerdir=$root,upperdir=/run/alloy-e2e/upper,workdir=/run/alloy-e2e/work" \
    /run/alloy-e2e/root
i=0
while [ "$i" -lt "$loops" ]; do
    mknod "/run/alloy-e2e/dev/loop$i" b 7 $((i << shift))
    i=$((i + 1))
done
"$@"
"""


@dataclass
class Boot:
    returncode: int | None  # the container's exit status (its check unit's); None: timed out
    seconds: float  # wall time: namespace, boot, check, shutdown
    timeout: float
    out: Path  # what the check wrote (bound in as /alloy-e2e), and nspawn's console.log

    @property
    def results(self) -> dict[str, str]:
        """The check's KEY=VALUE lines."""
        text = self.text("results")
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    def text(self, name: str) -> str:
        try:
            return (self.out / name).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def report(self) -> str:
        """What to read when a check fails."""
        status = (
            f"killed after {self.timeout:.0f} s"
            if self.returncode is None
            else f"exit status {self.returncode}"
        )
        parts = [f"container: {status}, {self.seconds:.1f} s; files in {self.out}"]
        for name, lines in [
            ("results", 0),
            ("alloy.journal", 40),
            ("sysext-status.txt", 0),
            ("boot.journal", 60),
            ("console.log", 40),
        ]:
            text = self.text(name).splitlines()[-lines:]
            parts.append(f"--- {name}:\n" + ("\n".join(text) or "(empty or missing)"))
        return "\n".join(parts)


def _loop_nodes() -> tuple[int, int]:
    """How many /dev/loopN nodes to give the container, and the kernel's minor shift.

    The container's systemd-sysext asks /dev/loop-control for a free N and opens /dev/loopN: give
    it every N the host has and 8 more."""
    existing = [
        int(path.name[4:]) for path in Path("/sys/block").glob("loop*") if path.name[4:].isdigit()
    ]
    try:
        max_part = int(Path("/sys/module/loop/parameters/max_part").read_text())
    except (FileNotFoundError, ValueError):
        max_part = 0
    return max(existing, default=-1) + 9, max_part.bit_length()


# systemd 258 dropped cgroup v1: as PID 1 it exits at once (status 255, not a word) in the
# hybrid hierarchy nspawn gives a container on a host still on cgroup v1 (nspawn 252 picks the
# host's layout). Such roots get the unified hierarchy, which nspawn sets up when told to.
UNIFIED_ONLY_SINCE = 258


def _systemd_version(root: Path) -> int | None:
    """The root's systemd version, from the name of its libsystemd-shared-NNN.so."""
    for library in root.glob("usr/lib/*/systemd/libsystemd-shared-*.so"):
        found = re.fullmatch(r"libsystemd-shared-(\d+)\.so", library.name)
        if found:
            return int(found[1])
    return None


def _nspawn_env(root: Path) -> dict[str, str]:
    version = _systemd_version(root)
    unified = version is not None and version >= UNIFIED_ONLY_SINCE
    return {**os.environ, **({"SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"} if unified else {})}


def _die_with_parent() -> None:
    """If the test run dies, unshare gets SIGKILL, and the container goes with it."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def boot(
    root: Path, seed: Path, out: Path, timeout: float = 120, host_network: bool = False
) -> Boot:
    """Boot `root` (read-only) with `seed` laid over it, until the container exits by itself or
    `timeout` seconds pass (then kill it). `out` is bound in at /alloy-e2e. With `host_network`
    the container shares the host's network namespace (it reaches a server on the host's
    127.0.0.1, and what it listens on is the host's); otherwise it has only its own loopback."""
    out.mkdir(parents=True, exist_ok=True)
    loops, minor_shift = _loop_nodes()
    nspawn = [
        "systemd-nspawn",
        "--directory=/run/alloy-e2e/root",
        "--boot",
        "--machine=alloy-e2e",
        "--register=no",  # no machined, and no transient scope: the host may run no systemd
        "--keep-unit",
        "--console=pipe",
        *([] if host_network else ["--private-network"]),
        "--link-journal=no",  # never into the host's /var/log/journal
        "--resolv-conf=off",
        "--timezone=off",
        f"--bind={out}:{SHARED}",
        "--bind=/dev/loop-control",
        *(f"--bind=/run/alloy-e2e/dev/loop{n}:/dev/loop{n}" for n in range(loops)),
    ]
    command = [
        "unshare",
        "--mount",
        "--pid",
        "--fork",
        "--kill-child",
        "--mount-proc",
        "sh",
        "-c",
        NAMESPACE,
        "alloy-e2e-boot",
        str(root),
        str(seed),
        str(loops),
        str(minor_shift),
        *nspawn,
    ]
    with (out / "console.log").open("wb") as log:
        start = time.monotonic()
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_nspawn_env(root),
            preexec_fn=_die_with_parent,
        )
        try:
            returncode: int | None = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()  # unshare --kill-child: its PID namespace, container included, dies
            process.wait()
            returncode = None
        seconds = time.monotonic() - start
    return Boot(returncode, seconds, timeout, out)
