"""build.config.spec: option validation and every file name derived from the options."""

from __future__ import annotations

import re
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest

from build.config.spec import BuildSpec, source_key
from build.core.errors import BuildError
from build.model.arch import ARCHES
from build.model.names import checksum_file, default_cache_dir
from build.model.versions import version_key
from tests.specs import spec_of

GITHUB = "https://github.com/grafana/alloy/releases/download"


def spec(**options: Any) -> BuildSpec:
    return spec_of(options)


def refused(**options: Any) -> str:
    with pytest.raises(BuildError) as caught:
        spec_of(options)
    return str(caught.value)


@pytest.fixture(autouse=True)
def _cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def test_defaults(tmp_path: Path) -> None:
    s = spec()
    assert s.version == "1.10.2"
    assert s.arch is ARCHES["amd64"]
    assert s.base_url == GITHUB
    assert s.output_dir == Path("output")
    assert s.cache_dir == tmp_path / "xdg-cache" / "alloy-sysext"
    assert s.compression == "xz"
    assert s.config_path == "/var/mnt/storage/alloy/config.alloy"
    assert s.unit_template is None
    assert s.compat_arch == "amd64"
    assert s.retries == 3


def test_none_values_fall_back_to_defaults() -> None:
    s = spec(version=None, arch=None, retries=None, compression=None, base_url=None)
    assert (s.version, s.arch.name, s.retries, s.compression, s.base_url) == (
        "1.10.2",
        "amd64",
        3,
        "xz",
        GITHUB,
    )


# version


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("1.10.2", "1.10.2"),
        ("1.11.0-rc.1", "1.11.0-rc.1"),
        ("v1.10.2", "1.10.2"),
        ("v1.11.0-rc.12", "1.11.0-rc.12"),
        ("0.0.0", "0.0.0"),
    ],
)
def test_version_accepted(given: str, expected: str) -> None:
    assert spec(version=given).version == expected


@pytest.mark.parametrize(
    "given",
    [
        "1.10",
        "latest",
        "1.10.2-beta",
        "1.10.2 ",
        "1.10.2-rc",
        "1.10.2-rc.1.2",
        "vv1.10.2",
        "1.10.2/../x",
        "",
    ],
)
def test_version_refused_with_what_to_use(given: str) -> None:
    text = refused(version=given)
    assert "invalid version" in text
    assert "X.Y.Z" in text
    assert "--version=1.10.2" in text


def test_version_from_yaml_as_float_is_refused() -> None:
    # YAML reads `version: 1.10` as the float 1.1.
    text = refused(version=1.10)
    assert "invalid version '1.1'" in text


def test_version_as_str_is_kept_as_str() -> None:
    s = spec(version="1.10.2")
    assert isinstance(s.version, str) and s.version == "1.10.2"


def test_versions_sort_with_a_release_candidate_before_its_release() -> None:
    """One order for verify (oldest first) and release (the newest per arch)."""
    versions = ["1.10.0", "1.9.10", "1.10.0-rc.2", "1.10.1", "1.10.0-rc.10", "1.9.2"]
    assert sorted(versions, key=version_key) == [
        "1.9.2",
        "1.9.10",
        "1.10.0-rc.2",
        "1.10.0-rc.10",
        "1.10.0",
        "1.10.1",
    ]


# arch


@pytest.mark.parametrize("name", ["amd64", "arm64"])
def test_arch_accepted(name: str) -> None:
    assert spec(arch=name).arch.name == name


@pytest.mark.parametrize(
    ("name", "ours"),
    [("x86-64", "amd64"), ("x86_64", "amd64"), ("aarch64", "arm64")],
)
def test_arch_takes_systemd_s_and_the_kernel_s_names_and_keeps_ours(
    name: str, ours: str, tmp_path: Path
) -> None:
    built = spec(arch=name, output_dir=tmp_path / "out")
    assert built.arch.name == ours
    assert built.image.name == f"alloy-{built.version}-{ours}.raw"


@pytest.mark.parametrize("name", ["AMD64", "arm", "", "x86", "aarch64 ", "i386"])
def test_arch_refused_with_valid_list(name: str) -> None:
    text = refused(arch=name)
    assert f"unknown architecture {name!r}" in text
    assert "amd64, arm64 (or x86-64, x86_64, aarch64)" in text


@pytest.mark.parametrize("name", ["x86-64", "i386"])
def test_compat_arch_refused_with_valid_list(name: str) -> None:
    text = refused(compat_arch=name)
    assert f"unknown compat architecture {name!r}" in text
    assert "amd64, arm64" in text


# compression


@pytest.mark.parametrize("name", ["xz", "xz-bcj", "zstd", "none"])
def test_compression_accepted(name: str) -> None:
    assert spec(compression=name).compression == name


@pytest.mark.parametrize("name", ["gzip", "XZ", "lz4", "", "xz-BCJ", "bcj", "xz-bcj-arm64"])
def test_compression_refused(name: str) -> None:
    text = refused(compression=name)
    assert f"unknown compression {name!r}" in text
    assert "use --compression with one of: xz, xz-bcj, zstd, none" in text


# base_url


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://mirror.example/alloy", "https://mirror.example/alloy"),
        ("https://mirror.example/alloy/", "https://mirror.example/alloy"),
        ("http://127.0.0.1:8080//", "http://127.0.0.1:8080"),
    ],
)
def test_base_url_accepted_without_trailing_slash(given: str, expected: str) -> None:
    s = spec(base_url=given)
    assert s.base_url == expected
    assert s.zip_url == f"{expected}/v1.10.2/alloy-linux-amd64.zip"


@pytest.mark.parametrize(
    "given", ["ftp://mirror.example/alloy", "mirror.example/alloy", "https:///x", "https://", ""]
)
def test_base_url_refused(given: str) -> None:
    text = refused(base_url=given)
    assert "invalid base URL" in text
    assert "--base-url=https://HOST/PATH" in text


# config_path


@pytest.mark.parametrize(
    "given", ["/etc/alloy/config.alloy", "/var/mnt/storage/alloy/config.alloy", "/a-b_c+d@e:f"]
)
def test_config_path_accepted(given: str) -> None:
    assert spec(config_path=given).config_path == given


@pytest.mark.parametrize(
    "given",
    [
        "etc/alloy/config.alloy",
        "config.alloy",
        "~/config.alloy",
        "/etc/my alloy/config.alloy",
        "/etc/alloy/config.alloy ",
        '/etc/"alloy"/config.alloy',
        "/etc/'alloy'/config.alloy",
        "/etc/$HOST/config.alloy",
        "/etc/${X}/config.alloy",
        "/etc/alloy/config\n.alloy",
        "/etc/alloy/config\t.alloy",
        "",
    ],
)
def test_config_path_refused(given: str) -> None:
    text = refused(config_path=given)
    assert "invalid config path" in text
    assert "normal absolute path" in text and "without spaces, quotes or $" in text


# retries


@pytest.mark.parametrize(("given", "expected"), [(0, 0), (5, 5), ("3", 3), ("0", 0), (10, 10)])
def test_retries_accepted(given: object, expected: int) -> None:
    s = spec(retries=given)
    assert s.retries == expected
    assert isinstance(s.retries, int)


@pytest.mark.parametrize("given", [-1, "-2", "three", "", "1.5", 11, "1000000000"])
def test_retries_refused(given: object) -> None:
    text = refused(retries=given)
    assert f"invalid retries {given!r}" in text
    assert "whole number from 0 to 10" in text


# derived names


def test_derived_names_amd64(tmp_path: Path) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    s = spec(output_dir=str(out), cache_dir=str(cache), base_url="https://m.example/rel")
    assert s.member == "alloy-linux-amd64"
    assert s.zip_name == "alloy-linux-amd64.zip"
    assert s.zip_url == "https://m.example/rel/v1.10.2/alloy-linux-amd64.zip"
    assert s.sums_url == "https://m.example/rel/v1.10.2/SHA256SUMS"
    assert s.cache_dir == cache
    key = "https_m.example_443__" + sha256(b"https://m.example:443/rel").hexdigest()[:32]
    assert s.cached_zip == cache / key / "v1.10.2" / "alloy-linux-amd64.zip"
    assert s.cached_sums == cache / key / "v1.10.2" / "SHA256SUMS"
    assert s.work_dir == out / ".staging" / "alloy-1.10.2-amd64"
    assert s.rootfs == out / ".staging" / "alloy-1.10.2-amd64" / "rootfs"
    assert s.stamp("pack") == out / ".staging" / "alloy-1.10.2-amd64" / "pack.stamp"
    assert s.image == out / "alloy-1.10.2-amd64.raw"
    assert s.compat_image == out / "alloy-1.10.2.raw"
    assert s.owns_compat_name is True
    assert checksum_file(s.image) == out / "alloy-1.10.2-amd64.raw.sha256"


def test_derived_names_arm64_rc_with_v_prefix(tmp_path: Path) -> None:
    s = spec(version="v1.11.0-rc.1", arch="arm64", output_dir=str(tmp_path))
    assert s.zip_url == f"{GITHUB}/v1.11.0-rc.1/alloy-linux-arm64.zip"
    assert s.sums_url == f"{GITHUB}/v1.11.0-rc.1/SHA256SUMS"
    assert s.image == tmp_path / "alloy-1.11.0-rc.1-arm64.raw"
    assert s.compat_image == tmp_path / "alloy-1.11.0-rc.1.raw"
    assert s.owns_compat_name is False  # compat_arch defaults to amd64
    assert spec(arch="arm64", compat_arch="arm64").owns_compat_name is True


def test_relative_output_dir_stays_relative() -> None:
    s = spec(output_dir="build-out")
    assert s.image == Path("build-out/alloy-1.10.2-amd64.raw")


def test_unit_template_option_is_a_path(tmp_path: Path) -> None:
    assert spec(unit_template=str(tmp_path / "u.service")).unit_template == tmp_path / "u.service"


# cache_dir default


def test_cache_dir_none_uses_xdg_cache_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "elsewhere"))
    s = spec(cache_dir=None)
    assert s.cache_dir == tmp_path / "elsewhere" / "alloy-sysext"
    assert s.cached_zip == (
        tmp_path
        / "elsewhere/alloy-sysext/https_github.com_443__274c5d72b86ba4cb77b903e7e4afdb07"
        / "v1.10.2/alloy-linux-amd64.zip"
    )


@pytest.mark.parametrize("xdg", [None, ""])
def test_cache_dir_without_xdg_uses_home_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, xdg: str | None
) -> None:
    if xdg is None:
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_CACHE_HOME", xdg)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "alloy-sysext"
    assert spec().cache_dir == tmp_path / "home" / ".cache" / "alloy-sysext"


def test_explicit_cache_dir_wins_over_xdg(tmp_path: Path) -> None:
    assert spec(cache_dir=str(tmp_path / "mine")).cache_dir == tmp_path / "mine"


# Each pair differs in one part that chooses the bytes served: scheme, host, port, path.
_OTHER_SOURCES = [
    ("http://127.0.0.1:8080/alloy", "https://127.0.0.1:8080/alloy"),
    ("http://127.0.0.1:8080/alloy", "http://127.0.0.1:8081/alloy"),
    ("http://127.0.0.1:8080/alloy", "http://127.0.0.2:8080/alloy"),
    ("http://127.0.0.1:8080/alloy", "http://127.0.0.1:8080/Alloy"),
    ("http://127.0.0.1:8080/alloy", "http://127.0.0.1:8080/alloy/x"),
    ("https://a.example/x_y", "https://a.example/x/y"),  # the older layout's names: one folder
    ("https://a-b.example/x", "https://a_b.example/x"),
]


@pytest.mark.parametrize(("one", "other"), _OTHER_SOURCES)
def test_each_source_has_its_own_cache_directory(one: str, other: str) -> None:
    assert source_key(one) != source_key(other)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("https://GitHub.com/grafana", "https://github.com/grafana"),
        ("https://github.com:443/grafana", "https://github.com/grafana"),
        ("http://localhost:80/a", "http://LOCALHOST/a"),
    ],
)
def test_spellings_of_one_source_share_a_cache_directory(one: str, other: str) -> None:
    assert source_key(one) == source_key(other)


@pytest.mark.parametrize(
    ("base_url", "readable"),
    [
        ("https://github.com/grafana/alloy/releases/download", "https_github.com_443__"),
        ("http://127.0.0.1:8080/alloy", "http_127.0.0.1_8080__"),
        ("http://[::1]:8080/alloy", "http_--1_8080__"),
        (f"https://{'a' * 63}.{'b' * 63}.example/{'p/' * 2000}", f"https_{'a' * 63}._443__"),
    ],
)
def test_a_cache_directory_name_is_readable_and_short(base_url: str, readable: str) -> None:
    key = source_key(base_url)
    assert key.startswith(readable)
    assert re.fullmatch(r"[a-z0-9._-]+__[0-9a-f]{32}", key)
    assert len(key) <= 6 + 64 + 1 + 5 + 2 + 32
