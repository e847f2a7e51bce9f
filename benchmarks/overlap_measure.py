"""The timings of benchmarks/overlap.py (issue 26): each phase of a cold build's stage step, the
prototypes of benchmarks/overlap_proto.py against the pipeline, in pairs or rounds."""

from __future__ import annotations

import contextlib
import hashlib
import io
import shutil
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

from benchmarks import overlap_proto as proto
from benchmarks.common import file_sha256, fresh, log, note_command, paired, rounds
from benchmarks.overlap import Figures, Link, Pair
from build.alloy import IMAGE_BINARY
from build.config.options import resolve
from build.config.spec import BuildSpec
from build.core.sums import file_sha256 as build_file_sha256
from build.fetch import upstream, zipmember
from build.formats.squashfs import mksquashfs_args
from build.image import stage, stagedfiles
from build.model import manifest

if TYPE_CHECKING:
    from build.config.context import StepContext


def spec_at(work: Path, url: str, version: str) -> BuildSpec:
    """A build into `work` (its own output and cache directories, both fresh)."""
    fresh(work)
    return BuildSpec.from_values(
        resolve(
            "all",
            {
                "version": version,
                "arch": "amd64",
                "base_url": url,
                "output_dir": str(work / "out"),
                "cache_dir": str(work / "cache"),
            },
        )
    )


def _fetch(spec: BuildSpec) -> None:
    """The pipeline's fetch step, its progress lines (on stdout, not a terminal) dropped."""
    with contextlib.redirect_stdout(io.StringIO()):
        upstream.fetch(spec, force=True)


def _timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def _streamed(spec: BuildSpec, dest: Path) -> None:
    """The real fetch, each chunk also inflated into `dest`; then what the pipeline would still
    check once the sha256 matched: the central directory (select) against what was inflated."""
    with proto.inflating_while_downloading(dest) as inflater:
        _fetch(spec)
    with spec.cached_zip.open("rb") as raw, zipmember.open_archive(spec.cached_zip) as archive:
        info = zipmember.select(archive, raw, spec.member)
    assert info is not None and (info.file_size, info.CRC) == (inflater.size, inflater.crc)


def measure_link(
    work: Path, release: Path, version: str, name: str, rate: float | None, n: int
) -> Link:
    """At one link speed: download then extract (the pipeline's fetch, then extract_binary)
    against extracting while the zip arrives, in pairs, every build with a cold cache."""
    server = proto.serve_at(release, rate)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    downloads: list[float] = []
    inflates: list[float] = []

    def theirs(i: int) -> float:
        spec = spec_at(work / f"theirs{i}", url, version)
        downloads.append(_timed(lambda: _fetch(spec)))
        dest = work / f"theirs{i}" / "binary"
        inflates.append(_timed(lambda: stage.extract_binary(spec.cached_zip, spec, dest)))
        shutil.rmtree(work / f"theirs{i}")  # not timed: ~150 MB a build
        return downloads[-1] + inflates[-1]

    def ours(i: int) -> float:
        spec = spec_at(work / f"ours{i}", url, version)
        seconds = _timed(lambda: _streamed(spec, work / f"ours{i}" / "binary"))
        shutil.rmtree(work / f"ours{i}")
        return seconds

    try:
        log(f"overlap: {name}: download then extract, and extract while downloading ({n}x)")
        mine, their, ratios = paired(n, ours, theirs)
    finally:
        server.shutdown()
        server.server_close()
    shutil.rmtree(work, ignore_errors=True)
    return Link(
        name, statistics.median(downloads), statistics.median(inflates), Pair(mine, their, ratios)
    )


class _NoSha256:
    def update(self, data: bytes) -> None:
        pass

    def hexdigest(self) -> str:
        return ""


@contextlib.contextmanager
def _as_before() -> Iterator[None]:
    """extract_binary as it was before issue 26's change: no sha256 while writing, none kept."""
    hashlib_was, remember_was = stage.hashlib, manifest.remember
    stage.hashlib = cast(Any, SimpleNamespace(sha256=_NoSha256))
    manifest.remember = lambda st, sha256: None
    try:
        yield
    finally:
        stage.hashlib, manifest.remember = hashlib_was, remember_was


def measure_passes(work: Path, spec: BuildSpec, n: int) -> tuple[Pair, Pair, float, float]:
    """extract + record_tree after (ours) and before (theirs) the change; inflate to a file
    (ours) and to nothing (theirs); the re-read alone; the zip's re-hash."""
    zip_path, out = spec.cached_zip, fresh(work / "out")
    re_reads: list[float] = []

    def extract_and_record(i: int, before: bool) -> float:
        tree = fresh(out / f"tree{i}-{before}")
        binary = tree / IMAGE_BINARY
        binary.parent.mkdir(parents=True)
        started = time.monotonic()
        with _as_before() if before else contextlib.nullcontext():
            stage.extract_binary(zip_path, spec, binary)
            recorded = time.monotonic()
            manifest.record_tree(out, tree)
        done = time.monotonic()
        if before:
            re_reads.append(done - recorded)
        assert manifest.load(out).files[manifest.relative(out, binary)] == file_sha256(binary)
        return done - started

    def inflate(i: int, into_file: bool) -> float:
        dest = out / f"inflated{i}"
        with dest.open("wb") if into_file else contextlib.nullcontext() as sink:
            return _timed(lambda: proto.inflate_to(zip_path, spec.member, sink))

    log(f"overlap: extract + record_tree after and before the change ({n}x)")
    record = Pair(
        *paired(n, lambda i: extract_and_record(i, False), lambda i: extract_and_record(i, True))
    )
    log(f"overlap: inflate to a file and to nothing ({n}x)")
    written = Pair(*paired(n, lambda i: inflate(i, True), lambda i: inflate(i, False)))
    zip_rehash = statistics.median(_timed(lambda: build_file_sha256(zip_path)) for _ in range(n))
    shutil.rmtree(out, ignore_errors=True)
    return record, written, statistics.median(re_reads), zip_rehash


def _trees(work: Path, spec: BuildSpec) -> tuple[Path, Path]:
    """The tree the stage step lays out, and the same without the binary."""
    runner = cast("StepContext", SimpleNamespace(spec=spec, once=lambda _, make: make()))
    texts = stagedfiles.texts(runner)
    staged, bare = fresh(work / "staged"), fresh(work / "bare")
    stage.stage(spec, spec.cached_zip, staged, texts)
    stage.stage(spec, spec.cached_zip, bare, texts)
    (bare / IMAGE_BINARY).unlink()
    return staged, bare


def measure_packs(work: Path, spec: BuildSpec, n: int) -> tuple[Pair, Pair, bool, float]:
    """mksquashfs of the staged tree (after extract_binary) against the binary as a pseudo file
    (cat of the staged file; our zip reader), in rounds; whether the images are the same; the
    re-hash of the image verify's checksum check makes."""
    staged, bare = _trees(work, spec)
    args = mksquashfs_args(spec.compression, spec.arch)
    binary = staged / IMAGE_BINARY
    images = {name: work / f"{name}.raw" for name in ("staged", "cat", "inflate")}
    argvs = {
        "staged": proto.pack_argv(staged, images["staged"], args),
        "cat": proto.pack_argv(bare, images["cat"], args, f"cat {binary}"),
        "inflate": proto.pack_argv(
            bare, images["inflate"], args, proto.inflate_command(spec.cached_zip, spec.member)
        ),
    }
    for argv in argvs.values():
        note_command(" ".join(argv).replace(str(work), "WORK"))
    alone: list[float] = []

    def extract_and_pack(_: int) -> float:
        extracted = _timed(lambda: stage.extract_binary(spec.cached_zip, spec, binary))
        alone.append(proto.pack(argvs["staged"]))
        return extracted + alone[-1]

    log(f"overlap: mksquashfs of the staged tree and of pseudo files, {n} rounds")
    seconds = rounds(
        n,
        {
            "staged": extract_and_pack,
            "cat": lambda _: proto.pack(argvs["cat"]),
            "inflate": lambda _: proto.pack(argvs["inflate"]),
        },
    )
    digests = {hashlib.sha256(image.read_bytes()).hexdigest() for image in images.values()}
    image_rehash = statistics.median(
        _timed(lambda: build_file_sha256(images["staged"])) for _ in range(n)
    )
    cat = Pair.of(seconds["cat"], alone)
    inflate = Pair.of(seconds["inflate"], seconds["staged"])
    return cat, inflate, len(digests) == 1, image_rehash


def measure_all(
    work: Path, release: Path, version: str, n: int, rates: dict[str, float | None]
) -> Figures:
    """Every figure of benchmarks/overlap.py on the release `version` in `release`."""
    links = tuple(
        measure_link(work / "link", release, version, name, rate, n) for name, rate in rates.items()
    )
    server = proto.serve_at(release, None)
    try:
        spec = spec_at(work / "local", f"http://127.0.0.1:{server.server_address[1]}", version)
        _fetch(spec)
    finally:
        server.shutdown()
        server.server_close()
    record, written, record_hash, zip_rehash = measure_passes(work / "passes", spec, n)
    pack_cat, pack_inflate, same, image_rehash = measure_packs(work / "packs", spec, n)
    zip_size = spec.cached_zip.stat().st_size
    with zipmember.open_archive(spec.cached_zip) as archive:
        size = archive.getinfo(spec.member).file_size
    return Figures(
        size, zip_size, links, written, record, record_hash, zip_rehash, image_rehash,
        pack_cat, pack_inflate, same, n,
    )  # fmt: skip
