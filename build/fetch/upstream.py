"""Alloy's upstream release, as Grafana publishes it: its SHA256SUMS and its zip, fetched into
the download cache and verified there. (What this project publishes, `invoke release`, is
build/release/publish.py.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from build import alloy
from build.config.spec import BuildSpec
from build.core.errors import BuildError
from build.core.fileio import file_lock, sweep_temps
from build.core.report import say
from build.core.sums import file_sha256
from build.fetch import http
from build.fetch.releasesums import MIRROR_HINT, SUMS_MAX, expected_sha256, sums_of
from build.model.names import lock_file


def _looks_like_html(start: bytes) -> bool:
    head = start[:512].lstrip().lower()
    return head.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body"))


def _check_sums_start(url: str) -> Callable[[bytes], None]:
    def check(start: bytes) -> None:
        if _looks_like_html(start):
            raise BuildError(f"{url} is an HTML page, not a SHA256SUMS file", MIRROR_HINT)

    return check


def _check_zip_start(url: str) -> Callable[[bytes], None]:
    def check(start: bytes) -> None:
        if start.startswith(b"PK\x03\x04"):
            return
        what = "an HTML page" if _looks_like_html(start) else "not a zip archive"
        raise BuildError(f"{url} is {what}, not the release zip", MIRROR_HINT)

    return check


def _limits(spec: BuildSpec, max_bytes: int, what: str, hint: str) -> http.Limits:
    return http.Limits(max_bytes, what, hint, spec.stall_timeout, spec.download_timeout)


def _check_sums_file(spec: BuildSpec) -> Callable[[Path], None]:
    """Vets a downloaded SHA256SUMS before it takes its name in the cache."""

    def check(path: Path) -> None:
        sums_of(spec, path.read_text(errors="replace"))

    return check


def _download_sums(spec: BuildSpec) -> None:
    try:
        http.download(
            spec.sums_url,
            spec.cached_sums,
            retries=spec.retries,
            allow_http=spec.allow_http,
            check_start=_check_sums_start(spec.sums_url),
            check_done=_check_sums_file(spec),
            limits=_limits(spec, SUMS_MAX, "a SHA256SUMS file", MIRROR_HINT),
        )
    except http.HTTPStatusError as error:
        if error.status != 404:
            raise
        if http.exists(spec.zip_url, spec.allow_http):
            raise BuildError(
                f"release v{spec.version} has no SHA256SUMS at {spec.sums_url}",
                "the download cannot be verified, so nothing was built",
            ) from None
        raise BuildError(
            f"Alloy v{spec.version} not found: {spec.sums_url} returned HTTP 404",
            f"check --version against {alloy.RELEASES_PAGE} (and --base-url for a mirror)",
        ) from None


def fetch(spec: BuildSpec, force: bool) -> str:
    """Bring the verified zip and SHA256SUMS into the cache; return what was done."""
    with file_lock(lock_file(spec.cached_sums)):  # both architectures' builds want it
        sweep_temps(spec.cached_sums)
        sums_fresh = force or not spec.cached_sums.exists()
        if sums_fresh:
            _download_sums(spec)
    try:
        expected = expected_sha256(spec)
    except BuildError:
        if sums_fresh:
            raise
        with file_lock(lock_file(spec.cached_sums)):
            _download_sums(spec)  # the cached copy may predate a fixed release: look once more
        expected = expected_sha256(spec)
    if not force and spec.cached_zip.exists() and file_sha256(spec.cached_zip) == expected:
        return f"{spec.cached_zip} already cached, sha256 verified"
    try:
        http.download(
            spec.zip_url,
            spec.cached_zip,
            retries=spec.retries,
            allow_http=spec.allow_http,
            expected_sha256=expected,
            check_start=_check_zip_start(spec.zip_url),
            show_progress=True,
            limits=_limits(
                spec,
                spec.max_download_size,
                "a release zip (--max-download-size)",
                "check --base-url and --version; raise --max-download-size if the zip is genuine",
            ),
        )
    except http.HTTPStatusError as error:
        if error.status != 404:
            raise
        raise BuildError(
            f"{spec.zip_name} not found in release v{spec.version}: "
            f"{spec.zip_url} returned HTTP 404",
            "check --arch and --base-url",
        ) from None
    return f"downloaded {spec.zip_url}, sha256 verified"


def _cached_zip_matches(spec: BuildSpec, expected: str) -> bool:
    try:
        return file_sha256(spec.cached_zip) == expected
    except FileNotFoundError:
        return False


def verify_cached_zip(spec: BuildSpec) -> Path:
    """Re-check the cached zip against SHA256SUMS before use: a copy that changed on disk since
    its download (a bad disk, a stray write, another tool) is downloaded once more."""
    expected = expected_sha256(spec)
    if _cached_zip_matches(spec, expected):
        return spec.cached_zip
    with file_lock(lock_file(spec.cached_zip)):
        if not _cached_zip_matches(spec, expected):  # another build may have mended it
            say("fetch", f"cached {spec.cached_zip} does not match its SHA256SUMS line")
            spec.cached_zip.unlink(missing_ok=True)
            sweep_temps(spec.cached_zip)
            say("fetch", fetch(spec, force=False))
    if not _cached_zip_matches(spec, expected):  # changed again at once: not worth a loop
        raise BuildError(
            f"cached {spec.cached_zip} does not match its SHA256SUMS line, even after "
            "downloading it again",
            f"check the disk under {spec.cache_dir}",
        )
    return spec.cached_zip
