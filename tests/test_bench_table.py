"""The benchmark's table (benchmarks/bench.py; the benchmark itself runs with nox -s bench)."""

from __future__ import annotations

from benchmarks.bench import Row, format_table


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
