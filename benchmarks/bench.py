"""Benchmarks: size, speed and memory of the pipeline against the original script.

Run with `nox -s bench` (or `python benchmarks/bench.py`, from the requirements' environment).
It takes a real Go binary (Debian's `packer`, ~107 MB, fetched once with `apt-get download` into
the bench's cache), serves it as an Alloy release from a local HTTP server on 127.0.0.1, measures
each figure as the median of a few runs, prints a table and writes it to docs/benchmarks.md.
With --large it also builds a ~236 MB Go binary offline from Debian's Go sources (see
benchmarks/standin.py) and measures the size figures on it. It also packs the default stand-in's
tree as EROFS (lz4hc at several pcluster sizes, and uncompressed) against the squashfs choices:
size, pack, cold read-back and systemd-sysext merge times, in a formats table
(benchmarks/formats.py); and what a signed dm-verity DDI costs in bytes, signing and offline
verify seconds and memory (benchmarks/trust.py); and the bytes per update of each image format and
transport, during a real systemd-sysupdate update of a booted root (benchmarks/update.py; as root;
`--update-only` runs only that, and takes its options: --quick, --only); and the cold build's
frontier: image bytes against pack seconds of every mksquashfs xz setting, against the original
script's, with a plot (benchmarks/frontier_run.py; `--frontier-only` runs only that, and takes its
options: --rounds, --quick, --large, --xl, --minutes; matplotlib: requirements-bench.txt); and
overlap in a cold build: the stage step's passes over the binary, extracting while the zip arrives
and mksquashfs fed from a pipe, at full speed and on throttled links (benchmarks/overlap.py;
`--overlap-only` runs only that and writes its section, and takes its options: --pairs, --quick).
`--skip=update`, `--skip=frontier`, `--skip=overlap` leave a part out and keep its section. Not
collected by pytest: it takes minutes.

This machine's CPU speed drifts by about 10 % from minute to minute (the same mksquashfs took
29-35 s of CPU time in five runs in a row), so two timings compared in a ratio are taken as a
pair, one right after the other, in alternating order, and a ratio is the median of the pairs'
ratios, shown with their range.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import (  # noqa: E402
    docs,
    formats,
    frontier,
    frontier_run,
    memory,
    overlap,
    readback,
    size,
    speed,
    trust,
    update,
)
from benchmarks.bare import bare_pack  # noqa: E402
from benchmarks.common import Case, log  # noqa: E402
from benchmarks.original import original_image  # noqa: E402
from benchmarks.standin import (  # noqa: E402
    LARGE_VERSION,
    VERSION,
    build_large_binary,
    fetch_binary,
    make_release,
    serve,
)
from benchmarks.table import (  # noqa: E402
    FormatFigures,
    Row,
    TrustRow,
    format_formats_table,
    format_table,
)
from build.formats.squashfs import COMPRESSORS  # noqa: E402

TOOLS = ("mksquashfs", "mkfs.erofs", "curl", "unzip", "sha256sum", "xz", "apt-get", "dpkg")


def other_compressions(
    case: Case, original: Path, image: Path
) -> tuple[dict[str, Path], dict[str, float]]:
    """Each other compression choice's image, packed with mksquashfs alone and our flags: size
    and pack time rows; then every image's read-back time. The images and their read-back
    seconds, by compression."""
    default = case.spec("cold0").compression  # the pipeline's own image is packed with it
    packs = {c: bare_pack(case, c, case.tree("cold0")) for c in COMPRESSORS}
    images = {default: image}
    for compression, packed in packs.items():
        if compression != default:
            images[compression] = packed.image
            size.compression_size_row(case, compression, packed.image, original)
            speed.compression_pack_row(case, compression, packed.seconds, packs[default].seconds)
    readbacks = readback.readback_rows(case, original, images)
    return images, readbacks


def measure(
    case: Case, cache: Path, binary: Path
) -> tuple[list[Row], list[FormatFigures], list[TrustRow]]:
    """Every figure on the default stand-in; the formats table's lines; the trust costs."""
    log(f"original script's steps and cold invoke all, in pairs ({case.heavy}x)")
    original_time = speed.cold_build_row(case, case.heavy)
    size.image_size_rows(
        case, case.image("cold0"), original_image(case), size.xz9e_size(cache, binary)
    )
    log(f"unchanged invoke all and invoke --list, in pairs ({case.runs + 2}x)")
    speed.rebuild_rows(case, original_time)
    log(f"invoke pack --force and bare mksquashfs, in pairs ({case.heavy}x)")
    mksquashfs_rss = speed.pack_row(case)
    memory.memory_rows(case, mksquashfs_rss)
    log(f"fetch + verify + extract and curl + sha256sum + unzip, in pairs ({case.runs}x)")
    speed.stage_row(case)
    log("the other compression choices; read-back times")
    images, readbacks = other_compressions(case, original_image(case), case.image("cold0"))
    log(
        f"EROFS: every mkfs.erofs and bare mksquashfs pack in rounds ({case.heavy}x), read-back "
        f"times; systemd-sysext merge of each format in rounds ({case.runs + 2}x)"
    )
    lines = formats.erofs_rows(case, images, readbacks)
    log("trust costs: the signed DDI's bytes, signing and offline verify seconds, memory")
    trust_rows = trust.measure_trust(case, case.tree("cold0"))
    log("nox -s build-matrix, 1 version x every arch, cold and warm, serial and -j 2")
    speed.matrix_rows(case)
    return case.rows, lines, trust_rows


def measure_large(case: Case) -> list[Row]:
    """The size figures (and one cold build) on the large stand-in; single runs: sizes are
    exact, and each pack takes about a minute."""
    log("large stand-in: original script's steps and a cold invoke all (1 pair)")
    speed.cold_build_row(case, 1)
    size.image_size_rows(case, case.image("cold0"), original_image(case))
    log("large stand-in: the other compression choices; read-back times")
    other_compressions(case, original_image(case), case.image("cold0"))
    return case.rows


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    if "--update-only" in given:
        return update.main([arg for arg in given if arg != "--update-only"])
    if "--frontier-only" in given:
        return frontier_run.main([arg for arg in given if arg != "--frontier-only"])
    if "--overlap-only" in given:
        return overlap.main([*(arg for arg in given if arg != "--overlap-only"), "--write"])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each cheap figure")
    parser.add_argument(
        "--heavy-runs", type=int, default=3, help="pairs of each ~100 MB build or pack"
    )
    parser.add_argument(
        "--large",
        action="store_true",
        help="also measure a ~236 MB Go binary built from Debian's Go sources (first time: "
        "~5 minutes to build it; then ~6 minutes)",
    )
    parser.add_argument(
        "--skip",
        action="append",
        choices=("update", "frontier", "overlap"),
        default=[],
        help="leave out the bytes per update, the frontier or the overlap, keeping their sections "
        "as they are (each also runs alone: --update-only, --frontier-only, --overlap-only)",
    )
    default_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    parser.add_argument("--cache", type=Path, default=default_cache / "alloy-sysext-bench")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    # Measured as a user's shell runs it: this workplace's environment sets
    # PYTHONDONTWRITEBYTECODE, so every invoke would compile each module it imports again.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    started = time.monotonic()
    for tool in TOOLS:
        if shutil.which(tool) is None:
            sys.exit(
                f"bench: {tool} not found "
                "(apt-get install squashfs-tools erofs-utils curl unzip xz-utils)"
            )
    if (missing := frontier_run.missing_plotter()) is not None:
        sys.exit(missing)
    cache = args.cache.resolve()
    cache.mkdir(parents=True, exist_ok=True)
    binary = fetch_binary(cache)
    large = build_large_binary(cache) if args.large else None
    release = cache / "release"
    make_release(release, VERSION, binary)
    if large is not None:
        make_release(release, LARGE_VERSION, large)
    server = serve(release)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        work = cache / "run"
        main_case = Case(work / "main", url, VERSION, args.runs, args.heavy_runs)
        rows, lines, trust_rows = measure(main_case, cache, binary)
        if large is not None:
            case = Case(work / "large", url, LARGE_VERSION, args.runs, 1, label="large: ")
            rows += measure_large(case)
    finally:
        server.shutdown()
        server.server_close()
    shutil.rmtree(cache / "run", ignore_errors=True)
    took = time.monotonic() - started
    table = format_table(rows)
    formats_table = format_formats_table(lines)
    print(table)
    print()
    print(formats_table)
    old_docs = args.docs.read_text(encoding="utf-8") if args.docs.exists() else ""
    trust_section = trust.trust_section(trust_rows, old_docs, args.runs)
    print()
    print(trust_section)
    print(f"\nbench took {took:.0f} s; wrote {args.docs}")
    shown = [f"--runs={args.runs}", f"--heavy-runs={args.heavy_runs}"]
    shown += ["--large"] if args.large else []
    machine = docs.machine(binary, large)
    docs.write_docs(args.docs, table, formats_table, trust_section, machine, took, shown)
    # In the file's order; each part measured below then replaces its own.
    parts = (update, frontier, overlap)
    docs.keep_sections(args.docs, old_docs, [(part.START, part.END) for part in parts])
    if "update" in args.skip:
        log("bytes per update left out (--skip=update): its section is kept")
    elif os.geteuid() == 0:
        log("bytes per update: a real update of each image format and transport")
        section, _ = update.run(cache, args.runs, quick=False, only=None)
        print(section)
        docs.replace_section(args.docs, update.START, update.END, section)
    else:
        log("bytes per update left out: it boots containers, as root only")
    if "frontier" in args.skip:
        log("the cold build's frontier left out (--skip=frontier): its section is kept")
    else:
        log(f"the cold build's frontier: every squashfs xz setting, {args.heavy_runs} rounds")
        section, _ = frontier_run.run(cache, args.heavy_runs, False, args.large, args.docs.parent)
        print(section)
        docs.replace_section(args.docs, frontier.START, frontier.END, section)
    if "overlap" in args.skip:
        log("overlap in a cold build left out (--skip=overlap): its section is kept")
    else:
        log(f"overlap in a cold build: {args.heavy_runs} pairs of each")
        section = overlap.run(cache, args.heavy_runs, quick=False)
        print(section)
        docs.replace_section(args.docs, overlap.START, overlap.END, section)
    (cache / "last.json").write_text(json.dumps([row.__dict__ for row in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
