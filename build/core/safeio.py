"""Reading files someone else may have put in our place: only regular files, never through a
symlink, never blocking on a FIFO or a device, never more than a bound."""

from __future__ import annotations

import contextlib
import mmap
import os
import stat
import struct
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from build.core.errors import BuildError

_KINDS = {
    stat.S_IFLNK: "a symlink",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a directory",
}


def _refuse(path: Path, mode: int, hint: str) -> BuildError:
    kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
    return BuildError(f"refusing {path}: it is {kind}, not a regular file", hint)


def open_regular(path: Path, hint: str) -> BinaryIO:
    """`path` opened for reading if it is a regular file itself (checked with lstat, then
    opened with O_NOFOLLOW | O_NONBLOCK and checked again: no swap in between); else
    BuildError naming it, with `hint`. FileNotFoundError passes through."""
    before = os.lstat(path)
    if not stat.S_ISREG(before.st_mode):
        raise _refuse(path, before.st_mode, hint)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        if error.errno == 40:  # ELOOP: became a symlink since the lstat
            raise _refuse(path, stat.S_IFLNK, hint) from None
        raise
    now = os.fstat(fd)
    if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (
        before.st_dev,
        before.st_ino,
    ):
        os.close(fd)
        raise _refuse(path, now.st_mode, hint)
    return os.fdopen(fd, "rb")


def read_regular(path: Path, limit: int, hint: str) -> bytes:
    """The whole of a small regular file, refused (naming it) when larger than `limit`."""
    with open_regular(path, hint) as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise BuildError(f"refusing {path}: larger than {limit} bytes", hint)
    return data


@contextlib.contextmanager
def private_copy(path: Path, most: int) -> Iterator[Path]:
    """`path`'s bytes as they are now, copied under the same name into a directory of this
    process's own (mode 0700, removed afterwards): every check then reads one set of bytes,
    whatever happens to `path` meanwhile (swapped between two checks, or truncated under a
    reader's mmap, which would kill it with SIGBUS). A file over `most` bytes is refused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise BuildError(f"cannot read {path}: {error.strerror}") from None
    with os.fdopen(fd, "rb") as source:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _refuse(path, mode, "give the image file itself")
        with tempfile.TemporaryDirectory(prefix="alloy-sysext-vetting-") as directory:
            copy = Path(directory) / path.name
            with copy.open("xb") as target:
                if copy_at_most(source, target, most) is None:
                    raise BuildError(
                        f"refusing {path}: larger than {most} bytes, the most verify reads",
                        "an Alloy sysext is a few hundred MB at most: do not install it",
                    )
            yield copy


def copy_at_most(source: BinaryIO, target: BinaryIO, most: int) -> int | None:
    """Copy `source` to `target` a megabyte at a time: the bytes copied, or None as soon as it
    holds more than `most` (what was written by then is the caller's to discard)."""
    copied = 0
    while chunk := source.read(1 << 20):
        copied += len(chunk)
        if copied > most:
            return None
        target.write(chunk)
    return copied


def map_readonly(path: Path) -> bytes | mmap.mmap:
    """An image's bytes, paged in as a reader touches them (an image may be 100 MB)."""
    try:
        with path.open("rb") as file:
            if os.fstat(file.fileno()).st_size == 0:
                return b""
            return mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as error:
        raise BuildError(f"cannot read {path}: {error.strerror}") from None


class Malformed(Exception):
    """Raised inside an image reader; refusing_malformed() turns it into a BuildError."""


class Refused(Malformed):
    """A valid image that holds what verify refuses (the kernel would read it, but no Alloy
    sysext needs it and it opens a gap between readers): said with its own `hint`."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


class Overtime(Exception):
    """A read went past its deadline: refusing_malformed() says so, not that it is invalid."""


class Deadline:
    """One deadline for a reader's whole read; `clock` is injectable for tests."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._end = clock() + seconds

    def extend(self, seconds: float) -> None:
        """More time for content the caller asked for (bounded by its own limit)."""
        self.seconds += seconds
        self._end += seconds

    def restart(self, seconds: float) -> None:
        """A new deadline, for a read the caller starts later (a file's content)."""
        self.seconds = seconds
        self._end = self._clock() + seconds

    def check(self) -> None:
        if self._clock() > self._end:
            raise Overtime(f"reading it took more than {self.seconds:g} s")


@contextlib.contextmanager
def refusing_malformed(path: Path, kind: str, maker: str) -> Iterator[None]:
    """Turns what a malformed `kind` image raises into one BuildError naming it."""
    try:
        yield
    except Overtime as error:
        raise BuildError(
            f"refusing {path}: {error}, the most verify spends on an image",
            "an Alloy sysext reads in well under a second; do not install it",
        ) from None
    except Refused as error:
        raise BuildError(f"refusing {path}: {error}", error.hint) from None
    except Malformed as error:
        detail = str(error)
    except (struct.error, OverflowError, IndexError, ValueError):
        detail = "a structure in it is cut short or out of range"
    else:
        return
    raise BuildError(
        f"{path} is not a valid {kind} image: {detail}",
        f"it is damaged or was not made by {maker}; do not install it",
    )
