"""The benchmark's table (benchmarks/table.py; the benchmark itself runs with nox -s bench)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from benchmarks import docs, trust
from benchmarks.common import paired, rounds
from benchmarks.table import (
    FormatFigures,
    Row,
    TrustRow,
    format_formats_table,
    format_table,
    format_trust_table,
)


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


def test_trust_table_shows_what_is_added_against_the_goal_and_keeps_hand_rows() -> None:
    table = format_trust_table(
        [
            TrustRow("DDI vs bare", 31_346_688, "B", 30_015_488, 1_453_506, "1 % + 1.1 MiB"),
            TrustRow("too big", 33_000_000, "B", 30_000_000, 1_453_506),
            TrustRow("assemble", 0.1105, "s", 0.0572, ratios=(1.908, 2.111, 1.95)),
            TrustRow("openssl alone", 0.0042),
            TrustRow("peak RSS", 21.5, "MB", 18.4),
        ],
        ["| merge | 1.2 s | 1.0 s | filled by hand | — | — |"],
    ).splitlines()
    assert table[0] == "| figure | value | against | added | goal | met? |"
    assert table[2] == (
        "| DDI vs bare | 31.35 MB | 30.02 MB | +1.33 MB (+4.44%) "
        "| ≤ +1.45 MB (1 % + 1.1 MiB) | yes |"
    )
    assert (
        table[3] == "| too big | 33.00 MB | 30.00 MB | +3.00 MB (+10.00%) | ≤ +1.45 MB | **no** |"
    )
    assert table[4] == (
        "| assemble | 0.111 s | 0.057 s | +0.053 s (+93.18%), pairs 1.908-2.111x | — | — |"
    )
    assert table[5] == "| openssl alone | 0.004 s | — | — | — | — |"
    assert table[6] == "| peak RSS | 21.5 MB | 18.4 MB | +3.1 MB (+16.85%) | — | — |"
    assert table[7] == "| merge | 1.2 s | 1.0 s | filled by hand | — | — |"


def test_the_merge_row_filled_by_hand_survives_a_new_run() -> None:
    filled = f"| {trust.MERGE_FIGURE} | 9.10 s | 8.70 s | +0.40 s (boot test, by hand) | — | — |"
    old = f"# Benchmarks\n\n{trust.START}\n| figure |\n{filled}\n{trust.END}\n"
    assert trust.hand_rows(old) == [filled]
    assert trust.hand_rows("# Benchmarks\n") == [trust.MERGE_PLACEHOLDER]
    section = trust.trust_section([TrustRow("openssl alone", 0.004)], old, runs=5)
    assert section.startswith(trust.START) and section.endswith(trust.END)
    assert section.splitlines()[-2] == filled
    about = " ".join(section.splitlines())
    assert "medians of 7 runs" in about and "verifies: 5 pairs" in about


def test_the_trust_section_replaces_its_old_self_and_nothing_else(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# B\n\n| t |\n\n{trust.START}\nold\n{trust.END}\n\n## Machine\n\n- x\n")
    docs.replace_section(doc, trust.START, trust.END, f"{trust.START}\nnew\n{trust.END}")
    assert (
        doc.read_text() == f"# B\n\n| t |\n\n{trust.START}\nnew\n{trust.END}\n\n## Machine\n\n- x\n"
    )


def test_a_document_without_a_trust_section_gains_one_before_the_machine(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# B\n\n| t |\n\n## Machine\n\n- x\n")
    docs.replace_section(doc, trust.START, trust.END, f"{trust.START}\nnew\n{trust.END}")
    assert (
        doc.read_text() == f"# B\n\n| t |\n\n{trust.START}\nnew\n{trust.END}\n\n## Machine\n\n- x\n"
    )


def test_the_whole_document_places_the_trust_section_before_the_machine_and_keeps_notes(
    tmp_path: Path,
) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"old\n{docs.NOTES_MARKER}\n## Notes\n\nby hand\n")
    section = f"{trust.START}\n## Trust costs\n{trust.END}"
    docs.write_docs(doc, "| t |", "| f |", section, ["- m"], 1.0, [])
    text = doc.read_text()
    assert text.index("| f |") < text.index(section) < text.index("## Machine")
    assert text.endswith(f"{docs.NOTES_MARKER}\n## Notes\n\nby hand\n")


def test_the_parts_a_run_leaves_out_keep_their_sections_in_their_order(tmp_path: Path) -> None:
    """write_docs writes only the main table's parts; keep_sections puts the update, frontier and
    overlap sections of the old text back before the machine, where a --skip left them out."""
    markers = [(f"<!-- {name} -->", f"<!-- /{name} -->") for name in ("a", "b", "c")]
    old = "# B\n\n" + "".join(f"{s}\nold {s}\n{e}\n\n" for s, e in markers)
    doc = tmp_path / "benchmarks.md"
    doc.write_text(old + f"## Machine\n\n{docs.NOTES_MARKER}\n## Notes\n")
    docs.write_docs(doc, "| t |", "| f |", "trust", ["- m"], 1.0, [])
    assert "old <!-- a -->" not in doc.read_text()  # what keep_sections is for
    docs.keep_sections(doc, old, [*markers, ("<!-- gone -->", "<!-- /gone -->")])
    docs.replace_section(doc, *markers[1], f"{markers[1][0]}\nnew\n{markers[1][1]}")
    text = doc.read_text()
    kept = [
        text.index(f"old {markers[0][0]}"),
        text.index("new"),
        text.index(f"old {markers[2][0]}"),
    ]
    assert text.index("trust") < kept[0] < kept[1] < kept[2] < text.index("## Machine")
    assert "gone" not in text and f"old {markers[1][0]}" not in text
