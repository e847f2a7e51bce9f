"""The make rule: a step's targets, its sources and the parameter stamp that records what made
them; out of date when a target is missing, a source is newer or the parameters changed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from build.core.fileio import write_text_atomic

# Bump when a change to the pipeline changes what a step produces, so old outputs rebuild.
RECIPE = 1


@dataclass(frozen=True)
class Step:
    """What a step produces from what, shaped by which parameters."""

    name: str
    targets: tuple[Path, ...]
    sources: tuple[Path, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    stamp: Path | None = None
    lock: Path | None = None  # held while checking and making targets other builds share


def _stamp_text(step: Step) -> str:
    return json.dumps({"recipe": RECIPE, "params": dict(step.params)}, sort_keys=True) + "\n"


def why_out_of_date(step: Step) -> str | None:
    """The reason `step` must run, or None when it is up to date (make's rule, in ns)."""
    target_times = []
    for target in step.targets:
        try:
            target_times.append(target.stat().st_mtime_ns)
        except FileNotFoundError:
            return f"{target} is missing"
    if step.stamp is not None:
        try:
            recorded = step.stamp.read_text(encoding="utf-8")
        except FileNotFoundError:
            return "no record of a previous build"
        if recorded != _stamp_text(step):
            return "its parameters changed"
    oldest_target = min(target_times, default=None)
    for source in step.sources:
        try:
            source_time = source.stat().st_mtime_ns
        except FileNotFoundError:
            return f"{source} is missing"
        if oldest_target is not None and source_time > oldest_target:
            return f"{source} is newer"
    return None


def forget(step: Step) -> None:
    """Drop a step's record before replacing its targets: a crash then means "rebuild"."""
    if step.stamp is not None:
        step.stamp.unlink(missing_ok=True)


def record(step: Step) -> None:
    """Written last, after every target is in place."""
    if step.stamp is not None:
        write_text_atomic(step.stamp, _stamp_text(step))
