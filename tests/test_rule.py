"""build.model.rule: make's out-of-date rule and step records."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from build.model import rule
from build.model.rule import Step, forget, plain_reason, record, why_out_of_date

# A fixed time with a non-zero nanosecond part, so the 1 ns comparisons are real.
T0 = 1_700_000_000_123_456_789


def touch(path: Path, mtime_ns: int, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    assert path.stat().st_mtime_ns == mtime_ns  # the filesystem keeps nanoseconds
    return path


# why_out_of_date


def test_missing_target_is_out_of_date(tmp_path: Path) -> None:
    present = touch(tmp_path / "present", T0)
    missing = tmp_path / "missing"
    reason = why_out_of_date(Step("s", targets=(present, missing)))
    assert reason == f"{missing} is missing"


def test_target_present_without_stamp_or_sources_is_up_to_date(tmp_path: Path) -> None:
    target = touch(tmp_path / "t", T0)
    assert why_out_of_date(Step("s", targets=(target,))) is None


def test_missing_stamp_is_out_of_date(tmp_path: Path) -> None:
    target = touch(tmp_path / "t", T0)
    step = Step("s", targets=(target,), params={"a": 1}, stamp=tmp_path / "s.stamp")
    assert why_out_of_date(step) == "no record of a previous build"


def test_recorded_step_is_up_to_date(tmp_path: Path) -> None:
    target = touch(tmp_path / "t", T0)
    step = Step("s", targets=(target,), params={"a": 1, "b": "x"}, stamp=tmp_path / "s.stamp")
    record(step)
    assert step.stamp is not None and step.stamp.is_file()
    assert why_out_of_date(step) is None


def test_params_order_does_not_matter(tmp_path: Path) -> None:
    target = touch(tmp_path / "t", T0)
    stamp = tmp_path / "s.stamp"
    record(Step("s", targets=(target,), params={"a": 1, "b": 2}, stamp=stamp))
    assert (
        why_out_of_date(Step("s", targets=(target,), params={"b": 2, "a": 1}, stamp=stamp)) is None
    )


@pytest.mark.parametrize(
    "new_params",
    [{"version": "1.10.3", "arch": "amd64"}, {"version": "1.10.2"}, {}],
    ids=["value", "key-dropped", "empty"],
)
def test_changed_params_are_out_of_date(tmp_path: Path, new_params: dict[str, str]) -> None:
    target = touch(tmp_path / "t", T0)
    stamp = tmp_path / "s.stamp"
    record(Step("s", targets=(target,), params={"version": "1.10.2", "arch": "amd64"}, stamp=stamp))
    step = Step("s", targets=(target,), params=new_params, stamp=stamp)
    assert why_out_of_date(step) == "its parameters changed"


def test_changed_recipe_is_out_of_date(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = touch(tmp_path / "t", T0)
    step = Step("s", targets=(target,), params={"a": 1}, stamp=tmp_path / "s.stamp")
    record(step)
    assert why_out_of_date(step) is None
    monkeypatch.setattr(rule, "RECIPE", rule.RECIPE + 1)
    assert why_out_of_date(step) == "its parameters changed"


def test_source_newer_by_one_ns_is_out_of_date(tmp_path: Path) -> None:
    target = touch(tmp_path / "t", T0)
    source = touch(tmp_path / "src", T0 + 1)
    assert why_out_of_date(Step("s", targets=(target,), sources=(source,))) == f"{source} is newer"


def test_source_with_equal_mtime_is_up_to_date(tmp_path: Path) -> None:
    target = touch(tmp_path / "t", T0)
    source = touch(tmp_path / "src", T0)
    assert why_out_of_date(Step("s", targets=(target,), sources=(source,))) is None


def test_source_older_is_up_to_date(tmp_path: Path) -> None:
    target = touch(tmp_path / "t", T0)
    source = touch(tmp_path / "src", T0 - 1)
    assert why_out_of_date(Step("s", targets=(target,), sources=(source,))) is None


def test_source_is_compared_with_the_oldest_target(tmp_path: Path) -> None:
    old = touch(tmp_path / "old", T0)
    new = touch(tmp_path / "new", T0 + 10)
    source = touch(tmp_path / "src", T0 + 5)
    step = Step("s", targets=(new, old), sources=(source,))
    assert why_out_of_date(step) == f"{source} is newer"


def test_missing_source_is_out_of_date(tmp_path: Path) -> None:
    target = touch(tmp_path / "t", T0)
    present = touch(tmp_path / "a", T0 - 5)
    missing = tmp_path / "b"
    step = Step("s", targets=(target,), sources=(present, missing))
    assert why_out_of_date(step) == f"{missing} is missing"


def test_forget_removes_the_record(tmp_path: Path) -> None:
    target = touch(tmp_path / "t", T0)
    step = Step("s", targets=(target,), params={"a": 1}, stamp=tmp_path / "s.stamp")
    record(step)
    forget(step)
    assert not (tmp_path / "s.stamp").exists()
    assert why_out_of_date(step) == "no record of a previous build"
    forget(step)  # a second time: nothing to remove, no error


def test_record_and_forget_without_stamp_touch_nothing(tmp_path: Path) -> None:
    target = touch(tmp_path / "t", T0)
    step = Step("s", targets=(target,))
    record(step)
    forget(step)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t"]


def test_record_creates_the_stamp_directory(tmp_path: Path) -> None:
    target = touch(tmp_path / "t", T0)
    stamp = tmp_path / "deep" / "er" / "s.stamp"
    record(Step("s", targets=(target,), params={"k": "v"}, stamp=stamp))
    assert stamp.is_file()
    assert '"k": "v"' in stamp.read_text()


# plain_reason: the words of a step's line (issue 22: no internal paths, no error-like wording)


def test_nothing_made_yet_is_the_first_build(tmp_path: Path) -> None:
    output = tmp_path / "output" / "alloy-1.10.2-amd64.raw"
    step = Step("pack", targets=(output, tmp_path / "info"), stamp=tmp_path / "pack.stamp")
    assert plain_reason(step) == "first build"
    assert why_out_of_date(step) == f"{output} is missing"  # refusals keep naming the file


def test_a_recorded_target_that_is_gone_was_removed(tmp_path: Path) -> None:
    image = touch(tmp_path / "alloy-1.10.2-amd64.raw", T0)
    step = Step("pack", targets=(image,), params={"a": 1}, stamp=tmp_path / "pack.stamp")
    record(step)
    image.unlink()
    assert plain_reason(step) == "alloy-1.10.2-amd64.raw was removed"


def test_a_changed_option_is_named_with_both_values(tmp_path: Path) -> None:
    target = touch(tmp_path / "t", T0)
    stamp = tmp_path / "pack.stamp"
    before = {"--compression": "xz", "mksquashfs": ["-comp", "xz"], "sha": "a" * 64}
    record(Step("pack", targets=(target,), params=before, stamp=stamp))
    after = {"--compression": "zstd", "mksquashfs": ["-comp", "zstd"], "sha": "b" * 64}
    step = Step("pack", targets=(target,), params=after, stamp=stamp)
    # Only the option: the packer's arguments follow from it.
    assert plain_reason(step) == "--compression changed from xz to zstd"


def test_a_record_without_the_options_is_from_another_version(tmp_path: Path) -> None:
    """After an upgrade that records the options too: not "--compression is now xz"."""
    target = touch(tmp_path / "t", T0)
    stamp = tmp_path / "pack.stamp"
    record(Step("pack", targets=(target,), params={"mksquashfs": ["-comp", "xz"]}, stamp=stamp))
    now = {"--compression": "xz", "mksquashfs": ["-comp", "xz"]}
    step = Step("pack", targets=(target,), params=now, stamp=stamp)
    assert plain_reason(step) == "recorded by another version of this tool"


def test_other_changed_params_are_named_without_long_values(tmp_path: Path) -> None:
    target = touch(tmp_path / "t", T0)
    stamp = tmp_path / "stage.stamp"
    files = {"usr/lib/a.service": "1", "usr/lib/gone.conf": "2"}
    record(Step("stage", targets=(target,), params={"zip": "a" * 64, "files": files}, stamp=stamp))
    now = {"zip": "b" * 64, "files": {"usr/lib/a.service": "3", "usr/lib/new.conf": "4"}}
    step = Step("stage", targets=(target,), params=now, stamp=stamp)
    assert plain_reason(step) == (
        "files changed (usr/lib/new.conf added, usr/lib/gone.conf removed, "
        "usr/lib/a.service changed); zip changed"
    )


def test_a_record_of_another_recipe_says_this_version_builds_differently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = touch(tmp_path / "t", T0)
    step = Step("s", targets=(target,), params={"a": 1}, stamp=tmp_path / "s.stamp")
    record(step)
    monkeypatch.setattr(rule, "RECIPE", rule.RECIPE + 1)
    assert plain_reason(step) == "this version of the tool builds it differently"


def test_a_newer_source_is_named_by_its_name_and_a_record_as_its_step(tmp_path: Path) -> None:
    target = touch(tmp_path / "t", T0)
    binary = touch(tmp_path / ".staging" / "rootfs" / "alloy", T0 + 1)
    assert plain_reason(Step("pack", targets=(target,), sources=(binary,))) == "alloy changed"
    stamp = touch(tmp_path / ".staging" / "stage.stamp", T0 + 1)
    assert plain_reason(Step("pack", targets=(target,), sources=(stamp,))) == "stage ran again"


@pytest.mark.parametrize(
    "recorded",
    [b"[" * 5000, b"\xff\xfe not UTF-8"],
    ids=["nested past the parser's limit", "not UTF-8"],
)
def test_a_record_this_tool_cannot_read_is_a_plain_reason(tmp_path: Path, recorded: bytes) -> None:
    """Not a RecursionError or UnicodeDecodeError's traceback: the step runs again."""
    target = touch(tmp_path / "t", T0)
    stamp = tmp_path / "pack.stamp"
    stamp.write_bytes(recorded)
    step = Step("pack", targets=(target,), params={"--compression": "xz"}, stamp=stamp)
    assert plain_reason(step) == "this version of the tool builds it differently"
    assert why_out_of_date(step) == "its parameters changed"


def test_recorded_values_and_names_are_shown_escaped_on_one_line(tmp_path: Path) -> None:
    """A record is text in a file anyone may have edited: a newline or a terminal's escape
    sequence in it is shown as \\n or \\x1b, never printed."""
    target = touch(tmp_path / "t", T0)
    stamp = tmp_path / "pack.stamp"
    odd = {"--compression": "x\ny\x1b[31m", "files": {"a\nb": "1"}}
    record(Step("pack", targets=(target,), params=odd, stamp=stamp))
    now = {"--compression": "zstd", "files": {}}
    step = Step("pack", targets=(target,), params=now, stamp=stamp)
    assert plain_reason(step) == "--compression changed from x\\x0ay\\x1b[31m to zstd"
    record(Step("pack", targets=(target,), params={"files": {"a\nb": "1"}}, stamp=stamp))
    step = Step("pack", targets=(target,), params={"files": {}}, stamp=stamp)
    assert plain_reason(step) == "files changed (a\\x0ab removed)"
