"""build.fetch.http: streamed, hashed, retried, atomic downloads, against a server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import random
import socket
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from build.core.errors import BuildError
from build.fetch import http
from build.fetch.http import HTTPStatusError, download
from build.image.elf import check_elf_header
from build.model.arch import ARCHES
from tests.conftest import beside as leftovers
from tests.fakes import MACHINES, elf_binary

PATH = "/v1.10.2/alloy-linux-amd64.zip"
# More than one CHUNK, not a multiple of it.
DATA = random.Random(3).randbytes(2 * http.CHUNK + 4321)
DATA_SHA = hashlib.sha256(DATA).hexdigest()

pytestmark = pytest.mark.usefixtures("no_backoff")


def paths(server: HTTPServer) -> list[str]:
    return [request.path for request, _ in server.log]


def test_download_writes_final_and_returns_sha256(httpserver: HTTPServer, dest: Path) -> None:
    httpserver.expect_request(PATH).respond_with_data(DATA, content_type="application/octet-stream")
    sha = download(httpserver.url_for(PATH), dest, retries=0)
    assert sha == DATA_SHA
    assert dest.read_bytes() == DATA
    assert leftovers(dest) == [dest.name]
    assert paths(httpserver) == [PATH]
    assert httpserver.log[0][0].headers["User-Agent"] == http.USER_AGENT


def test_download_creates_missing_directories(httpserver: HTTPServer, tmp_path: Path) -> None:
    httpserver.expect_request(PATH).respond_with_data(b"small body")
    final = tmp_path / "a" / "b" / "file.zip"
    assert download(httpserver.url_for(PATH), final, retries=0) == (
        hashlib.sha256(b"small body").hexdigest()
    )
    assert final.read_bytes() == b"small body"


def test_download_with_matching_expected_sha256(httpserver: HTTPServer, dest: Path) -> None:
    httpserver.expect_request(PATH).respond_with_data(DATA)
    assert download(httpserver.url_for(PATH), dest, retries=0, expected_sha256=DATA_SHA) == DATA_SHA
    assert dest.read_bytes() == DATA


def test_download_replaces_earlier_file(httpserver: HTTPServer, dest: Path) -> None:
    dest.write_bytes(b"stale")
    httpserver.expect_request(PATH).respond_with_data(DATA)
    download(httpserver.url_for(PATH), dest, retries=0)
    assert dest.read_bytes() == DATA
    assert leftovers(dest) == [dest.name]


def test_503_then_200_succeeds_after_retry(
    httpserver: HTTPServer, dest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    httpserver.expect_ordered_request(PATH).respond_with_data("busy", status=503)
    httpserver.expect_ordered_request(PATH).respond_with_data(DATA)
    sha = download(httpserver.url_for(PATH), dest, retries=2)
    assert sha == DATA_SHA
    assert dest.read_bytes() == DATA
    assert paths(httpserver) == [PATH, PATH]
    assert [response.status_code for _, response in httpserver.log] == [503, 200]
    assert "HTTP 503; retrying" in capsys.readouterr().out
    httpserver.check_assertions()
    assert leftovers(dest) == [dest.name]


def test_persistent_503_gives_up(httpserver: HTTPServer, dest: Path) -> None:
    httpserver.expect_request(PATH).respond_with_data("busy", status=503)
    url = httpserver.url_for(PATH)
    with pytest.raises(BuildError) as caught:
        download(url, dest, retries=1)
    assert not isinstance(caught.value, HTTPStatusError)
    text = str(caught.value)
    assert url in text
    assert "HTTP 503" in text
    assert "tried 2 times" in text
    assert len(httpserver.log) == 2  # the first try and one retry
    assert not dest.exists()
    assert leftovers(dest) == []


def test_persistent_503_keeps_earlier_file(httpserver: HTTPServer, dest: Path) -> None:
    dest.write_bytes(b"earlier")
    httpserver.expect_request(PATH).respond_with_data("busy", status=503)
    with pytest.raises(BuildError):
        download(httpserver.url_for(PATH), dest, retries=0)
    assert dest.read_bytes() == b"earlier"
    assert leftovers(dest) == [dest.name]


def test_404_is_not_retried(httpserver: HTTPServer, dest: Path) -> None:
    httpserver.expect_request(PATH).respond_with_data("not found", status=404)
    url = httpserver.url_for(PATH)
    with pytest.raises(HTTPStatusError) as caught:
        download(url, dest, retries=3)
    assert caught.value.status == 404
    assert caught.value.url == url
    assert f"{url} returned HTTP 404" in str(caught.value)
    assert len(httpserver.log) == 1
    assert leftovers(dest) == []


def test_sha256_mismatch_leaves_nothing(httpserver: HTTPServer, dest: Path) -> None:
    httpserver.expect_request(PATH).respond_with_data(DATA)
    wrong = hashlib.sha256(b"something else").hexdigest()
    url = httpserver.url_for(PATH)
    with pytest.raises(BuildError) as caught:
        download(url, dest, retries=3, expected_sha256=wrong)
    text = str(caught.value)
    assert url in text
    assert DATA_SHA in text and wrong in text
    assert len(httpserver.log) == 1  # a mismatch is not worth another try
    assert not dest.exists()
    assert leftovers(dest) == []


def test_sha256_mismatch_keeps_earlier_file(httpserver: HTTPServer, dest: Path) -> None:
    dest.write_bytes(b"earlier")
    httpserver.expect_request(PATH).respond_with_data(DATA)
    with pytest.raises(BuildError):
        download(httpserver.url_for(PATH), dest, retries=0, expected_sha256="0" * 64)
    assert dest.read_bytes() == b"earlier"
    assert leftovers(dest) == [dest.name]


def test_check_start_sees_first_bytes_once(httpserver: HTTPServer, dest: Path) -> None:
    body = elf_binary(MACHINES["amd64"], size=http.CHUNK + 1000)
    httpserver.expect_request(PATH).respond_with_data(body)
    seen: list[bytes] = []
    download(httpserver.url_for(PATH), dest, retries=0, check_start=seen.append)
    assert len(seen) == 1
    assert body.startswith(seen[0]) and len(seen[0]) >= 20
    assert dest.read_bytes() == body


def test_check_start_raising_stops_download(httpserver: HTTPServer, dest: Path) -> None:
    body = elf_binary(MACHINES["arm64"], size=2 * http.CHUNK + 100)
    httpserver.expect_request(PATH).respond_with_data(body)
    calls = 0

    def check(first: bytes) -> None:
        nonlocal calls
        calls += 1
        check_elf_header(first, ARCHES["amd64"], "alloy-linux-amd64")

    with pytest.raises(BuildError, match="built for AArch64, not x86-64"):
        download(httpserver.url_for(PATH), dest, retries=3, check_start=check)
    assert calls == 1
    assert len(httpserver.log) == 1
    assert not dest.exists()
    assert leftovers(dest) == []


def test_a_silent_server_times_out_and_is_retried(
    dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http, "TIMEOUT", (0.5, 0.5))
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # accepts connections, never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1.10.2/SHA256SUMS"
        with pytest.raises(BuildError) as raised:
            download(url, dest, retries=1)
    assert str(raised.value).startswith(f"download of {url} failed: timed out (tried 2 times)")
    assert leftovers(dest) == []


def test_a_refused_connection_is_retried(dest: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here until the server starts below
    url = f"http://127.0.0.1:{port}{PATH}"
    started: list[HTTPServer] = []

    def start_server_instead_of_waiting(seconds: float) -> None:  # the backoff before a retry
        if not started:
            started.append(HTTPServer(host="127.0.0.1", port=port))
            started[0].expect_request(PATH).respond_with_data(DATA)
            started[0].start()

    monkeypatch.setattr(http.time, "sleep", start_server_instead_of_waiting)
    try:
        assert download(url, dest, retries=1) == DATA_SHA
    finally:
        if started:
            started[0].stop()
    assert len(started[0].log) == 1
