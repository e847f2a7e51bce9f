"""SIGINT and SIGTERM as an exception, so every atomic helper's clean-up runs before exit."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from typing import Any

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A signal ended the run. A KeyboardInterrupt, so whatever cleans up after Ctrl-C (the
    atomic helpers' finally blocks, subprocess.run killing its child) cleans up after it too."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # what a shell reports for a process the signal killed


_received: int | None = None  # the signal that ended the run, once one came
_holding = 0  # within held(): a signal is remembered, and raised by raise_if_interrupted()


def _raise(signum: int, _frame: object) -> None:
    global _received
    # A second signal must not cut the clean-up of the first short.
    for other in HANDLED:
        signal.signal(other, signal.SIG_IGN)
    _received = signum
    if not _holding:
        raise Interrupted(signum)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Within the block a signal is only remembered: the caller raises it with
    raise_if_interrupted() where its clean-up covers what the block made. (pthread_sigmask would
    hold it only on this thread: another thread may take the signal, and Python then runs the
    handler here, masked or not.)"""
    global _holding
    _holding += 1
    try:
        yield
    finally:
        _holding -= 1


def raise_if_interrupted() -> None:
    """Raise the Interrupted of a signal that came while Python ran a weakref callback or a
    __del__: there its exception is dropped ("Exception ignored in ..."), and the run would go
    on to the end, deaf to further signals. The runner asks before and after each step."""
    if _received is not None:
        raise Interrupted(_received)


def _quiet_about_interrupts(previous: Any) -> Any:
    """sys.unraisablehook that says nothing of a dropped Interrupted: raise_if_interrupted()
    raises it again; anything else goes to `previous`."""

    def hook(unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, Interrupted):
            previous(unraisable)

    return hook


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Within the block, SIGINT, SIGTERM and SIGHUP raise Interrupted (Python's default for
    SIGTERM ends the process at once, leaving temporary files and a running mksquashfs)."""
    global _received
    _received = None
    previous = {signum: signal.getsignal(signum) for signum in HANDLED}
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _quiet_about_interrupts(previous_hook)
    for signum in HANDLED:
        signal.signal(signum, _raise)
    try:
        yield
        raise_if_interrupted()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        sys.unraisablehook = previous_hook
        _received = None
