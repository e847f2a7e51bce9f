"""`--version latest`: the highest stable Alloy release, asked of GitHub's releases API.

Stable: published (not a draft), not a prerelease, tagged vX.Y.Z; versions compare as numbers
(1.10.0 > 1.9.0). The answer is kept in the download cache for a few minutes, so a rebuild asks at
most once in that time, and builds running side by side (nox -j) ask once between them. A pinned
version never asks.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import http
from .cache import make_cache_dir
from .errors import BuildError
from .report import say
from .spec import DEFAULTS, BuildSpec, source_key
from .targets import file_lock, lock_file, write_text_atomic

LATEST = "latest"
MAX_AGE = 600  # seconds an answer is reused: a rebuild within 10 minutes asks no one
PER_PAGE = 100  # GitHub's maximum
MAX_PAGES = 50  # a Link: rel="next" chain longer than this is a loop, not a release list
STABLE_TAG = re.compile(r"v(\d+)\.(\d+)\.(\d+)")
TOKEN_VARIABLE = "GITHUB_TOKEN"
GITHUB_API_URL = DEFAULTS["api_url"]
_HINT = "check the network or --api-url, or pin --version=X.Y.Z"


def is_latest(version: Any) -> bool:
    return str(version) == LATEST


def spec_from_options(options: Mapping[str, Any]) -> BuildSpec:
    """BuildSpec.from_options, with a version of "latest" resolved first (and said so, once)."""
    if not is_latest(options.get("version")):
        return BuildSpec.from_options(options)
    # Every other option validated as for any build: the cache, the retries, the API URL.
    probe = BuildSpec.from_options({**options, "version": DEFAULTS["version"]})
    found = resolve(probe.api_url, probe.cache_dir, probe.retries, allow_http=probe.allow_http)
    say(LATEST, found.describe())
    return BuildSpec.from_options({**options, "version": found.version})


@dataclass(frozen=True)
class Resolved:
    version: str
    api_url: str
    age: float | None  # seconds since the cached answer was fetched; None: fetched just now

    def describe(self) -> str:
        if self.age is None:
            return f"{self.version} (from {self.api_url})"
        return f"{self.version} (from {self.api_url}, cached {_ago(self.age)})"


def _ago(seconds: float) -> str:
    if seconds < 60:
        return f"{int(seconds)} s ago"
    return f"{int(seconds // 60)} min ago"


def cache_file(cache_dir: Path, api_url: str) -> Path:
    return cache_dir / f"{LATEST}-{source_key(api_url)}.json"


def resolve(
    api_url: str,
    cache_dir: Path,
    retries: int,
    max_age: float = MAX_AGE,
    allow_http: bool = False,
) -> Resolved:
    """The highest stable release at `api_url`: a cached answer younger than `max_age` seconds,
    or one fetched now (and cached)."""
    api_url = api_url.rstrip("/")
    path = cache_file(cache_dir, api_url)
    make_cache_dir(cache_dir)
    with file_lock(lock_file(path)):  # side-by-side builds: one asks, the others read its answer
        now = time.time()
        cached = _read_cache(path, api_url)
        if cached is not None:
            version, fetched = cached
            if 0 <= now - fetched < max_age:
                return Resolved(version, api_url, now - fetched)
        version = highest_stable(fetch_releases(api_url, retries, allow_http), api_url)
        record = {"api_url": api_url, "version": version, "fetched": now}
        write_text_atomic(path, json.dumps(record, indent=2) + "\n")
        return Resolved(version, api_url, None)


def _read_cache(path: Path, api_url: str) -> tuple[str, float] | None:
    """(version, time fetched) of a cached answer, or None if there is none worth reading."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        version, fetched = record["version"], float(record["fetched"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if record.get("api_url") != api_url or not STABLE_TAG.fullmatch(f"v{version}"):
        return None
    return version, fetched


def fetch_releases(api_url: str, retries: int, allow_http: bool = False) -> list[dict[str, Any]]:
    """Every release listed at {api_url}/releases, page after page (Link: rel="next")."""
    url: str | None = f"{api_url}/releases?per_page={PER_PAGE}"
    token = os.environ.get(TOKEN_VARIABLE, "").strip()
    releases: list[dict[str, Any]] = []
    seen: set[str] = set()
    while url is not None:
        if url in seen or len(seen) == MAX_PAGES:
            raise BuildError(f"{api_url}/releases: its pages do not end (Link: rel=next)", _HINT)
        seen.add(url)
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        if token and _same_origin(url, api_url):  # never hand the token to another host
            headers["Authorization"] = f"Bearer {token}"
        try:
            response = http.get(
                url, retries=retries, hint=_HINT, headers=headers, allow_http=allow_http
            )
        except http.HTTPStatusError as error:
            raise _explain(error, api_url, bool(token)) from None
        try:
            page = response.json()
        except ValueError:
            page = None
        if not isinstance(page, list):
            raise BuildError(
                f"{url} did not answer with a JSON list of releases",
                f"check --api-url: it must serve GitHub's releases API ({GITHUB_API_URL})",
            )
        releases += [release for release in page if isinstance(release, dict)]
        url = response.links.get("next", {}).get("url")
    return releases


def _same_origin(url: str, api_url: str) -> bool:
    one, other = urlsplit(url), urlsplit(api_url)
    return (one.scheme, one.netloc) == (other.scheme, other.netloc)


def stable_version(release: Mapping[str, Any]) -> tuple[int, int, int] | None:
    """(X, Y, Z) of a published, non-prerelease release tagged vX.Y.Z; None for any other."""
    if release.get("draft") or release.get("prerelease"):
        return None
    match = STABLE_TAG.fullmatch(str(release.get("tag_name", "")))
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def highest_stable(releases: list[dict[str, Any]], api_url: str) -> str:
    versions = [v for v in map(stable_version, releases) if v is not None]
    if not versions:
        raise BuildError(
            f"no stable release at {api_url}/releases ({len(releases)} releases, none published, "
            "not a prerelease and tagged vX.Y.Z)",
            "check --api-url, or pin --version=X.Y.Z",
        )
    return ".".join(map(str, max(versions)))


def _explain(error: http.HTTPStatusError, api_url: str, token: bool) -> BuildError:
    """What an answer other than 200 means here, and what to do about it."""
    status, headers = error.status, error.headers
    if http.rate_limited(status, headers):
        when = _reset_time(headers)
        if token:
            todo = f"wait until then, or pin --version=X.Y.Z ({TOKEN_VARIABLE} is set)"
        else:
            todo = (
                f"set {TOKEN_VARIABLE} to a GitHub token (a far higher limit), wait, "
                "or pin --version=X.Y.Z"
            )
        return BuildError(
            f"GitHub API rate limit reached at {error.url} (HTTP {status}); {when}", todo
        )
    if status == 404:
        return BuildError(
            f"{error.url} returned HTTP 404: no releases API there",
            f"check --api-url (GitHub's is {GITHUB_API_URL})",
        )
    if status == 401 and token:
        return BuildError(
            f"{error.url} refused {TOKEN_VARIABLE} (HTTP 401)",
            f"check or unset {TOKEN_VARIABLE}",
        )
    return BuildError(f"{error.url} returned HTTP {status}", _HINT)


def _reset_time(headers: Mapping[str, str], now: float | None = None) -> str:
    """When the limit lifts, from Retry-After (seconds) or X-RateLimit-Reset (a Unix time)."""
    at = http.retry_at(headers, now)
    if at is None:
        return "it gave no time it resets (GitHub's limits reset within the hour)"
    return http.describe_reset(at, now)
