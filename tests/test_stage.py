"""build.image.stage in process: the tree it lays out, whatever the umask and the staging
directory."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, cast

import pytest

from build.config.spec import BuildSpec
from build.formats.squashfs import COMPRESSORS, bcj_filter, mksquashfs_args
from build.image import content
from build.image.content import IMAGE_EXTENSION_RELEASE as RELEASE
from build.image.content import IMAGE_UNIT as UNIT
from build.image.content import STRICT_XATTR
from build.image.stage import _strip_foreign_xattrs, make, stage
from build.model import manifest
from build.model.arch import ARCHES
from tests.fakes import MACHINES, elf_binary, zip_bytes
from tests.specs import spec_of

if TYPE_CHECKING:
    from build.config.context import StepContext


@pytest.fixture
def spec(tmp_path: Path) -> BuildSpec:
    return spec_of({"output_dir": tmp_path / "out", "cache_dir": tmp_path / "c"})


def test_stage_sets_every_mode_under_a_restrictive_umask(spec: BuildSpec, tmp_path: Path) -> None:
    zip_path = tmp_path / "a.zip"
    zip_path.write_bytes(zip_bytes({"alloy-linux-amd64": elf_binary(MACHINES["amd64"])}))
    tree = tmp_path / "tree"
    tree.mkdir(mode=0o700)
    os.setxattr(tree, "user.xdg.tags", b"inherited by the image root")
    old = os.umask(0o077)
    try:
        stage(spec, zip_path, tree, {UNIT: "[Service]\n", RELEASE: "ID=_any\n"})
    finally:
        os.umask(old)
    modes = {
        str(p.relative_to(tree)): stat.S_IMODE(p.stat().st_mode) for p in [tree, *tree.rglob("*")]
    }
    assert modes == {
        ".": 0o755,
        "usr": 0o755,
        "usr/lib": 0o755,
        "usr/lib/extension-release.d": 0o755,
        "usr/lib/extension-release.d/extension-release.alloy": 0o644,
        "usr/lib/systemd": 0o755,
        "usr/lib/systemd/system": 0o755,
        "usr/lib/systemd/system/alloy.service": 0o644,
        "usr/local": 0o755,
        "usr/local/bin": 0o755,
        "usr/local/bin/alloy": 0o755,
    }
    release = tree / "usr/lib/extension-release.d/extension-release.alloy"
    assert os.listxattr(release) == [STRICT_XATTR]
    assert os.listxattr(tree / "usr/local/bin/alloy") == []
    assert os.listxattr(tree) == []  # stage strips what it did not put there


def test_stray_xattrs_are_stripped_and_the_strict_one_kept(tmp_path: Path) -> None:
    keep = tmp_path / "keep"
    other = tmp_path / "sub" / "other"
    other.parent.mkdir()
    keep.write_text("k")
    other.write_text("o")
    for path in (tmp_path, other.parent, keep, other):
        os.setxattr(path, "user.xdg.tags", b"red")
    os.setxattr(keep, STRICT_XATTR, b"false")
    _strip_foreign_xattrs(tmp_path, {keep: {STRICT_XATTR}})
    assert os.listxattr(keep) == [STRICT_XATTR]
    for path in (tmp_path, other.parent, other):
        assert os.listxattr(path) == []


# What each --compression adds to mksquashfs's command line, per architecture: all of them.
FLAGS = {
    ("xz", "amd64"): ["-comp", "xz"],
    ("xz", "arm64"): ["-comp", "xz"],
    ("xz-bcj", "amd64"): ["-comp", "xz", "-Xbcj", "x86"],
    # squashfs-tools 4.5 has no arm64 filter ("arm" is 32-bit ARM's): plain xz.
    ("xz-bcj", "arm64"): ["-comp", "xz"],
    ("zstd", "amd64"): ["-comp", "zstd", "-Xcompression-level", "19"],
    ("zstd", "arm64"): ["-comp", "zstd", "-Xcompression-level", "19"],
    # Every block stored; xz named (the kernel looks its decompressor up to mount the image).
    ("none", "amd64"): ["-comp", "xz", "-noI", "-noD", "-noF", "-noX"],
    ("none", "arm64"): ["-comp", "xz", "-noI", "-noD", "-noF", "-noX"],
}


def test_every_compression_and_arch_is_listed() -> None:
    assert set(FLAGS) == {(c, a) for c in COMPRESSORS for a in ARCHES}


@pytest.mark.parametrize(("compression", "arch"), FLAGS)
def test_mksquashfs_args_per_compression_and_arch(compression: str, arch: str) -> None:
    flags = FLAGS[compression, arch]
    # Root-owned fresh images, zero blocks stored as data (verify refuses sparse blocks), 1 MiB
    # blocks; no -no-xattrs: the strict=false xattr must reach the image.
    args = mksquashfs_args(compression, ARCHES[arch])
    assert args == ["-noappend", "-all-root", "-no-sparse", *flags, "-b", "1M"]
    assert bcj_filter(compression, ARCHES[arch]) == ("x86" if "-Xbcj" in flags else None)


class _CountingSha256:
    """hashlib.sha256 as build.model.manifest sees it in the tests below: the bytes it hashes,
    counted."""

    hashed = 0

    def __init__(self) -> None:
        self._digest = hashlib.sha256()

    def update(self, data: bytes) -> None:
        _CountingSha256.hashed += len(data)
        self._digest.update(data)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def _staged(spec: BuildSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """The stage step run on a 4 MiB binary, the manifest's hashing counted; the binary."""
    binary = elf_binary(MACHINES["amd64"], size=4 << 20)
    zip_path = tmp_path / "a.zip"
    zip_path.write_bytes(zip_bytes({spec.member: binary}))
    monkeypatch.setattr(_CountingSha256, "hashed", 0)
    monkeypatch.setattr(manifest, "hashlib", SimpleNamespace(sha256=_CountingSha256))
    make(cast("StepContext", SimpleNamespace(spec=spec, once=lambda _, make: make())), zip_path)
    return binary


def test_the_stage_step_records_the_binary_without_reading_it_again(
    spec: BuildSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 26: the binary is hashed as it is unpacked; recording the staged tree for clean
    reads only the small texts, and records the same sha256 as reading the file would."""
    binary = _staged(spec, tmp_path, monkeypatch)
    assert 0 < _CountingSha256.hashed < 64 << 10  # the unit and extension-release only
    staged = spec.rootfs / content.BINARY.path
    assert staged.read_bytes() == binary
    files = manifest.load(spec.output_dir).files
    assert files[manifest.relative(spec.output_dir, staged)] == hashlib.sha256(binary).hexdigest()


def test_a_staged_binary_changed_since_is_hashed_afresh(
    spec: BuildSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sha256 taken while unpacking holds only for the file as written: changed since (its
    size or mtime), the file is read again."""
    binary = _staged(spec, tmp_path, monkeypatch)
    staged = spec.rootfs / content.BINARY.path
    changed = b"\x7fELF changed" + binary[12:]
    staged.write_bytes(changed)
    os.utime(staged, ns=(1, 1))  # a new mtime, however coarse the clock
    assert manifest.regular_sha256(staged) == hashlib.sha256(changed).hexdigest()
