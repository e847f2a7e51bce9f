"""The pack step says how far it got (issue 22): a packer that prints nothing while it works is
watched through the bytes it has read or written (build/core/toolprogress.py, build/core/run.py's
watch). Fake packers read and write in two halves and wait between them until the progress
shown has reached the first: counters, not timings."""

from __future__ import annotations

import os
import re
import sys
import time
import uuid
from pathlib import Path
from subprocess import CompletedProcess
from typing import ClassVar

import pytest

from build.core import run as running
from build.core import toolprogress
from build.core.errors import BuildError
from build.core.report import PlainProgress
from build.core.run import run, run_bytes
from build.formats.erofs import pack_erofs
from build.formats.squashfs import pack_squashfs
from build.model.arch import ARCHES

HALF = 2 << 20  # bytes: far more than the fake's own start-up reads (~40 KiB)

# Reads every file of the tree it is given (the argument that is a directory) and writes what
# it read to the image (the other path): half of the bytes, then waits for GO, then the rest.
FAKE_PACKER = """\
import os, sys, time
tree = next(a for a in sys.argv[1:] if os.path.isdir(a))
image = next(a for a in sys.argv[1:] if a.endswith(".raw"))
go, half = {go!r}, {half}
done = 0
with open(image, "wb", buffering=0) as out:
    for directory, _, files in os.walk(tree):
        for name in sorted(files):
            if os.path.islink(os.path.join(directory, name)):
                continue
            with open(os.path.join(directory, name), "rb") as f:
                while chunk := f.read(65536):
                    out.write(chunk)
                    done += len(chunk)
                    if done == half:
                        deadline = time.monotonic() + 60
                        while not os.path.exists(go):
                            if time.monotonic() > deadline:
                                sys.exit("nobody said go")
                            time.sleep(0.01)
"""


class Recorded(PlainProgress):
    """The plain progress lines, and its counter: at HALF, the fake packer may go on."""

    made: ClassVar[list[Recorded]] = []

    def __init__(self, label: str, total: int | None, go: Path):
        super().__init__(label, total, sys.stdout, interval=0)  # a line for each update
        self.go = go
        self.seen: list[int] = []
        Recorded.made.append(self)

    def update(self, done: int) -> None:
        super().update(done)
        self.seen.append(self.done)
        if self.done >= HALF:
            self.go.touch()


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Fake mksquashfs and mkfs.erofs first on PATH; a tree of 2 x HALF bytes; quick watches."""
    go = tmp_path / "go"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("mksquashfs", "mkfs.erofs"):
        script = bin_dir / tool
        script.write_text(f"#!{sys.executable}\n" + FAKE_PACKER.format(go=str(go), half=HALF))
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(running, "WATCH_EVERY", 0.01)
    monkeypatch.setattr(toolprogress, "QUIET_FOR", 0.0)
    Recorded.made = []
    monkeypatch.setattr(toolprogress, "progress", lambda label, total: Recorded(label, total, go))
    tree = tmp_path / "tree"
    (tree / "usr/local/bin").mkdir(parents=True)
    (tree / "usr/local/bin/alloy").write_bytes(os.urandom(2 * HALF))
    (tree / "usr/local/bin/link").symlink_to("alloy")  # not read, not counted
    return tree


def pack_with(packer: str, tree: Path, image: Path) -> None:
    if packer == "squashfs":
        pack_squashfs(tree, image, "xz", ARCHES["amd64"])
    else:
        pack_erofs(tree, image, "lz4hc", uuid.uuid4())


def test_mkfs_erofs_shows_the_share_of_the_tree_it_has_read(
    fake: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "alloy.raw"
    pack_with("erofs", fake, image)
    assert image.stat().st_size == 2 * HALF
    [shown] = Recorded.made
    assert shown.total == 2 * HALF  # the regular files' bytes
    assert any(HALF <= done < 2 * HALF for done in shown.seen)  # seen while it waited
    assert shown.seen == sorted(shown.seen) and shown.seen[-1] <= 2 * HALF
    lines = capsys.readouterr().out.splitlines()
    assert any(re.fullmatch(r" {9}packing: 2\.\d MiB of 4\.0 MiB \(5\d%\)", line) for line in lines)


def test_mksquashfs_shows_what_it_has_written(
    fake: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """mksquashfs reads the whole tree ahead of its compressors: its writes tell how far it got,
    of a size nobody knows before."""
    image = tmp_path / "alloy.raw"
    pack_with("squashfs", fake, image)
    [shown] = Recorded.made
    assert shown.total is None
    assert any(HALF <= done < 2 * HALF for done in shown.seen)  # seen while it waited
    assert shown.seen == sorted(shown.seen)
    lines = capsys.readouterr().out.splitlines()
    assert f"{'':9}packing, written so far: 2.0 MiB" in lines


def test_a_quick_pack_shows_no_progress(
    fake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(toolprogress, "QUIET_FOR", 3600.0)
    (tmp_path / "go").touch()  # the fake packer does not wait
    pack_with("squashfs", fake, tmp_path / "alloy.raw")
    assert Recorded.made == []
    assert capsys.readouterr().out == ""


def test_the_packer_is_asked_exactly_as_before(
    fake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Watching changes nothing the packer sees: same command line, same environment."""
    asked: list[tuple[list[str], dict[str, str] | None]] = []

    def watched(argv: list[str], env: dict[str, str], *_: object) -> CompletedProcess[bytes]:
        asked.append((argv, env))
        return CompletedProcess(argv, 0, b"", b"")

    monkeypatch.setattr(running, "_watched", watched)
    pack_with("squashfs", fake, tmp_path / "alloy.raw")
    argv, env = asked[0]
    assert argv[1:] == [
        str(fake), str(tmp_path / "alloy.raw"), "-noappend", "-all-root", "-no-sparse", "-comp",
        "xz", "-b", "1M", "-no-progress",
    ]  # fmt: skip
    assert env is not None and sorted(env) == ["LC_ALL", "PATH", "SOURCE_DATE_EPOCH"]


# run()'s watch


def test_a_watched_command_gives_its_output_and_stdin_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(running, "WATCH_EVERY", 0.01)
    pids: list[int] = []
    script = "import sys, time; data = sys.stdin.read(); time.sleep(0.2); print(data.upper())"
    out = run_bytes([sys.executable, "-c", script], stdin=b"abc", watch=pids.append)
    assert out == b"ABC\n"
    assert pids and set(pids) == {pids[0]}  # called while it ran, with its pid


def test_a_failing_watch_stops_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(running, "WATCH_EVERY", 0.01)
    pids: list[int] = []

    def watch(pid: int) -> None:
        pids.append(pid)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run([sys.executable, "-c", "import time; time.sleep(60)"], watch=watch)
    assert not os.path.exists(f"/proc/{pids[0]}")  # killed and reaped


def test_a_watched_command_that_does_not_answer_is_stopped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(running, "WATCH_EVERY", 0.01)
    started = time.monotonic()
    with pytest.raises(BuildError, match=r"did not answer in 0\.3 s"):
        run([sys.executable, "-c", "import time; time.sleep(60)"], timeout=0.3, watch=print)
    assert time.monotonic() - started < 30


def test_io_bytes_is_none_for_a_process_that_is_gone() -> None:
    assert toolprogress.io_bytes(2**22 + 12345, toolprogress.READ) is None
