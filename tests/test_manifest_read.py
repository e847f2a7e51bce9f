"""Manifest.read_owned: the one read of a small file the tool wrote (index.json) before it is
trusted: the bytes hashed are the bytes parsed; a symlink, a FIFO, a changed or an oversized
file is not the tool's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from build.model import manifest


def recorded(output: Path, name: str, text: bytes) -> manifest.Manifest:
    output.mkdir(exist_ok=True)
    (output / name).write_bytes(text)
    with manifest.output_dir_lock(output):
        manifest.record(output, [output / name])
    return manifest.load(output)


def test_the_tools_unchanged_file_is_read(tmp_path: Path) -> None:
    owned = recorded(tmp_path / "out", "index.json", b'{"images": []}\n')
    assert owned.read_owned(tmp_path / "out", "index.json") == b'{"images": []}\n'
    assert owned.read_owned(tmp_path / "out", "other.json") is None  # never recorded


def test_a_changed_file_is_not_the_tools(tmp_path: Path) -> None:
    output = tmp_path / "out"
    owned = recorded(output, "index.json", b"{}\n")
    (output / "index.json").write_bytes(b'{"transport": {}}\n')
    assert owned.read_owned(output, "index.json") is None


def test_a_symlink_or_a_fifo_in_its_place_is_never_followed(tmp_path: Path) -> None:
    output = tmp_path / "out"
    owned = recorded(output, "index.json", b"{}\n")
    (tmp_path / "elsewhere.json").write_bytes(b"{}\n")  # the same bytes, through a link
    (output / "index.json").unlink()
    (output / "index.json").symlink_to(tmp_path / "elsewhere.json")
    assert owned.read_owned(output, "index.json") is None
    (output / "index.json").unlink()
    os.mkfifo(output / "index.json")  # would block a plain read forever
    assert owned.read_owned(output, "index.json") is None


def test_a_file_over_the_bound_is_not_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "out"
    owned = recorded(output, "index.json", b"x" * 100)
    assert owned.read_owned(output, "index.json") == b"x" * 100
    monkeypatch.setattr(manifest, "MAX_OWNED_READ", 99)
    assert owned.read_owned(output, "index.json") is None
