"""`--version latest`: the highest stable upstream Alloy release, asked of GitHub's releases API.

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

from build import alloy
from build.core.errors import BuildError
from build.core.fileio import file_lock, write_text_atomic
from build.core.report import say
from build.fetch import http
from build.fetch.cache import make_cache_dir
from build.fetch.ratelimit import rate_limit
from build.model.names import latest_file, lock_file
from build.model.versions import LATEST

MAX_AGE = 600  # seconds an answer is reused: a rebuild within 10 minutes asks no one
PER_PAGE = 100  # GitHub's maximum
MAX_PAGES = 50  # a Link: rel="next" chain longer than this is a loop, not a release list
# ASCII digits, at most 9 each: \d takes any script's, and int() refuses thousands of them.
STABLE_TAG = re.compile(r"v([0-9]{1,9})\.([0-9]{1,9})\.([0-9]{1,9})")
PAGE_MAX = 32 << 20  # bytes of one page of the releases API (GitHub's are well under 1 MiB)
TOKEN_VARIABLE = "GITHUB_TOKEN"
GITHUB_API_URL = alloy.UPSTREAM_API_URL
_HINT = "check the network or --api-url, or pin --version=X.Y.Z"


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
    if seconds < 2 * 86400:
        return f"{int(seconds // 60)} min ago"
    return f"{int(seconds // 86400)} days ago"


def cache_file(cache_dir: Path, api_url: str) -> Path:
    return latest_file(cache_dir, api_url)


def resolve(
    api_url: str,
    cache_dir: Path,
    retries: int,
    max_age: float = MAX_AGE,
    allow_http: bool = False,
    stall_timeout: float | None = None,
    download_timeout: float = 3600.0,
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
        limits = http.Limits(
            PAGE_MAX, "a page of the releases API", _HINT, stall_timeout, download_timeout
        )
        try:
            releases = fetch_releases(api_url, retries, allow_http, limits)
        except BuildError as error:
            if cached is None:
                raise
            # The API is down or refuses us: an older answer beats no build, said out loud.
            version, fetched = cached
            say(
                LATEST,
                f"warning: {api_url}/releases could not be read ({error.message}); using the "
                f"answer cached {_ago(max(0.0, now - fetched))}",
            )
            return Resolved(version, api_url, now - fetched)
        version = highest_stable(releases, api_url)
        record = {"api_url": api_url, "version": version, "fetched": now}
        write_text_atomic(path, json.dumps(record, indent=2) + "\n")
        return Resolved(version, api_url, None)


def _read_cache(path: Path, api_url: str) -> tuple[str, float] | None:
    """(version, time fetched) of a cached answer, or None if there is none worth reading."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        version, fetched = record["version"], float(record["fetched"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None
    if record.get("api_url") != api_url or not STABLE_TAG.fullmatch(f"v{version}"):
        return None
    return version, fetched


def fetch_releases(
    api_url: str, retries: int, allow_http: bool = False, limits: http.Limits | None = None
) -> list[dict[str, Any]]:
    """Every release listed at {api_url}/releases, page after page (Link: rel="next"), each
    release reduced to the fields that tell its version."""
    limits = limits or http.Limits(PAGE_MAX, "a page of the releases API", _HINT)
    url: str | None = f"{api_url}/releases?per_page={PER_PAGE}"
    token = os.environ.get(TOKEN_VARIABLE, "").strip()
    releases: list[dict[str, Any]] = []
    seen: set[str] = set()
    source = None  # the first page's URL is --api-url's; the others come from a Link: header
    while url is not None:
        if url in seen or len(seen) == MAX_PAGES:
            what = f"has more than {MAX_PAGES} pages of {PER_PAGE} releases, the most this tool"
            what += " reads"
            if url in seen:
                what = "links back to a page it already gave"
            raise BuildError(f"{api_url}/releases {what} (Link: rel=next)", _HINT)
        seen.add(url)
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        if token and _same_origin(url, api_url):  # never hand the token to another host
            headers["Authorization"] = f"Bearer {token}"
        try:
            answer = http.get(
                url,
                retries=retries,
                hint=_HINT,
                headers=headers,
                allow_http=allow_http,
                limits=limits,
                source=source,
            )
        except http.HTTPStatusError as error:
            raise _explain(error, api_url, bool(token)) from None
        page = parse_page(answer.body)
        if not isinstance(page, list):
            raise BuildError(
                f"{url} did not answer with a JSON list of releases",
                f"check --api-url: it must serve GitHub's releases API ({GITHUB_API_URL})",
            )
        releases += page
        source = f"the Link: rel=next header of {url}"
        url = answer.links.get("next", {}).get("url")
    return releases


# Reading a page: a scanner of its bytes, not json.loads. A page may be 32 MiB, and Python's
# objects for it (or only its decoded text) could take several times that; the scanner keeps the
# page's bytes and, per release, the three fields read here. Its work is bounded first: every
# , : [ { and backslash costs a step of a Python loop.
PAGE_WORK_MAX = 1_000_000
PAGE_RELEASES_MAX = 1_000  # GitHub lists at most 100 a page
DEPTH_MAX = 64  # GitHub's releases nest 4 deep
_WANTED = ("tag_name", "draft", "prerelease")
_SPACE = re.compile(rb"[ \t\r\n]*")
_STRING_RUN = re.compile(rb'[^"\\\x00-\x1f]*')
_ESCAPE = re.compile(rb'\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})')
_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_WORDS = {b"true": True, b"false": False, b"null": None}


class _NotReleases(Exception):
    """The page is not a JSON list of releases, or not one this scanner reads within bounds."""


def parse_page(body: bytes | bytearray) -> list[dict[str, Any]] | None:
    """The objects of a page that is a JSON list, each cut down to its tag_name, draft and
    prerelease (when they are strings, booleans or null); None if the page is anything else."""
    work = sum(body.count(mark) for mark in (b",", b":", b"[", b"{", b"\\"))
    if work > PAGE_WORK_MAX:
        return None
    try:
        return _scan(body)
    except _NotReleases:
        return None


def _scan(body: bytes | bytearray) -> list[dict[str, Any]]:
    releases: list[dict[str, Any]] = []
    stack = bytearray()  # the open [ and { brackets
    expect = "root"  # root, value, value/], key, key/}, colon, next, end
    key: str | None = None  # in a release (depth 2): the field whose value comes next
    pos = _run_end(_SPACE, body, 0)
    while pos < len(body):
        char = body[pos]
        if expect == "colon":
            if char != ord(":"):
                raise _NotReleases
            expect, pos = "value", pos + 1
        elif expect == "next":
            if char == ord(","):
                expect = "value" if stack[-1] == ord("[") else "key"
                pos += 1
            elif char == _CLOSING[stack[-1]]:
                stack.pop()
                expect, pos = ("next" if stack else "end"), pos + 1
            else:
                raise _NotReleases
        elif expect in ("key", "key/}"):
            if char == ord("}") and expect == "key/}":
                stack.pop()
                expect, pos = ("next" if stack else "end"), pos + 1
            elif char == ord('"'):
                end = _string_end(body, pos)
                if len(stack) == 2:
                    key = _short_string(body, pos, end)
                expect, pos = "colon", end
            else:
                raise _NotReleases
        elif expect in ("root", "value", "value/]"):
            if char == ord("]") and expect == "value/]":
                stack.pop()
                expect, pos = ("next" if stack else "end"), pos + 1
            elif char in (ord("["), ord("{")):
                expect, pos = _open(char, expect, stack, releases), pos + 1
            elif expect == "root":
                raise _NotReleases
            else:
                value, pos = _scalar(body, pos)
                if len(stack) == 2 and stack[-1] == ord("{") and key in _WANTED:
                    releases[-1][key] = value
                key = None
                expect = "next"
        else:  # "end": only white space may follow the list
            raise _NotReleases
        pos = _run_end(_SPACE, body, pos)
    if expect != "end":
        raise _NotReleases  # cut short
    return releases


_CLOSING = {ord("["): ord("]"), ord("{"): ord("}")}


def _open(char: int, expect: str, stack: bytearray, releases: list[dict[str, Any]]) -> str:
    """Open the [ or { `char` where a value (or the page) was expected; a { in the page's list
    starts a release. What to expect next."""
    if expect == "root" and char != ord("["):
        raise _NotReleases  # the page itself must be a list
    stack.append(char)
    if len(stack) > DEPTH_MAX:
        raise _NotReleases
    if len(stack) == 2 and char == ord("{"):
        if len(releases) == PAGE_RELEASES_MAX:
            raise _NotReleases
        releases.append({})
    return "value/]" if char == ord("[") else "key/}"


def _run_end(pattern: re.Pattern[bytes], body: bytes | bytearray, pos: int) -> int:
    """Where the run of `pattern` (which matches the empty string too) from `pos` ends."""
    run = pattern.match(body, pos)
    return run.end() if run else pos


def _string_end(body: bytes | bytearray, pos: int) -> int:
    """Where the JSON string that opens at `pos` ends (just past its closing quote)."""
    pos += 1
    while True:
        pos = _run_end(_STRING_RUN, body, pos)
        if pos >= len(body):
            raise _NotReleases
        if body[pos] == ord('"'):
            return pos + 1
        escape = _ESCAPE.match(body, pos)  # a backslash, or a control character: invalid
        if escape is None:
            raise _NotReleases
        pos = escape.end()


def _short_string(body: bytes | bytearray, start: int, end: int) -> str | None:
    """The JSON string body[start:end] decoded, if it is short enough to be a field or a tag."""
    if end - start > 256:
        return None
    try:
        text: str = json.loads(bytes(body[start:end]))  # the slice is one JSON string
        return text
    except ValueError:  # invalid UTF-8 or a lone surrogate escape
        raise _NotReleases from None


def _scalar(body: bytes | bytearray, pos: int) -> tuple[Any, int]:
    """A string (None when too long to matter), number (as whether it is non-zero: all a flag
    needs), true, false or null at `pos`, and where it ends."""
    if body[pos] == ord('"'):
        end = _string_end(body, pos)
        return _short_string(body, pos, end), end
    number = _NUMBER.match(body, pos)
    if number is not None:
        return float(number[0]) != 0, number.end()
    for word, value in _WORDS.items():
        if body.startswith(word, pos):
            return value, pos + len(word)
    raise _NotReleases


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
    status = error.status
    limit = rate_limit(status, error.headers)
    if limit is not None:
        when = limit.resets or "it gave no time it resets (GitHub's limits reset within the hour)"
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
