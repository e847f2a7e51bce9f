"""build.core.fileio: atomic files and directories."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from build.core.fileio import atomic_dir, atomic_path, file_lock, write_text_atomic


class Boom(Exception):
    pass


@pytest.fixture
def umask() -> Iterator[None]:
    """Restore the process umask after a test changes it."""
    saved = os.umask(0o022)
    os.umask(saved)
    try:
        yield
    finally:
        os.umask(saved)


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


# file_lock: a wait is said, with the holder's pid, and how long it took (issue 22)

REPO = Path(__file__).resolve().parent.parent
LOCKER = """
import sys
from pathlib import Path
from build.core.fileio import file_lock
with file_lock(Path(sys.argv[1]), sys.argv[3] == "shared", waiting_for=sys.argv[2] or None):
    print("held", flush=True)
    sys.stdin.readline()
"""


def locker(lock: Path, waiting_for: str = "", how: str = "alone") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(lock), waiting_for, how],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_a_second_process_says_it_waits_for_the_holder_once_and_how_long(tmp_path: Path) -> None:
    lock = tmp_path / "output" / ".staging" / "outputs.lock"
    holder = locker(lock)
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    waiter = locker(lock, "another build in output")
    assert waiter.stdout is not None and waiter.stdin is not None
    first = waiter.stdout.readline()  # said before it waits: the holder still holds it
    assert first == f"lock     waiting for another build in output (pid {holder.pid}) …\n"
    holder.communicate("\n", timeout=30)
    rest, _ = waiter.communicate("\n", timeout=30)
    waited, held = rest.splitlines()
    assert re.fullmatch(r"lock     waited \d+\.\d s for another build in output", waited)
    assert held == "held"


def test_a_wait_for_several_holders_names_each(tmp_path: Path) -> None:
    lock = tmp_path / "output" / ".staging" / "output.lock"
    holders = [locker(lock, how="shared") for _ in range(2)]  # two builds
    for holder in holders:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    waiter = locker(lock, "another build or release in output")  # clean
    assert waiter.stdout is not None
    pids = ", ".join(str(pid) for pid in sorted(holder.pid for holder in holders))
    expected = f"lock     waiting for another build or release in output (pids {pids}) …\n"
    assert waiter.stdout.readline() == expected
    for holder in holders:
        holder.communicate("\n", timeout=30)
    rest, _ = waiter.communicate("\n", timeout=30)
    assert rest.splitlines()[-1] == "held"


def test_a_lock_taken_at_once_says_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with file_lock(tmp_path / "x.lock", waiting_for="another build in output"):
        pass
    assert capsys.readouterr().out == ""
