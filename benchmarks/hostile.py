"""Hostile images: the worst wall time and peak RSS of `invoke verify --image` over the corpus the
tests feed the readers (the differential suite's structural mutants and the resource bombs of
tests/mutants/), squashfs and EROFS, written as the "Hostile images" table of docs/benchmarks.md.

Run with `nox -s bench-hostile` (or `python benchmarks/hostile.py`, as root for the kernel view
and the merges); `--count N` mutants a format (default 100), `--seed S`. It replaces only the
section between its markers in the hand-written notes, which `nox -s bench` keeps.
"""

from __future__ import annotations

import argparse
import importlib
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FORMATS = ("squashfs", "erofs")
START = "<!-- hostile: written by nox -s bench-hostile -->"
END = "<!-- /hostile -->"
KILL_AFTER = 300  # seconds: a verify still running then is a finding, not a hang of the bench


@dataclass(frozen=True)
class Run:
    fmt: str
    what: str
    bytes: int
    seconds: float
    peak_mb: float
    code: int
    last_line: str


def corpus(work: Path, seed: int, count: int) -> Iterator[tuple[str, str, Path]]:
    """(format, what, image) of every hostile image: each format's mutants, then its bombs."""
    for fmt in FORMATS:
        module = importlib.import_module(f"tests.mutants.{fmt}")
        for what, image in module.mutants(work / fmt / "mutants", seed, count):
            yield fmt, what, image
        for what, image in getattr(module, "bombs", lambda _: iter(()))(work / fmt / "bombs"):
            yield fmt, f"bomb: {what}", image


def verify_once(image: Path, cwd: Path) -> tuple[float, float, int, str]:
    """(wall s, peak RSS MB of the verify process, exit code, its last stderr line)."""
    command = [sys.executable, "-m", "invoke", "--search-root", str(ROOT), "verify"]
    started = time.monotonic()
    process = subprocess.Popen(
        [*command, "--image", str(image)],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    status = Path(f"/proc/{process.pid}/status")
    peak = 0
    while process.poll() is None:
        try:
            found = re.search(r"^VmHWM:\s+(\d+) kB", status.read_text(), re.M)
        except OSError:
            break
        if found:
            peak = max(peak, int(found.group(1)))
        if time.monotonic() - started > KILL_AFTER:
            process.kill()
        time.sleep(0.01)
    _, stderr = process.communicate()
    lines = [line for line in stderr.splitlines() if line.strip()]
    return time.monotonic() - started, peak / 1024, process.returncode, (lines or [""])[-1]


def measure(seed: int, count: int) -> list[Run]:
    runs = []
    with tempfile.TemporaryDirectory(prefix="alloy-sysext-hostile-") as scratch:
        work = Path(scratch)
        for fmt, what, image in corpus(work, seed, count):
            seconds, peak, code, line = verify_once(image, work)
            runs.append(Run(fmt, what, image.stat().st_size, seconds, peak, code, line[:160]))
            print(f"{fmt:8} {seconds:6.2f} s {peak:6.1f} MB exit {code}  {what}", flush=True)
    return runs


def table(runs: list[Run], seed: int, count: int, took: float) -> str:
    about = (
        f"`nox -s bench-hostile` (--seed {seed} --count {count}) ran `invoke verify --image` on "
        f"{len(runs)} hostile images in {took:.0f} s, one at a time, as root (so the kernel view "
        "and the merges ran wherever the reader accepted an image). Peak RSS is the verify "
        "process's own (VmHWM); mount and systemd-sysext are children, not counted. An image "
        "fails verify when a reader refuses it or any check fails; none may take longer than "
        "10 s or 100 MB."
    )
    lines = [
        START,
        textwrap.fill(about, width=100, break_on_hyphens=False),
        "",
        "| format | images | failed verify | passed | worst wall | its image | peak RSS "
        "| its image |",
        "|---|---:|---:|---:|---:|---|---:|---|",
    ]
    for fmt in FORMATS:
        mine = [run for run in runs if run.fmt == fmt]
        if not mine:
            continue
        slowest = max(mine, key=lambda run: run.seconds)
        largest = max(mine, key=lambda run: run.peak_mb)
        refused = sum(run.code != 0 for run in mine)
        lines.append(
            f"| {fmt} | {len(mine)} | {refused} | {len(mine) - refused} | "
            f"{slowest.seconds:.2f} s | {slowest.what} ({slowest.bytes:,} B) | "
            f"{largest.peak_mb:.1f} MB | {largest.what} ({largest.bytes:,} B) |"
        )
    lines.append(END)
    return "\n".join(lines)


def write(docs: Path, section: str) -> None:
    text = docs.read_text(encoding="utf-8")
    if START in text and END in text:
        before, rest = text.split(START, 1)
        text = before + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n**Hostile images (issue 20).**\n\n" + section + "\n"
    docs.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100, help="mutants of each format")
    parser.add_argument("--seed", type=int, default=20, help="the mutants' seed")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    started = time.monotonic()
    runs = measure(args.seed, args.count)
    section = table(runs, args.seed, args.count, time.monotonic() - started)
    print(section)
    write(args.docs, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
