"""What every measurement shares: the timed command runner, pairs, and one stand-in's runs."""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.table import Row
from build.config.options import resolve
from build.config.spec import BuildSpec

ROOT = Path(__file__).resolve().parent.parent
BUILD_ARCH = "amd64"  # the architecture every figure but build-matrix's builds

COMMANDS: list[str] = []  # every command measured, once each, for the docs


def note_command(cmd: Sequence[str] | str) -> None:
    text = cmd if isinstance(cmd, str) else " ".join(cmd)
    if text not in COMMANDS:
        COMMANDS.append(text)


def timed(cmd: Sequence[str] | str, *, cwd: Path | None = None, env: dict | None = None) -> float:
    """Run `cmd` (a list, or a string for sh -c), quietly; its wall time in seconds. Not
    build.core.run.run: that one neither times, nor takes a shell line or a working directory."""
    note_command(cmd)
    shell = isinstance(cmd, str)
    started = time.monotonic()
    result = subprocess.run(
        cmd, shell=shell, cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        shown = cmd if shell else " ".join(cmd)
        sys.exit(f"bench: failed ({result.returncode}): {shown}\n{result.stdout}{result.stderr}")
    return elapsed


def median_of(n: int, make: Callable[[int], float]) -> float:
    return statistics.median(make(i) for i in range(n))


def paired(
    n: int, ours: Callable[[int], float], theirs: Callable[[int], float]
) -> tuple[float, float, tuple[float, ...]]:
    """Run ours and theirs `n` times each as pairs, alternating which goes first (so the page
    cache and the machine's drift favour neither): their medians and each pair's ratio."""
    pairs = []
    for i in range(n):
        if i % 2 == 0:
            a = ours(i)
            b = theirs(i)
        else:
            b = theirs(i)
            a = ours(i)
        pairs.append((a, b))
    return (
        statistics.median(a for a, _ in pairs),
        statistics.median(b for _, b in pairs),
        tuple(a / b for a, b in pairs),
    )


def rounds(
    n: int, measures: dict[str, Callable[[int], float]], until: float | None = None
) -> dict[str, list[float]]:
    """Run every measure once a round, `n` rounds, each round starting one further along (so
    the page cache and the machine's drift favour none): each one's seconds, round by round.
    With `until` (a time.monotonic() value), no round but the first starts that would end after
    it, as long as the rounds so far took on average."""
    names = list(measures)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    started = time.monotonic()
    for i in range(n):
        now = time.monotonic()
        if i > 0 and until is not None and now + (now - started) / i > until:
            log(f"{i} of {n} rounds: another would end after the time given")
            break
        start = i % len(names) if names else 0
        for name in names[start:] + names[:start]:
            seconds[name].append(measures[name](i))
    return seconds


def round_ratios(seconds: dict[str, list[float]], label: str, base: str) -> tuple[float, ...]:
    """`label`'s time over `base`'s in each round of rounds(): both met the same drift."""
    return tuple(a / b for a, b in zip(seconds[label], seconds[base], strict=True))


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def drop_caches() -> None:
    if os.geteuid() == 0:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class Case:
    """One stand-in binary served as release `version` at `url`: where its runs work, the
    invoke command lines and file names of its builds, and the rows measured on it."""

    def __init__(
        self, work: Path, url: str, version: str, runs: int, heavy_runs: int, label: str = ""
    ) -> None:
        self.url = url
        self.version = version
        self.runs = runs
        self.heavy = heavy_runs
        self.label = label  # prefixed to the figures: which stand-in
        self.work = fresh(work)
        self.rows: list[Row] = []
        self.invoke = [sys.executable, "-m", "invoke"]
        self.peak_rss_mb = 0.0  # of our Python process, over the cold builds (speed.py)

    def row(self, figure: str, *args: object, **kwargs: object) -> None:
        self.rows.append(Row(self.label + figure, *args, **kwargs))  # type: ignore[arg-type]

    def options(self, name: str, arch: str = BUILD_ARCH) -> dict[str, str]:
        """The options of build `name`, each its own output and cache directory."""
        return {
            "version": self.version,
            "arch": arch,
            "base_url": self.url,
            "output_dir": str(self.work / name / "out"),
            "cache_dir": str(self.work / name / "cache"),
        }

    def spec(self, name: str) -> BuildSpec:
        """Build `name` as the pipeline sees it, for the names of its files."""
        return BuildSpec.from_values(resolve("all", self.options(name)))

    def inv(self, task: str, name: str, *extra: str) -> list[str]:
        flags = [f"--{key.replace('_', '-')}={value}" for key, value in self.options(name).items()]
        return [*self.invoke, task, *flags, *extra]

    def image(self, name: str) -> Path:
        return self.spec(name).image

    def tree(self, name: str) -> Path:
        return self.spec(name).rootfs
