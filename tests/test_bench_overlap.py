"""Overlap in a cold build (benchmarks/overlap.py; measured by nox -s bench, never here): the
arithmetic and the words of its section, the prototypes it measures (the zip inflated as its
bytes arrive, the throttled server, mksquashfs's pseudo file), and how bench.py runs it. No
timing is asserted: the figures below are made up."""

from __future__ import annotations

import dataclasses
import io
import urllib.request
import zipfile
import zlib
from pathlib import Path

import pytest

from benchmarks import bench, overlap
from benchmarks.overlap import (
    DRIFT,
    END,
    START,
    Figures,
    Link,
    Pair,
    clearly_saves,
    cold_estimate,
    ratio_text,
    section,
    share,
)
from benchmarks.overlap_proto import StreamingInflater, pack_argv, serve_at
from build.alloy import IMAGE_BINARY
from build.formats.squashfs import mksquashfs_args
from build.model.arch import ARCHES
from tests.fakes import MACHINES, elf_binary

ROOT = Path(__file__).resolve().parent.parent


def _figures(streaming_saved: float = 0.1, pack_saved: float = 0.2) -> Figures:
    links = (
        Link("full speed", 1.0, 2.0, Pair(2.9, 3.0, (0.95, 0.97, 0.99))),
        Link("20 MB/s", 5.0, 2.0, Pair(7.0 - streaming_saved, 7.0, (0.9, 0.98, 1.01))),
    )
    return Figures(
        size=107_276_768,
        zip_size=40_000_000,
        links=links,
        written=Pair(2.0, 1.8, (1.1, 1.12, 1.2)),
        record=Pair(2.1, 2.4, (0.85, 0.88, 0.9)),
        record_hash=0.3,
        zip_rehash=0.1,
        image_rehash=0.05,
        pack_cat=Pair(30.0 - pack_saved, 30.0, (0.98, 0.99, 1.02)),
        pack_inflate=Pair(31.0, 32.0, (0.96, 0.97, 0.98)),
        same_image=True,
        pairs=3,
    )


def test_a_pair_is_medians_and_each_pairs_ratio() -> None:
    pair = Pair.of([1.0, 3.0, 2.0], [2.0, 2.0, 4.0])
    assert (pair.ours, pair.theirs, pair.ratios) == (2.0, 2.0, (0.5, 1.5, 0.5))
    assert pair.saved == 0.0
    assert ratio_text(pair) == "0.50x [0.50-1.50]"
    assert ratio_text(Pair(1.0, 1.0, ())) == "-"


def test_the_bound_is_the_shorter_of_download_and_inflate() -> None:
    assert Link("l", 5.0, 2.0, Pair(1, 1, ())).bound == 2.0
    assert Link("l", 0.5, 2.0, Pair(1, 1, ())).bound == 0.5


def test_a_cold_build_is_at_least_its_measured_phases() -> None:
    figures = _figures()
    link = figures.links[1]
    # download + the zip's re-hash + extract and record (as staged now) + the staged tree's pack
    assert cold_estimate(figures, link) == pytest.approx(5.0 + 0.1 + 2.1 + 30.0)


def test_a_saving_counts_only_above_the_drift() -> None:
    assert DRIFT == 0.10
    assert not clearly_saves(0.9, 10.0)
    assert not clearly_saves(1.0, 10.0)
    assert clearly_saves(1.1, 10.0)
    assert not clearly_saves(-1.0, 10.0)
    assert share(1.0, 0.0) == 0.0


def test_the_section_says_what_was_kept_and_why() -> None:
    text = section(_figures(), Path("/cache/pkg/usr/bin/packer"))
    assert text.startswith(START + "\n## Overlap in a cold build (issue 26)\n")
    assert text.endswith(END)
    assert "| full speed | 1.00 s | 2.00 s | 1.00 s |" in text
    assert "| 20 MB/s | 5.00 s | 2.00 s | 2.00 s | 7.00 s | 6.90 s |" in text
    assert "**Extracting while the zip arrives: not kept.**" in text
    assert "within the machine's drift (10%)" in text
    assert "before its sha256 is checked" in text
    assert "record_tree no longer re-reads the binary (0.30 s alone)" in text
    assert "0.88x [0.85-0.90], +0.30 s: faster in every pair" in text
    assert "within the drift, the staged copy costs nothing measurable" in text
    assert "the same, byte for byte" in text
    assert "python -m benchmarks.overlap --write" in text


def test_a_saving_above_the_drift_is_said_so() -> None:
    text = section(_figures(streaming_saved=5.0, pack_saved=10.0), Path("packer"))
    assert "above the machine's drift (10%)" in text
    assert "| 20 MB/s | 5.00 s | 2.00 s | 2.00 s | 7.00 s | 2.00 s |" in text


def test_a_pipe_above_the_drift_is_left_out_saying_why() -> None:
    figures = dataclasses.replace(
        _figures(pack_saved=2.0), pack_inflate=Pair(20.0, 32.0, (0.6, 0.62, 0.7))
    )
    text = section(figures, Path("packer"))
    assert "above the 10% drift, but left out until a quiet machine confirms it" in text
    assert "cat of the staged file gains +2.00 s too" in text


def test_the_docs_hold_the_section_once() -> None:
    text = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert text.count(START) == 1 and text.count(END) == 1
    assert text.index(START) < text.index(END) < text.index("## Machine")


def _zip(data: bytes, compression: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("alloy-linux-amd64", date_time=(2025, 1, 1, 0, 0, 0))
        info.compress_type = compression
        archive.writestr(info, data)
        archive.writestr("README.md", b"after the binary")
    return buffer.getvalue()


@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED])
@pytest.mark.parametrize("step", [1, 7, 4096, 1 << 20])
def test_the_prototype_inflates_the_first_entry_as_the_bytes_come(
    compression: int, step: int
) -> None:
    data = elf_binary(MACHINES["amd64"], size=300_000)
    archive = _zip(data, compression)
    out = io.BytesIO()
    inflater = StreamingInflater(out)
    for start in range(0, len(archive), step):
        inflater.feed(archive[start : start + step])
    assert out.getvalue() == data  # and nothing of the entry after it
    assert (inflater.size, inflater.crc) == (len(data), zlib.crc32(data))


def test_the_throttled_server_sends_the_file_whole(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(bytes(range(256)) * 1000)
    server = serve_at(tmp_path, 50_000_000.0)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/file"
        with urllib.request.urlopen(url) as response:
            assert response.read() == (tmp_path / "file").read_bytes()
    finally:
        server.shutdown()
        server.server_close()


def test_a_pseudo_file_pack_is_our_command_line_plus_the_binary() -> None:
    args = mksquashfs_args("xz", ARCHES["amd64"])
    staged = pack_argv(Path("/t"), Path("/i.raw"), args)
    piped = pack_argv(Path("/t"), Path("/i.raw"), args, "cat /staged")
    assert staged == ["mksquashfs", "/t", "/i.raw", *args, "-no-progress"]
    assert piped == [*staged[:-1], "-p", f"{IMAGE_BINARY} f 755 0 0 cat /staged", "-no-progress"]


def test_bench_runs_it_alone_with_overlap_only_and_writes_its_section(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[list[str]] = []
    monkeypatch.setattr(overlap, "main", lambda argv: seen.append(argv) or 0)
    assert bench.main(["--overlap-only", "--quick", "--pairs=2"]) == 0
    assert seen == [["--quick", "--pairs=2", "--write"]]  # --quick never writes (overlap.main)
