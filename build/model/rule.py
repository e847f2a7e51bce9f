"""The make rule: a step's targets, its sources and the parameter stamp that records what made
them; out of date when a target is missing, a source is newer or the parameters changed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from build.core.fileio import write_text_atomic
from build.core.report import MAX_ITEM, listing, printable
from build.model.names import STAMP_SUFFIX

# Bump when a change to the pipeline changes what a step produces, so old outputs rebuild.
RECIPE = 1
# The longest parameter value a reason shows (a sha256 is longer: said changed, not shown).
_SHOWN = 40
FIRST_BUILD = "first build"  # plain_reason's when nothing of the step was made before


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
    """The reason `step` must run, or None when it is up to date (make's rule, in ns), naming
    the file or record that decides it: for a refusal to act on stale outputs."""
    found = _out_of_date(step)
    return found[0] if found is not None else None


def plain_reason(step: Step) -> str | None:
    """The same as why_out_of_date, for the step's line: what changed, in the user's words
    ("first build", "--compression changed from xz to zstd", "alloy changed"), no internal
    paths."""
    found = _out_of_date(step)
    return found[1] if found is not None else None


def _out_of_date(step: Step) -> tuple[str, str] | None:
    """(why_out_of_date's reason, plain_reason's), or None when up to date."""
    target_times = []
    recorded = _recorded(step)
    for target in step.targets:
        try:
            target_times.append(target.stat().st_mtime_ns)
        except FileNotFoundError:
            return f"{target} is missing", _missing_target(step, target, recorded)
    if step.stamp is not None:
        if recorded is None:
            return "no record of a previous build", "no record of how it was built"
        if recorded != _stamp_text(step):
            return "its parameters changed", changed_params(recorded, step.params)
    oldest_target = min(target_times, default=None)
    for source in step.sources:
        try:
            source_time = source.stat().st_mtime_ns
        except FileNotFoundError:
            return f"{source} is missing", f"{source.name} is missing"
        if oldest_target is not None and source_time > oldest_target:
            return f"{source} is newer", _newer(source)
    return None


def _recorded(step: Step) -> str | None:
    if step.stamp is None:
        return None
    try:
        # Bytes that are not UTF-8 are no record this tool wrote: changed_params says so.
        return step.stamp.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None


def recorded_params(stamp: Path) -> dict[str, Any] | None:
    """The parameters a step's record holds, or None (no record, or not one of this recipe)."""
    try:
        return _params_in(stamp.read_bytes())
    except OSError:
        return None


def _params_in(record: str | bytes) -> dict[str, Any] | None:
    """The parameters in a record's text, or None where it is no record of this recipe."""
    try:
        loaded = json.loads(record)
    except (ValueError, RecursionError):
        return None
    if not isinstance(loaded, dict) or loaded.get("recipe") != RECIPE:
        return None
    params = loaded.get("params")
    return params if isinstance(params, dict) else None


def _missing_target(step: Step, target: Path, recorded: str | None) -> str:
    """A target is missing: the first build (no record, nothing made yet), else removed."""
    if recorded is None and not any(path.exists() for path in step.targets):
        return FIRST_BUILD
    return f"{target.name} was removed"


def _newer(source: Path) -> str:
    if source.name.endswith(STAMP_SUFFIX):  # another step's record: that step ran again
        return f"{source.name.removesuffix(STAMP_SUFFIX)} ran again"
    return f"{source.name} changed"


def changed_params(recorded: str, params: Mapping[str, Any]) -> str:
    """What differs between a step's record and its parameters now, in a few words: the
    options first ("--compression changed from xz to zstd"); others only when no option did."""
    old = _params_in(recorded)
    if old is None:
        return "this version of the tool builds it differently"
    new = json.loads(json.dumps(dict(params)))  # as recorded: tuples as lists
    changed = [key for key in sorted({*old, *new}) if old.get(key) != new.get(key)]
    options = [key for key in changed if key.startswith("--") and key in old and key in new]
    if not options and old.keys() != new.keys():  # not a value: what the record holds changed
        return "recorded by another version of this tool"
    return listing(_change(key, old.get(key), new.get(key)) for key in options or changed)


def _change(key: str, old: Any, new: Any) -> str:
    """One changed parameter in words; what the record holds (names, values) is anyone's text
    in a file: shown escaped, one line, never a terminal's control sequence."""
    key = printable(key)
    if isinstance(old, dict) and isinstance(new, dict):
        added = [f"{printable(name)} added" for name in new if name not in old]
        gone = [f"{printable(name)} removed" for name in old if name not in new]
        differ = [
            f"{printable(name)} changed" for name in new if name in old and old[name] != new[name]
        ]
        return f"{key} changed ({listing([*added, *gone, *differ], ', ', MAX_ITEM)})"
    if _shown(old) and _shown(new):
        if old is None:
            return f"{key} is now {_said(new)}"
        if new is None:
            return f"{key} {_said(old)} is no longer set"
        return f"{key} changed from {_said(old)} to {_said(new)}"
    return f"{key} changed"


def _said(value: Any) -> str:
    return printable(str(value))


def _shown(value: Any) -> bool:
    """A value short enough to say: not a list or a sha256."""
    return (
        value is None
        or isinstance(value, bool | int | float)
        or (isinstance(value, str) and len(value) <= _SHOWN)
    )


def forget(step: Step) -> None:
    """Drop a step's record before replacing its targets: a crash then means "rebuild"."""
    if step.stamp is not None:
        step.stamp.unlink(missing_ok=True)


def record(step: Step) -> None:
    """Written last, after every target is in place."""
    if step.stamp is not None:
        write_text_atomic(step.stamp, _stamp_text(step))
