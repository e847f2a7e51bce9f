"""build.fetch.ratelimit: the one rule for "too many requests, come back later", read from headers a
server (maybe an attacker) chose, and used by the releases API and downloads alike."""

from __future__ import annotations

import time
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from build.core.errors import BuildError
from build.fetch import http
from build.fetch.latest import resolve
from build.fetch.ratelimit import MAX_HINT, rate_limit

API = "/repos/grafana/alloy"


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (403, {}),  # a refusal, not a limit
        (403, {"X-RateLimit-Reset": "1700000000"}),  # GitHub sends Reset on every answer
        (403, {"X-RateLimit-Remaining": "12"}),
        (429, {}),  # too many requests, no time given: an ordinary retry with backoff
        (503, {"Retry-After": "5"}),
        (200, {"X-RateLimit-Remaining": "0"}),
    ],
)
def test_answers_that_are_not_a_rate_limit(status: int, headers: dict[str, str]) -> None:
    assert rate_limit(status, headers) is None


def test_a_limit_without_a_time_says_so() -> None:
    limit = rate_limit(403, {"X-RateLimit-Remaining": "0"})
    assert limit is not None and limit.at is None and limit.wait is None
    assert str(limit) == "rate limited (HTTP 403)"


@pytest.mark.parametrize(
    "headers",
    [
        lambda: {"Retry-After": "30"},
        lambda: {"Retry-After": formatdate(time.time() + 30, usegmt=True)},
        lambda: {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(time.time()) + 30)},
        lambda: {"X-RateLimit-Reset": str(int(time.time()) + 30)},  # a 429 needs no Remaining
    ],
    ids=["seconds", "http-date", "github-reset", "429-reset"],
)
def test_when_a_limit_lifts(headers: Callable[[], dict[str, str]]) -> None:
    # Made when the test runs, not when it is collected: a long suite runs it minutes later.
    limit = rate_limit(429, headers())
    assert limit is not None and limit.wait is not None
    assert 25 <= limit.wait <= 31
    assert str(limit).startswith("rate limited (HTTP 429), it resets at ")


@pytest.mark.parametrize(
    "headers",
    [
        {"Retry-After": "9" * 5000},
        {"Retry-After": "Fri, 31 Dec 99999 23:59:59 GMT"},
        {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "9" * 5000},
        {"Retry-After": "-5", "X-RateLimit-Remaining": "0"},
        {"Retry-After": "x" * 100_000},
    ],
)
def test_hostile_times_are_capped_or_ignored(headers: dict[str, str]) -> None:
    limit = rate_limit(429, headers)
    assert limit is not None
    assert limit.wait is None or 0 <= limit.wait <= MAX_HINT
    str(limit)  # a time too far off still makes a line


def test_the_api_and_downloads_share_the_rule(
    httpserver: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 429 with only X-RateLimit-Reset is a rate limit for the releases API too: one clear
    line at once, not retried as if the server were merely busy."""
    slept: list[float] = []
    monkeypatch.setattr(http.time, "sleep", slept.append)
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    reset = str(int(time.time()) + 20 * 60)
    httpserver.expect_request(f"{API}/releases").respond_with_json(
        {"message": "slow down"}, status=429, headers={"X-RateLimit-Reset": reset}
    )
    with pytest.raises(BuildError) as caught:
        resolve(httpserver.url_for(API), tmp_path, retries=3)
    assert str(caught.value).startswith("GitHub API rate limit reached at ")
    assert "(HTTP 429); it resets at " in str(caught.value)
    assert slept == [] and len(httpserver.log) == 1
