"""A signal that lands where Python drops exceptions (a weakref callback, a __del__) still ends
the run: the runner asks before and after each step, and signals_raise() at its end."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from build.core import fileio
from build.core.signals import Interrupted, raise_if_interrupted, signals_raise
from build.pipeline.runner import Entry, Runner
from tests.specs import spec_of


class SignalledWhileDropped:
    """Sends `signum` to this process from its __del__, and stays there until the handler ran:
    the handler's exception is then Python's "Exception ignored in", not the caller's."""

    def __init__(self, signum: int) -> None:
        self.signum = signum

    def __del__(self) -> None:
        os.kill(os.getpid(), self.signum)
        for _ in range(10_000):  # the handler runs at one of these bytecodes
            pass


def test_a_dropped_interrupt_is_raised_at_the_next_check_and_said_nowhere_else(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(Interrupted) as caught, signals_raise():
        SignalledWhileDropped(signal.SIGTERM)  # dropped at once: __del__ runs here
        assert sys.exc_info()[1] is None  # Python dropped the handler's exception
        raise_if_interrupted()
    assert caught.value.signum == signal.SIGTERM
    assert "Exception ignored" not in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored, and forgotten:
    raise_if_interrupted()


def test_signals_raise_raises_a_dropped_interrupt_at_its_end() -> None:
    with pytest.raises(Interrupted) as caught, signals_raise():
        SignalledWhileDropped(signal.SIGHUP)
    assert caught.value.signum == signal.SIGHUP


def test_the_runner_stops_after_a_step_that_swallowed_a_signal(tmp_path: Path) -> None:
    made: list[str] = []

    def first(_: Runner) -> str:
        SignalledWhileDropped(signal.SIGINT)
        made.append("first")
        return "made first"

    def second(_: Runner) -> str:
        made.append("second")
        return "made second"

    spec = spec_of({"output_dir": tmp_path / "out", "cache_dir": tmp_path / "cache"})
    table = (
        Entry("first", needs=None, makes=lambda s: (tmp_path / "first",), make=first),
        Entry("second", needs="first", makes=lambda s: (tmp_path / "second",), make=second),
    )
    runner = Runner(table, spec)
    with pytest.raises(Interrupted), signals_raise():
        try:
            runner.ask("second")
        finally:
            runner.close()
    assert made == ["first"]  # the signal ended the run before the next step


def test_a_signal_while_a_temporary_is_made_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test of a signal mid-step waits for the step's temporary to appear, then signals: the
    signal can come between its creation and the clean-up that covers it. It waits until then."""
    made: list[Path] = []
    new_file = fileio._new_file

    def signalled_while_made(final: Path, temp_dir: Path | None = None) -> Path:
        made.append(new_file(final, temp_dir))
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(10_000):  # the handler would run at one of these, were it not held
            pass
        return made[-1]

    monkeypatch.setattr(fileio, "_new_file", signalled_while_made)
    with pytest.raises(Interrupted), signals_raise(), fileio.atomic_path(tmp_path / "out.txt"):
        pass  # the signal is raised here at the latest
    assert made and not made[0].exists()
    assert list(tmp_path.iterdir()) == []
