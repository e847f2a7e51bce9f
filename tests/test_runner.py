"""build.pipeline.runner: a table of steps run in order, each only when out of date, deferred
outputs installed only once every step passed, and a step asked alone that checks what is built."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from build.config.spec import BuildSpec
from build.core.errors import BuildError
from build.pipeline.runner import Entry, Runner
from tests.specs import spec_of


def spec(tmp_path: Path) -> BuildSpec:
    return spec_of({"output_dir": str(tmp_path / "out")})


def table(calls: list[str], fail: str | None = None) -> tuple[Entry, ...]:
    """a -> b -> c, each writing one output file named after it from the one before."""

    def maker(name: str):
        def make(runner: Runner) -> str:
            calls.append(f"make {name}")
            if name == fail:
                raise BuildError(f"{name} failed")
            runner.write_output(runner.spec.output_dir / name, f"{name}\n")
            return f"made {runner.current(runner.spec.output_dir / name)}"

        return make

    def before(name: str):
        return lambda runner: calls.append(f"before {name}")

    def entry(name: str, needs: str | None) -> Entry:
        return Entry(
            name,
            needs=needs,
            makes=lambda s: (s.output_dir / name,),
            sources=lambda r: (r.spec.output_dir / needs,) if needs else (),
            params=lambda r: {"p": 1},
            stamp=lambda s: s.stamp(name),
            make=maker(name),
            before=before(name),
            deferrable=name != "a",
            alone="build it first" if name == "c" else None,
        )

    return tuple(entry(name, needs) for name, needs in (("a", None), ("b", "a"), ("c", "b")))


def test_each_step_runs_after_its_needs_and_its_before_ahead_of_them(tmp_path: Path) -> None:
    calls: list[str] = []
    Runner(table(calls), spec(tmp_path)).run("c")
    assert calls == ["before c", "before b", "before a", "make a", "make b", "make c"]
    calls.clear()
    Runner(table(calls), spec(tmp_path)).run("c")  # up to date: nothing made
    assert calls == ["before c", "before b", "before a"]


def test_forced_step_runs_though_up_to_date(tmp_path: Path) -> None:
    calls: list[str] = []
    Runner(table(calls), spec(tmp_path)).run("c")
    calls.clear()
    Runner(table(calls), spec(tmp_path), force=("b",)).run("c")
    assert [call for call in calls if call.startswith("make")] == ["make b", "make c"]


def test_deferred_outputs_stay_pending_until_every_step_passed(tmp_path: Path) -> None:
    calls: list[str] = []
    Runner(table(calls), spec(tmp_path)).run("c")
    out = tmp_path / "out"
    before = {name: (out / name).stat().st_ino for name in "abc"}
    runner = Runner(table(calls, fail="c"), spec(tmp_path), force=("a", "b", "c"))
    with pytest.raises(BuildError, match="c failed"):
        runner.all()
    # a is not deferrable: made again in place. b was made again into the pending directory,
    # which went with c's failure: the installed b and c are as they were.
    assert (out / "a").stat().st_ino != before["a"]
    assert (out / "b").stat().st_ino == before["b"]
    assert (out / "c").stat().st_ino == before["c"]
    assert not runner.pending_dir.exists()
    assert calls[-3:] == ["make a", "make b", "make c"]


def test_a_step_asked_alone_runs_every_time_without_its_needs(tmp_path: Path) -> None:
    calls: list[str] = []
    Runner(table(calls), spec(tmp_path)).run("c")
    calls.clear()
    Runner(table(calls), spec(tmp_path)).ask("c")
    assert calls == ["make c"]


def test_a_step_asked_alone_refuses_a_missing_source(tmp_path: Path) -> None:
    calls: list[str] = []
    with pytest.raises(BuildError) as raised:
        Runner(table(calls), spec(tmp_path)).ask("c")
    assert raised.value.message == f"nothing to c: {tmp_path / 'out' / 'b'} is missing"
    assert raised.value.hint == "build it first"
    assert calls == []
    assert not (tmp_path / "out").exists()


def step_lines(out: str) -> list[str]:
    """The step lines, their times (which vary) as T."""
    return [re.sub(r"\(\d+\.\d s;", "(T s;", line) for line in out.splitlines()]


def test_step_lines_name_the_final_outputs_and_say_why_plainly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """issue 22: not "made out/.staging/…/pending/b (…; out/b is missing)"."""
    out = tmp_path / "out"
    Runner(table([]), spec(tmp_path)).all()
    assert step_lines(capsys.readouterr().out) == [
        f"a        made {out / 'a'} (T s; first build)",
        f"b        made {out / 'b'} (T s; first build)",
        f"c        made {out / 'c'} (T s; first build)",
        f"install  verified, now in {out}: b, c",
    ]
    (out / "b").unlink()
    Runner(table([]), spec(tmp_path)).all()
    assert step_lines(capsys.readouterr().out) == [
        "a        " + f"{out / 'a'}: up to date",
        f"b        made {out / 'b'} (T s; b was removed)",
        f"c        made {out / 'c'} (T s; b was rebuilt)",
        f"install  verified, now in {out}: b, c",
    ]
    Runner(table([]), spec(tmp_path), force=["a"]).run("a")
    assert step_lines(capsys.readouterr().out) == [f"a        made {out / 'a'} (T s; --force)"]


def test_a_step_whose_targets_are_all_records_is_up_to_date_without_a_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def make(runner: Runner) -> str:
        runner.write_output(runner.spec.stamp("check"), "")
        return "checked"

    entry = Entry("check", None, lambda s: (s.stamp("check"),), make, stamp=lambda s: s.stamp("x"))
    Runner((entry,), spec(tmp_path)).run("check")
    Runner((entry,), spec(tmp_path)).run("check")
    assert capsys.readouterr().out.splitlines()[-1] == "check    up to date"
