"""The make rule (targets, sources, parameter stamp) and writing files atomically."""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import doing

# Bump when a change to the pipeline changes what a step produces, so old outputs rebuild.
RECIPE = 1


@dataclass(frozen=True)
class Step:
    """What a step produces from what, shaped by which parameters."""

    name: str
    targets: tuple[Path, ...]
    sources: tuple[Path, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    stamp: Path | None = None
    lock: Path | None = None  # held while checking and making targets other builds share


def _stamp_text(step: Step) -> str:
    return json.dumps({"recipe": RECIPE, "params": dict(step.params)}, sort_keys=True) + "\n"


def why_out_of_date(step: Step) -> str | None:
    """The reason `step` must run, or None when it is up to date (make's rule, in ns)."""
    target_times = []
    for target in step.targets:
        try:
            target_times.append(target.stat().st_mtime_ns)
        except FileNotFoundError:
            return f"{target} is missing"
    if step.stamp is not None:
        try:
            recorded = step.stamp.read_text(encoding="utf-8")
        except FileNotFoundError:
            return "no record of a previous build"
        if recorded != _stamp_text(step):
            return "its parameters changed"
    oldest_target = min(target_times, default=None)
    for source in step.sources:
        try:
            source_time = source.stat().st_mtime_ns
        except FileNotFoundError:
            return f"{source} is missing"
        if oldest_target is not None and source_time > oldest_target:
            return f"{source} is newer"
    return None


def forget(step: Step) -> None:
    """Drop a step's record before replacing its targets: a crash then means "rebuild"."""
    if step.stamp is not None:
        step.stamp.unlink(missing_ok=True)


def record(step: Step) -> None:
    """Written last, after every target is in place."""
    if step.stamp is not None:
        write_text_atomic(step.stamp, _stamp_text(step))


@contextlib.contextmanager
def atomic_path(final: Path, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it into place only if the block succeeds."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with doing(path=final):  # a full disk fails a write() that names no file
            yield tmp
        os.chmod(tmp, mode)
        _fsync(tmp)  # the data, then the name: a crash must not leave a named empty file
        os.replace(tmp, final)
        _fsync(final.parent)
    finally:
        tmp.unlink(missing_ok=True)


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
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        old = None
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
            os.replace(final, old / final.name)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def sweep_temps(final: Path) -> list[Path]:
    """Remove what an earlier run killed outright (SIGKILL, power loss) left beside `final`: its
    temporary files and directories (.NAME.xxxx.tmp, .NAME.xxxx.old). Only while holding the
    lock every writer of `final` takes: then none of them is another build's, in use."""
    removed = []
    if not final.parent.is_dir():
        return removed
    for path in final.parent.glob(f".{glob.escape(final.name)}.*"):
        if not (path.name.endswith(".tmp") or path.name.endswith(".old")):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def lock_file(shared: Path) -> Path:
    return shared.with_name(f".{shared.name}.lock")


@contextlib.contextmanager
def file_lock(path: Path, shared: bool = False) -> Iterator[None]:
    """An exclusive (or shared) lock that concurrent builds (nox -j, parallel CI steps) wait on.
    Taken again if the file was removed while waiting (clean removes the lock files it made,
    holding them): a lock on a file no longer named `path` guards nothing."""
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                current = None
            if current != os.fstat(handle.fileno()).st_ino:
                continue
            yield
            return
