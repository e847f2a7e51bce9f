"""`invoke --list | head -1`: once the reader of stdout is gone, stop quietly, as Python's
documentation ("Note on SIGPIPE") advises, never with a traceback.

SIGPIPE keeps Python's default (ignored, so a write raises BrokenPipeError): with SIG_DFL a
download peer that goes away would kill the build without a word and leave its temporary
files behind."""

from __future__ import annotations

import atexit
import os
import select
import sys
from types import TracebackType

_INSTALLED = "alloy_sysext_quiet_broken_pipe"  # the mark on an installed hook


def stdout_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it (poll says POLLERR): a BrokenPipeError
    then came from a line the build printed, not from a socket or a tool's pipe."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no stdout, or not a real file
        return False


def silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush of what is still buffered
    has somewhere to go."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no stdout, or not a real file
        pass


def flush_or_silence() -> None:
    """At exit: flush stdout; a reader that has gone leaves nothing to say."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()
    except (OSError, ValueError):
        pass


def quiet_broken_pipe() -> None:
    """Install, once a process: an uncaught BrokenPipeError ends the program with exit code 1 and
    nothing on stderr, and output still buffered when the reader left is dropped at exit."""
    previous = sys.excepthook
    if getattr(previous, _INSTALLED, False):
        return

    def hook(
        kind: type[BaseException], error: BaseException, traceback: TracebackType | None
    ) -> None:
        if issubclass(kind, BrokenPipeError):
            silence_stdout()
            return  # Python exits with 1 after the hook
        previous(kind, error, traceback)

    setattr(hook, _INSTALLED, True)
    sys.excepthook = hook
    atexit.register(flush_or_silence)
