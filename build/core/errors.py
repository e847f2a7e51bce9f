"""One error type for everything a user can fix, rendered as one line."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from build.core.report import MAX_LINE, cut


class BuildError(Exception):
    """A failure the user can act on: what went wrong, and what to do about it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


def shown(value: str, most: int = 40) -> str:
    """`value` quoted for an error line, cut short when a hostile one is long."""
    return repr(value) if len(value) <= most else f"{value[:most]!r}... ({len(value)} characters)"


_DOING = "alloy_sysext_doing"  # the attribute doing() leaves on an OSError


@contextlib.contextmanager
def doing(what: str | None = None, path: Path | str | None = None) -> Iterator[None]:
    """An OSError from the block says what the build was doing, and names `path` when the
    error itself names no file (a failed write() or close() does not)."""
    try:
        yield
    except OSError as error:
        if error.filename is None and path is not None:
            error.filename = str(path)
        if what is not None and getattr(error, _DOING, None) is None:  # the innermost wins
            setattr(error, _DOING, what)  # not add_note: Python 3.10 has none
        raise


_NO_SPACE = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)
# Which option moves the files under each directory elsewhere; the first that holds a path wins.
Places = Mapping[str, Path]


def _option_for(path: str, places: Places) -> str:
    where = os.path.abspath(path)
    best, depth = "--output-dir", -1
    for option, directory in places.items():
        root = os.path.abspath(directory)
        if os.path.commonpath([where, root]) == root and len(root) > depth:
            best, depth = option, len(root)
    return best


def os_error_text(error: OSError, places: Places | None = None) -> str:
    """What went wrong, on which path, while doing what; and what to do about it."""
    what = getattr(error, _DOING, None)
    while_doing = f" while {what}" if what else ""
    if not isinstance(error.filename, (str, bytes, os.PathLike)):  # None, or a descriptor
        return f"{error.strerror or error}{while_doing}"
    path = os.fsdecode(error.filename)
    if isinstance(error.filename2, (str, bytes, os.PathLike)):
        path = f"{path} -> {os.fsdecode(error.filename2)}"
    option = _option_for(os.fsdecode(error.filename), places or {})
    if error.errno in _NO_SPACE:
        return (
            f"{_NO_SPACE[error.errno]} for {path}{while_doing}; free space on that file "
            f"system, or choose another {option}"
        )
    if error.errno == errno.EROFS:
        return (
            f"{error.strerror}: {path} is not writable{while_doing}; remount that file system "
            f"read-write, or choose another {option}"
        )
    if error.errno in _NOT_WRITABLE:
        return (
            f"{error.strerror}: {path} is not writable{while_doing}; give this user write "
            f"access to it (check the owner and mode), or choose another {option}"
        )
    return f"{error.strerror or error}: {path}{while_doing}"


def one_line(error: BaseException, places: Places | None = None) -> str:
    """The single stderr line for an error that ends a run. `places`: option -> directory it
    sets (--output-dir, --cache-dir), for the advice on an OSError under one of them."""
    if isinstance(error, BuildError):
        text = _bounded(" ".join(error.message.split()), " ".join(error.hint.split()))
    elif isinstance(error, OSError):
        text = os_error_text(error, places)
    else:
        text = str(error) or type(error).__name__
    return cut("error: " + " ".join(text.split()))


def _bounded(message: str, hint: str) -> str:
    """message; hint within a line: a long message is cut before its hint, what to do, is."""
    if not hint:
        return message
    room = MAX_LINE - len("error: ; ") - len(hint)
    return f"{cut(message, max(room, MAX_LINE // 2))}; {hint}"


def explain_full_disk(error: BuildError, directory: Path, tool: str, needed: int) -> BuildError:
    """A packer that failed with less than `needed` bytes free in `directory` (mksquashfs says
    only "Failed to write to output filesystem"): a full disk, said so; else the error as it is."""
    stats = os.statvfs(directory)
    free = stats.f_bavail * stats.f_frsize
    if free >= needed:
        return error
    return BuildError(
        f"no space left on device in {directory}: {tool} stopped with {free >> 10} KiB free there",
        "free some space there or choose another --output-dir; nothing was kept",
    )
