"""The benchmark's table (benchmarks/table.py; the benchmark itself runs with nox -s bench)."""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.common import paired, rounds
from benchmarks.table import FormatFigures, Row, format_formats_table, format_table


def test_table_shows_ratio_goal_and_verdict() -> None:
    table = format_table(
        [
            Row("image size", 17_698_816, 19_333_120, "B", 0.86),
            Row("pack", 10.0, 10.2, limit=1.05),
            Row("peak RSS", 42.0, unit="MB", limit=100),
            Row("matrix", 3.0, 6.0),
        ]
    ).splitlines()
    assert table[0] == "| figure | ours | theirs / limit | ratio | goal | met? |"
    assert table[2] == "| image size | 17.70 MB | 19.33 MB | 0.915x | ≤ 0.86x | **no** |"
    assert table[3] == "| pack | 10.00 s | 10.20 s | 0.980x | ≤ 1.05x | yes |"
    assert table[4] == "| peak RSS | 42.0 MB | — | — | ≤ 100 MB | yes |"
    assert table[5] == "| matrix | 3.00 s | 6.00 s | 0.500x | — | — |"


def test_paired_ratio_is_the_median_of_the_pairs_with_their_range() -> None:
    row = Row("pack", 10.0, 10.0, limit=1.05, ratios=(1.10, 0.90, 1.00))
    line = format_table([row]).splitlines()[2]
    assert line == "| pack | 10.00 s | 10.00 s | 1.000x (0.900-1.100) | ≤ 1.05x | yes |"


def test_pairs_alternate_which_side_runs_first() -> None:
    calls: list[str] = []

    def side(name: str, seconds: list[float]) -> Callable[[int], float]:
        def measure(i: int) -> float:
            calls.append(f"{name}{i}")
            return seconds[i]

        return measure

    ours, theirs, ratios = paired(3, side("ours", [2.0, 3.0, 9.0]), side("theirs", [1.0, 2.0, 3.0]))
    assert calls == ["ours0", "theirs0", "theirs1", "ours1", "ours2", "theirs2"]
    assert (ours, theirs) == (3.0, 2.0)
    assert ratios == (2.0, 1.5, 3.0)


def test_formats_table_shows_size_against_the_first_line_and_dashes_for_unmeasured() -> None:
    table = format_formats_table(
        [
            FormatFigures("squashfs xz", 17_698_816, 17.2, 1.47, 0.12),
            FormatFigures("erofs lz4hc", 30_015_488, 24.6, 0.21),
        ]
    ).splitlines()
    assert table[0] == (
        "| image | size | size / first line's | pack | read binary (cold) | merge (cold) |"
    )
    assert table[2] == "| squashfs xz | 17.70 MB | 1.000x | 17.20 s | 1.470 s | 0.120 s |"
    assert table[3] == "| erofs lz4hc | 30.02 MB | 1.696x | 24.60 s | 0.210 s | — |"


def test_rounds_run_each_measure_once_a_round_starting_one_further_along() -> None:
    calls: list[str] = []

    def measure(name: str) -> Callable[[int], float]:
        def once(i: int) -> float:
            calls.append(f"{name}{i}")
            return float(i)

        return once

    seconds = rounds(3, {"a": measure("a"), "b": measure("b"), "c": measure("c")})
    assert calls == ["a0", "b0", "c0", "b1", "c1", "a1", "c2", "a2", "b2"]
    assert seconds == {"a": [0.0, 1.0, 2.0], "b": [0.0, 1.0, 2.0], "c": [0.0, 1.0, 2.0]}
