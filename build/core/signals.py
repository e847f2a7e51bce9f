"""SIGINT and SIGTERM as an exception, so every atomic helper's clean-up runs before exit."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

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


def _raise(signum: int, _frame: object) -> None:
    # A second signal must not cut the clean-up of the first short.
    for other in HANDLED:
        signal.signal(other, signal.SIG_IGN)
    raise Interrupted(signum)


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Within the block, SIGINT, SIGTERM and SIGHUP raise Interrupted (Python's default for
    SIGTERM ends the process at once, leaving temporary files and a running mksquashfs)."""
    previous = {signum: signal.getsignal(signum) for signum in HANDLED}
    for signum in HANDLED:
        signal.signal(signum, _raise)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
