"""Benchmarks (issue 7): size, speed and memory of the pipeline against the original script.

Run with `nox -s bench` (or `python benchmarks/bench.py`, from the requirements' environment).
It takes a real Go binary (Debian's `packer`, ~107 MB, fetched once with `apt-get download` into
the bench's cache), serves it as an Alloy release from a local HTTP server on 127.0.0.1, measures
each figure as the median of a few runs, prints a table and writes it to docs/benchmarks.md.
Not collected by pytest: it takes minutes.
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

from build.pack import mksquashfs_args  # noqa: E402

VERSION = "1.10.2"
ELF_MACHINE = {"amd64": 0x3E, "arm64": 0xB7}
PACKAGE = "packer"  # a Go binary from Debian, the stand-in for Alloy's
# The original script's mksquashfs flags (its block size: mksquashfs's default, 128 KiB).
ORIGINAL_FLAGS = ["-comp", "xz", "-Xdict-size", "100%", "-noappend"]
IMAGE_BINARY = "usr/local/bin/alloy"


@dataclass
class Row:
    figure: str
    ours: float
    theirs: float | None = None
    unit: str = "s"
    limit: float | None = None  # goal: ratio ours/theirs <= limit (or ours <= limit, unit MB)
    note: str = ""

    @property
    def ratio(self) -> float | None:
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


# --- setup: the binary, the release, the server --------------------------------------------------


def fetch_binary(cache: Path) -> Path:
    """Debian's packer binary, downloaded once with apt-get download and unpacked with dpkg -x."""
    binary = cache / "pkg" / "usr" / "bin" / PACKAGE
    if binary.exists():
        return binary
    debs = fresh(cache / "deb")
    debs.chmod(0o777)  # apt-get download, as root, fetches as the _apt user where it can
    subprocess.run(["apt-get", "download", PACKAGE], cwd=debs, check=True)
    (deb,) = debs.glob("*.deb")
    subprocess.run(["dpkg", "-x", str(deb), str(cache / "pkg")], check=True)
    return binary


def make_release(cache: Path, binary: Path) -> Path:
    """A release in GitHub's layout: vX.Y.Z/alloy-linux-ARCH.zip + SHA256SUMS. The arm64 binary
    is the same one with its ELF machine field set to aarch64 (the build checks only that)."""
    release = cache / "release"
    sums = release / f"v{VERSION}" / "SHA256SUMS"
    stamp = release / "source.sha256"
    source_sha = hashlib.sha256(binary.read_bytes()).hexdigest()
    if sums.exists() and stamp.exists() and stamp.read_text().strip() == source_sha:
        return release
    directory = fresh(release) / f"v{VERSION}"
    directory.mkdir()
    data = bytearray(binary.read_bytes())
    lines = []
    for arch, machine in ELF_MACHINE.items():
        data[18:20] = machine.to_bytes(2, "little")
        name = f"alloy-linux-{arch}.zip"
        info = zipfile.ZipInfo(f"alloy-linux-{arch}", date_time=(2025, 1, 1, 0, 0, 0))
        info.external_attr = 0o755 << 16
        with zipfile.ZipFile(directory / name, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(info, bytes(data))
        digest = hashlib.sha256((directory / name).read_bytes()).hexdigest()
        lines.append(f"{digest}  {name}\n")
    sums.write_text("".join(lines))
    stamp.write_text(source_sha + "\n")
    return release


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
    key = hashlib.sha256(binary.read_bytes()).hexdigest()[:16] + "-" + version[3]
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
    def __init__(self, cache: Path, url: str, runs: int, heavy_runs: int) -> None:
        self.cache = cache
        self.url = url
        self.runs = runs
        self.heavy = heavy_runs
        self.work = fresh(cache / "run")
        self.rows: list[Row] = []
        self.invoke = [sys.executable, "-m", "invoke"]

    def flags(self, name: str, arch: str = "amd64") -> list[str]:
        return [
            f"--version={VERSION}",
            f"--arch={arch}",
            f"--base-url={self.url}",
            f"--output-dir={self.work / name / 'out'}",
            f"--cache-dir={self.work / name / 'cache'}",
        ]

    def inv(self, task: str, name: str, *extra: str) -> list[str]:
        return [*self.invoke, task, *self.flags(name), *extra]

    def original_script(self, i: int) -> float:
        """The original script's steps: curl, unzip, mksquashfs with its flags, sha256sum, cp."""
        d = fresh(self.work / f"orig{i}")
        flags = " ".join(ORIGINAL_FLAGS)
        script = (
            f"cd {d} && curl -fsSL -o alloy.zip {self.url}/v{VERSION}/alloy-linux-amd64.zip"
            " && unzip -q alloy.zip && mkdir -p tree/usr/local/bin out"
            " && mv alloy-linux-amd64 tree/usr/local/bin/alloy"
            f" && mksquashfs tree alloy.raw {flags} -no-progress >/dev/null"
            " && sha256sum alloy.raw > alloy.raw.sha256 && cp alloy.raw alloy.raw.sha256 out/"
        )
        return run(script)

    def cold_all(self, i: int) -> float:
        shutil.rmtree(self.work / f"cold{i}", ignore_errors=True)
        return run(self.inv("all", f"cold{i}"), cwd=ROOT)

    def peak_rss(self) -> tuple[float, float]:
        """(wall s, peak RSS MB) of our own Python process in a cold `invoke all --no-verify`:
        its VmHWM from /proc, polled until it exits (children such as mksquashfs not counted)."""
        cmd = self.inv("all", "rss", "--no-verify")
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

    def timed_rss(self, cmd: list[str]) -> tuple[float, float]:
        """(wall s, max RSS MB) of a command under /usr/bin/time -v."""
        out = self.work / "time.txt"
        elapsed = run(["/usr/bin/time", "-v", "-o", str(out), *cmd])
        match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.read_text())
        return elapsed, int(match.group(1)) / 1024 if match else float("nan")

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
        base = f"{self.url}/v{VERSION}"
        return run(
            f"cd {d} && curl -fsSL -o alloy-linux-amd64.zip {base}/alloy-linux-amd64.zip"
            f" && curl -fsSL -o SHA256SUMS {base}/SHA256SUMS"
            " && sha256sum -c --ignore-missing --quiet SHA256SUMS && unzip -q alloy-linux-amd64.zip"
        )

    def stage_ours(self, i: int) -> float:
        shutil.rmtree(self.work / f"stage{i}", ignore_errors=True)
        return run(self.inv("stage", f"stage{i}"), cwd=ROOT)

    def matrix(self, jobs: int, name: str) -> float:
        env = {**os.environ, "ALLOY_VERSIONS": VERSION, "ALLOY_ARCHS": "amd64,arm64"}
        d = self.work / name
        cmd = [
            sys.executable, "-m", "nox", "-f", str(ROOT / "noxfile.py"),
            *(["-j", str(jobs)] if jobs > 1 else []),
            "-s", "build-matrix", "--",
            f"--base-url={self.url}", f"--output-dir={d / 'out'}", f"--cache-dir={d / 'cache'}",
        ]  # fmt: skip
        _note("ALLOY_VERSIONS=1.10.2 ALLOY_ARCHS=amd64,arm64 " + " ".join(cmd))
        return run(cmd, cwd=ROOT, env=env)

    def all(self, binary: Path) -> list[Row]:
        rows = self.rows
        n, h = self.runs, self.heavy

        log(f"original script's steps, cold ({h}x)")
        orig_time = median_of(h, self.original_script)
        orig_image = self.work / "orig0" / "alloy.raw"
        orig_size = orig_image.stat().st_size

        log(f"cold invoke all ({h}x)")
        cold = median_of(h, self.cold_all)
        image = self.work / "cold0" / "out" / f"alloy-{VERSION}-amd64.raw"
        size = image.stat().st_size
        limit = xz9e_size(self.cache, binary)
        rows.append(Row("image size vs original flags (xz, 128 KiB)", size, orig_size, "B", 0.86))
        rows.append(Row("image size vs xz -9e of the bare binary", size, limit, "B"))
        rows.append(Row("original flags vs xz -9e of the bare binary", orig_size, limit, "B"))
        rows.append(Row("cold invoke all vs original script's steps", cold, orig_time, limit=1.3))

        log(f"unchanged invoke all, invoke --list ({n + 2}x each)")
        noop = median_of(n + 2, lambda _: run(self.inv("all", "cold0"), cwd=ROOT))
        listing = median_of(n + 2, lambda _: run([*self.invoke, "--list"], cwd=ROOT))
        rows.append(
            Row("unchanged rebuild vs original script's steps", noop, orig_time, limit=0.02)
        )
        rows.append(Row("no-op invoke all vs invoke --list", noop, listing, limit=1.2))

        log(f"invoke pack --force vs bare mksquashfs ({h}x each)")
        tree = self.work / "cold0" / "out" / ".staging" / f"alloy-{VERSION}-amd64" / "rootfs"
        pack = median_of(h, lambda _: run(self.inv("pack", "cold0", "--force"), cwd=ROOT))
        bare: list[tuple[float, float]] = []
        for _ in range(h):
            bare_image = self.work / "bare-xz.raw"
            bare.append(
                self.timed_rss(
                    [
                        "mksquashfs",
                        str(tree),
                        str(bare_image),
                        *mksquashfs_args("xz"),
                        "-no-progress",
                    ]
                )
            )
        bare_time = statistics.median(t for t, _ in bare)
        rows.append(
            Row("invoke pack --force vs bare mksquashfs, same flags", pack, bare_time, limit=1.05)
        )

        log("cold invoke all --no-verify, peak RSS of the Python process")
        rss_time, rss = self.peak_rss()
        rows.append(
            Row("peak RSS of our Python process, cold all --no-verify", rss, unit="MB", limit=100)
        )
        rows.append(
            Row("peak RSS of mksquashfs (reported apart)", max(r for _, r in bare), unit="MB")
        )
        rows.append(
            Row("cold invoke all --no-verify vs original script's steps", rss_time, orig_time)
        )

        log(f"fetch + verify + extract vs curl + sha256sum + unzip ({n}x each)")
        ours_stage = median_of(n, self.stage_ours)
        theirs_stage = median_of(n, self.stage_theirs)
        rows.append(
            Row(
                "fetch+verify+extract (invoke stage) vs curl+sha256sum+unzip",
                ours_stage,
                theirs_stage,
            )
        )

        log("zstd image, read-back times")
        zstd_image = self.work / "bare-zstd.raw"
        zstd_time = run(
            ["mksquashfs", str(tree), str(zstd_image), *mksquashfs_args("zstd"), "-no-progress"]
        )
        rows.append(
            Row("zstd image size vs original flags", zstd_image.stat().st_size, orig_size, "B")
        )
        rows.append(Row("zstd pack (bare mksquashfs) vs xz pack", zstd_time, bare_time))
        read_orig = self.read_back(orig_image)
        if read_orig is not None:
            for label, img in (("xz, 1 MiB (default)", image), ("zstd -19, 1 MiB", zstd_image)):
                read = self.read_back(img)
                rows.append(
                    Row(
                        f"read binary from mounted image, {label} vs original", read or 0, read_orig
                    )
                )

        log("nox -s build-matrix, 1 version x 2 arches, cold and warm, serial and -j 2")
        cold_serial = self.matrix(1, "mx1")
        warm_serial = median_of(n, lambda _: self.matrix(1, "mx1"))
        cold_par = self.matrix(2, "mx2")
        warm_par = median_of(n, lambda _: self.matrix(2, "mx2"))
        rows.append(Row("build-matrix 1x2 cold: -j 2 vs serial", cold_par, cold_serial))
        rows.append(Row("build-matrix 1x2 warm: -j 2 vs serial", warm_par, warm_serial))
        rows.append(Row("build-matrix 1x2 serial: warm vs cold", warm_serial, cold_serial))
        return rows


# --- machine and docs --------------------------------------------------------------------------


def machine(binary: Path) -> list[str]:
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
    return [
        f"- CPUs (nproc): {os.cpu_count()}",
        f"- OS: {os_name}; kernel {platform.release()} ({platform.machine()})",
        f"- Python: {platform.python_version()}; root: {os.geteuid() == 0}",
        f"- squashfs-tools: {first(['mksquashfs', '-version'])}",
        f"- xz: {first(['xz', '--version'])}",
        f"- the binary: `{deb.name if deb else PACKAGE}`'s /usr/bin/{PACKAGE}, "
        f"{binary.stat().st_size:,} bytes (Go, stripped), served as Alloy {VERSION} "
        "(alloy-linux-ARCH.zip, deflate) from a local HTTP server on 127.0.0.1",
    ]


def write_docs(path: Path, table: str, lines: list[str], took: float, args: list[str]) -> None:
    commands = "\n".join(COMMANDS)
    text = f"""# Benchmarks

Produced by `nox -s bench` ({" ".join(args) or "default run counts"}), which took {took:.0f} s
end to end; each figure is the median of the runs given there. Ratios are ours / theirs, measured
in the same run; "theirs" is the original script's step (or a limit) named in the figure.

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
    parser.add_argument("--heavy-runs", type=int, default=1, help="runs of each 100 MB pack")
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
    release = make_release(cache, binary)
    server = serve(release)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        bench = Bench(cache, url, args.runs, args.heavy_runs)
        rows = bench.all(binary)
    finally:
        server.shutdown()
        server.server_close()
    shutil.rmtree(cache / "run", ignore_errors=True)
    took = time.monotonic() - started
    table = format_table(rows)
    print(table)
    print(f"\nbench took {took:.0f} s; wrote {args.docs}")
    shown = [f"--runs={args.runs}", f"--heavy-runs={args.heavy_runs}"]
    write_docs(args.docs, table, machine(binary), took, shown)
    (cache / "last.json").write_text(json.dumps([row.__dict__ for row in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
