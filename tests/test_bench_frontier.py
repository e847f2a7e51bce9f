"""The cold build's frontier (benchmarks/frontier.py; measured by nox -s bench, never here): the
settings are our mksquashfs command line changed only in what is measured, the seed's is the
original script's, and the ratios, the box, the frontier and the verdict say what the figures
say. Only a one-file tree is ever packed (the skip probe)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from benchmarks import common, standin
from benchmarks.common import rounds
from benchmarks.frontier import (
    BLOCKS,
    BOX,
    END,
    HOST,
    OURS,
    SEED,
    START,
    TRIXIE,
    Box,
    Point,
    Ratios,
    Setting,
    format_frontier_table,
    frontier,
    in_box,
    ratios,
    setting_args,
    settings,
    verdict,
)
from benchmarks.frontier_run import Packer
from benchmarks.original import ORIGINAL_FLAGS
from build.formats.squashfs import mksquashfs_args
from build.model.arch import ARCHES

AMD64 = ARCHES["amd64"]
VERSIONS = {HOST: "mksquashfs 4.5.1", TRIXIE: "mksquashfs 4.6.1"}


def test_the_seed_packs_as_the_original_script_and_comes_first() -> None:
    grid = settings()
    assert grid[0] == SEED and [s for s in grid if s.seed] == [SEED]
    assert setting_args(SEED, AMD64) == ORIGINAL_FLAGS
    assert "-b" not in setting_args(SEED, AMD64)  # mksquashfs's default: 128 KiB blocks
    assert SEED.label(VERSIONS).startswith("seed: xz 128K")


def test_each_setting_is_our_command_line_changed_only_in_what_is_measured() -> None:
    grid = settings()
    assert setting_args(OURS, AMD64) == mksquashfs_args("xz", AMD64)  # the default, unchanged
    for setting in grid[1:]:
        args = setting_args(setting, AMD64)
        base = mksquashfs_args("xz-bcj" if setting.bcj else "xz", AMD64)
        at = args.index("-b")
        assert args[at + 1] == setting.block
        measured = (["-Xdict-size", setting.dict_size] if setting.dict_size else []) + list(
            setting.extra
        )
        assert args[at - len(measured) : at] == measured
        assert [*args[: at - len(measured)], "-b", "1M", *args[at + 2 :]] == base
        assert ("-Xbcj" in args) == setting.bcj
    # Every block size with and without BCJ on the host's squashfs-tools; both tools; one label
    # for each setting.
    host = {(s.block, s.bcj) for s in grid if s.tools == HOST and not s.seed and not s.dict_size}
    assert host == {(block, bcj) for block in BLOCKS for bcj in (False, True)}
    assert {s.tools for s in grid} == {HOST, TRIXIE}
    assert len({s.label(VERSIONS) for s in grid}) == len(grid)
    assert OURS.label(VERSIONS) == "xz 1M (ours), mksquashfs 4.5.1"


def point(setting: Setting, size: int, *seconds: float) -> Point:
    return Point(setting.label(VERSIONS), setting, size, seconds)


def test_the_time_ratio_is_the_median_of_the_rounds_ratios_not_of_the_medians() -> None:
    seed = point(SEED, 1000, 10.0, 20.0, 30.0)
    # Ratios by round: 2.0, 0.75, 1.0: median 1.0; medians' ratio would be 15/20 = 0.75.
    mine = point(OURS, 900, 20.0, 15.0, 30.0)
    found = ratios(mine, seed)
    assert found == Ratios(size=0.9, time=1.0, time_low=0.75, time_high=2.0)
    with pytest.raises(ValueError, match="2 rounds, the seed 3"):
        ratios(point(OURS, 900, 1.0, 2.0), seed)


def test_the_box_holds_its_edges_and_nothing_beyond() -> None:
    assert (BOX.size, BOX.time) == (0.86, 1.3)  # issue 26's
    assert BOX.holds(0.86, 1.3)
    assert not BOX.holds(0.8601, 1.0)
    assert not BOX.holds(0.5, 1.3001)
    found = {
        "edge": Ratios(0.86, 1.3, 1.2, 1.4),
        "small": Ratios(0.80, 1.25, 1.2, 1.3),
        "slow": Ratios(0.70, 2.0, 1.9, 2.1),
        "big": Ratios(0.90, 1.0, 0.9, 1.1),
    }
    assert in_box(found) == ["small", "edge"]  # smallest first
    assert in_box(found, Box(0.85, 1.3)) == ["small"]


def test_the_frontier_keeps_only_what_nothing_beats_on_both() -> None:
    found = {
        "seed": Ratios(1.0, 1.0, 1.0, 1.0),
        "slower and bigger": Ratios(1.01, 1.1, 1.0, 1.2),
        "same size, slower": Ratios(1.0, 1.2, 1.1, 1.3),
        "smaller, slower": Ratios(0.9, 1.8, 1.7, 1.9),
        "smallest, slowest": Ratios(0.8, 3.0, 2.9, 3.1),
        "twin": Ratios(0.9, 1.8, 1.7, 1.9),
    }
    assert frontier(found) == ["seed", "smaller, slower", "twin", "smallest, slowest"]


def measured(inside: bool) -> list[Point]:
    seed = point(SEED, 19_330_000, 10.0, 11.0)
    ours = point(OURS, 17_700_000, 18.0, 19.8)  # 0.916x, 1.8x
    fast = Setting(block="512K", dict_size="25%")
    size = 16_000_000 if inside else 17_000_000  # 0.828x or 0.879x
    return [seed, ours, point(fast, size, 12.0, 14.3)]  # 1.2x, 1.3x: median 1.25x


def test_the_verdict_and_the_table_name_what_is_in_the_box() -> None:
    assert verdict(measured(True)) == (
        "In the box (≤ 0.86x bytes, ≤ 1.3x time): "
        "xz 512K, dict 25%, mksquashfs 4.5.1 (0.828x, 1.250x)."
    )
    table = format_frontier_table(measured(True)).splitlines()
    assert table[2].startswith("| seed: xz 128K (original script), mksquashfs 4.5.1 | 19.33 MB ")
    assert table[4] == (
        "| xz 512K, dict 25%, mksquashfs 4.5.1 | 16.00 MB | 0.828x | 13.15 s "
        "| 1.250x (1.200-1.300) | yes | **yes** |"
    )
    assert table[3].endswith("| 0.916x | 18.90 s | 1.800x (1.800-1.800) | — | no |")


def test_the_verdict_says_when_nothing_is_in_the_box_and_what_comes_nearest() -> None:
    assert verdict(measured(False)) == (
        "No setting is in the box (≤ 0.86x bytes, ≤ 1.3x time). The smallest within 1.3x the "
        "time: xz 512K, dict 25%, mksquashfs 4.5.1, 0.879x the bytes at 1.250x."
    )
    assert all(line.endswith("| no |") for line in format_frontier_table(measured(False))
               .splitlines()[2:])  # fmt: skip
    assert START.startswith("<!-- frontier:") and END == "<!-- /frontier -->"


@pytest.mark.needs("mksquashfs")
def test_a_setting_the_tools_cannot_pack_is_skipped_with_their_reason(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "usr/local/bin").mkdir(parents=True)
    (tree / "usr/local/bin/alloy").write_bytes(b"\x7fELF" + bytes(100))
    work = tmp_path / "work"
    work.mkdir()
    versions = {HOST: "mksquashfs 4.5.1", TRIXIE: "cannot download it"}
    packer = Packer(work, tree, {HOST: "mksquashfs"}, versions)
    assert packer.why_skipped(OURS) is None
    assert packer.why_skipped(Setting(TRIXIE)) == "no trixie squashfs-tools: cannot download it"
    bogus = Setting(extra=("-Xno-such-option",))
    assert packer.why_skipped(bogus) == (
        "mksquashfs 4.5.1 says 'mksquashfs: Unrecognised compressor option -Xno-such-option'"
    )
    assert sorted(p.name for p in work.iterdir()) == ["seed-tree"]  # the probe cleaned up


def test_no_round_but_the_first_starts_that_would_end_after_the_time_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]  # common.rounds' time.monotonic(): each measure takes 1 s of it
    monkeypatch.setattr(common, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    ran: list[tuple[str, int]] = []

    def measure(name: str) -> Callable[[int], float]:
        def once(i: int) -> float:
            ran.append((name, i))
            clock[0] += 1.0
            return 1.0

        return once

    measures = {name: measure(name) for name in ("a", "b")}
    assert rounds(3, measures, until=0.0) == {"a": [1.0], "b": [1.0]}
    assert ran == [("a", 0), ("b", 0)]
    assert rounds(3, measures, until=None) == {"a": [1.0] * 3, "b": [1.0] * 3}
    assert ran[2:] == [("a", 0), ("b", 0), ("b", 1), ("a", 1), ("a", 2), ("b", 2)]
    # Rounds of 2 s from 108: the second ends at 112, a third would at 114.
    assert rounds(3, measures, until=113.0) == {"a": [1.0] * 2, "b": [1.0] * 2}
    assert rounds(3, measures, until=118.0) == {"a": [1.0] * 3, "b": [1.0] * 3}


def test_the_xl_stand_in_is_the_files_in_order_cut_at_its_size(tmp_path: Path) -> None:
    parts = []
    for i, data in enumerate([b"\x7fELF" + b"a" * 10, b"b" * 7, b"c" * 9]):
        path = tmp_path / f"part{i}"
        path.write_bytes(data)
        parts.append((f"deb{i}", path))
    out = tmp_path / "out"
    used = standin.concatenate(parts, 20, out)
    assert out.read_bytes() == b"\x7fELF" + b"a" * 10 + b"b" * 6
    assert used == ["deb0 (14 bytes)", "deb1 (6 bytes)"]  # the third is never reached


def test_an_xl_stand_in_its_files_cannot_fill_is_refused_and_not_left(tmp_path: Path) -> None:
    path = tmp_path / "part"
    path.write_bytes(b"x" * 5)
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match="hold only 5 bytes, not 6"):
        standin.concatenate([("deb", path)], 6, out)
    assert not out.exists()


def test_only_x86_64_elf_files_go_into_the_xl_stand_in(tmp_path: Path) -> None:
    header = bytearray(b"\x7fELF" + bytes(16))
    header[18:20] = (62).to_bytes(2, "little")
    elf = tmp_path / "amd64"
    elf.write_bytes(bytes(header) + b"code")
    header[18:20] = (183).to_bytes(2, "little")  # aarch64
    (tmp_path / "arm64").write_bytes(bytes(header))
    (tmp_path / "script").write_bytes(b"#!/bin/sh\n" + bytes(20))
    (tmp_path / "link").symlink_to(elf)
    found = sorted(p.name for p in tmp_path.iterdir() if standin._x86_64_elf(p))
    assert found == ["amd64"]
