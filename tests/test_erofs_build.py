"""invoke all --format=erofs: an EROFS image built, verified, reproducible, and released on its
own (a release directory holds one format)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from build.formats.table import image_format
from build.read import erofs
from tests.conftest import VERSION, Invoke
from tests.results import error_line, ok

pytestmark = pytest.mark.needs("mkfs.erofs", "mksquashfs")
IMAGE = f"alloy-{VERSION}-amd64.raw"
PUBLISH = "--publish-url=https://example.com/alloy/"


def built(tmp_path: Path, directory: str) -> Path:
    return tmp_path / directory / IMAGE


def test_an_erofs_build_is_verified_reproducible_and_recorded(
    invoke: Invoke, tmp_path: Path
) -> None:
    out = ok(invoke("all", "--format=erofs", "--output-dir=one")).stdout
    image = built(tmp_path, "one")
    assert image_format(image) == "erofs"
    with image.open("rb") as file:
        file.seek(erofs.SUPERBLOCK_OFFSET)
        assert int.from_bytes(file.read(4), "little") == erofs.MAGIC
    assert "packed" in out and "mkfs.erofs" in out
    assert "FAIL" not in out
    info = json.loads(image.with_name(IMAGE + ".buildinfo.json").read_text())
    assert info["format"] == "erofs" and info["compression"] == "lz4hc"
    assert info["mkfs.erofs"] and info["verify"]["result"] == "passed"
    if os.geteuid() == 0:  # the merges ran (not skipped) as root
        assert not [s for s in info["verify"]["skipped"] if "merge" in s]
    assert (tmp_path / "one" / f"alloy-{VERSION}.raw").read_bytes() == image.read_bytes()
    # Another directory, another umask: the same bytes.
    ok(invoke("all", "--format=erofs", "--output-dir=two", umask=0o077))
    assert built(tmp_path, "two").read_bytes() == image.read_bytes()
    # Up to date, and a change of format rebuilds.
    assert "up to date" in ok(invoke("all", "--format=erofs", "--output-dir=one")).stdout
    ok(invoke("all", "--output-dir=one"))
    assert image_format(image) == "squashfs"


def test_uncompressed_erofs_and_verify_image(invoke: Invoke, tmp_path: Path) -> None:
    ok(invoke("all", "--format=erofs", "--compression=none", "--output-dir=plain"))
    image = built(tmp_path, "plain")
    info = json.loads(image.with_name(IMAGE + ".buildinfo.json").read_text())
    assert info["compression"] == "none"
    elsewhere = tmp_path / "alloy.raw"
    shutil.copyfile(image, elsewhere)
    checked = ok(invoke("verify", f"--image={elsewhere}", "--format=erofs", "--compression=none"))
    assert "checks passed" in checked.stdout
    # Without --format: the image's own format is checked, and said.
    found = ok(invoke("verify", f"--image={elsewhere}")).stdout
    assert "ok   superblock: EROFS, none compression, 4096-byte blocks" in found
    assert "checks passed" in found


def test_verify_with_another_format_than_the_build_says_so(invoke: Invoke) -> None:
    ok(invoke("all", "--format=erofs"))
    error_line(invoke("verify", "--format=squashfs"), "was built with --format=erofs, not ")
    assert "as built: --format=erofs --compression=lz4hc " in ok(invoke("verify")).stdout


def test_a_bad_format_or_compression_pair_is_one_line(invoke: Invoke, tmp_path: Path) -> None:
    config = tmp_path / "invoke.yaml"
    config.write_text("compression: xz\n")
    line = error_line(invoke("-f", str(config), "all", "--format=erofs"))
    assert "compression 'xz' (from compression in the -f file)" in line
    assert "format 'erofs' (from --format)" in line and "lz4hc, none" in line
    error_line(invoke("all", "--format=ext4"), "unknown format 'ext4'", "squashfs, erofs")
    assert not (tmp_path / "output").exists()


def test_a_missing_mkfs_erofs_is_one_line_naming_the_package(
    invoke: Invoke, tmp_path: Path
) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("mksquashfs", "xz"):
        found = shutil.which(tool)
        if found:
            (bare / tool).symlink_to(found)
    line = error_line(invoke("all", "--format=erofs", env={"PATH": str(bare)}), "mkfs.erofs")
    assert "erofs-utils" in line
    assert not (tmp_path / "output" / IMAGE).exists()


def test_release_refuses_a_directory_that_mixes_formats(invoke: Invoke, tmp_path: Path) -> None:
    ok(invoke("all", "--format=erofs", "--output-dir=mixed"))
    ok(invoke("all", "--arch=arm64", "--output-dir=mixed"))
    line = error_line(invoke("release", PUBLISH, "--output-dir=mixed"), "mixes image formats")
    assert "erofs: " in line and "squashfs: " in line and "output directory and a URL" in line
    assert not (tmp_path / "mixed" / "index.json").exists()
    assert not (tmp_path / "mixed" / "SHA256SUMS").exists()


def test_an_erofs_release_says_so_in_index_json(invoke: Invoke, tmp_path: Path) -> None:
    ok(invoke("all", "--format=erofs", "--output-dir=feed"))
    ok(invoke("release", PUBLISH, "--output-dir=feed"))
    index = json.loads((tmp_path / "feed" / "index.json").read_text())
    assert {image["format"] for image in index["images"]} == {"erofs"}
    assert all(image["mkfs.erofs"] for image in index["images"])
    assert all("mksquashfs" not in image for image in index["images"])


def test_release_refuses_an_image_that_is_not_the_format_its_build_info_says(
    invoke: Invoke, tmp_path: Path
) -> None:
    ok(invoke("all", "--output-dir=liar"))
    info_path = tmp_path / "liar" / (IMAGE + ".buildinfo.json")
    info = json.loads(info_path.read_text())
    info_path.write_text(json.dumps({**info, "format": "erofs", "mkfs.erofs": "1.5"}))
    error_line(invoke("release", PUBLISH, "--output-dir=liar"), "is not erofs")


def test_release_refuses_a_build_info_naming_a_format_not_in_the_table(
    invoke: Invoke, tmp_path: Path
) -> None:
    ok(invoke("all", "--output-dir=odd"))
    info_path = tmp_path / "odd" / (IMAGE + ".buildinfo.json")
    info = json.loads(info_path.read_text())
    # Any JSON, not only a string: a list once crashed the lookup with a traceback.
    for named, shown in (("ext4", "'ext4'"), (["erofs"], "\"['erofs']\"")):
        info_path.write_text(json.dumps({**info, "format": named}))
        error_line(
            invoke("release", PUBLISH, "--output-dir=odd"), f"names an unknown format {shown}"
        )
        assert not (tmp_path / "odd" / "index.json").exists()
        assert not (tmp_path / "odd" / "SHA256SUMS").exists()
