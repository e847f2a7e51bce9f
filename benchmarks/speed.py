"""Speed: our builds, rebuilds, packs and downloads against the original script's steps, bare
mksquashfs and invoke itself; and the build matrix, serial against parallel."""

from __future__ import annotations

import os
import shutil
import sys

from benchmarks.bare import bare_pack
from benchmarks.common import ROOT, Case, median_of, note_command, paired, timed
from benchmarks.memory import polled
from benchmarks.original import original_build, original_download
from build.model.arch import ARCHES


def cold_build(case: Case, i: int) -> float:
    """A cold `invoke all`, verify included; also records our process's peak RSS."""
    shutil.rmtree(case.work / f"cold{i}", ignore_errors=True)
    elapsed, rss = polled(case.inv("all", f"cold{i}"))
    case.peak_rss_mb = max(case.peak_rss_mb, rss)
    return elapsed


def cold_build_row(case: Case, pairs: int) -> float:
    """Cold builds and the original script's, in pairs; the original's median seconds."""
    cold, original, ratios = paired(
        pairs, lambda i: cold_build(case, i), lambda i: original_build(case, i)
    )
    case.row("cold invoke all vs original script's steps", cold, original, limit=1.3, ratios=ratios)
    return original


def rebuild_rows(case: Case, original: float) -> None:
    """An unchanged `invoke all` against the original's build and against `invoke --list`."""
    noop, listing, ratios = paired(
        case.runs + 2,
        lambda _: timed(case.inv("all", "cold0"), cwd=ROOT),
        lambda _: timed([*case.invoke, "--list"], cwd=ROOT),
    )
    case.row("unchanged rebuild vs original script's steps", noop, original, limit=0.02)
    case.row("no-op invoke all vs invoke --list", noop, listing, limit=1.2, ratios=ratios)


def pack_row(case: Case) -> list[float]:
    """`invoke pack --force` against mksquashfs alone with the same flags, in pairs; the
    bare runs' mksquashfs RSS."""
    tree = case.tree("cold0")
    bare_rss: list[float] = []

    def bare(_: int) -> float:
        packed = bare_pack(case, case.spec("cold0").compression, tree)
        bare_rss.append(packed.rss_mb)
        return packed.seconds

    pack, bare_time, ratios = paired(
        case.heavy, lambda _: timed(case.inv("pack", "cold0", "--force"), cwd=ROOT), bare
    )
    case.row(
        "invoke pack --force vs bare mksquashfs, same flags",
        pack,
        bare_time,
        limit=1.05,
        ratios=ratios,
    )
    return bare_rss


def stage_row(case: Case) -> None:
    def stage(i: int) -> float:
        shutil.rmtree(case.work / f"stage{i}", ignore_errors=True)
        return timed(case.inv("stage", f"stage{i}"), cwd=ROOT)

    ours, theirs, ratios = paired(case.runs, stage, lambda i: original_download(case, i))
    case.row(
        "fetch+verify+extract (invoke stage) vs curl+sha256sum+unzip", ours, theirs, ratios=ratios
    )


def compression_pack_row(case: Case, compression: str, seconds: float, default: float) -> None:
    ours = case.spec("cold0").compression
    case.row(f"{compression} pack (bare mksquashfs) vs {ours} pack", seconds, default)


def matrix(case: Case, jobs: int, name: str) -> float:
    """Seconds `nox -s build-matrix` takes for the case's version on every architecture."""
    arches = ",".join(ARCHES)
    env = {**os.environ, "ALLOY_VERSIONS": case.version, "ALLOY_ARCHS": arches}
    d = case.work / name
    cmd = [
        sys.executable, "-m", "nox", "-f", str(ROOT / "noxfile.py"),
        *(["-j", str(jobs)] if jobs > 1 else []),
        "-s", "build-matrix", "--",
        f"--base-url={case.url}", f"--output-dir={d / 'out'}", f"--cache-dir={d / 'cache'}",
    ]  # fmt: skip
    note_command(f"ALLOY_VERSIONS={case.version} ALLOY_ARCHS={arches} " + " ".join(cmd))
    return timed(cmd, cwd=ROOT, env=env)


def matrix_rows(case: Case) -> None:
    cells = f"1x{len(ARCHES)}"
    cold_serial = matrix(case, 1, "mx1")
    warm_serial = median_of(case.runs, lambda _: matrix(case, 1, "mx1"))
    cold_par = matrix(case, 2, "mx2")
    warm_par = median_of(case.runs, lambda _: matrix(case, 2, "mx2"))
    case.row(f"build-matrix {cells} cold: -j 2 vs serial", cold_par, cold_serial)
    case.row(f"build-matrix {cells} warm: -j 2 vs serial", warm_par, warm_serial)
    case.row(f"build-matrix {cells} serial: warm vs cold", warm_serial, cold_serial)
