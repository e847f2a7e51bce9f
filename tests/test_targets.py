"""build.targets: make's out-of-date rule, step records, and atomic files and directories."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from build import targets
from build.targets import (
    Step,
    atomic_dir,
    atomic_path,
    forget,
    record,
    why_out_of_date,
    write_text_atomic,
)

# A fixed time with a non-zero nanosecond part, so the 1 ns comparisons are real.
T0 = 1_700_000_000_123_456_789


class Boom(Exception):
    pass


def touch(path: Path, mtime_ns: int, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    assert path.stat().st_mtime_ns == mtime_ns  # the filesystem keeps nanoseconds
    return path


@pytest.fixture
def umask() -> Iterator[None]:
    """Restore the process umask after a test changes it."""
    saved = os.umask(0o022)
    os.umask(saved)
    try:
        yield
    finally:
        os.umask(saved)


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
    monkeypatch.setattr(targets, "RECIPE", targets.RECIPE + 1)
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


# atomic_path


def test_atomic_path_success_replaces_file(tmp_path: Path) -> None:
    final = tmp_path / "out.txt"
    final.write_text("old")
    with atomic_path(final) as tmp:
        assert tmp.parent == final.parent
        assert tmp != final
        tmp.write_text("new")
        assert final.read_text() == "old"  # not in place until the block ends
    assert final.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_path_exception_keeps_earlier_version(tmp_path: Path) -> None:
    final = tmp_path / "out.txt"
    final.write_text("earlier version")
    with pytest.raises(Boom), atomic_path(final) as tmp:
        tmp.write_text("half written")
        raise Boom
    assert final.read_text() == "earlier version"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_path_exception_without_earlier_version_leaves_nothing(tmp_path: Path) -> None:
    final = tmp_path / "sub" / "out.txt"
    with pytest.raises(Boom), atomic_path(final) as tmp:
        tmp.write_text("half written")
        raise Boom
    assert not final.exists()
    assert list((tmp_path / "sub").iterdir()) == []


@pytest.mark.parametrize(
    ("mask", "mode"),
    [(0o077, 0o644), (0o077, 0o666), (0o000, 0o600), (0o022, 0o755), (0o277, 0o640)],
)
def test_atomic_path_mode_ignores_umask(tmp_path: Path, umask: None, mask: int, mode: int) -> None:
    final = tmp_path / "out"
    os.umask(mask)
    with atomic_path(final, mode) as tmp:
        tmp.write_text("data")
    assert stat.S_IMODE(final.stat().st_mode) == mode


def test_atomic_path_default_mode_is_0644(tmp_path: Path, umask: None) -> None:
    os.umask(0o077)
    write_text_atomic(tmp_path / "out", "text\n")
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o644
    assert (tmp_path / "out").read_text() == "text\n"


# atomic_dir


def test_atomic_dir_creates_new_directory(tmp_path: Path) -> None:
    final = tmp_path / "parent" / "tree"
    with atomic_dir(final) as tmp:
        assert tmp.is_dir() and tmp.parent == final.parent and tmp != final
        (tmp / "file").write_text("new")
        assert not final.exists()
    assert (final / "file").read_text() == "new"
    assert sorted(p.name for p in final.parent.iterdir()) == ["tree"]


def test_atomic_dir_replaces_existing_directory(tmp_path: Path) -> None:
    final = tmp_path / "tree"
    (final / "nested").mkdir(parents=True)
    (final / "stale").write_text("old")
    (final / "nested" / "deep").write_text("old")
    with atomic_dir(final) as tmp:
        (tmp / "fresh").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["fresh"]
    assert (final / "fresh").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree"]  # no .old or .tmp left


def test_atomic_dir_exception_keeps_earlier_version(tmp_path: Path) -> None:
    final = tmp_path / "tree"
    final.mkdir()
    (final / "kept").write_text("earlier version")
    with pytest.raises(Boom), atomic_dir(final) as tmp:
        (tmp / "partial").write_text("half")
        (tmp / "sub").mkdir()
        raise Boom
    assert sorted(p.name for p in final.iterdir()) == ["kept"]
    assert (final / "kept").read_text() == "earlier version"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree"]


def test_atomic_dir_exception_without_earlier_version_leaves_nothing(tmp_path: Path) -> None:
    final = tmp_path / "tree"
    with pytest.raises(Boom), atomic_dir(final) as tmp:
        (tmp / "partial").write_text("half")
        raise Boom
    assert list(tmp_path.iterdir()) == []
