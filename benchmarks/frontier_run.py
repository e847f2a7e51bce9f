"""The cold build's frontier, measured (issue 26): every setting of benchmarks/frontier.py packs
the stand-in's staged tree (`invoke stage`, as the pipeline lays it out) once a round, in rounds
each starting one further along (common.rounds); the seed packs the original script's tree (the
binary alone) with its own command line. Image bytes, median pack seconds, ratios against the
seed, the table and the plot (docs/frontier.png).

Debian 13's squashfs-tools 4.6.1 is downloaded once from deb.debian.org (checked against the
SHA-256 below), unpacked with dpkg -x into the bench's cache and run with this host's libraries;
where it cannot run, or lacks an option a setting needs, that setting is skipped with the reason.

`nox -s bench` measures it with the rest (`-- --frontier-only`: only this);
`python -m benchmarks.frontier_run` measures only this and rewrites only its section of
docs/benchmarks.md and docs/frontier.png; `--quick` packs an 8 MB stand-in (the Go binary's first
8 MB) and writes nothing but the plot into the cache.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import docs, frontier_plot  # noqa: E402
from benchmarks.common import BUILD_ARCH, Case, fresh, log, note_command, rounds  # noqa: E402
from benchmarks.frontier import (  # noqa: E402
    END,
    HOST,
    PNG_NAME,
    SEED,
    START,
    TRIXIE,
    Point,
    Setting,
    format_frontier_table,
    setting_args,
    settings,
    verdict,
)
from benchmarks.standin import (  # noqa: E402
    LARGE_BUILD,
    LARGE_VERSION,
    QUICK_BYTES,
    VERSION,
    XL_BUILD,
    XL_VERSION,
    build_large_binary,
    build_xl_binary,
    fetch_binary,
    make_release,
    quick_binary,
    serve,
)
from build.alloy import IMAGE_BINARY  # noqa: E402
from build.formats.squashfs import SOURCE_DATE_EPOCH  # noqa: E402
from build.model.arch import ARCHES  # noqa: E402

TRIXIE_DEB = "squashfs-tools_4.6.1-1_amd64.deb"
TRIXIE_URL = f"https://deb.debian.org/debian/pool/main/s/squashfs-tools/{TRIXIE_DEB}"
TRIXIE_SHA256 = "0e185122f5858132bbc709e26228ba28cf7f0c41f6ed26e3f55f518f2a53b59d"


def mksquashfs_version(mksquashfs: str) -> str:
    out = subprocess.run([mksquashfs, "-version"], capture_output=True, text=True).stdout
    found = re.search(r"version (\S+)", out)
    return f"mksquashfs {found[1]}" if found else "mksquashfs ?"


def fetch_trixie(cache: Path) -> tuple[str | None, str]:
    """Debian 13's mksquashfs, unpacked once into the cache, and its version; or None and why it
    cannot run here."""
    root = cache / "squashfs-tools-trixie"
    mksquashfs = root / "usr" / "bin" / "mksquashfs"
    if not mksquashfs.exists():
        deb = fresh(root.with_name(root.name + "-deb")) / TRIXIE_DEB
        note_command(f"curl -fsSL -o {deb.name} {TRIXIE_URL} && dpkg -x {deb.name} DIR")
        got = subprocess.run(["curl", "-fsSL", "-o", str(deb), TRIXIE_URL], capture_output=True)
        if got.returncode != 0:
            return None, f"cannot download {TRIXIE_URL}: {got.stderr.decode().strip()}"
        digest = hashlib.sha256(deb.read_bytes()).hexdigest()
        if digest != TRIXIE_SHA256:
            return None, f"{TRIXIE_URL} has SHA-256 {digest}, not {TRIXIE_SHA256}"
        subprocess.run(["dpkg", "-x", str(deb), str(fresh(root))], check=True)
    ran = subprocess.run([str(mksquashfs), "-version"], capture_output=True, text=True)
    if ran.returncode != 0:
        first = (ran.stderr.strip().splitlines() or ["no output"])[0]
        return None, f"Debian 13's mksquashfs does not run with this host's libraries: {first}"
    return str(mksquashfs), mksquashfs_version(str(mksquashfs))


class Packer:
    """Packs settings of one stand-in: our staged tree, the seed's tree (the binary alone, as
    the original script lays it out), the mksquashfs of each squashfs-tools."""

    def __init__(
        self, work: Path, tree: Path, tools: dict[str, str], versions: dict[str, str]
    ) -> None:
        self.work = work
        self.tree = tree
        self.tools = tools  # mksquashfs's path, by HOST or TRIXIE
        self.versions = versions  # and its version, or why it is missing
        self.seed_tree = fresh(work / "seed-tree")
        binary = self.seed_tree / IMAGE_BINARY
        binary.parent.mkdir(parents=True)
        shutil.copy2(tree / IMAGE_BINARY, binary)

    def argv(self, setting: Setting, image: Path, tree: Path | None = None) -> list[str]:
        if tree is None:
            tree = self.seed_tree if setting.seed else self.tree
        args = setting_args(setting, ARCHES[BUILD_ARCH])
        return [self.tools[setting.tools], str(tree), str(image), *args, "-no-progress"]

    def env(self, setting: Setting) -> dict[str, str]:
        """pack_squashfs' environment for ours; the caller's for the seed's, as the script."""
        if setting.seed:
            return dict(os.environ)
        path = os.environ.get("PATH", "")
        return {"PATH": path, "LC_ALL": "C", "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH}

    def pack(self, setting: Setting, image: Path, tree: Path | None = None) -> tuple[float, str]:
        """Seconds to pack `setting` into `image`, and mksquashfs's error (empty: none)."""
        argv = self.argv(setting, image, tree)
        if tree is None:  # not a probe: a command measured
            shown = " ".join(argv).replace(str(self.work), "WORK")
            env = "" if setting.seed else f"SOURCE_DATE_EPOCH={SOURCE_DATE_EPOCH} "
            note_command(env + shown)
        started = time.monotonic()
        done = subprocess.run(argv, env=self.env(setting), capture_output=True, text=True)
        seconds = time.monotonic() - started
        return seconds, "" if done.returncode == 0 else (done.stderr or done.stdout).strip()

    def why_skipped(self, setting: Setting) -> str | None:
        """None if `setting` packs a one-file tree, else why not (its tools, its mksquashfs)."""
        if setting.tools not in self.tools:
            return f"no {setting.tools} squashfs-tools: {self.versions[setting.tools]}"
        probe = fresh(self.work / "probe")
        (probe / "tree").mkdir()
        (probe / "tree" / "file").write_bytes(b"probe\n" * 1000)
        _, error = self.pack(setting, probe / "probe.raw", probe / "tree")
        shutil.rmtree(probe)
        if not error:
            return None
        said = error.splitlines()[0].replace(self.tools[setting.tools], "mksquashfs")
        return f"{self.versions[setting.tools]} says {said!r}"


def measure(
    packer: Packer,
    chosen: list[Setting],
    n: int,
    labels: dict[Setting, str],
    until: float | None = None,
) -> list[Point]:
    """Every setting packed once a round, `n` rounds (each starting one further along), none but
    the first started that would end after `until` (time.monotonic())."""
    images = {s: packer.work / f"setting-{i}.raw" for i, s in enumerate(chosen)}

    def pack_once(setting: Setting, _: int) -> float:
        seconds, error = packer.pack(setting, images[setting])
        if error:
            sys.exit(f"bench: {labels[setting]}: mksquashfs failed: {error.splitlines()[0]}")
        return seconds

    measures: dict[str, Callable[[int], float]]
    measures = {labels[s]: functools.partial(pack_once, s) for s in chosen}
    seconds = rounds(n, measures, until)
    return [
        Point(labels[s], s, images[s].stat().st_size, tuple(seconds[labels[s]])) for s in chosen
    ]


def stage(cache: Path, work: Path, binary: Path, version: str) -> Path:
    """`binary` served as Alloy `version` and staged by `invoke stage`: the tree the pipeline
    packs."""
    # bench.py's release of the same binary is reused: its zips are made once.
    release = cache / ("frontier-release-quick" if work.name.endswith("quick") else "release")
    make_release(release, version, binary)
    server = serve(release)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        case = Case(work / "case", url, version, 1, 1)
        log(f"frontier: invoke stage of the {binary.stat().st_size:,}-byte stand-in")
        subprocess.run(case.inv("stage", "frontier"), cwd=ROOT, check=True, capture_output=True)
        return case.tree("frontier")
    finally:
        server.shutdown()
        server.server_close()


def packers_tools(cache: Path) -> tuple[dict[str, str], dict[str, str]]:
    """mksquashfs by HOST and TRIXIE, and their versions (for one that cannot run: why)."""
    tools = {HOST: "mksquashfs"}
    versions = {HOST: mksquashfs_version("mksquashfs")}
    trixie, said = fetch_trixie(cache)
    if trixie is not None:
        tools[TRIXIE] = trixie
    versions[TRIXIE] = said
    return tools, versions


def run_one(
    cache: Path, name: str, binary: Path, version: str, n: int, until: float | None = None
) -> tuple[list[Point], dict[str, str]]:
    """Every setting on one stand-in: the points, the skipped settings (label: why), its size."""
    work = fresh(cache / "frontier-run" / name)  # not under run/: a full bench removes that
    tools, versions = packers_tools(cache)
    packer = Packer(work, stage(cache, work, binary, version), tools, versions)
    labels = {s: s.label(versions) for s in settings()}
    skipped = {labels[s]: why for s in settings() if (why := packer.why_skipped(s)) is not None}
    for label, why in skipped.items():
        log(f"frontier: skipped {label}: {why}")
    chosen = [s for s in settings() if labels[s] not in skipped]
    log(f"frontier: {len(chosen)} settings on the {name} stand-in, {n} rounds")
    points = measure(packer, chosen, n, labels, until)
    shutil.rmtree(work, ignore_errors=True)
    return points, skipped


def xz_version() -> str:
    out = subprocess.run(["xz", "--version"], capture_output=True, text=True).stdout
    found = re.search(r"^liblzma (\S+)", out, re.M)
    return found[1] if found else "?"


def section(measured: list[tuple[str, int, list[Point], dict[str, str]]]) -> str:
    """docs/benchmarks.md's frontier section: how, the verdict, the plot, a table per stand-in."""
    parts = [
        START,
        "## The cold build's frontier (squashfs xz)",
        "",
        textwrap.fill(
            "Issue 26: which mksquashfs xz setting packs the stand-in into how many bytes in how "
            "many seconds, against the seed's point: the original script's mksquashfs (xz, "
            "128 KiB blocks, -Xdict-size 100%, on a tree of the binary alone). Every other "
            "setting is our command line (build/formats/squashfs.py: mksquashfs_args, "
            "SOURCE_DATE_EPOCH=0, on the tree `invoke stage` lays out) changed only in the block "
            "size, the x86 BCJ filter, -Xdict-size, or a newer squashfs-tools. Each round packs "
            "every setting once, each round starting one further along the list (the drift "
            "favours none), as many rounds as each stand-in's heading says. Pack: the median "
            "of the rounds' seconds; time vs seed: "
            "the median of the rounds' ratios (each round packed both under the same drift), "
            "lowest and highest in brackets. The time is the pack alone: a cold build adds the "
            "download, unzip and hashing, which no setting changes. The box is issue 26's: "
            "≤ 0.86x the seed's bytes in ≤ 1.3x its time. Squashfs-tools 4.6.1 is Debian 13's "
            f"({TRIXIE_DEB} from deb.debian.org, SHA-256 checked, unpacked with dpkg -x, run "
            "with this host's libraries: it needs glibc 2.34). Ubuntu 22.04's 4.5 (the build "
            "container's) is not run: this machine reaches Debian's archive, not Ubuntu's.",
            width=100,
        ),
        "",
    ]
    for name, size, points, skipped in measured:
        png = PNG_NAME if name == "default" else PNG_NAME.replace(".png", f"-{name}.png")
        parts += [
            f"### The {size:,}-byte stand-in, {len(points[0].seconds)} round(s)",
            "",
            textwrap.fill(f"The stand-in: {ORIGINS[name]}.", width=100),
            "",
            f"**{verdict(points)}**",
            "",
            f"![image bytes / the seed's against pack seconds / the seed's]({png})",
            "",
            format_frontier_table(points),
            "",
        ]
        parts += [f"- skipped: {label}: {why}" for label, why in skipped.items()]
        parts += [""] if skipped else []
    widest = Setting(block="BLOCK", bcj=True, dict_size="DICT")
    arch = ARCHES[BUILD_ARCH]
    parts += [
        textwrap.fill(
            "The commands (the seed's on a tree of the binary alone; ours on the staged tree; "
            "-Xbcj and -Xdict-size only where the setting says; 4.6.1: Debian 13's mksquashfs):",
            width=100,
        ),
        "",
        "```",
        " ".join(["mksquashfs TREE IMAGE", *setting_args(SEED, arch), "-no-progress"]),
        f"SOURCE_DATE_EPOCH={SOURCE_DATE_EPOCH} mksquashfs TREE IMAGE "
        + " ".join([*setting_args(widest, arch), "-no-progress"]),
        "```",
        "",
        f"Measured on {os.cpu_count()} CPUs, kernel {platform.release()}, liblzma {xz_version()}.",
        END,
    ]
    return "\n".join(parts)


# What each stand-in is, for its heading.
ORIGINS = {
    "quick": f"the Go binary's first {QUICK_BYTES >> 20} MB",
    "default": "Debian's packer, a stripped Go binary",
    "large": LARGE_BUILD,
    "xl": XL_BUILD,
}


def stand_ins(cache: Path, quick: bool, large: bool, xl: bool) -> list[tuple[str, Path, str]]:
    """(name, binary, version) of each stand-in to measure."""
    go = fetch_binary(cache)
    chosen = [
        ("quick", quick_binary(cache, go, "frontier-quick"), VERSION)
        if quick
        else ("default", go, VERSION)
    ]
    if large:
        chosen.append(("large", build_large_binary(cache), LARGE_VERSION))
    if xl:
        chosen.append(("xl", build_xl_binary(cache), XL_VERSION))
    return chosen


def run(
    cache: Path,
    n: int,
    quick: bool,
    large: bool,
    docs_dir: Path,
    minutes: float | None = None,
    xl: bool = False,
) -> tuple[str, list[Path]]:
    """Every stand-in measured, in `n` rounds (fewer where another would end more than `minutes`
    from now): the section, and the plots written (into docs_dir)."""
    until = None if minutes is None else time.monotonic() + 60 * minutes
    measured = []
    pngs = []
    for name, binary, version in stand_ins(cache, quick, large, xl):
        points, skipped = run_one(cache, name, binary, version, n, until)
        measured.append((name, binary.stat().st_size, points, skipped))
        png = docs_dir / (
            PNG_NAME if name == "default" else PNG_NAME.replace(".png", f"-{name}.png")
        )
        title = (
            f"squashfs xz settings on a {binary.stat().st_size / 1e6:.0f} MB Go binary, "
            f"{len(points[0].seconds)} round(s): size and pack time against the seed's"
        )
        frontier_plot.plot(points, png, title)
        pngs.append(png)
    return section(measured), pngs


def missing_plotter() -> str | None:
    """The one line to exit with when matplotlib, which draws the plot, is not installed."""
    if importlib.util.find_spec("matplotlib") is not None:
        return None
    return (
        f"bench: matplotlib not installed for {sys.executable} (it draws docs/{PNG_NAME}): "
        "pip install -r requirements-bench.txt"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of one pack of each")
    parser.add_argument(
        "--quick", action="store_true", help=f"a {QUICK_BYTES >> 20} MB stand-in; print only"
    )
    parser.add_argument("--large", action="store_true", help="the 236 MB stand-in too")
    parser.add_argument("--xl", action="store_true", help="the 707 MB stand-in too")
    parser.add_argument(
        "--minutes",
        type=float,
        help="end by then: start no round (but the first) that would end later",
    )
    default_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    parser.add_argument("--cache", type=Path, default=default_cache / "alloy-sysext-bench")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    if (missing := missing_plotter()) is not None:
        sys.exit(missing)
    cache = args.cache.resolve()
    docs_dir = cache / "frontier-quick" if args.quick else args.docs.parent
    text, pngs = run(cache, args.rounds, args.quick, args.large, docs_dir, args.minutes, args.xl)
    print(text)
    print(f"bench: plots: {' '.join(map(str, pngs))}", file=sys.stderr)
    if not args.quick:
        docs.replace_section(args.docs, START, END, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
