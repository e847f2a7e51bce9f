"""Benchmarks (issue 7): size, speed and memory of the pipeline against the original script.

Run with `nox -s bench` (or `python benchmarks/bench.py`, from the requirements' environment).
It takes a real Go binary (Debian's `packer`, ~107 MB, fetched once with `apt-get download` into
the bench's cache), serves it as an Alloy release from a local HTTP server on 127.0.0.1, measures
each figure as the median of a few runs, prints a table and writes it to docs/benchmarks.md.
With --large it also builds a ~236 MB Go binary offline from Debian's Go sources (see
build_large_binary) and measures the size figures on it. Not collected by pytest: it takes minutes.

This machine's CPU speed drifts by about 10 % from minute to minute (the same mksquashfs took
29-35 s of CPU time in five runs in a row), so two timings compared in a ratio are taken as a
pair, one right after the other, in alternating order, and a ratio is the median of the pairs'
ratios, shown with their range.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from build.arch import ARCHES  # noqa: E402
from build.pack import mksquashfs_args  # noqa: E402

VERSION = "1.10.2"
LARGE_VERSION = "1.17.1"  # the --large stand-in is served as this release
ELF_MACHINE = {"amd64": 0x3E, "arm64": 0xB7}
PACKAGE = "packer"  # a Go binary from Debian, the stand-in for Alloy's
# The original script's mksquashfs flags (its block size: mksquashfs's default, 128 KiB).
ORIGINAL_FLAGS = ["-comp", "xz", "-Xdict-size", "100%", "-noappend"]
IMAGE_BINARY = "usr/local/bin/alloy"
COMPRESSIONS = ("xz", "xz-bcj", "zstd")  # every choice `invoke all --compression` offers
AMD64 = ARCHES["amd64"]


@dataclass
class Row:
    figure: str
    ours: float
    theirs: float | None = None
    unit: str = "s"
    limit: float | None = None  # goal: ratio ours/theirs <= limit (or ours <= limit, unit MB)
    note: str = ""
    ratios: tuple[float, ...] = ()  # ours/theirs of each pair, when they ran in pairs

    @property
    def ratio(self) -> float | None:
        if self.ratios:
            return statistics.median(self.ratios)
        return self.ours / self.theirs if self.theirs else None

    @property
    def met(self) -> bool | None:
        if self.limit is None:
            return None
        value = self.ratio if self.theirs is not None else self.ours
        return value is not None and value <= self.limit


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "B":
        return f"{value / 1e6:.2f} MB"
    if unit == "MB":
        return f"{value:.1f} MB"
    return f"{value:.2f} s"


def format_table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table: figure, ours, theirs/limit, ratio, goal, met?"""
    lines = [
        "| figure | ours | theirs / limit | ratio | goal | met? |",
        "|---|---:|---:|---:|---|---|",
    ]
    for row in rows:
        ratio = "—" if row.ratio is None else f"{row.ratio:.3f}x"
        if len(row.ratios) > 1:
            ratio += f" ({min(row.ratios):.3f}-{max(row.ratios):.3f})"
        if row.limit is None:
            goal = "—"
        elif row.theirs is None:
            goal = f"≤ {row.limit:g} {row.unit}"
        else:
            goal = f"≤ {row.limit:g}x"
        met = {None: "—", True: "yes", False: "**no**"}[row.met]
        figure = f"{row.figure} ({row.note})" if row.note else row.figure
        theirs = _value(row.theirs, row.unit)
        lines.append(
            f"| {figure} | {_value(row.ours, row.unit)} | {theirs} | {ratio} | {goal} | {met} |"
        )
    return "\n".join(lines)


# --- helpers -----------------------------------------------------------------------------------

COMMANDS: list[str] = []  # every command measured, once each, for the docs


def _note(cmd: Sequence[str] | str) -> None:
    text = cmd if isinstance(cmd, str) else " ".join(cmd)
    if text not in COMMANDS:
        COMMANDS.append(text)


def run(cmd: Sequence[str] | str, *, cwd: Path | None = None, env: dict | None = None) -> float:
    """Run `cmd` (a list, or a string for sh -c), quietly; its wall time in seconds."""
    _note(cmd)
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


# --- setup: the binaries, the release, the server ------------------------------------------------


def apt_download(packages: Sequence[str], into: Path) -> list[Path]:
    """Debian packages downloaded (not installed) into a fresh directory."""
    debs = fresh(into)
    debs.chmod(0o777)  # apt-get download, as root, fetches as the _apt user where it can
    subprocess.run(["apt-get", "download", *packages], cwd=debs, check=True)
    return sorted(debs.glob("*.deb"))


def fetch_binary(cache: Path) -> Path:
    """Debian's packer binary, downloaded once with apt-get download and unpacked with dpkg -x."""
    binary = cache / "pkg" / "usr" / "bin" / PACKAGE
    if binary.exists():
        return binary
    (deb,) = apt_download([PACKAGE], cache / "deb")
    subprocess.run(["dpkg", "-x", str(deb), str(cache / "pkg")], check=True)
    return binary


# The large stand-in: every service client of aws-sdk-go v1, the way Alloy links hundreds of
# exporters and SDKs. Reflection over the clients keeps all their methods through the linker.
LARGE_PACKAGES = ("golang-go", "golang-github-aws-aws-sdk-go-dev")
LARGE_SERVICES = "github.com/aws/aws-sdk-go/service"
LARGE_MAIN = """package main

import (
\t"fmt"
\t"os"
\t"reflect"

\t"github.com/aws/aws-sdk-go/aws/session"
{imports}
)

func main() {{
\tsess := session.Must(session.NewSession())
\tclients := []interface{{}}{{
{clients}
\t}}
\tfor _, client := range clients {{
\t\tfmt.Println(reflect.ValueOf(client).MethodByName(os.Args[1]).IsValid())
\t}}
}}
"""


LARGE_BUILD = (
    "apt-get download golang-go golang-github-aws-aws-sdk-go-dev and their golang-* "
    "dependencies; dpkg -x each; GO111MODULE=off CGO_ENABLED=0 go build -trimpath "
    "-ldflags='-s -w' of a main.go linking every aws-sdk-go service client "
    "(benchmarks/bench.py, build_large_binary)"
)


def build_large_binary(cache: Path) -> Path:
    """A ~236 MB real Go binary, built offline from Debian's Go toolchain and aws-sdk-go sources
    (apt-get download + dpkg -x: nothing installed), stripped like a release build. About five
    minutes on 2 cores, once: the binary is kept (delete cache/large to rebuild it)."""
    large = cache / "large"
    binary = large / "aws-sdk-go-all"
    _note(LARGE_BUILD)
    if binary.exists():
        return binary
    log("building the large stand-in from Debian's Go sources (once; ~5 minutes on 2 cores)")
    depends = subprocess.run(
        ["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
         "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", "--no-pre-depends",
         *LARGE_PACKAGES],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    # The Go toolchain and Go sources only; libc and friends are the host's.
    packages = sorted({line for line in depends.splitlines() if line.startswith("golang-")})
    debs = apt_download(packages, large / "deb")
    root = fresh(large / "root")
    for deb in debs:
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    (go,) = root.glob("usr/lib/go-*/bin/go")
    gocode = root / "usr/share/gocode"
    services = sorted(
        d.name
        for d in (gocode / "src" / LARGE_SERVICES).iterdir()
        if any(not f.name.endswith("_test.go") for f in d.glob("*.go"))
    )
    program = fresh(large / "gopath/src/standin")
    (program / "main.go").write_text(
        LARGE_MAIN.format(
            imports="\n".join(f'\ts_{s} "{LARGE_SERVICES}/{s}"' for s in services),
            clients="\n".join(f"\t\ts_{s}.New(sess)," for s in services),
        )
    )
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(large),
        "GOROOT": str(go.parent.parent),
        "GOPATH": f"{large / 'gopath'}:{gocode}",
        "GO111MODULE": "off",
        "GOCACHE": str(large / "gocache"),
        "CGO_ENABLED": "0",
        "GOENV": "off",
    }
    tmp = binary.with_suffix(".tmp")
    build = [str(go), "build", "-trimpath", "-ldflags=-s -w", "-o", str(tmp), "standin"]
    subprocess.run(build, cwd=program, env=env, check=True)
    tmp.rename(binary)
    (large / "source.txt").write_text(
        f"{len(services)} aws-sdk-go services; " + ", ".join(d.name for d in debs) + "\n"
    )
    for scratch in ("root", "gopath", "gocache", "deb"):
        shutil.rmtree(large / scratch, ignore_errors=True)
    return binary


def make_release(release: Path, version: str, binary: Path) -> None:
    """The binary as release `version` in GitHub's layout: vX.Y.Z/alloy-linux-ARCH.zip +
    SHA256SUMS. The arm64 binary is the same one with its ELF machine field set to aarch64 (the
    build checks only that)."""
    directory = release / f"v{version}"
    sums = directory / "SHA256SUMS"
    stamp = directory / "source.sha256"
    source_sha = file_sha256(binary)
    if sums.exists() and stamp.exists() and stamp.read_text().strip() == source_sha:
        return
    fresh(directory)
    data = bytearray(binary.read_bytes())
    lines = []
    for arch, machine in ELF_MACHINE.items():
        data[18:20] = machine.to_bytes(2, "little")
        name = f"alloy-linux-{arch}.zip"
        info = zipfile.ZipInfo(f"alloy-linux-{arch}", date_time=(2025, 1, 1, 0, 0, 0))
        info.external_attr = 0o755 << 16
        with zipfile.ZipFile(directory / name, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(info, bytes(data))
        lines.append(f"{file_sha256(directory / name)}  {name}\n")
    sums.write_text("".join(lines))
    stamp.write_text(source_sha + "\n")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(directory: Path) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(_Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def xz9e_size(cache: Path, binary: Path) -> int:
    """Bytes of `xz -9e` over the bare binary: the limit. ~2 minutes, so kept by the binary's
    sha256 and xz's version."""
    version = subprocess.run(["xz", "--version"], capture_output=True, text=True).stdout.split()
    key = file_sha256(binary)[:16] + "-" + version[3]
    kept = cache / f"xz9e-{key}.size"
    _note(f"xz -9e -T1 -c {binary} | wc -c")
    if kept.exists():
        return int(kept.read_text())
    log("xz -9e over the bare binary (once; ~2 minutes on 2 cores)")
    with subprocess.Popen(["xz", "-9e", "-T1", "-c", str(binary)], stdout=subprocess.PIPE) as xz:
        assert xz.stdout is not None
        size = sum(len(chunk) for chunk in iter(lambda: xz.stdout.read(1 << 20), b""))
    kept.write_text(f"{size}\n")
    return size


# --- measurements --------------------------------------------------------------------------------


class Bench:
    """The figures for one stand-in binary, served as release `version` at `url`."""

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
        self.peak_rss_mb = 0.0

    def row(self, figure: str, *args: object, **kwargs: object) -> None:
        self.rows.append(Row(self.label + figure, *args, **kwargs))  # type: ignore[arg-type]

    def flags(self, name: str, arch: str = "amd64") -> list[str]:
        return [
            f"--version={self.version}",
            f"--arch={arch}",
            f"--base-url={self.url}",
            f"--output-dir={self.work / name / 'out'}",
            f"--cache-dir={self.work / name / 'cache'}",
        ]

    def inv(self, task: str, name: str, *extra: str) -> list[str]:
        return [*self.invoke, task, *self.flags(name), *extra]

    def image(self, name: str) -> Path:
        return self.work / name / "out" / f"alloy-{self.version}-amd64.raw"

    def tree(self, name: str) -> Path:
        return self.work / name / "out" / ".staging" / f"alloy-{self.version}-amd64" / "rootfs"

    def original_script(self, i: int) -> float:
        """The original script's steps: curl, unzip, mksquashfs with its flags, sha256sum, cp."""
        d = fresh(self.work / f"orig{i}")
        flags = " ".join(ORIGINAL_FLAGS)
        script = (
            f"cd {d} && curl -fsSL -o alloy.zip {self.url}/v{self.version}/alloy-linux-amd64.zip"
            " && unzip -q alloy.zip && mkdir -p tree/usr/local/bin out"
            " && mv alloy-linux-amd64 tree/usr/local/bin/alloy"
            f" && mksquashfs tree alloy.raw {flags} -no-progress >/dev/null"
            " && sha256sum alloy.raw > alloy.raw.sha256 && cp alloy.raw alloy.raw.sha256 out/"
        )
        return run(script)

    def cold_all(self, i: int) -> float:
        """A cold `invoke all`, verify included; also records our process's peak RSS."""
        shutil.rmtree(self.work / f"cold{i}", ignore_errors=True)
        elapsed, rss = self.polled(self.inv("all", f"cold{i}"))
        self.peak_rss_mb = max(self.peak_rss_mb, rss)
        return elapsed

    def polled(self, cmd: list[str]) -> tuple[float, float]:
        """(wall s, peak RSS MB) of the Python process `cmd` starts: its VmHWM from /proc,
        polled until it exits (its children, such as mksquashfs, are not counted)."""
        _note(cmd)
        started = time.monotonic()
        process = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        peak = 0
        status = Path(f"/proc/{process.pid}/status")
        while process.poll() is None:
            try:
                match = re.search(r"^VmHWM:\s+(\d+) kB", status.read_text(), re.M)
            except OSError:
                break
            if match:
                peak = max(peak, int(match.group(1)))
            time.sleep(0.02)
        if process.wait() != 0:
            sys.exit(f"bench: failed: {' '.join(cmd)}")
        return time.monotonic() - started, peak / 1024

    def bare_pack(self, compression: str, tree: Path) -> tuple[float, float, Path]:
        """(wall s, max RSS MB, image) of mksquashfs alone with our flags for `compression`."""
        image = self.work / f"bare-{compression}.raw"
        out = self.work / "time.txt"
        cmd = ["mksquashfs", str(tree), str(image), *mksquashfs_args(compression, AMD64)]
        elapsed = run(["/usr/bin/time", "-v", "-o", str(out), *cmd, "-no-progress"])
        match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.read_text())
        return elapsed, int(match.group(1)) / 1024 if match else float("nan"), image

    def read_back(self, image: Path) -> float | None:
        """Seconds to read the binary from the mounted image with cold caches (root only)."""
        if os.geteuid() != 0:
            return None
        mnt = fresh(self.work / "mnt")
        _note(
            f"mount -o loop,ro IMAGE {mnt}; echo 3 > /proc/sys/vm/drop_caches; "
            f"read {mnt}/{IMAGE_BINARY} in 1 MiB chunks"
        )
        subprocess.run(["mount", "-o", "loop,ro", str(image), str(mnt)], check=True)
        try:

            def once(_: int) -> float:
                drop_caches()
                started = time.monotonic()
                with (mnt / IMAGE_BINARY).open("rb") as f:
                    while f.read(1 << 20):
                        pass
                return time.monotonic() - started

            return median_of(self.runs, once)
        finally:
            subprocess.run(["umount", str(mnt)], check=True)

    def stage_theirs(self, i: int) -> float:
        d = fresh(self.work / f"curl{i}")
        base = f"{self.url}/v{self.version}"
        return run(
            f"cd {d} && curl -fsSL -o alloy-linux-amd64.zip {base}/alloy-linux-amd64.zip"
            f" && curl -fsSL -o SHA256SUMS {base}/SHA256SUMS"
            " && sha256sum -c --ignore-missing --quiet SHA256SUMS && unzip -q alloy-linux-amd64.zip"
        )

    def stage_ours(self, i: int) -> float:
        shutil.rmtree(self.work / f"stage{i}", ignore_errors=True)
        return run(self.inv("stage", f"stage{i}"), cwd=ROOT)

    def matrix(self, jobs: int, name: str) -> float:
        env = {**os.environ, "ALLOY_VERSIONS": self.version, "ALLOY_ARCHS": "amd64,arm64"}
        d = self.work / name
        cmd = [
            sys.executable, "-m", "nox", "-f", str(ROOT / "noxfile.py"),
            *(["-j", str(jobs)] if jobs > 1 else []),
            "-s", "build-matrix", "--",
            f"--base-url={self.url}", f"--output-dir={d / 'out'}", f"--cache-dir={d / 'cache'}",
        ]  # fmt: skip
        _note(f"ALLOY_VERSIONS={self.version} ALLOY_ARCHS=amd64,arm64 " + " ".join(cmd))
        return run(cmd, cwd=ROOT, env=env)

    def sizes_and_read_back(self, orig_image: Path, image: Path) -> dict[str, Path]:
        """Each compression choice's image (xz: the pipeline's own; the others packed with
        mksquashfs alone and our flags): size rows, pack time rows, read-back rows."""
        images = {"xz": image}
        bare_times = {}
        for compression in COMPRESSIONS:
            bare_times[compression], _, bare = self.bare_pack(compression, self.tree("cold0"))
            if compression != "xz":
                images[compression] = bare
        orig_size = orig_image.stat().st_size
        for compression, img in images.items():
            if compression != "xz":
                size = img.stat().st_size
                # Opt-in choices: the size goal is the default build's (the xz row).
                self.row(f"{compression} image size vs original flags", size, orig_size, "B")
                self.row(
                    f"{compression} pack (bare mksquashfs) vs xz pack",
                    bare_times[compression],
                    bare_times["xz"],
                )
        read_orig = self.read_back(orig_image)
        if read_orig is not None:
            for compression, img in images.items():
                read = self.read_back(img)
                self.row(
                    f"read binary from mounted image, {compression} vs original",
                    read or 0,
                    read_orig,
                )
        return images

    def all(self, binary: Path, cache: Path) -> list[Row]:
        n, h = self.runs, self.heavy

        log(f"original script's steps and cold invoke all, in pairs ({h}x)")
        cold, orig_time, ratios = paired(h, self.cold_all, self.original_script)
        orig_image = self.work / "orig0" / "alloy.raw"
        orig_size = orig_image.stat().st_size
        image = self.image("cold0")
        size = image.stat().st_size
        limit = xz9e_size(cache, binary)
        self.row("image size vs original flags (xz, 128 KiB)", size, orig_size, "B", 0.86)
        self.row("image size vs xz -9e of the bare binary", size, limit, "B")
        self.row("original flags vs xz -9e of the bare binary", orig_size, limit, "B")
        self.row(
            "cold invoke all vs original script's steps", cold, orig_time, limit=1.3, ratios=ratios
        )

        log(f"unchanged invoke all and invoke --list, in pairs ({n + 2}x)")
        noop, listing, ratios = paired(
            n + 2,
            lambda _: run(self.inv("all", "cold0"), cwd=ROOT),
            lambda _: run([*self.invoke, "--list"], cwd=ROOT),
        )
        self.row("unchanged rebuild vs original script's steps", noop, orig_time, limit=0.02)
        self.row("no-op invoke all vs invoke --list", noop, listing, limit=1.2, ratios=ratios)

        log(f"invoke pack --force and bare mksquashfs, in pairs ({h}x)")
        tree = self.tree("cold0")
        bare_rss: list[float] = []

        def bare(_: int) -> float:
            elapsed, rss, _image = self.bare_pack("xz", tree)
            bare_rss.append(rss)
            return elapsed

        pack, bare_time, ratios = paired(
            h, lambda _: run(self.inv("pack", "cold0", "--force"), cwd=ROOT), bare
        )
        self.row(
            "invoke pack --force vs bare mksquashfs, same flags",
            pack,
            bare_time,
            limit=1.05,
            ratios=ratios,
        )
        self.row(
            "peak RSS of our Python process, cold invoke all",
            self.peak_rss_mb,
            unit="MB",
            limit=100,
        )
        self.row("peak RSS of mksquashfs (reported apart)", max(bare_rss), unit="MB")

        log(f"fetch + verify + extract and curl + sha256sum + unzip, in pairs ({n}x)")
        ours_stage, theirs_stage, ratios = paired(n, self.stage_ours, self.stage_theirs)
        self.row(
            "fetch+verify+extract (invoke stage) vs curl+sha256sum+unzip",
            ours_stage,
            theirs_stage,
            ratios=ratios,
        )

        log("the other compression choices; read-back times")
        self.sizes_and_read_back(orig_image, image)

        log("nox -s build-matrix, 1 version x 2 arches, cold and warm, serial and -j 2")
        cold_serial = self.matrix(1, "mx1")
        warm_serial = median_of(n, lambda _: self.matrix(1, "mx1"))
        cold_par = self.matrix(2, "mx2")
        warm_par = median_of(n, lambda _: self.matrix(2, "mx2"))
        self.row("build-matrix 1x2 cold: -j 2 vs serial", cold_par, cold_serial)
        self.row("build-matrix 1x2 warm: -j 2 vs serial", warm_par, warm_serial)
        self.row("build-matrix 1x2 serial: warm vs cold", warm_serial, cold_serial)
        return self.rows

    def large(self) -> list[Row]:
        """The size figures (and one cold build) on the large stand-in; single runs: sizes are
        exact, and each pack takes about a minute."""
        log("large stand-in: original script's steps and a cold invoke all (1 pair)")
        cold, orig_time, _ = paired(1, self.cold_all, self.original_script)
        orig_image = self.work / "orig0" / "alloy.raw"
        size, orig_size = self.image("cold0").stat().st_size, orig_image.stat().st_size
        self.row("image size vs original flags (xz, 128 KiB)", size, orig_size, "B", 0.86)
        self.row("cold invoke all vs original script's steps", cold, orig_time, limit=1.3)
        log("large stand-in: the other compression choices; read-back times")
        self.sizes_and_read_back(orig_image, self.image("cold0"))
        return self.rows


# --- machine and docs --------------------------------------------------------------------------


def machine(binary: Path, large: Path | None) -> list[str]:
    def first(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True).stdout
        except OSError:
            return "not installed"
        return out.strip().splitlines()[0] if out.strip() else "?"

    deb = next((binary.parents[2].parent / "deb").glob("*.deb"), None)
    os_name = "?"
    if Path("/etc/os-release").exists():
        found = re.search(r'^PRETTY_NAME="?([^"\n]*)', Path("/etc/os-release").read_text(), re.M)
        os_name = found.group(1) if found else "?"
    lines = [
        f"- CPUs (nproc): {os.cpu_count()}",
        f"- OS: {os_name}; kernel {platform.release()} ({platform.machine()})",
        f"- Python: {platform.python_version()}; root: {os.geteuid() == 0}",
        f"- squashfs-tools: {first(['mksquashfs', '-version'])}",
        f"- xz: {first(['xz', '--version'])}",
        f"- the binary: `{deb.name if deb else PACKAGE}`'s /usr/bin/{PACKAGE}, "
        f"{binary.stat().st_size:,} bytes (Go, stripped), served as Alloy {VERSION} "
        "(alloy-linux-ARCH.zip, deflate) from a local HTTP server on 127.0.0.1",
    ]
    if large is not None:
        source = (large.parent / "source.txt").read_text().strip()
        lines.append(
            f'- the large binary (--large, figures prefixed "large:"): built here, '
            f"{large.stat().st_size:,} bytes (Go, stripped), served as Alloy {LARGE_VERSION}; "
            f"from {source}"
        )
    return lines


def write_docs(path: Path, table: str, lines: list[str], took: float, args: list[str]) -> None:
    commands = "\n".join(COMMANDS)
    text = f"""# Benchmarks

Produced by `nox -s bench` ({" ".join(args) or "default run counts"}), which took {took:.0f} s
end to end; each figure is the median of the runs given there. Ratios are ours / theirs, measured
in the same run; "theirs" is the original script's step (or a limit) named in the figure. A ratio
with a range in brackets comes from pairs (ours and theirs back to back, alternating which goes
first): the median of the pairs' ratios, then the lowest and highest.

{table}

## Machine

{chr(10).join(lines)}

## Commands measured

Paths are the bench's own (under its cache directory), URL its local server:

```
{commands}
```
"""
    # The notes below the marker are written by hand: a new run keeps them.
    marker = "<!-- notes: kept by nox -s bench -->"
    notes = "\n## Notes\n"
    if path.exists() and marker in path.read_text():
        notes = path.read_text().split(marker, 1)[1]
    text += f"\n{marker}{notes}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
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
    default_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    parser.add_argument("--cache", type=Path, default=default_cache / "alloy-sysext-bench")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    started = time.monotonic()
    for tool in ("mksquashfs", "curl", "unzip", "sha256sum", "xz", "apt-get", "dpkg"):
        if shutil.which(tool) is None:
            sys.exit(
                f"bench: {tool} not found (apt-get install squashfs-tools curl unzip xz-utils)"
            )
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
        rows = Bench(work / "main", url, VERSION, args.runs, args.heavy_runs).all(binary, cache)
        if large is not None:
            bench = Bench(work / "large", url, LARGE_VERSION, args.runs, 1, label="large: ")
            rows += bench.large()
    finally:
        server.shutdown()
        server.server_close()
    shutil.rmtree(cache / "run", ignore_errors=True)
    took = time.monotonic() - started
    table = format_table(rows)
    print(table)
    print(f"\nbench took {took:.0f} s; wrote {args.docs}")
    shown = [f"--runs={args.runs}", f"--heavy-runs={args.heavy_runs}"]
    shown += ["--large"] if args.large else []
    write_docs(args.docs, table, machine(binary, large), took, shown)
    (cache / "last.json").write_text(json.dumps([row.__dict__ for row in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
