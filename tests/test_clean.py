"""Output names this tool recognises as its own, and the compat link's fallback to a copy."""

from __future__ import annotations

import errno
import os
from collections import Counter
from pathlib import Path

import pytest

from build.config.spec import parse_output_name, parse_staging_name
from build.image import alias
from build.pipeline.clean import output_kind, removed_line
from build.pipeline.runner import Runner
from tests.specs import spec_of


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("alloy-1.10.2-amd64.raw", ("1.10.2", "amd64")),
        ("alloy-1.10.2-arm64.raw.sha256", ("1.10.2", "arm64")),
        ("alloy-1.10.2.raw", ("1.10.2", None)),
        ("alloy-1.10.2-arm64.raw.buildinfo.json", ("1.10.2", "arm64")),
        ("alloy-1.11.0-rc.1.raw.sha256", ("1.11.0-rc.1", None)),
        (".alloy-1.10.2-amd64.raw.x8f2_a.tmp", ("1.10.2", "amd64")),
        ("alloy-1.10.2-riscv64.raw", None),
        ("alloy-config.raw", None),
        ("alloy-1.10.2-amd64.raw.bak", None),
        ("notes.txt", None),
        ("SHA256SUMS", None),
    ],
)
def test_parse_output_name(name: str, parsed: tuple[str, str | None] | None) -> None:
    assert parse_output_name(name) == parsed


def test_parse_staging_name() -> None:
    assert parse_staging_name("alloy-1.10.2-arm64") == ("1.10.2", "arm64")
    assert parse_staging_name("alloy-1.10.2") == ("1.10.2", None)  # the compat name's record
    assert parse_staging_name("alloy-1.10.2-x86") is None


def test_compat_name_is_a_copy_where_hard_links_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = tmp_path / "alloy-1.10.2-amd64.raw"
    image.write_bytes(b"squashfs bytes")
    os.utime(image, ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))

    def no_links(*_: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(alias.os, "link", no_links)
    compat = tmp_path / "alloy-1.10.2.raw"
    runner = Runner((), spec_of({"output_dir": str(tmp_path)}))
    assert alias.link_or_copy(runner, image, compat) == "copied"
    assert compat.read_bytes() == image.read_bytes()
    assert compat.stat().st_ino != image.stat().st_ino
    # The copy keeps the image's time, so the alias step sees it as up to date.
    assert compat.stat().st_mtime_ns == image.stat().st_mtime_ns
    made = sorted(p.name for p in tmp_path.iterdir())
    assert made == [".staging", image.name, compat.name]  # .staging: the manifest of outputs


@pytest.mark.parametrize(
    ("relative", "kind"),
    [
        ("alloy-1.10.2-amd64.raw", "image"),
        ("alloy-1.10.2-amd64.raw.sha256", "checksum"),
        ("alloy-1.10.2-amd64.raw.buildinfo.json", "buildinfo"),
        ("SHA256SUMS", "fleet"),
        ("index.json", "fleet"),
        ("sysupdate/amd64/alloy.transfer", "fleet"),
        ("flatcar/alloy.bu", "fleet"),
        ("SHA256SUMS.gpg", "signature"),
        (".staging/alloy-1.10.2-amd64/pack.stamp", "record"),
        # A file the manifest records by a name this version does not know: not a fleet file.
        ("notes.txt", "other"),
        ("alloy-1.10.2-amd64.raw.bak", "other"),
    ],
)
def test_clean_counts_each_file_as_what_it_is(relative: str, kind: str) -> None:
    assert output_kind(Path(relative)) == kind


def test_clean_says_other_files_as_such() -> None:
    kinds = Counter({"fleet": 1, "other": 2})
    assert removed_line(kinds, "output") == "removed from output: 1 fleet file, 2 other files"
