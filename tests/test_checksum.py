"""build.core.sums and build.image.checksum: sha256 of files and sha256sum-compatible `.sha256`
files."""

from __future__ import annotations

import hashlib
import random
import subprocess
from pathlib import Path

import pytest

from build.core.errors import BuildError
from build.core.sums import file_sha256, parse_sums, sums_line
from build.image import checksum as checksumming
from build.image.checksum import read_checksum
from build.model.names import checksum_file
from build.pipeline.runner import Runner
from tests.specs import spec_of

A = hashlib.sha256(b"a").hexdigest()
B = hashlib.sha256(b"b").hexdigest()
C = hashlib.sha256(b"c").hexdigest()


def test_parse_sums_text_and_binary_markers() -> None:
    text = f"{A}  alloy-linux-amd64.zip\n{B} *alloy-linux-arm64.zip\n"
    assert parse_sums(text) == {"alloy-linux-amd64.zip": A, "alloy-linux-arm64.zip": B}


def test_parse_sums_strips_dot_slash() -> None:
    text = f"{A}  ./alloy-linux-amd64.zip\n{B} *./SHA256SUMS.sig\n{C}  dir/./x\n"
    assert parse_sums(text) == {"alloy-linux-amd64.zip": A, "SHA256SUMS.sig": B, "dir/./x": C}


def test_parse_sums_ignores_blank_and_garbage_lines() -> None:
    text = "\n".join(
        [
            "",
            "   ",
            "# a comment",
            f"SHA256 (file.zip) = {A}",  # BSD style: not ours
            f"{A[:-1]}  short-hash",
            f"{A}0  long-hash",
            f"{'g' * 64}  not-hex",
            f"{A} one-space",
            f"{A}",
            f"{B}  good.zip",
            "",
        ]
    )
    assert parse_sums(text) == {"good.zip": B}


def test_parse_sums_lowercases_uppercase_hex() -> None:
    assert parse_sums(f"{A.upper()}  file.zip\n") == {"file.zip": A}


def test_parse_sums_crlf_and_no_final_newline() -> None:
    assert parse_sums(f"{A}  a.zip\r\n{B}  b.zip") == {"a.zip": A, "b.zip": B}


def test_parse_sums_empty() -> None:
    assert parse_sums("") == {}


def test_sums_line_format() -> None:
    assert sums_line(A, "alloy-1.10.2-amd64.raw") == f"{A}  alloy-1.10.2-amd64.raw\n"


def test_sums_line_round_trips() -> None:
    assert parse_sums(sums_line(A, "x.raw") + sums_line(B, "y.raw")) == {"x.raw": A, "y.raw": B}


def checksum_step(output_dir: Path, image_bytes: bytes) -> Path:
    """The checksum step's .sha256 of an image of `image_bytes`, made as a build makes it."""
    runner = Runner((), spec_of({"version": "1.10.2", "output_dir": str(output_dir)}))
    runner.spec.image.parent.mkdir(parents=True, exist_ok=True)
    runner.spec.image.write_bytes(image_bytes)
    try:
        checksumming.make(runner)
    finally:
        runner.close()
    return checksum_file(runner.spec.image)


@pytest.mark.needs("sha256sum")
def test_the_checksum_step_passes_sha256sum_check(tmp_path: Path) -> None:
    checksum = checksum_step(tmp_path, random.Random(7).randbytes(300_000))
    image = tmp_path / "alloy-1.10.2-amd64.raw"

    result = subprocess.run(
        ["sha256sum", "-c", checksum.name], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "alloy-1.10.2-amd64.raw: OK\n"

    # And the check really checks: one changed byte fails it.
    image.write_bytes(b"X" + image.read_bytes()[1:])
    result = subprocess.run(
        ["sha256sum", "-c", checksum.name], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "alloy-1.10.2-amd64.raw: FAILED" in result.stdout


def test_the_checksum_steps_content_and_no_temp_left(tmp_path: Path) -> None:
    checksum = checksum_step(tmp_path, b"b")
    assert checksum.read_text() == f"{B}  alloy-1.10.2-amd64.raw\n"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "alloy-1.10.2-amd64.raw",
        "alloy-1.10.2-amd64.raw.sha256",
    ]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith((".tmp", ".old"))] == []


def test_read_checksum(tmp_path: Path) -> None:
    checksum = tmp_path / "x.raw.sha256"
    checksum.write_text(sums_line(C, "x.raw"))
    assert read_checksum(checksum) == C


def test_read_checksum_accepts_uppercase_binary_marker(tmp_path: Path) -> None:
    checksum = tmp_path / "x.raw.sha256"
    checksum.write_text(f"{C.upper()} *x.raw\n")
    assert read_checksum(checksum) == C


@pytest.mark.parametrize(
    "text", ["", "garbage\n", f"{A}  a.raw\n{B}  b.raw\n"], ids=["empty", "garbage", "two-lines"]
)
def test_read_checksum_refuses_other_than_one_line(tmp_path: Path, text: str) -> None:
    checksum = tmp_path / "x.raw.sha256"
    checksum.write_text(text)
    with pytest.raises(BuildError) as caught:
        read_checksum(checksum)
    assert f"{checksum} is not a one-line sha256sum file" in str(caught.value)


@pytest.mark.parametrize("size", [0, 1, (1 << 20) - 1, 1 << 20, 3 * (1 << 20) + 12345])
def test_file_sha256_matches_hashlib(tmp_path: Path, size: int) -> None:
    data = random.Random(size).randbytes(size)
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
