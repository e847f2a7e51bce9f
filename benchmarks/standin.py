"""The stand-ins for Alloy's binary (real Go binaries from Debian), served as Alloy releases.

The default one is Debian's `packer` (~107 MB); --large builds a ~236 MB one offline from Debian's
Go sources. Each is served in GitHub's release layout from a local HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import file_sha256, fresh, log, note_command
from build.config.options import resolve
from build.config.spec import BuildSpec
from build.model.arch import ARCHES

VERSION = "1.10.2"  # the default stand-in is served as this release
LARGE_VERSION = "1.17.1"  # the --large stand-in is served as this release
PACKAGE = "packer"  # a Go binary from Debian, the stand-in for Alloy's


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


def binary_package(binary: Path) -> str:
    """The .deb the default stand-in came from, for the docs."""
    deb = next((binary.parents[2].parent / "deb").glob("*.deb"), None)
    return deb.name if deb else PACKAGE


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
    "(benchmarks/standin.py, build_large_binary)"
)


def build_large_binary(cache: Path) -> Path:
    """A ~236 MB real Go binary, built offline from Debian's Go toolchain and aws-sdk-go sources
    (apt-get download + dpkg -x: nothing installed), stripped like a release build. About five
    minutes on 2 cores, once: the binary is kept (delete cache/large to rebuild it)."""
    large = cache / "large"
    binary = large / "aws-sdk-go-all"
    note_command(LARGE_BUILD)
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


# The XL stand-in (issue 26's 707 MB): the Go binaries of Debian packages, concatenated and cut
# at XL_BYTES. No Go program that large is packaged in Debian, and building one would take far
# longer than the bench; squashfs compresses each block (at most 1 MiB) alone, and xz's window
# never reaches past its block, so a concatenation of real Go code packs as a binary that large
# does, block for block. Alloy's own linux/amd64 binary is ~420 MB.
XL_VERSION = "1.17.2"  # the XL stand-in is served as this release
XL_BYTES = 706_900_000  # the facts file's 706.9 MB binary
XL_PACKAGES = (
    "packer", "docker.io", "containerd", "prometheus", "rclone", "hugo", "lxd", "gh",
    "kubernetes-client", "caddy",
)  # fmt: skip
XL_BUILD = (
    "apt-get download " + " ".join(XL_PACKAGES) + "; dpkg -x each; every x86-64 ELF file under "
    "usr/ concatenated, by package in that order and by path within one, cut at "
    f"{XL_BYTES:,} bytes (benchmarks/standin.py, build_xl_binary)"
)


def _x86_64_elf(path: Path) -> bool:
    if not path.is_file() or path.is_symlink():
        return False
    with path.open("rb") as file:
        head = file.read(20)
    return head[:4] == b"\x7fELF" and head[18:20] == (62).to_bytes(2, "little")


def concatenate(files: Sequence[tuple[str, Path]], size: int, out: Path) -> list[str]:
    """The files, in order, written one after the other into `out` and cut at `size` bytes;
    each one used, with the bytes taken from it. Exits if they hold fewer than `size`."""
    left = size
    used: list[str] = []
    with out.open("wb") as sink:
        for source, path in files:
            data = path.read_bytes()[:left]
            sink.write(data)
            left -= len(data)
            used.append(f"{source} ({len(data):,} bytes)")
            if not left:
                return used
    out.unlink()
    sys.exit(f"bench: the stand-in's files hold only {size - left:,} bytes, not {size:,}")


def build_xl_binary(cache: Path) -> Path:
    """A XL_BYTES stand-in: Debian's Go binaries concatenated (see XL_PACKAGES), once: the file
    is kept (delete cache/xl to rebuild it). The ELF header is the first binary's."""
    xl = cache / "xl"
    binary = xl / "go-concatenated"
    note_command(XL_BUILD)
    if binary.exists():
        return binary
    log(f"building the XL stand-in from {len(XL_PACKAGES)} Debian packages (once)")
    debs = apt_download(XL_PACKAGES, xl / "deb")
    files: list[tuple[str, Path]] = []  # (where it came from, the file)
    for package in XL_PACKAGES:
        (deb,) = [d for d in debs if d.name.startswith(package + "_")]
        root = fresh(xl / "root" / package)
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
        found = sorted(p for p in (root / "usr").rglob("*") if _x86_64_elf(p))
        files += [(f"{deb.name}: {p.relative_to(root)}", p) for p in found]
    tmp = binary.with_suffix(".tmp")
    used = concatenate(files, XL_BYTES, tmp)
    tmp.rename(binary)
    (xl / "source.txt").write_text("\n".join(used) + "\n")
    for scratch in ("root", "deb"):
        shutil.rmtree(xl / scratch, ignore_errors=True)
    return binary


QUICK_BYTES = 8 << 20  # a --quick stand-in: the Go binary's first 8 MB


def quick_binary(cache: Path, go: Path, name: str) -> Path:
    """The Go binary's first QUICK_BYTES, kept as cache/NAME/standin: its ELF header is all
    stage checks."""
    path = cache / name / "standin"
    path.parent.mkdir(parents=True, exist_ok=True)
    with go.open("rb") as source:
        data = source.read(QUICK_BYTES)
    if not path.exists() or path.read_bytes() != data:
        path.write_bytes(data)
    return path


def make_release(release: Path, version: str, binary: Path) -> None:
    """The binary as release `version` in GitHub's layout, named as the pipeline asks for it:
    vX.Y.Z/alloy-linux-ARCH.zip + SHA256SUMS. Each architecture's binary is the same one with
    its ELF machine field set to that architecture's (the build checks only that)."""
    directory = release / f"v{version}"
    sums = directory / "SHA256SUMS"
    stamp = directory / "source.sha256"
    # The stamp names the compression: releases made before the zips deflated are made again.
    source_sha = f"{file_sha256(binary)} deflate"
    if sums.exists() and stamp.exists() and stamp.read_text().strip() == source_sha:
        return
    fresh(directory)
    data = bytearray(binary.read_bytes())
    lines = []
    for arch in ARCHES.values():
        data[18:20] = arch.elf_machine.to_bytes(2, "little")  # e_machine
        spec = BuildSpec.from_values(resolve("all", {"version": version, "arch": arch.name}))
        info = zipfile.ZipInfo(spec.member, date_time=(2025, 1, 1, 0, 0, 0))
        info.external_attr = 0o755 << 16
        # As Alloy's zips: a ZipInfo given to writestr is stored unless it says otherwise.
        info.compress_type = zipfile.ZIP_DEFLATED
        with zipfile.ZipFile(directory / spec.zip_name, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(info, bytes(data))
        lines.append(f"{file_sha256(directory / spec.zip_name)}  {spec.zip_name}\n")
    sums.write_text("".join(lines))
    stamp.write_text(source_sha + "\n")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(directory: Path) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(_Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
