"""Writing files atomically (a temporary beside the final name, renamed into place), and the
file locks concurrent builds wait on."""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from build.core.errors import doing
from build.core.report import say
from build.core.signals import held, raise_if_interrupted

# Temporaries beside a file: .NAME.XXXX.tmp while written, .NAME.XXXX.old while replaced
# (build/model/names.py lists them with every other name the tool writes).
TEMP_SUFFIX = ".tmp"
OLD_SUFFIX = ".old"


def temp_prefix(final: Path) -> str:
    return f".{final.name}."


def scratch_prefix(path: Path) -> str:
    """The prefix of a scratch file or directory beside `path`, a final name or a temporary
    of one (.NAME.xxxx.tmp): with TEMP_SUFFIX, sweep_temps(NAME) removes what a killed run
    left under it either way."""
    return f".{path.name.lstrip('.')}."


@contextlib.contextmanager
def _temporary(make: Callable[[], Path]) -> Iterator[Path]:
    """`make()`'s new temporary, for a block whose clean-up removes it: a SIGINT, SIGTERM or
    SIGHUP that comes while it is made is raised inside the block, never between the
    temporary's creation and the clean-up that covers it (it was left behind then)."""
    with held():
        tmp = make()
    try:
        raise_if_interrupted()
        yield tmp
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp)
        else:
            tmp.unlink(missing_ok=True)


def _new_file(final: Path, temp_dir: Path | None = None) -> Path:
    fd, name = tempfile.mkstemp(
        prefix=temp_prefix(final), suffix=TEMP_SUFFIX, dir=temp_dir or final.parent
    )
    try:
        # mkstemp's 0600 goes through the umask: under umask 0277 the owner could not write
        # the file it is handed (root can, anyone else cannot). atomic_path sets the final mode.
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return Path(name)


@contextlib.contextmanager
def atomic_path(final: Path, mode: int = 0o644, temp_dir: Path | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it into place only if the block succeeds.
    With `temp_dir` (on the same file system), the temporary waits there instead, and the
    caller makes `final`'s directory before the block ends: a directory that must not appear
    unless everything written into it succeeds."""
    if temp_dir is None:
        final.parent.mkdir(parents=True, exist_ok=True)
    with _temporary(lambda: _new_file(final, temp_dir)) as tmp:
        with doing(path=final):  # a full disk fails a write() that names no file
            yield tmp
        os.chmod(tmp, mode)
        _fsync(tmp)  # the data, then the name: a crash must not leave a named empty file
        os.replace(tmp, final)
        _fsync(final.parent)


def fsync_dir(directory: Path) -> None:
    """Make renames in `directory` durable."""
    _fsync(directory)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    with atomic_path(path, mode) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a fresh temporary directory beside `final`; swap it in only if the block succeeds."""
    final.parent.mkdir(parents=True, exist_ok=True)
    new_dir = lambda: Path(  # noqa: E731
        tempfile.mkdtemp(prefix=temp_prefix(final), suffix=TEMP_SUFFIX, dir=final.parent)
    )
    with _temporary(new_dir) as tmp:
        yield tmp
        old = None
        if final.exists():
            old = Path(
                tempfile.mkdtemp(prefix=temp_prefix(final), suffix=OLD_SUFFIX, dir=final.parent)
            )
            os.replace(final, old / final.name)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old)


def sweep_temps(final: Path) -> list[Path]:
    """Remove what an earlier run killed outright (SIGKILL, power loss) left beside `final`: its
    temporary files and directories (.NAME.xxxx.tmp, .NAME.xxxx.old). Only while holding the
    lock every writer of `final` takes: then none of them is another build's, in use."""
    removed: list[Path] = []
    if not final.parent.is_dir():
        return removed
    for path in final.parent.glob(glob.escape(temp_prefix(final)) + "*"):
        if not path.name.endswith((TEMP_SUFFIX, OLD_SUFFIX)):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


@contextlib.contextmanager
def file_lock(path: Path, shared: bool = False, waiting_for: str | None = None) -> Iterator[None]:
    """An exclusive (or shared) lock that concurrent builds (nox -j, parallel CI steps) wait on.
    Taken again if the file was removed while waiting (clean removes the lock files it made,
    holding them): a lock on a file no longer named `path` guards nothing.

    With `waiting_for` (who holds it, e.g. "another build in output"), a wait is said once,
    "waiting for WAITING_FOR (pid N) …", and how long it took once the lock is taken: a build
    waiting minutes for another must not look hung."""
    started: float | None = None
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as handle:
            mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
            try:
                fcntl.flock(handle, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                if started is None and waiting_for is not None:
                    started = time.monotonic()
                    say("lock", f"waiting for {waiting_for}{_held_by(handle.fileno())} …")
                fcntl.flock(handle, mode)
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                current = None
            if current != os.fstat(handle.fileno()).st_ino:
                continue
            if started is not None:
                say("lock", f"waited {time.monotonic() - started:.1f} s for {waiting_for}")
            yield
            return


def _held_by(fd: int) -> str:
    """What a wait's line says of the holder: " (pid N)", or "" where /proc/locks lists no
    holder this process can see. The pid is not written into the lock file: clean recognises
    that file by its bytes."""
    pids = _holders(os.fstat(fd))
    if not pids:
        return ""
    return f" ({'pids' if len(pids) > 1 else 'pid'} {', '.join(map(str, pids))})"


def _holders(st: os.stat_result) -> list[int]:
    """The pids /proc/locks lists as holding a lock on the file `st` is of."""
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as listing:
            lines = listing.read().splitlines()
    except OSError:
        return []
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pids = set()
    for line in lines:
        # "1: FLOCK  ADVISORY  WRITE 4242 fe:00:2589620 0 EOF"; a waiter's has "->" after "1:"
        fields = line.split()
        if len(fields) < 6 or fields[1] == "->" or fields[5] != wanted:
            continue
        if fields[4].isdigit() and int(fields[4]) > 0:  # 0: in another pid namespace
            pids.add(int(fields[4]))
    return sorted(pids)
