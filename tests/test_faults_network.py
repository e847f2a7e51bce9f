"""Network faults, injected for real by HTTP servers on 127.0.0.1 that misbehave: connections
that drop mid-download (resumed with Range), servers that stall (read timeouts), rate limits with
a retry hint (honoured within a bound), redirects to another host, plain http:// and TLS."""

from __future__ import annotations

import hashlib
import random
import re
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from build.config.spec import source_key
from build.core import urls
from build.core.errors import BuildError
from build.fetch import http
from build.fetch.http import download
from tests.conftest import REPO, VERSION, Invoke
from tests.conftest import beside as leftovers
from tests.rawserver import Answer, RawServer, head
from tests.results import error_line, ok

ZIP = "alloy-linux-amd64.zip"
ZIP_PATH = f"/v{VERSION}/{ZIP}"
SUMS_PATH = f"/v{VERSION}/SHA256SUMS"
# More than two CHUNKs, not a multiple of one. Every byte received before a cut is kept.
DATA = random.Random(6).randbytes(2 * http.CHUNK + 4321)
DATA_SHA = hashlib.sha256(DATA).hexdigest()
# A stand-in for the release zip: `invoke fetch` only checks its first bytes and its sha256.
FAKE_ZIP = b"PK\x03\x04" + random.Random(7).randbytes(3 * http.CHUNK)
FAKE_SUMS = f"{hashlib.sha256(FAKE_ZIP).hexdigest()}  {ZIP}\n".encode()
FILES = {ZIP_PATH: FAKE_ZIP, SUMS_PATH: FAKE_SUMS}
ETAG = '"v1"'

pytestmark = pytest.mark.usefixtures("no_backoff")


def whole_or_range(
    body: bytes, headers: dict[str, str], *, ranges: bool = True, keep: int | None = None
) -> Iterator[bytes]:
    """`body` as a real server sends it: 206 for a Range (when `ranges`), else 200; only `keep`
    bytes of it when given (under the full Content-Length), then the connection drops."""
    start = 0
    match = re.fullmatch(r"bytes=(\d+)-", headers.get("range", ""))
    if ranges and match and headers.get("if-range", ETAG) == ETAG:
        start = int(match[1])
        if start >= len(body):
            yield head("416 Range Not Satisfiable", {"Content-Range": f"bytes */{len(body)}"})
            return
        part = body[start:]
        yield head(
            "206 Partial Content",
            {
                "Content-Length": str(len(part)),
                "Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}",
                "ETag": ETAG,
            },
        )
    else:
        part = body
        yield head("200 OK", {"Content-Length": str(len(body)), "ETag": ETAG})
    yield part if keep is None else part[:keep]


def files(
    served: dict[str, bytes], cut: Callable[[int, str], int | None] = lambda n, p: None, **kw
) -> Answer:
    """Serve `served` by path suffix; `cut(n, path)` (n: the how-manyth GET of that path, from
    0) says how many bytes of that answer's body to send before dropping the connection."""
    counts: dict[str, int] = {}

    def answer(method: str, path: str, headers: dict[str, str]) -> Iterator[bytes]:
        for name, body in served.items():
            if path.endswith(name):
                n = counts.get(name, 0)
                counts[name] = n + 1
                if method == "HEAD":
                    yield head("200 OK", {"Content-Length": str(len(body))})
                    return
                yield from whole_or_range(body, headers, keep=cut(n, name), **kw)
                return
        yield head("404 Not Found", {"Content-Length": "0"})

    return answer


def cache_dir(tmp_path: Path, base_url: str) -> Path:
    return tmp_path / "cache" / "alloy-sysext" / source_key(base_url) / f"v{VERSION}"


def temp_files(tmp_path: Path) -> list[Path]:
    return [p for p in tmp_path.rglob(".*") if p.name.endswith(".tmp")]


# (a) The connection drops mid-download: resumed with Range, verified whole.


def test_a_dropped_download_resumes_where_it_stopped(serve, dest: Path) -> None:
    server = serve(files({ZIP: DATA}, cut=lambda n, p: http.CHUNK + 500 if n == 0 else None))
    url = f"{server.base_url}{ZIP_PATH}"
    assert download(url, dest, retries=1, expected_sha256=DATA_SHA) == DATA_SHA
    assert dest.read_bytes() == DATA
    first, second = server.gets(ZIP)
    assert "range" not in first
    # Every byte received before the connection broke is kept.
    assert second["range"] == f"bytes={http.CHUNK + 500}-"
    assert second["if-range"] == ETAG
    assert leftovers(dest) == [dest.name]


def test_a_connection_that_drops_every_chunk_still_finishes(serve, dest: Path) -> None:
    server = serve(files({ZIP: DATA}, cut=lambda n, p: http.CHUNK + 100))
    url = f"{server.base_url}{ZIP_PATH}"
    # 2 CHUNKs + 4321 bytes, CHUNK + 100 kept per try: three tries, not one fresh try per retry.
    assert download(url, dest, retries=2, expected_sha256=DATA_SHA) == DATA_SHA
    assert dest.read_bytes() == DATA
    assert [h.get("range") for h in server.gets(ZIP)] == [
        None,
        f"bytes={http.CHUNK + 100}-",
        f"bytes={2 * (http.CHUNK + 100)}-",
    ]


def test_a_server_that_ignores_range_gets_a_fresh_download(serve, dest: Path, capsys) -> None:
    server = serve(
        files({ZIP: DATA}, cut=lambda n, p: http.CHUNK + 500 if n == 0 else None, ranges=False)
    )
    url = f"{server.base_url}{ZIP_PATH}"
    assert download(url, dest, retries=1, expected_sha256=DATA_SHA) == DATA_SHA
    assert dest.read_bytes() == DATA  # the 200's bytes from its start, no splice
    assert server.gets(ZIP)[1]["range"] == f"bytes={http.CHUNK + 500}-"
    assert "the whole file again" in capsys.readouterr().out


def test_a_416_answer_to_range_starts_afresh_in_the_same_try(serve, dest: Path) -> None:
    answers = iter(
        [
            whole_or_range(DATA, {}, keep=http.CHUNK + 500),
            [head("416 Range Not Satisfiable", {"Content-Length": "0"})],
            whole_or_range(DATA, {}),
        ]
    )
    server = serve(lambda method, path, headers: next(answers))
    url = f"{server.base_url}{ZIP_PATH}"
    assert download(url, dest, retries=1, expected_sha256=DATA_SHA) == DATA_SHA
    assert dest.read_bytes() == DATA
    assert [h.get("range") for h in server.gets(ZIP)] == [None, f"bytes={http.CHUNK + 500}-", None]


def test_a_changed_file_is_not_spliced(serve, dest: Path) -> None:
    """If-Range: the file changed between tries, so the server sends all of the new one."""
    new = random.Random(8).randbytes(len(DATA))
    bodies = iter([DATA, new])

    def answer(method: str, path: str, headers: dict[str, str]) -> Iterator[bytes]:
        body = next(bodies)
        if body is DATA:
            yield from whole_or_range(DATA, headers, keep=http.CHUNK + 500)
        else:  # another ETag: If-Range does not match, a 200 with the whole new file
            yield head("200 OK", {"Content-Length": str(len(new)), "ETag": '"v2"'})
            yield new

    server = serve(answer)
    url = f"{server.base_url}{ZIP_PATH}"
    assert download(url, dest, retries=1) == hashlib.sha256(new).hexdigest()
    assert dest.read_bytes() == new


def test_dropped_every_time_gives_up_and_leaves_nothing(serve, dest: Path) -> None:
    server = serve(files({ZIP: DATA}, cut=lambda n, p: http.CHUNK + 100))
    url = f"{server.base_url}{ZIP_PATH}"
    with pytest.raises(BuildError) as raised:
        download(url, dest, retries=1, expected_sha256=DATA_SHA)
    assert str(raised.value).startswith(f"download of {url} failed: cut off after ")
    assert "(tried 2 times)" in str(raised.value)
    assert leftovers(dest) == []


def test_a_resumed_download_that_does_not_match_leaves_nothing(serve, dest: Path) -> None:
    server = serve(files({ZIP: DATA}, cut=lambda n, p: http.CHUNK + 500 if n == 0 else None))
    with pytest.raises(BuildError, match="does not match its SHA256SUMS line"):
        download(f"{server.base_url}{ZIP_PATH}", dest, retries=1, expected_sha256="0" * 64)
    assert len(server.gets(ZIP)) == 2
    assert leftovers(dest) == []


def test_cli_fetch_resumes_a_dropped_zip(invoke: Invoke, serve, tmp_path: Path) -> None:
    server = serve(files(FILES, cut=lambda n, p: 2 * http.CHUNK + 500 if n == 0 else None))
    result = ok(invoke("fetch", f"--base-url={server.base_url}", "--retries=1"))
    assert "sha256 verified" in result.stdout
    assert (cache_dir(tmp_path, server.base_url) / ZIP).read_bytes() == FAKE_ZIP
    assert [h.get("range") for h in server.gets(ZIP)] == [None, f"bytes={2 * http.CHUNK + 500}-"]
    assert temp_files(tmp_path) == []


# (b) A slow or stalled server: a read timeout ends the try; then one clear error with the URL.

STALL = {"ALLOY_SYSEXT_TEST_TIMEOUT": "0.3"}  # the test override of both timeouts, in seconds


def test_cli_a_server_that_stalls_mid_body_times_out(invoke: Invoke, serve, tmp_path: Path) -> None:
    def answer(method: str, path: str, headers: dict[str, str]) -> Iterator[bytes | float]:
        if path.endswith("SHA256SUMS"):
            yield from whole_or_range(FAKE_SUMS, headers)
        else:
            yield from whole_or_range(FAKE_ZIP, headers, keep=1000)
            yield 10.0  # then silence, the connection still open

    server = serve(answer)
    started = time.monotonic()
    result = invoke("fetch", f"--base-url={server.base_url}", "--retries=1", env=STALL)
    assert time.monotonic() - started < 5
    line = error_line(result, f"{server.base_url}{ZIP_PATH}", "timed out", "tried 2 times")
    assert "stalled" in line
    assert len(server.gets(ZIP)) == 2
    assert not (cache_dir(tmp_path, server.base_url) / ZIP).exists()
    assert temp_files(tmp_path) == []


def test_cli_a_server_that_never_answers_times_out(invoke: Invoke, serve, tmp_path: Path) -> None:
    server = serve(lambda method, path, headers: [10.0])
    started = time.monotonic()
    result = invoke("fetch", f"--base-url={server.base_url}", "--retries=1", env=STALL)
    assert time.monotonic() - started < 5
    error_line(result, f"{server.base_url}{SUMS_PATH}", "timed out", "tried 2 times")
    assert temp_files(tmp_path) == []


# (c) 403/429 with a retry hint: honoured within MAX_WAIT seconds, then a clear error.


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(http.time, "sleep", slept.append)
    return slept


def limited_then(hints: list[tuple[str, dict[str, str]]], body: bytes = DATA) -> Answer:
    """Answer with each (status, headers) of `hints` once, then serve `body`."""
    queue = list(hints)

    def answer(method: str, path: str, headers: dict[str, str]) -> Iterator[bytes]:
        if queue:
            status, extra = queue.pop(0)
            yield head(status, {"Content-Length": "0", **extra})
        else:
            yield from whole_or_range(body, headers)

    return answer


def test_429_retry_after_is_waited_for(serve, dest: Path, sleeps: list[float]) -> None:
    server = serve(limited_then([("429 Too Many Requests", {"Retry-After": "7"})]))
    assert download(f"{server.base_url}{ZIP_PATH}", dest, retries=1) == DATA_SHA
    assert len(sleeps) == 1 and 6 <= sleeps[0] <= 7  # the server's wait, not the backoff (0)


def test_403_rate_limit_reset_is_waited_for(serve, dest: Path, sleeps: list[float]) -> None:
    reset = str(int(time.time()) + 20)
    hint = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
    server = serve(limited_then([("403 Forbidden", hint)]))
    assert download(f"{server.base_url}{ZIP_PATH}", dest, retries=1) == DATA_SHA
    assert len(sleeps) == 1 and 15 <= sleeps[0] <= 20


def test_a_plain_403_is_not_retried(serve, dest: Path, sleeps: list[float]) -> None:
    server = serve(limited_then([("403 Forbidden", {})]))
    with pytest.raises(http.HTTPStatusError) as raised:
        download(f"{server.base_url}{ZIP_PATH}", dest, retries=3)
    assert raised.value.status == 403
    assert sleeps == [] and len(server.requests) == 1


def test_waits_add_up_to_max_wait_at_most(serve, dest: Path, sleeps: list[float]) -> None:
    hint = ("429 Too Many Requests", {"Retry-After": "40"})
    server = serve(limited_then([hint, hint]))
    url = f"{server.base_url}{ZIP_PATH}"
    with pytest.raises(BuildError) as raised:
        download(url, dest, retries=5)
    assert sleeps == [40]  # a second 40 s would pass the 60 s bound: it ends at once instead
    assert len(server.requests) == 2
    assert "longer than the 60 s this tool waits" in str(raised.value)
    assert raised.value.hint.startswith("run again after ")
    assert leftovers(dest) == []


def test_rate_limited_every_time_ends_in_a_clear_error(
    serve, dest: Path, sleeps: list[float]
) -> None:
    hint = ("429 Too Many Requests", {"Retry-After": "1"})
    server = serve(limited_then([hint] * 5))
    url = f"{server.base_url}{ZIP_PATH}"
    with pytest.raises(BuildError) as raised:
        download(url, dest, retries=2)
    assert str(raised.value).startswith(f"download of {url} failed: rate limited (HTTP 429)")
    assert "(tried 3 times)" in str(raised.value)
    assert sleeps == [1, 1]


def test_cli_short_retry_after_is_honoured(invoke: Invoke, serve, tmp_path: Path) -> None:
    limited = limited_then([("429 Too Many Requests", {"Retry-After": "1"})], FAKE_ZIP)

    def answer(method: str, path: str, headers: dict[str, str]) -> Iterable[bytes | float]:
        if path.endswith("SHA256SUMS"):
            return whole_or_range(FAKE_SUMS, headers)
        return limited(method, path, headers)

    server = serve(answer)
    started = time.monotonic()
    ok(invoke("fetch", f"--base-url={server.base_url}", "--retries=1"))
    assert time.monotonic() - started >= 1
    assert (cache_dir(tmp_path, server.base_url) / ZIP).read_bytes() == FAKE_ZIP


def test_cli_long_retry_hint_ends_at_once(invoke: Invoke, serve, tmp_path: Path) -> None:
    reset = str(int(time.time()) + 3600)
    hint = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
    server = serve(limited_then([("403 Forbidden", hint)] * 5, FAKE_SUMS))
    started = time.monotonic()
    result = invoke("fetch", f"--base-url={server.base_url}", "--retries=3")
    assert time.monotonic() - started < 5
    line = error_line(result, f"{server.base_url}{SUMS_PATH}", "rate limited (HTTP 403)")
    assert re.search(r"resets at \d\d:\d\d:\d\d UTC, in 60 min", line), line
    assert re.search(r"run again after \d\d:\d\d:\d\d UTC", line), line
    assert len(server.requests) == 1
    assert temp_files(tmp_path) == []


# (d) Redirects are followed; plain http:// only to this machine or with --allow-http; TLS.


def redirect_to(target: str) -> Answer:
    def answer(method: str, path: str, headers: dict[str, str]) -> list[bytes]:
        return [head("302 Found", {"Location": f"{target}{path}", "Content-Length": "0"})]

    return answer


def test_a_redirect_to_another_host_is_followed(serve, httpserver: HTTPServer, dest) -> None:
    httpserver.expect_request(ZIP_PATH).respond_with_data(DATA)
    target = httpserver.url_for("").rstrip("/")
    assert target.startswith("http://localhost:")
    server = serve(redirect_to(target))  # on 127.0.0.1
    assert download(f"{server.base_url}{ZIP_PATH}", dest, retries=0) == DATA_SHA
    assert [request.path for request, _ in httpserver.log] == [ZIP_PATH]


def test_cli_release_redirected_to_another_host(invoke: Invoke, serve, tmp_path: Path) -> None:
    other = HTTPServer(host="localhost")  # not the release fixture's: that one has its own assets
    for path, body in FILES.items():
        other.expect_request(path).respond_with_data(body)
    other.start()
    try:
        server = serve(redirect_to(other.url_for("").rstrip("/")))
        ok(invoke("fetch", f"--base-url={server.base_url}", "--retries=0"))
    finally:
        other.stop()
    assert (cache_dir(tmp_path, server.base_url) / ZIP).read_bytes() == FAKE_ZIP
    assert len(server.gets(ZIP)) == 1
    assert [request.path for request, _ in other.log].count(ZIP_PATH) == 1


@pytest.fixture
def proxy(serve) -> RawServer:
    """An HTTP proxy on 127.0.0.1 serving the release for any host: http://alloy.example/...
    reaches it (HTTP_PROXY) without a DNS name or an address other than loopback."""
    return serve(files(FILES))


def via_proxy(proxy: RawServer) -> dict[str, str]:
    """The environment that sends http:// requests through `proxy`, except to this machine."""
    local = "127.0.0.1,localhost"
    url = proxy.base_url
    return {"HTTP_PROXY": url, "http_proxy": url, "NO_PROXY": local, "no_proxy": local}


REMOTE = "http://alloy.example/download"


def test_cli_plain_http_to_another_host_is_refused(
    invoke: Invoke, proxy: RawServer, tmp_path: Path
) -> None:
    result = invoke("fetch", f"--base-url={REMOTE}", env=via_proxy(proxy))
    error_line(result, f"refusing plain http:// URL {REMOTE}/v{VERSION}/", "--allow-http")
    assert proxy.requests == []
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_cli_allow_http_allows_it(invoke: Invoke, proxy: RawServer, tmp_path: Path, how) -> None:
    env = via_proxy(proxy)
    args = ["fetch", f"--base-url={REMOTE}"]
    if how == "flag":
        args.append("--allow-http")
    else:
        env["INVOKE_ALLOW_HTTP"] = "true"
    ok(invoke(*args, env=env))
    assert (cache_dir(tmp_path, REMOTE) / ZIP).read_bytes() == FAKE_ZIP
    assert len(proxy.gets(ZIP)) == 1


def test_cli_a_redirect_to_plain_http_elsewhere_is_refused(
    invoke: Invoke, serve, proxy: RawServer, tmp_path: Path
) -> None:
    server = serve(redirect_to(REMOTE))
    result = invoke("fetch", f"--base-url={server.base_url}", env=via_proxy(proxy))
    error_line(result, f"refusing the redirect from {server.base_url}{SUMS_PATH}", REMOTE)
    assert proxy.requests == []
    ok(invoke("fetch", f"--base-url={server.base_url}", "--allow-http", env=via_proxy(proxy)))
    assert len(proxy.gets(ZIP)) == 1


def test_loopback_hosts_count_as_this_machine() -> None:
    for host in ("localhost", "LOCALHOST", "127.0.0.1", "127.8.9.10", "::1"):
        assert urls.is_loopback(host), host
    for other in ("example.com", "10.0.0.1", "128.0.0.1", "localhost.example.com", "", None):
        assert not urls.is_loopback(other), other
    http.check_url("http://[::1]:8080/x", allow_http=False)
    http.check_url("https://example.com/x", allow_http=False)
    with pytest.raises(BuildError, match="refusing plain http://"):
        http.check_url("http://127.0.0.1.example.com/x", allow_http=False)


def test_tls_is_never_turned_off() -> None:
    assert http.session().verify is True
    sources = [*(REPO / "build").rglob("*.py"), REPO / "tasks.py", REPO / "noxfile.py"]
    for source in sources:
        if source.exists():
            text = source.read_text()
            assert not re.search(r"verify\s*=\s*False|\.verify\s*=\s*(False|0|None)", text), source


@pytest.fixture
def self_signed_server(tmp_path: Path) -> Iterator[str]:
    """An HTTPS server on 127.0.0.1 whose certificate no CA signed."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    sock = socket.create_server(("127.0.0.1", 0))
    sock.settimeout(0.1)
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(head("200 OK", {"Content-Length": "2"}) + b"ok")
            except (OSError, ssl.SSLError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{sock.getsockname()[1]}"
    stopping.set()
    thread.join()
    sock.close()


def test_an_untrusted_certificate_is_refused_without_retries(
    self_signed_server: str, dest: Path, sleeps: list[float]
) -> None:
    url = f"{self_signed_server}{ZIP_PATH}"
    with pytest.raises(BuildError) as raised:
        download(url, dest, retries=3)
    assert str(raised.value).startswith(f"TLS to {url} failed: its certificate is not trusted")
    assert sleeps == []
    assert leftovers(dest) == []
