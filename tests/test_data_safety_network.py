"""Numbers and addresses read from configuration are bounded and mean what README says
(issue 12): retries and the waits between them, what counts as this machine, how many pages of
releases are read."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from build.core import urls
from build.core.errors import BuildError
from build.fetch import http
from build.fetch import latest as upstream_latest
from tests.conftest import Invoke


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.255.0.9", "::1", "[::1]", "[0:0::1]", "localhost", "LocalHost"]
)
def test_loopback_hosts(host: str) -> None:
    assert urls.is_loopback(host)


@pytest.mark.parametrize(
    "host",
    [
        "0.0.0.0",
        "localhost.",  # asked of DNS, not /etc/hosts
        "LOCALHOST.",
        "localhost.example.com",
        "127.0.0.1.example.com",
        "10.0.0.1",
        "127.1",  # spellings other than dotted decimal: check() refuses them
        "0x7f000001",
        "2130706433",
        "0177.0.0.1",
        "127.0.0.1 ",
        "[::ffff:127.0.0.1]",
        "example.com",
        "",
    ],
)
def test_not_loopback(host: str) -> None:
    assert not urls.is_loopback(host)


def test_localhost_with_a_trailing_dot_needs_allow_http(invoke: Invoke) -> None:
    result = invoke("fetch", "--base-url=http://localhost.:9/alloy", "--retries=0")
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("error: refusing plain http:// URL http://localhost.:9/alloy/")


def test_a_non_loopback_address_still_needs_allow_http(invoke: Invoke) -> None:
    result = invoke("fetch", "--base-url=http://0.0.0.0:9/alloy", "--retries=0")
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("error: refusing plain http:// URL http://0.0.0.0:9/alloy/")


def test_retries_are_bounded_on_the_command_line(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke("fetch", "--retries=1000000000")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: invalid retries '1000000000'; use a whole number from 0 to 10"
    ]
    assert not (tmp_path / "cache").exists()


def test_no_wait_between_tries_is_longer_than_a_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr(http.time, "sleep", waits.append)

    def always_503() -> None:
        raise http._Transient("HTTP 503")

    with pytest.raises(BuildError, match="tried 11 times"):
        http._retrying(always_503, url="u", what="download of u", retries=10, hint="h")
    assert len(waits) == 10
    assert max(waits) == http.MAX_BACKOFF == 60
    assert waits[:3] == [0.5, 1, 2]


def _endless_pages(server: HTTPServer, api: str, loop: bool) -> str:
    """Pages that link on and on (or, with `loop`, page 3 back to page 1)."""
    url = server.url_for(api)
    for number in range(1, upstream_latest.MAX_PAGES + 2):
        following = 1 if loop and number == 3 else number + 1
        query = {"per_page": "100", "page": str(number)}
        server.expect_request(f"{api}/releases", query_string=query).respond_with_json(
            [{"tag_name": f"v1.{number}.0", "draft": False, "prerelease": False}],
            headers={"Link": f'<{url}/releases?per_page=100&page={following}>; rel="next"'},
        )
    server.expect_request(f"{api}/releases", query_string={"per_page": "100"}).respond_with_json(
        [], headers={"Link": f'<{url}/releases?per_page=100&page=1>; rel="next"'}
    )
    return url


@pytest.mark.parametrize(
    ("loop", "message"),
    [
        (False, "has more than 50 pages of 100 releases, the most this tool reads"),
        (True, "links back to a page it already gave"),
    ],
)
def test_too_many_pages_names_the_limit(
    invoke: Invoke, httpserver: HTTPServer, loop: bool, message: str
) -> None:
    url = _endless_pages(httpserver, "/repos/grafana/alloy", loop)
    result = invoke("fetch", "--version=latest", f"--api-url={url}", "--retries=0")
    assert result.returncode == 1, result.stdout + result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: {url}/releases {message} (Link: rel=next)"), line
