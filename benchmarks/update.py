"""Bytes per update (issue 25): each image format and transport of CHOICES measured during a real
update. A Debian root (trixie: systemd 257; testing: 262, for zstd transport) is provisioned from
step 0's Ignition config (version A installed), booted in systemd-nspawn as the fleet tests boot
it (tests/e2e/fleet.py), and its `systemctl start systemd-sysupdate` (the unit the Butane config
sets up, with its drop-in: refresh, restart, health gate) takes B from a signed feed on
127.0.0.1. Beside the bytes the server wrote during that update: the allocated bytes of the
installed image on the host, the build's pack seconds plus release's compression seconds, the
cold read-back of the binary from the image, and the milliseconds from `systemctl start` to
the new alloy answering /-/ready. The signed DDI rows run the same update on a host without
dm-verity: it installs the DDI but never merges it, so they have no time to /-/ready, and the
binary is read back from the DDI's data partition without verity (UNMERGED says it all).

The image's alloy is tests/e2e/fake_alloy.c, compiled (it answers /-/ready), padded to the Go
stand-in's size with the Go binary's own bytes after its ELF end: the size and compressibility
of a 107 MB Go binary, and an HTTP server to time. `nox -s bench` measures it with the rest
(`-- --update-only`: only this); `python -m benchmarks.update` measures only this and rewrites
only its section of docs/benchmarks.md; `--quick` pads to 8 MB and prints without writing.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import docs, readback  # noqa: E402
from benchmarks.common import Case, fresh, log, note_command  # noqa: E402
from benchmarks.standin import fetch_binary, make_release, serve  # noqa: E402
from benchmarks.wire import SERVE_FILE, Sent, counting_server  # noqa: E402
from build.formats.erofs import mkfs_erofs_version  # noqa: E402
from build.formats.table import FORMATS  # noqa: E402
from build.formats.transport import NONE, TRANSPORTS  # noqa: E402
from build.read.gpt import read_gpt  # noqa: E402
from tests.e2e.conftest import GCC, HERE  # noqa: E402
from tests.e2e.fleet import (  # noqa: E402
    LINK_DIR,
    A,
    B,
    Fleet,
    Server,
    free_port,
    image,
    running,
    runs,
    version_line,
)
from tests.gpgkeys import new_key, throwaway_home  # noqa: E402
from tests.veritykeys import make_key  # noqa: E402

NO_ALLOY_AT_BOOT = "no-alloy-at-boot"  # in the shared directory: check-update.sh waits for none
START = "<!-- update: written by nox -s bench; python -m benchmarks.update rewrites only this -->"
END = "<!-- /update -->"
QUICK_BYTES = 8 << 20  # --quick's stand-in size
E2E_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "alloy-sysext-e2e"
ROOTS = {  # the cached roots of nox -s e2e (tests/e2e/make-root.sh), by name
    "trixie": Path(os.environ.get("ALLOY_E2E_TRIXIE_ROOT") or E2E_CACHE / "trixie"),
    "testing": Path(os.environ.get("ALLOY_E2E_TESTING_ROOT") or E2E_CACHE / "testing"),
}


@dataclass(frozen=True)
class Choice:
    """One row: how the images are built (`invoke all` flags), sent (--transport), and on
    which root (systemd 257 or 262) the update runs."""

    label: str
    build: tuple[str, ...]
    transport: str = NONE
    root: str = "trixie"
    # A signed DDI: built with a throwaway --verity-key/--verity-cert, released with
    # --verity-cert (the Ignition config installs it in /etc/verity.d). The nspawn host has no
    # dm-verity: it installs the update but never merges it (see UNMERGED).
    signed: bool = False

    def flag(self, name: str) -> str:
        return next(f.split("=", 1)[1] for f in self.build if f.startswith(f"--{name}="))


DDI_EROFS = ("--format=ddi", "--ddi-filesystem=erofs")
# The rows; another format is one more line.
CHOICES = (
    Choice("squashfs xz, 1 MiB blocks (ours)", ("--format=squashfs", "--compression=xz")),
    Choice("squashfs zstd", ("--format=squashfs", "--compression=zstd")),
    Choice("EROFS lz4hc", ("--format=erofs", "--compression=lz4hc")),
    Choice("EROFS none + xz transport", ("--format=erofs", "--compression=none"), "xz"),
    Choice("EROFS none + zstd transport", ("--format=erofs", "--compression=none"), "zstd",
           "testing"),
    Choice("squashfs none + xz transport", ("--format=squashfs", "--compression=none"), "xz"),
    Choice("signed DDI, EROFS lz4hc", (*DDI_EROFS, "--compression=lz4hc"), signed=True),
    Choice("signed DDI, EROFS none + xz transport", (*DDI_EROFS, "--compression=none"), "xz",
           signed=True),
    Choice("signed DDI, EROFS none + zstd transport", (*DDI_EROFS, "--compression=none"),
           "zstd", "testing", signed=True),
)  # fmt: skip


def why_skipped(choice: Choice) -> str | None:
    """Why the build cannot make `choice` (yet), or None."""
    fmt, compression = choice.flag("format"), choice.flag("compression")
    if fmt not in FORMATS:
        return f"no --format={fmt} in build/formats/table.py"
    if compression not in FORMATS[fmt].compressions:
        return (
            f"--format={fmt} offers no --compression={compression} yet "
            f"(it offers {', '.join(FORMATS[fmt].compressions)})"
        )
    if choice.transport != NONE and choice.transport not in TRANSPORTS:
        return f"no --transport={choice.transport} in build/formats/transport.py"
    if choice.signed and shutil.which("openssl") is None:
        return "no openssl to make the throwaway verity key"
    return None


def padded(elf: bytes, go: bytes, size: int) -> bytes:
    """`elf` followed by the Go binary's bytes after the same offset, `size` bytes in all: runs
    as `elf`, compresses like the Go binary (its first len(elf) bytes are the ELF's)."""
    if size > len(go) or size <= len(elf):
        raise ValueError(f"cannot pad {len(elf)} bytes to {size} from {len(go)} bytes")
    return elf + go[len(elf) : size]


def allocated(line: str) -> dict[str, int]:
    """check-update.sh's allocated_N value ("NAME=BLOCKS*BLOCKSIZE ..."): bytes by name."""
    found = {}
    for item in line.split():
        match = re.fullmatch(r"(.+)=(\d+)\*(\d+)", item)
        if match is None:
            raise ValueError(f"not NAME=BLOCKS*BLOCKSIZE: {item!r}")
        found[match[1]] = int(match[2]) * int(match[3])
    return found


@dataclass(frozen=True)
class Figures:
    label: str
    systemd: str  # of the booted root
    sent: int  # bytes the server wrote during the update (the median of the updates)
    sent_each: tuple[int, ...]  # in each update
    fetched: tuple[str, ...]  # what was fetched, in order
    disk: int  # allocated bytes of the installed image
    image_bytes: int  # its size
    pack: float
    compress: float | None  # release's seconds, when it compressed
    readback: float | None
    ready_ms: tuple[int, ...]  # each update's; none for a signed DDI (UNMERGED)
    outcome: str = ""  # what a signed DDI's update did instead (unmerged_outcome)


def image_sends(sent: Sequence[Sent], name: str, size: int) -> tuple[int, int]:
    """How often one update's responses carried the published file `name` (`size` bytes)
    whole (200, at least its bytes: headers come on top), and how often not (another status,
    or cut short): a row's bytes are one whole image's, or they measure something else."""
    carried = [item for item in sent if item.path.rsplit("/", 1)[-1] == name]
    whole = sum(1 for item in carried if item.status == "200" and item.bytes >= size)
    return whole, len(carried) - whole


def unmerged_outcome(results: Mapping[str, str], version: str) -> str:
    """What a signed DDI's update to `version` did on the nspawn host (check-update.sh's
    results, step 1), which has no dm-verity: installed and linked, or rolled back, but never
    merged. Raises ValueError where it was not installed, or where its alloy runs after all
    (the row should then be measured as the others are)."""
    name = image(version)
    if name not in results.get("instances_1", "").split():
        raise ValueError(
            f"{name} was not installed (instances: {results.get('instances_1', '?')}; "
            f"update exit {results.get('update_status_1', '?')})"
        )
    if results.get("version_1") == version_line(version) or results.get("ready_1") == "200":
        raise ValueError(f"{name} was merged and its alloy answers: this host has dm-verity")
    status = results.get("update_status_1", "?")
    link = results.get("link_1", "")
    if link == f"{LINK_DIR}/{name}":
        where = f"installed and linked (update exit {status}), not merged"
    else:
        where = f"installed, link back on {link.rsplit('/', 1)[-1] or 'nothing'} (exit {status})"
    gate = (
        "alloy ran before, so the health gate applied"
        if results.get("active_0") == "active/running"
        else "alloy never ran (the installed version did not merge either), so the health gate "
        "neither restarted nor rolled back"
    )
    return f"{where}; {gate}"


def data_partition(ddi: Path) -> tuple[int, int]:
    """The (offset, size) in bytes of a DDI's data partition, its file system: from its GPT,
    the first partition (build/read/gpt.py checks the table)."""
    part = read_gpt(ddi, (2, 3)).partitions[0]
    return part.offset, part.size


def stand_in_binary(version: str, go: bytes, size: int, work: Path) -> Path:
    """fake_alloy.c compiled to report `version`, padded to `size` with the Go binary's bytes."""
    elf = work / f"fake-alloy-{version}"
    cmd = [*GCC, f'-DSTAND_IN_VERSION="{version}"', "-o", str(elf), str(HERE / "fake_alloy.c")]
    note_command(" ".join(cmd))
    subprocess.run(cmd, check=True, capture_output=True)
    path = work / f"alloy-{version}-padded"
    path.write_bytes(padded(elf.read_bytes(), go, size))
    return path


class Builds:
    """The `invoke` a Fleet runs, against the stand-in release: B's build timed as stage
    (untimed), then `invoke pack`, then the rest of `invoke all`; each release timed."""

    def __init__(self, work: Path, base_url: str) -> None:
        self.env = {
            **os.environ,
            "XDG_CACHE_HOME": str(work / "cache"),
            "INVOKE_BASE_URL": base_url,
        }
        self.pack_seconds = 0.0
        self.release_seconds = 0.0

    def _run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "invoke", "--search-root", str(ROOT), *args]
        return subprocess.run(
            cmd, env={**self.env, **(env or {})}, capture_output=True, text=True, check=False
        )

    def __call__(
        self, task: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        if task == "all" and f"--version={B}" in args:
            stage = self._run("stage", *args, env=env)
            if stage.returncode != 0:
                return stage
            started = time.monotonic()
            packed = self._run("pack", *args, env=env)
            self.pack_seconds = time.monotonic() - started
            if packed.returncode != 0:
                return packed
        started = time.monotonic()
        result = self._run(task, *args, env=env)
        if task == "release":
            self.release_seconds = time.monotonic() - started  # the last one: step 1's
        return result


def measure(
    choice: Choice,
    work: Path,
    base_url: str,
    signing: tuple[str, ...],
    runs_: int,
    verity: tuple[Path, Path],
) -> Figures:
    """One real update of `choice`: publish A then A+B, boot, update, read the figures;
    `verity`: the (key, certificate) a signed choice is signed with."""
    root = ROOTS[choice.root]
    if not (root / ".alloy-sysext-e2e-root").is_file():
        sys.exit(f"bench: no boot-test root at {root}: run nox -s e2e once (it builds it)")
    work = fresh(work)
    builds = Builds(work, base_url)
    sending = () if choice.transport == NONE else (f"--transport={choice.transport}",)
    build, signing = choice.build, signing
    if choice.signed:
        build = (*build, f"--verity-key={verity[0]}", f"--verity-cert={verity[1]}")
        signing = (*signing, f"--verity-cert={verity[1]}")
    suffix = TRANSPORTS[choice.transport].suffix if sending else ""
    published = work / "steps" / "1" / (image(B) + suffix)  # what the host fetches
    outcome = ""
    with counting_server(work / "steps", work / "shared") as server:
        fleet = Fleet(builds, work, Server(server.url, server.requests), free_port())
        log(f"update: {choice.label}: build A and B, release (step 0: A; step 1: A and B)")
        fleet.publish_steps(
            [
                ([(A, build)], (*sending, *signing)),
                (
                    [(A, build), (B, build)],
                    (*sending, *(["--transport-only"] if sending else []), *signing),
                ),
            ]
        )
        # A signed DDI never merges here: no alloy to wait for at boot, none to time.
        (work / "shared" / (NO_ALLOY_AT_BOOT if choice.signed else "ready-watch")).touch()
        sents, readies = [], []
        for boot in range(runs_):
            log(f"update: {choice.label}: boot {choice.root} ({boot + 1}/{runs_}), update")
            shutil.rmtree(work / "seed", ignore_errors=True)  # Fleet.boot lays it out anew
            (work / "shared" / SERVE_FILE).write_text("0\n")  # the check serves step 1 itself
            since = server.ledger.mark()
            booted = fleet.boot(root, ["1"], lambda line: log(f"update: {choice.label}: {line}"))
            report = fleet.report(booted)
            results = booted.results
            ready = results.get("ready_msec_1", "")
            if choice.signed:
                try:
                    outcome = unmerged_outcome(results, B)
                except ValueError as error:
                    sys.exit(f"bench: {choice.label}: {error}:\n{report}")
            else:
                if not (results.get("update_status_1") == "0" and running(booted, 1) == runs(B)):
                    sys.exit(f"bench: the update to B failed ({choice.label}):\n{report}")
                if not ready.isdigit():
                    sys.exit(f"bench: no time to /-/ready in the check's results:\n{report}")
                readies.append(int(ready))
            sent = server.ledger.of("1", since)
            whole, partial = image_sends(sent, published.name, published.stat().st_size)
            if whole != 1 or partial:
                sys.exit(
                    f"bench: {choice.label}: {published.name} was sent whole {whole} times and "
                    f"in part {partial} times in one update, not once:\n{report}"
                )
            sents.append(server.ledger.bytes_of("1", since))
            fetched = tuple(server.ledger.paths_of("1", since))
            log(f"update: {choice.label}: {sents[-1]:,} bytes sent for {' '.join(fetched)}")
    installed = work / "output" / image(B)
    disk = allocated(results.get("allocated_1", "")).get(image(B))
    if disk is None:
        sys.exit(f"bench: no allocated size of {image(B)} in the check's results:\n{report}")
    case = Case(work / "readback", base_url, B, runs_, 1)
    return Figures(
        choice.label,
        results.get("systemd", "systemd ?").split(" (")[0],
        int(statistics.median(sents)),
        tuple(sents),
        fetched,
        disk,
        installed.stat().st_size,
        builds.pack_seconds,
        builds.release_seconds if sending else None,
        readback.read_back(case, installed, data_partition(installed) if choice.signed else None),
        tuple(readies),
        outcome,
    )


def _mb(value: int) -> str:
    return f"{value / 1e6:.2f} MB"


def format_update_table(rows: list[Figures], skipped: dict[str, str]) -> str:
    lines = [
        "| image, transport | host | bytes sent (update) | vs first row | disk per version "
        "| pack + compress | read binary (cold) | start → /-/ready |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        compress = f" + {row.compress:.1f}" if row.compress is not None else ""
        readback_s = f"{row.readback:.3f} s" if row.readback is not None else "—"
        ready = f"{statistics.median(row.ready_ms) / 1000:.2f} s" if row.ready_ms else "—"
        if row.outcome:
            ready = "— (no dm-verity: never merged)"
        if len(row.ready_ms) > 1:
            ready += f" ({min(row.ready_ms) / 1000:.2f}-{max(row.ready_ms) / 1000:.2f})"
        if len(set(row.sent_each)) > 1:
            ready += f"; bytes {min(row.sent_each):,}-{max(row.sent_each):,}"
        lines.append(
            f"| {row.label} | {row.systemd} | {_mb(row.sent)} | "
            f"{row.sent / rows[0].sent:.3f}x | {_mb(row.disk)} | {row.pack:.1f}{compress} s | "
            f"{readback_s} | {ready} |"
        )
    for label, why in skipped.items():
        lines.append(f"| {label} | — | skipped: {why} | — | — | — | — | — |")
    return "\n".join(lines)


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "not installed"
    return out.splitlines()[0] if out else "?"


ABOUT = (
    "One real update per row, on the {size} stand-in: a Debian root provisioned from the "
    "Ignition config of step 0 (alloy {a} installed), booted in systemd-nspawn as the fleet "
    "tests boot it (tests/e2e/fleet.py), then `systemctl start systemd-sysupdate` (with the "
    "Butane config's drop-in: refresh, restart, health gate) takes {b} from a feed signed "
    "with gpg, served on 127.0.0.1 (--transport-only for the transport rows). Bytes sent: "
    "what the server wrote to its sockets during the update (status lines, headers and bodies"
    " of every request: SHA256SUMS, SHA256SUMS.gpg, the image), counted per request in the "
    "server (benchmarks/wire.py), not file sizes. Disk per version: the installed image's "
    "allocated bytes (blocks x block size, as stat reports them inside the host; its file "
    "system is a tmpfs overlay). Pack + compress: `invoke pack` of B (after `invoke stage`), "
    "plus the seconds of `invoke release` that compressed B (its hashing and signing "
    "included). Read binary: the binary read from the image, loop-mounted, page cache dropped"
    " (benchmarks/readback.py), the median of {runs}. Start → /-/ready: from `systemctl "
    "start` until a new alloy process answers /-/ready with 200, polled every 50 ms in the "
    "host (tests/e2e/check-update.sh); the median of {runs} boots and updates of the same "
    "feed, lowest and highest in brackets (bytes sent too, where they differed). The image's "
    "alloy is tests/e2e/fake_alloy.c, compiled statically and padded to the Go stand-in's "
    "size with the Go binary's own bytes after the ELF's end, so the image is as large and "
    "compresses like a Go binary of that size, and answers /-/ready; it pages in only its ELF"
    " at start, where Alloy touches more of its binary. Each row's images are built once: "
    "packing and compressing take minutes."
)


def update_section(
    rows: list[Figures], skipped: dict[str, str], size: int, runs_: int, dropped: str
) -> str:
    systemd = sorted({row.systemd for row in rows})
    machine = [
        f"- CPUs (nproc): {os.cpu_count()}; kernel {platform.release()} ({platform.machine()})",
        f"- xz: {_first_line(['xz', '--version'])}; zstd: {_first_line(['zstd', '--version'])}",
        f"- squashfs-tools: {_first_line(['mksquashfs', '-version'])}; "
        f"erofs-utils: mkfs.erofs {mkfs_erofs_version()}",
        f"- booted roots: {', '.join(systemd)} (Debian trixie; testing for zstd transport)",
    ]
    about = ABOUT.format(size=f"{size:,}-byte", a=A, b=B, runs=runs_)
    return "\n".join(
        [
            START,
            "## Bytes per update",
            "",
            textwrap.fill(about, width=100, break_on_hyphens=False),
            "",
            format_update_table(rows, skipped),
            "",
            *([textwrap.fill(goal_line(rows), width=100), ""] if goal_line(rows) else []),
            *([textwrap.fill(dropped, width=100), ""] if dropped else []),
            *machine,
            END,
        ]
    )


UNMERGED = (
    "The signed DDI rows (--format=ddi --ddi-filesystem=erofs, signed with a throwaway "
    "--verity-key; release --verity-cert, whose Ignition config installs the certificate in "
    "/etc/verity.d) run the same update, but this kernel has no device-mapper, so no dm-verity "
    "(see tests/e2e/test_signed_host.py): systemd-sysupdate fetches SHA256SUMS, its signature "
    "and the whole image (checked: one whole response for it in each update), installs it and "
    "moves the link, and the merge that follows fails. Measured as for the other rows: bytes "
    "sent, disk per version (the whole DDI: data, hash tree and signature partitions; "
    "systemd-pull writes zero runs sparse), pack (mkfs.erofs, the verity tree and the "
    "signature) + compress. Read binary: the data partition loop-mounted at its GPT offset "
    "without dm-verity, so without verity's hashing of each block read (a real host also "
    "checks the signature at merge). Not measured: start → /-/ready (no alloy runs: the "
    "installed version did not merge at boot either, so the health gate neither restarts "
    "nor rolls back; on a host with dm-verity the gate applies as for the other rows, and a "
    "rolled-back version stays installed, never fetched again); the verity cost (no "
    "dm-verity here; benchmarks/verity.py times the tree in userspace). What each update did:"
)


def unmerged_note(rows: list[Figures]) -> str:
    """UNMERGED with each signed DDI row's outcome, or "" without such rows."""
    by_outcome: dict[str, list[str]] = {}
    for row in rows:
        if row.outcome:
            by_outcome.setdefault(row.outcome, []).append(row.label)
    done = [f"{' | '.join(labels)}: {outcome}." for outcome, labels in by_outcome.items()]
    return " ".join([UNMERGED, *done]) if done else ""


# Issue 25's "done when": EROFS none + xz against our squashfs xz.
GOAL = ("EROFS none + xz transport", "squashfs xz, 1 MiB blocks (ours)")


def goal_line(rows: list[Figures]) -> str:
    """How the goal's two rows compare (fewer bytes; read-back at least 10x faster), or ""."""
    by_label = {row.label: row for row in rows}
    ours, base = (by_label.get(label) for label in GOAL)
    if ours is None or base is None or not ours.readback or not base.readback:
        return ""
    fewer = ours.sent < base.sent
    faster = base.readback / ours.readback
    return (
        f"{GOAL[0]} against {GOAL[1]}: {ours.sent / base.sent:.3f}x the bytes sent "
        f"({'fewer' if fewer else '**not fewer**'}); reads the binary back {faster:.0f}x faster "
        f"({'at least' if faster >= 10 else '**less than**'} the 10x issue 25 asks for); "
        f"{ours.disk / base.disk:.1f}x the disk per version."
    )


def run(cache: Path, runs_: int, quick: bool, only: str | None) -> tuple[str, list[Figures]]:
    """Every row of CHOICES (those whose label holds `only`): the section and the figures."""
    go = fetch_binary(cache).read_bytes()
    size = QUICK_BYTES if quick else len(go)
    work = fresh(cache / "run" / "update")
    release = cache / ("update-release-quick" if quick else "update-release")
    for version in (A, B):
        make_release(release, version, stand_in_binary(version, go, size, work))
    chosen = [c for c in CHOICES if only is None or only.lower() in c.label.lower()]
    skipped = {c.label: why for c in chosen if (why := why_skipped(c)) is not None}
    for label, why in skipped.items():
        print(f"bench: skipped {label}: {why}", file=sys.stderr)
    rows = []
    upstream = serve(release)
    try:
        base_url = f"http://127.0.0.1:{upstream.server_address[1]}"
        with throwaway_home("ub.") as home:
            signing = (f"--sign-key={new_key(home, 'Release')}", f"--gnupg-home={home}")
            (work / "verity").mkdir()
            verity = make_key(work / "verity", "throwaway")  # the signed DDIs' key
            for choice in chosen:
                if choice.label not in skipped:
                    slug = re.sub(r"[^a-z0-9]+", "-", choice.label.lower()).strip("-")
                    rows.append(measure(choice, work / slug, base_url, signing, runs_, verity))
    finally:
        upstream.shutdown()
        upstream.server_close()
        shutil.rmtree(work, ignore_errors=True)
    return update_section(rows, skipped, size, runs_, unmerged_note(rows)), rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs",
        type=int,
        default=3,
        help="boots and updates of each row; read-backs of each image",
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"a {QUICK_BYTES >> 20} MB stand-in; print only"
    )
    parser.add_argument("--only", help="only the rows whose label holds this")
    default_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    parser.add_argument("--cache", type=Path, default=default_cache / "alloy-sysext-bench")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("bench: the update benchmark boots containers: run it as root")
    section, _ = run(args.cache.resolve(), args.runs, args.quick, args.only)
    print(section)
    if not args.quick:
        docs.replace_section(args.docs, START, END, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
