"""Overlap in a cold build (issue 26): what the stage step's passes over the binary cost.

What overlapping them with the download, or feeding mksquashfs the binary without a staged copy,
could save, measured on the stand-in served from 127.0.0.1 at full speed and throttled to
realistic links.

Measured (benchmarks/overlap_proto.py holds the prototypes, none of them in build/):
a. the stage phases alone: the real fetch (build/fetch/upstream.py, hashing while downloading),
   extract_binary (inflate to the staged file), and what each further pass over a file costs;
   min(download, inflate) bounds what extracting while the zip arrives could save;
b. that prototype (zlib from the local header on, fed each chunk the real downloader writes)
   against download then extract_binary, in pairs;
c. mksquashfs of the staged tree against the binary as a pseudo file from a pipe (cat of the
   staged file; our own zip reader inflating the verified zip), in rounds;
d. the record of the staged tree before (re-reading the binary) and after (its sha256 taken as
   it was written), in pairs.

`nox -s bench` measures it with the rest (`-- --overlap-only`: only this); `python -m
benchmarks.overlap` prints the section, `--write` also rewrites its part of docs/benchmarks.md;
`--quick` measures an 8 MB stand-in (the Go binary's first 8 MB) and never writes.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import docs  # noqa: E402
from benchmarks.standin import (  # noqa: E402
    QUICK_BYTES,
    VERSION,
    fetch_binary,
    make_release,
    quick_binary,
)

START = (
    "<!-- overlap: written by nox -s bench; python -m benchmarks.overlap --write rewrites this -->"
)
END = "<!-- /overlap -->"
MB = 1_000_000
RATES: dict[str, float | None] = {"full speed": None, "100 MB/s": 100 * MB, "20 MB/s": 20 * MB}
DRIFT = 0.10  # this machine's CPU speed drifts by about this much from minute to minute
COMMAND = "python -m benchmarks.overlap --write"


@dataclass(frozen=True)
class Pair:
    """Ours and theirs timed in pairs (or rounds): their medians and each pair's ours/theirs."""

    ours: float
    theirs: float
    ratios: tuple[float, ...]

    @property
    def saved(self) -> float:
        """Seconds ours saves (negative: costs) against theirs, medians."""
        return self.theirs - self.ours

    @classmethod
    def of(cls, ours: Sequence[float], theirs: Sequence[float]) -> Pair:
        return cls(
            statistics.median(ours),
            statistics.median(theirs),
            tuple(a / b for a, b in zip(ours, theirs, strict=True)),
        )


@dataclass(frozen=True)
class Link:
    """One link speed: the real fetch alone, extract_binary alone (medians of the pairs'
    "theirs"), and extracting while the zip arrives (ours) against download then extract."""

    name: str
    download: float
    inflate: float
    streaming: Pair

    @property
    def bound(self) -> float:
        """The most any overlap of the download and the inflate can save a build."""
        return min(self.download, self.inflate)


@dataclass(frozen=True)
class Figures:
    """Everything measured on one stand-in."""

    size: int  # the binary's bytes
    zip_size: int
    links: tuple[Link, ...]
    written: Pair  # inflate to the staged file (ours) against inflate to nothing
    record: Pair  # extract + record_tree: the sha256 taken while writing (ours), re-read (theirs)
    record_hash: float  # the re-read of the staged binary alone (record_tree before)
    zip_rehash: float  # stage's verify_cached_zip: the zip the fetch just hashed, hashed again
    image_rehash: float  # verify's checksum check: the image checksum just hashed, hashed again
    pack_cat: Pair  # mksquashfs, binary as a pseudo file (cat of the staged file), vs staged
    pack_inflate: Pair  # mksquashfs fed by our zip reader, vs extract_binary + staged mksquashfs
    same_image: bool  # the pseudo-file images are byte for byte the staged tree's
    pairs: int


def cold_estimate(figures: Figures, link: Link) -> float:
    """A cold build's seconds at least (download, the zip re-hash, extract and record, pack;
    checksum and verify left out): a saving over it is the largest share it can be."""
    return link.download + figures.zip_rehash + figures.record.ours + figures.pack_cat.theirs


def share(saved: float, cold: float) -> float:
    return saved / cold if cold > 0 else 0.0


def clearly_saves(saved: float, cold: float, drift: float = DRIFT) -> bool:
    """Whether `saved` seconds of a `cold`-second build stand above the machine's drift."""
    return share(saved, cold) > drift


def ratio_text(pair: Pair) -> str:
    """The median of the pairs' ratios, their lowest and highest in brackets."""
    if not pair.ratios:
        return "-"
    low, high = min(pair.ratios), max(pair.ratios)
    return f"{statistics.median(pair.ratios):.2f}x [{low:.2f}-{high:.2f}]"


def _s(seconds: float) -> str:
    return f"{seconds:.2f} s"


def _signed(seconds: float) -> str:
    return f"{seconds:+.2f} s"


def links_table(figures: Figures) -> str:
    rows = [
        "| link | download (fetch) | inflate (extract_binary) | bound: min of the two | "
        "download then extract | extract while downloading | ratio [range] | saved | "
        "saved / cold build |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for link in figures.links:
        cold = cold_estimate(figures, link)
        rows.append(
            f"| {link.name} | {_s(link.download)} | {_s(link.inflate)} | {_s(link.bound)} | "
            f"{_s(link.streaming.theirs)} | {_s(link.streaming.ours)} | "
            f"{ratio_text(link.streaming)} | {_signed(link.streaming.saved)} | "
            f"{100 * share(link.streaming.saved, cold):.1f} % of ≥ {cold:.1f} s |"
        )
    return "\n".join(rows)


def passes_table(figures: Figures) -> str:
    """The passes over the binary (and the zip, and the image) a cold build makes."""
    f = figures
    rows = [
        "| pass | ours | theirs | ratio [range] | saved | kept |",
        "|---|---:|---:|---:|---:|---|",
        f"| stage: extract + record_tree, sha256 taken while writing (ours) / re-read (theirs) "
        f"| {_s(f.record.ours)} | {_s(f.record.theirs)} | {ratio_text(f.record)} "
        f"| {_signed(f.record.saved)} | ours (this change) |",
        f"| the re-read alone: record_tree's sha256 of the staged binary | - "
        f"| {_s(f.record_hash)} | - | - | gone |",
        f"| writing the staged copy: inflate to the file (ours) / to nothing (theirs) "
        f"| {_s(f.written.ours)} | {_s(f.written.theirs)} | {ratio_text(f.written)} "
        f"| {_signed(f.written.saved)} | the file (see the packs) |",
        f"| mksquashfs: the binary as a pseudo file, cat of the staged file (ours) / the "
        f"staged tree (theirs) | {_s(f.pack_cat.ours)} | {_s(f.pack_cat.theirs)} "
        f"| {ratio_text(f.pack_cat)} | {_signed(f.pack_cat.saved)} | the staged tree |",
        f"| mksquashfs fed by our zip reader from the verified zip (ours) / extract_binary "
        f"+ mksquashfs of the staged tree (theirs) | {_s(f.pack_inflate.ours)} "
        f"| {_s(f.pack_inflate.theirs)} | {ratio_text(f.pack_inflate)} "
        f"| {_signed(f.pack_inflate.saved)} | the staged tree |",
        f"| stage: verify_cached_zip hashes the {f.zip_size / MB:.0f} MB zip the fetch just "
        f"hashed | - | {_s(f.zip_rehash)} | - | - | yes: the check of the bytes used |",
        f"| verify: the checksum check hashes the image the checksum step just hashed | - "
        f"| {_s(f.image_rehash)} | - | - | yes: verify checks independently |",
    ]
    return "\n".join(rows)


def verdicts(figures: Figures) -> list[str]:
    """What the figures decide, one Markdown list item each."""
    f = figures
    best = max(f.links, key=lambda link: share(link.streaming.saved, cold_estimate(f, link)))
    cold = cold_estimate(f, best)
    streaming = (
        f"above the machine's drift ({DRIFT:.0%})"
        if clearly_saves(best.streaming.saved, cold)
        else f"within the machine's drift ({DRIFT:.0%}): not worth it"
    )
    pipe = f.pack_inflate.saved + 0.0  # the whole design: no staged copy, inflate beside mksquashfs
    return [
        f"- **Extracting while the zip arrives: not kept.** Its best case here ({best.name}) "
        f"saved {_signed(best.streaming.saved)} (bound {_s(best.bound)}), "
        f"{share(best.streaming.saved, cold):.1%} of a cold build of at least {cold:.1f} s: "
        f"{streaming}. It would also parse the download before its sha256 is checked against "
        "SHA256SUMS, which the pipeline never does: not in build/.",
        f"- **The binary's sha256 taken while extract_binary writes it: kept.** record_tree "
        f"no longer re-reads the binary ({_s(f.record_hash)} alone), a pass over it gone at no "
        f"risk; extract + record {ratio_text(f.record)}, {_signed(f.record.saved)}: "
        + (
            "faster in every pair"
            if f.record.ratios and max(f.record.ratios) < 1
            else "the pairs cannot tell it from their noise"
        )
        + ". The manifest is the same, byte for byte (tests/test_stage.py counts the bytes "
        "its sha256 reads).",
        f"- **mksquashfs fed from a pipe: not kept.** cat of the staged file as a pseudo file: "
        f"{ratio_text(f.pack_cat)} ({_signed(f.pack_cat.saved)}); fed by our own zip reader "
        f"instead of a staged copy: {ratio_text(f.pack_inflate)} ({_signed(pipe)}) against "
        "extract_binary + mksquashfs. The images are "
        + ("the same, byte for byte" if f.same_image else "NOT the same bytes")
        + f". {_pipe_reason(f, best)}",
        f"- **Kept as they are:** stage's re-hash of the cached zip ({_s(f.zip_rehash)}: "
        "the zip is checked against SHA256SUMS right before it is parsed, whatever happened "
        f"to it since the fetch) and verify's re-hash of the image ({_s(f.image_rehash)}: "
        "verify trusts nothing the earlier steps say).",
    ]


def _pipe_reason(figures: Figures, link: Link) -> str:
    saved = figures.pack_inflate.saved
    cold = cold_estimate(figures, link)
    said = f"That is {share(saved, cold):.1%} of a cold build of at least {cold:.1f} s"
    if not clearly_saves(saved, cold):
        return f"{said}: within the drift, the staged copy costs nothing measurable."
    cat = (
        f"; cat of the staged file gains {_signed(figures.pack_cat.saved)} too, so much of it "
        "is how mksquashfs reads a pipe, not the copy left out"
        if figures.pack_cat.saved > 0
        else ""
    )
    return (
        f"{said}, above the {DRIFT:.0%} drift, but left out until a quiet machine confirms it"
        f"{cat}. It would also move extract_binary's ELF and size checks (and their one-line "
        "errors) into a command mksquashfs runs, and take the binary out of the staged tree "
        "that the pack step's up-to-date decision reads."
    )


def section(figures: Figures, binary: Path) -> str:
    """docs/benchmarks.md's overlap section."""
    f = figures
    how = (
        f"Issue 26: overlap what can overlap in a cold build. On the {f.size:,}-byte stand-in "
        f"({f.zip_size:,}-byte zip), served from 127.0.0.1 at full speed and through a server "
        "throttled to "
        + " and ".join(name for name, rate in RATES.items() if rate)
        + f", {f.pairs} pairs each: the real fetch (build/fetch/upstream.py, a cold cache, "
        "hashing while downloading) then extract_binary (theirs), against the same fetch with "
        "each chunk it writes also fed to a prototype that inflates the member with "
        "zlib.decompressobj(-15) from its local header on (ours; benchmarks/overlap_proto.py, "
        "not in build/). The packs ran in rounds of one of each, each round starting one "
        "further along (common.rounds), with build/formats/squashfs.py's mksquashfs_args and "
        "SOURCE_DATE_EPOCH; a pseudo file is `-p 'usr/local/bin/alloy f 755 0 0 COMMAND'` on "
        "the staged tree without the binary. Seconds are medians; a ratio is ours / theirs, "
        "the median of the pairs' ratios, lowest and highest in brackets. A cold build's "
        "seconds are at least download + zip re-hash + extract and record + pack (checksum "
        "and verify left out), so a saving's share of it is the largest it can be."
    )
    parts = [
        START,
        "## Overlap in a cold build (issue 26)",
        "",
        textwrap.fill(how, width=100),
        "",
        links_table(f),
        "",
        passes_table(f),
        "",
        *verdicts(f),
        "",
        f"Measured with `{COMMAND}` on {os.cpu_count()} CPUs, kernel {platform.release()}, "
        f"{binary.name} ({f.size:,} bytes).",
        END,
    ]
    return "\n".join(parts)


def run(cache: Path, pairs: int, quick: bool) -> str:
    """Every figure on the stand-in (--quick: the 8 MB one): the section."""
    go = fetch_binary(cache)
    binary = quick_binary(cache, go, "overlap-quick") if quick else go
    release = cache / ("overlap-release-quick" if quick else "release")
    make_release(release, VERSION, binary)  # bench.py's release of the same binary is reused
    from benchmarks.overlap_measure import measure_all  # it imports this module's figures

    work = cache / "overlap-run"
    try:
        figures = measure_all(work, release, VERSION, pairs, RATES)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return section(figures, binary)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3, help="pairs (rounds) of each timing")
    parser.add_argument(
        "--quick", action="store_true", help=f"a {QUICK_BYTES >> 20} MB stand-in; print only"
    )
    parser.add_argument("--write", action="store_true", help="rewrite its docs section too")
    default_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    parser.add_argument("--cache", type=Path, default=default_cache / "alloy-sysext-bench")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    text = run(args.cache.resolve(), args.pairs, args.quick)
    print(text)
    if args.write and not args.quick:
        docs.replace_section(args.docs, START, END, text)
        print(f"bench: wrote its section of {args.docs}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
