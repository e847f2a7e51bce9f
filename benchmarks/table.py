"""The table of figures: one row per figure, ours against theirs or a limit, as Markdown."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


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


@dataclass
class FormatFigures:
    """One image format and compression, measured on the same tree: a line of the formats table."""

    image: str  # e.g. "squashfs xz, 1 MiB blocks"
    size: int  # bytes
    pack: float | None = None  # seconds
    readback: float | None = None  # seconds to read the binary, cold page cache
    merge: float | None = None  # seconds systemd-sysext merge takes, cold page cache


def _milliseconds(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.3f} s"


def format_formats_table(formats: Sequence[FormatFigures]) -> str:
    """The formats as a Markdown table; each size also as a ratio to the first line's."""
    lines = [
        "| image | size | size / first line's | pack | read binary (cold) | merge (cold) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    first = formats[0].size if formats else 0
    for f in formats:
        ratio = f"{f.size / first:.3f}x" if first else "—"
        lines.append(
            f"| {f.image} | {_value(f.size, 'B')} | {ratio} | {_value(f.pack, 's')} "
            f"| {_milliseconds(f.readback)} | {_milliseconds(f.merge)} |"
        )
    return "\n".join(lines)


@dataclass
class TrustRow:
    """One figure of the trust costs table: a value, what it is set against (a bare image, an
    unsigned build, the process before the call), how much it adds and, for the DDI's bytes,
    the issue's goal on what it may add."""

    figure: str
    value: float
    unit: str = "s"  # "B", "MB" or "s"
    against: float | None = None
    limit_added: float | None = None  # goal: value - against <= limit_added, in `unit`
    goal: str = ""  # how the goal reads, e.g. "1 % + 1.1 MiB"
    ratios: tuple[float, ...] = ()  # value/against of each pair, when they ran in pairs

    @property
    def added(self) -> float | None:
        return None if self.against is None else self.value - self.against

    @property
    def met(self) -> bool | None:
        if self.limit_added is None or self.added is None:
            return None
        return self.added <= self.limit_added


def _trust_value(value: float | None, unit: str) -> str:
    """As _value(), but seconds to the millisecond: signing and checks take tens of them."""
    return _milliseconds(value) if unit == "s" else _value(value, unit)


def _signed(value: float, unit: str) -> str:
    return ("+" if value >= 0 else "-") + _trust_value(abs(value), unit)


def format_trust_table(rows: Sequence[TrustRow], hand_rows: Sequence[str] = ()) -> str:
    """The rows as a Markdown table: figure, value, against, added (and by how much of
    `against`, or the pairs' range), goal, met?; then `hand_rows`, lines filled by hand."""
    lines = ["| figure | value | against | added | goal | met? |", "|---|---:|---:|---:|---|---|"]
    for row in rows:
        added = "—"
        if row.added is not None and row.against:
            added = f"{_signed(row.added, row.unit)} ({row.added / row.against:+.2%})"
            if len(row.ratios) > 1:
                added += f", pairs {min(row.ratios):.3f}-{max(row.ratios):.3f}x"
        goal = "—"
        if row.limit_added is not None:
            goal = f"≤ {_signed(row.limit_added, row.unit)}" + (
                f" ({row.goal})" if row.goal else ""
            )
        met = {None: "—", True: "yes", False: "**no**"}[row.met]
        lines.append(
            f"| {row.figure} | {_trust_value(row.value, row.unit)} "
            f"| {_trust_value(row.against, row.unit)} "
            f"| {added} | {goal} | {met} |"
        )
    lines += hand_rows
    return "\n".join(lines)
