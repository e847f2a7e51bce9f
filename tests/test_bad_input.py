"""Bad input, fed to the real CLI: each run must end in one clear stderr line, never a traceback,
and leave nothing partial under a final name."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from build.config.spec import source_key
from tests.conftest import VERSION, Invoke, Release
from tests.fakes import MACHINES, elf_binary, release_assets, sums, zip_bytes
from tests.image import EXPECTED_LISTING, listing
from tests.rawserver import Answer, RawServer, head
from tests.results import error_line, ok
from tests.runs import MEMBER, OTHER, ZIP, cache_root, leftovers, outputs

IMAGE_FILES = set(EXPECTED_LISTING)
HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Not Found</title></head>"
    b"<body><h1>404 Not Found</h1></body></html>\n"
)


pytestmark = pytest.mark.usefixtures("missing_is_404")


def assets_with(members: dict[str, bytes]) -> dict[str, bytes]:
    """A release whose amd64 zip holds `members`, with a SHA256SUMS that matches it."""
    assets = release_assets()
    assets[ZIP] = zip_bytes(members)
    del assets["SHA256SUMS"]
    assets["SHA256SUMS"] = sums(assets)
    return assets


def cached(tmp_path: Path, base_url: str, version: str, name: str = ZIP) -> Path:
    return cache_root(tmp_path) / source_key(base_url) / f"v{version}" / name


def fails_cleanly(
    result: subprocess.CompletedProcess,
    tmp_path: Path,
    *fragments: str,
    outputs_before: dict[str, bytes] | None = None,
) -> str:
    """error_line(), and nothing partial: no image or checksum (beyond `outputs_before`, which
    must be untouched) and no temporary file left behind."""
    line = error_line(result, *fragments)
    assert outputs(tmp_path) == (outputs_before or {})
    assert leftovers(tmp_path) == []
    return line


def gets(release: Release, path: str) -> int:
    return sum(
        1 for request, _ in release.server.log if request.method == "GET" and request.path == path
    )


# 1. Architecture


def test_unknown_arch_lists_the_valid_ones(
    invoke: Invoke, release: Release, tmp_path: Path
) -> None:
    line = fails_cleanly(invoke("all", "--arch=riscv64"), tmp_path, "riscv64", "amd64", "arm64")
    assert "architecture" in line
    assert release.requests() == []


# 2. Version syntax


@pytest.mark.parametrize(
    "version", ["1.10", "newest", "1.10.2-beta", "1.10.2-rc", "1.10.2-rc.1.2", "1.10.2.1", "v"]
)
def test_malformed_version_is_refused_before_any_download(
    invoke: Invoke, release: Release, tmp_path: Path, version: str
) -> None:
    line = fails_cleanly(invoke("all", f"--version={version}"), tmp_path, "invalid version")
    assert repr(version) in line
    assert "X.Y.Z" in line
    assert release.requests() == []


# 3. and 4. Missing release, missing SHA256SUMS, missing zip


def test_version_that_does_not_exist(invoke: Invoke, release: Release, tmp_path: Path) -> None:
    sums_url = f"{release.base_url}/v9.9.9/SHA256SUMS"
    line = fails_cleanly(
        invoke("all", "--version=9.9.9", "--retries=0"), tmp_path, "9.9.9", "404", sums_url
    )
    assert "not found" in line


def test_missing_sha256sums_beside_an_existing_zip_is_told_apart(
    invoke: Invoke, release: Release, tmp_path: Path
) -> None:
    assets = release_assets()
    del assets["SHA256SUMS"]
    release.publish(OTHER, assets)
    line = fails_cleanly(
        invoke("all", f"--version={OTHER}", "--retries=0"),
        tmp_path,
        "no SHA256SUMS",
        f"{release.base_url}/v{OTHER}/SHA256SUMS",
    )
    assert "not found" not in line  # not the message of a version that does not exist
    assert not cached(tmp_path, release.base_url, OTHER).exists()


def test_zip_missing_from_an_existing_release(
    invoke: Invoke, release: Release, tmp_path: Path
) -> None:
    assets = release_assets()
    del assets[ZIP]
    release.publish(OTHER, assets)
    fails_cleanly(
        invoke("all", f"--version={OTHER}", "--retries=0"),
        tmp_path,
        f"{release.base_url}/v{OTHER}/{ZIP}",
        "404",
    )


# 5. and 6. SHA256SUMS that does not vouch for the zip


def test_sha256sums_without_a_line_for_the_zip(
    invoke: Invoke, release: Release, tmp_path: Path
) -> None:
    assets = release_assets()
    assets["SHA256SUMS"] = sums({k: v for k, v in assets.items() if k not in (ZIP, "SHA256SUMS")})
    release.publish(OTHER, assets)
    fails_cleanly(
        invoke("all", f"--version={OTHER}", "--retries=0"),
        tmp_path,
        f"{release.base_url}/v{OTHER}/SHA256SUMS",
        f"no line for {ZIP}",
    )
    assert not cached(tmp_path, release.base_url, OTHER).exists()


def test_sha256sums_with_a_different_hash_for_the_zip(
    invoke: Invoke, release: Release, tmp_path: Path
) -> None:
    assets = release_assets()
    assets["SHA256SUMS"] = sums({**assets, ZIP: b"some other zip"})
    release.publish(OTHER, assets)
    line = fails_cleanly(
        invoke("all", f"--version={OTHER}", "--retries=0"),
        tmp_path,
        f"{release.base_url}/v{OTHER}/{ZIP}",
        "does not match",
    )
    assert hashlib.sha256(assets[ZIP]).hexdigest() in line
    assert hashlib.sha256(b"some other zip").hexdigest() in line
    assert not cached(tmp_path, release.base_url, OTHER).exists()


# 7. A download cut off before its Content-Length


def cut_off(files: dict[str, bytes], cut: str, keep: int) -> Answer:
    """Serve `files` whole, but only the first `keep` bytes of `cut` under its full
    Content-Length, then close the connection."""

    def answer(method: str, path: str, _headers: dict[str, str]) -> list[bytes]:
        body = files.get(path)
        if body is None:
            return [head("404 Not Found", {"Content-Length": "0"})]
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(body))}
        if method == "HEAD":
            return [head("200 OK", headers)]
        return [head("200 OK", headers), body[:keep] if path == cut else body]

    return answer


@pytest.fixture
def cut_off_zip() -> Iterator[RawServer]:
    assets = release_assets()
    files = {f"/v{VERSION}/{name}": data for name, data in assets.items()}
    server = RawServer(cut_off(files, cut=f"/v{VERSION}/{ZIP}", keep=len(assets[ZIP]) // 2))
    yield server
    server.stop()


def test_download_cut_off_before_its_content_length(
    invoke: Invoke, tmp_path: Path, cut_off_zip: RawServer
) -> None:
    zip_url = f"{cut_off_zip.base_url}/v{VERSION}/{ZIP}"
    line = fails_cleanly(
        invoke("all", f"--base-url={cut_off_zip.base_url}", "--retries=1"),
        tmp_path,
        zip_url,
        "cut off",
    )
    assert "2 times" in line
    assert len(cut_off_zip.gets(f"/v{VERSION}/{ZIP}")) == 2
    assert not cached(tmp_path, cut_off_zip.base_url, VERSION).exists()


# 8. An HTML error page served with 200


@pytest.mark.parametrize("asset", [ZIP, "SHA256SUMS"])
def test_html_page_instead_of_an_asset(
    invoke: Invoke, release: Release, tmp_path: Path, asset: str
) -> None:
    assets = release_assets()
    assets[asset] = HTML_PAGE
    if asset != "SHA256SUMS":  # listed with its correct hash: the content check must catch it
        del assets["SHA256SUMS"]
        assets["SHA256SUMS"] = sums(assets)
    release.publish(OTHER, assets)
    line = fails_cleanly(
        invoke("all", f"--version={OTHER}", "--retries=0"),
        tmp_path,
        f"{release.base_url}/v{OTHER}/{asset}",
        "HTML",
    )
    assert "not" in line
    assert not cached(tmp_path, release.base_url, OTHER, asset).exists()


# 9. and 10. The zip's members


def test_zip_without_the_binary(invoke: Invoke, release: Release, tmp_path: Path) -> None:
    release.publish(OTHER, assets_with({"README.md": b"hello\n", "alloy": b"wrong name"}))
    line = fails_cleanly(
        invoke("all", f"--version={OTHER}", "--retries=0"), tmp_path, ZIP, f"no {MEMBER}"
    )
    assert "README.md" in line  # says what the zip holds instead


def test_zip_slip_members_are_never_written(
    invoke: Invoke, release: Release, tmp_path: Path
) -> None:
    # Depths chosen so that a naive extractor, whether it resolves names against the working
    # directory (tmp_path) or the staged tree (output/.staging/alloy-V-amd64/TREE), lands them
    # in tmp_path or its parent, where this test looks, never higher up.
    absolute = str(tmp_path / "abs-escape")
    members = {
        "../escape": b"relative escape\n",
        "../../../../escape": b"relative escape\n",
        "../../../../../escape": b"relative escape\n",
        absolute: b"absolute escape\n",
        MEMBER: elf_binary(MACHINES["amd64"]),
    }
    assert set(zipfile.ZipFile(io.BytesIO(assets_with(members)[ZIP])).namelist()) == set(members)
    release.publish(OTHER, assets_with(members))
    ok(invoke("all", f"--version={OTHER}", "--retries=0"))

    for place in (tmp_path.parent, tmp_path, tmp_path / "output", tmp_path / "cache"):
        assert not (place / "escape").exists()
    assert not Path(absolute).exists()
    assert list(tmp_path.parent.rglob("*escape*")) == []
    image = tmp_path / "output" / f"alloy-{OTHER}-amd64.raw"
    assert set(listing(image)) == IMAGE_FILES
    assert leftovers(tmp_path) == []


# 11. and 12. The binary itself


@pytest.mark.parametrize(("arch", "other"), [("amd64", "arm64"), ("arm64", "amd64")])
def test_binary_for_the_other_architecture(
    invoke: Invoke, release: Release, tmp_path: Path, arch: str, other: str
) -> None:
    assets = release_assets()
    assets[f"alloy-linux-{arch}.zip"] = zip_bytes(
        {f"alloy-linux-{arch}": elf_binary(MACHINES[other])}
    )
    del assets["SHA256SUMS"]
    assets["SHA256SUMS"] = sums(assets)
    release.publish(OTHER, assets)
    names = {"amd64": "x86-64", "arm64": "AArch64"}
    line = fails_cleanly(
        invoke("all", f"--version={OTHER}", f"--arch={arch}", "--retries=0"),
        tmp_path,
        f"alloy-linux-{arch}",
        f"built for {names[other]}",
    )
    assert names[arch] in line


@pytest.mark.parametrize(
    ("binary", "problem"),
    [
        (b"#!/bin/sh\necho alloy\n", "not an ELF executable"),
        (b"", "not an ELF executable"),
        (HTML_PAGE, "not an ELF executable"),
        (elf_binary(MACHINES["amd64"], elf_type=1), "not an executable"),
    ],
    ids=["script", "empty", "html", "relocatable-elf"],
)
def test_binary_that_is_not_an_executable_elf(
    invoke: Invoke, release: Release, tmp_path: Path, binary: bytes, problem: str
) -> None:
    release.publish(OTHER, assets_with({MEMBER: binary}))
    fails_cleanly(
        invoke("all", f"--version={OTHER}", "--retries=0"), tmp_path, f"{MEMBER} in {ZIP}", problem
    )
    staged = tmp_path / "output" / ".staging" / f"alloy-{OTHER}-amd64" / "rootfs"
    assert not staged.exists()


# 13. Missing tools


def test_no_mksquashfs_on_path(invoke: Invoke, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    fails_cleanly(
        invoke("all", "--retries=0", env={"PATH": str(empty)}),
        tmp_path,
        "mksquashfs",
        "squashfs-tools",
    )


# 14. A failed rebuild never loses a good image


def _publish_over(release: Release, assets: dict[str, bytes]) -> None:
    """Replace what the server serves for VERSION (its handlers match in registration order)."""
    release.server.clear_all_handlers()
    release.publish(VERSION, assets)


@pytest.mark.parametrize(
    "breakage",
    ["zip-hash-mismatch", "zip-gone", "wrong-arch-binary", "no-mksquashfs", "new-version-404"],
)
def test_failed_rebuild_keeps_the_good_image(
    invoke: Invoke, release: Release, tmp_path: Path, breakage: str
) -> None:
    ok(invoke("all"))
    good = outputs(tmp_path)
    assert set(good) == {
        f"alloy-{VERSION}-amd64.raw",
        f"alloy-{VERSION}-amd64.raw.buildinfo.json",
        f"alloy-{VERSION}-amd64.raw.sha256",
        f"alloy-{VERSION}.raw",
        f"alloy-{VERSION}.raw.sha256",
    }
    cached_zip = cached(tmp_path, release.base_url, VERSION)
    good_zip = cached_zip.read_bytes()

    args = ["all", "--force", "--retries=0"]
    env = None
    original = release_assets()
    if breakage == "zip-hash-mismatch":  # the old SHA256SUMS, a new zip
        _publish_over(release, {**original, ZIP: release_assets(seed=2)[ZIP]})
        fragments = [f"{release.base_url}/v{VERSION}/{ZIP}", "does not match"]
    elif breakage == "zip-gone":
        _publish_over(release, {k: v for k, v in original.items() if k != ZIP})
        fragments = [f"{release.base_url}/v{VERSION}/{ZIP}", "404"]
    elif breakage == "wrong-arch-binary":
        bad = assets_with({MEMBER: elf_binary(MACHINES["arm64"])})
        _publish_over(release, bad)
        fragments = [MEMBER, "AArch64"]
    elif breakage == "no-mksquashfs":
        empty = tmp_path / "empty-bin"
        empty.mkdir()
        env = {"PATH": str(empty)}
        fragments = ["mksquashfs", "squashfs-tools"]
    else:
        assets = dict(original)
        del assets[ZIP]
        release.publish(OTHER, assets)
        args = ["all", f"--version={OTHER}", "--retries=0"]
        fragments = [f"{release.base_url}/v{OTHER}/{ZIP}", "404"]

    fails_cleanly(invoke(*args, env=env), tmp_path, *fragments, outputs_before=good)
    if breakage in ("zip-hash-mismatch", "zip-gone"):  # a failed download keeps the cached zip
        assert cached_zip.read_bytes() == good_zip


# A cached zip corrupted after download


def test_corrupted_cached_zip_is_downloaded_again_and_the_build_goes_on(
    invoke: Invoke, release: Release, tmp_path: Path
) -> None:
    ok(invoke("all"))
    good = outputs(tmp_path)
    cached_zip = cached(tmp_path, release.base_url, VERSION)
    data = bytearray(cached_zip.read_bytes())
    data[200:216] = b"\xff" * 16
    cached_zip.write_bytes(bytes(data))
    shutil.rmtree(tmp_path / "output" / ".staging")
    zip_path = f"/v{VERSION}/{ZIP}"
    downloads = gets(release, zip_path)

    result = ok(invoke("all"))
    assert "does not match its SHA256SUMS line" in result.stdout
    assert gets(release, zip_path) == downloads + 1
    assert (
        hashlib.sha256(cached_zip.read_bytes()).hexdigest()
        == hashlib.sha256(release_assets()[ZIP]).hexdigest()
    )
    assert outputs(tmp_path) == good  # the same zip: the same image, bit for bit
    assert set(listing(tmp_path / "output" / f"alloy-{VERSION}-amd64.raw")) == IMAGE_FILES
    assert leftovers(tmp_path) == []


def test_encrypted_zip_member_is_one_line(invoke: Invoke, release: Release, tmp_path: Path) -> None:
    data = bytearray(zip_bytes({MEMBER: elf_binary(MACHINES["amd64"])}))
    # Mark the member encrypted, in its local and central headers: zipfile then refuses it.
    data[6] |= 0x1
    central = data.index(b"PK\x01\x02")
    data[central + 8] |= 0x1
    assets = {ZIP: bytes(data)}
    assets["SHA256SUMS"] = sums(assets)
    release.publish(OTHER, assets)
    fails_cleanly(invoke("all", f"--version={OTHER}"), tmp_path, f"holds {MEMBER} encrypted")


def test_bad_retries_setting_is_one_line(invoke: Invoke, tmp_path: Path) -> None:
    fails_cleanly(invoke("all", env={"INVOKE_RETRIES": "abc"}), tmp_path, "invalid retries 'abc'")


def test_malformed_base_url_is_not_retried(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke("all", "--base-url=http://127.0.0.1:99999/alloy")
    fails_cleanly(
        result,
        tmp_path,
        "refusing the URL 'http://127.0.0.1:99999/alloy' (from --base-url): its port is not",
    )
    assert "retrying" not in result.stdout


def test_no_mksquashfs_is_said_before_downloading_anything(
    invoke: Invoke, release: Release, tmp_path: Path
) -> None:
    empty = tmp_path / "empty-path"
    empty.mkdir()
    fails_cleanly(invoke("all", env={"PATH": str(empty)}), tmp_path, "squashfs-tools")
    assert release.requests() == []
    assert not (tmp_path / "output").exists()
    assert not cache_root(tmp_path).exists()
