"""build.fetch.http's one reading of network errors: which end the run at once (no retry mends them)
and which are tried again, and the words each ends in."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import requests
from urllib3.exceptions import ProtocolError, ReadTimeoutError

from build.core.errors import BuildError
from build.fetch import http

URL = "https://example.com/alloy.zip"


@pytest.mark.parametrize(
    ("error", "got", "words"),
    [
        (requests.ConnectTimeout("x"), None, "timed out"),
        (requests.ConnectionError("x"), None, "connection failed"),
        (requests.exceptions.ChunkedEncodingError("x"), None, "ChunkedEncodingError"),
        (
            ReadTimeoutError(None, URL, "x"),  # type: ignore[arg-type]  # no pool to name
            "10 of 20",
            "timed out: the server stalled after 10 of 20 bytes",
        ),
        (ProtocolError("x"), "10 of 20", "cut off after 10 of 20 bytes"),
        (ConnectionResetError(104, "reset"), "10", "cut off after 10 bytes"),
    ],
)
def test_errors_worth_another_try(error: Exception, got: str | None, words: str) -> None:
    failure = http._failure(error, URL, "hint", got)
    assert isinstance(failure, http._Transient) and str(failure) == words


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (requests.exceptions.InvalidURL("bad port"), f"invalid URL {URL}: bad port; hint"),
        (
            requests.exceptions.SSLError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify"),
            f"TLS to {URL} failed: its certificate is not trusted; check the URL",
        ),
        (
            requests.exceptions.SSLError("[SSL: WRONG_VERSION_NUMBER]"),
            f"TLS to {URL} failed: the TLS handshake failed; check the URL",
        ),
    ],
)
def test_errors_no_retry_mends(error: Exception, line: str) -> None:
    failure = http._failure(error, URL, "hint")
    assert isinstance(failure, BuildError) and str(failure).startswith(line)


def test_a_refused_connection_is_retried_then_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(http.time, "sleep", lambda seconds: None)
    with socket.socket() as unused:  # a port nothing listens on once it is closed
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    url = f"http://127.0.0.1:{port}/alloy.zip"
    with pytest.raises(BuildError) as raised:
        http.download(url, tmp_path / "alloy.zip", retries=1)
    assert raised.value.message == f"download of {url} failed: connection failed (tried 2 times)"
    # The retry line comes through the same reporter as every other line (build.core.report.say).
    assert capsys.readouterr().out == f"{'':8} {url}: connection failed; retrying in 0.5 s\n"
    assert list(tmp_path.iterdir()) == []
