"""Hostile URLs and a poisoned download cache (issue 20), fed to the real CLI.

A URL from an option, the environment, a redirect or the releases API's Link: header is read the
way the HTTP client connects by, or refused in one line naming it and where it came from, before
any request; plain http needs no --allow-http only when the host it connects to is this machine.
The download cache keeps each source apart by everything that chooses the bytes: an http:// fetch
never stands in for https://, nor one path or port for another."""

from __future__ import annotations

import json
import ssl
import subprocess
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from build.config.spec import source_key
from build.model.names import CACHE_TAG
from tests.conftest import VERSION, Invoke
from tests.fakes import release_assets
from tests.rawserver import Answer, RawServer, head
from tests.results import error_line, ok

ZIP = "alloy-linux-amd64.zip"
HONEST = release_assets(seed=1)
POISONED = release_assets(seed=2)  # consistent in itself: its SHA256SUMS vouches for its zip
assert HONEST[ZIP] != POISONED[ZIP]


@pytest.fixture
def start() -> Iterator[Callable[..., RawServer]]:
    """`start(answer, tls=None)`: a RawServer on 127.0.0.1, stopped after the test."""
    servers: list[RawServer] = []

    def run(answer: Answer, tls: ssl.SSLContext | None = None) -> RawServer:
        servers.append(RawServer(answer, tls=tls))
        return servers[-1]

    yield run
    for server in servers:
        server.stop()


def port(server: RawServer) -> int:
    return int(server.base_url.rsplit(":", 1)[1])


def serving(by_prefix: dict[str, dict[str, bytes]]) -> Answer:
    """Answer GET PREFIX/vVERSION/NAME with by_prefix[PREFIX][NAME], where a PREFIX may start
    with the scheme the request came by (https:/alloy); anything else is a 404."""

    def answer(method: str, path: str, headers: dict[str, str]) -> Iterable[bytes]:
        directory, _, name = path.rpartition(f"/v{VERSION}/")
        assets = by_prefix.get(f"{headers[':scheme']}:{directory}", by_prefix.get(directory, {}))
        if name in assets:
            data = assets[name]
            return [head("200 OK", {"Content-Length": str(len(data))}), data]
        return [head("404 Not Found", {"Content-Length": "0"})]

    return answer


def cached(tmp_path: Path, base_url: str, name: str = ZIP) -> Path:
    return tmp_path / "cache" / "alloy-sysext" / source_key(base_url) / f"v{VERSION}" / name


def fetched(server: RawServer) -> list[str]:
    """Each GET the server answered, as SCHEME:PATH."""
    return [f"{h[':scheme']}:{p}" for m, p, h in server.requests if m == "GET"]


# 1. The download cache: a source is its scheme, host, port and path.


@pytest.fixture
def tls(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context for 127.0.0.1, and the certificate to trust it by (REQUESTS_CA_BUNDLE)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context, cert


def test_an_http_fetch_never_stands_in_for_https(
    invoke: Invoke, start, tls: tuple[ssl.SSLContext, Path], tmp_path: Path
) -> None:
    # One port, both schemes: plain http (anyone on the path) serves a release of its own.
    context, cert = tls
    server = start(serving({"http:/alloy": POISONED, "https:/alloy": HONEST}), tls=context)
    plain, secure = (f"{scheme}://127.0.0.1:{port(server)}/alloy" for scheme in ("http", "https"))
    ok(invoke("fetch", f"--base-url={plain}"))
    assert cached(tmp_path, plain).read_bytes() == POISONED[ZIP]
    ok(invoke("fetch", f"--base-url={secure}", env={"REQUESTS_CA_BUNDLE": str(cert)}))
    sums, zip_path = f"/alloy/v{VERSION}/SHA256SUMS", f"/alloy/v{VERSION}/{ZIP}"
    assert fetched(server) == [
        f"http:{sums}",
        f"http:{zip_path}",
        f"https:{sums}",
        f"https:{zip_path}",
    ]
    assert cached(tmp_path, secure).read_bytes() == HONEST[ZIP]
    assert cached(tmp_path, plain).read_bytes() == POISONED[ZIP]  # each source keeps its own


def test_another_path_is_another_source(invoke: Invoke, start, tmp_path: Path) -> None:
    # The older layout kept both in one folder (HOST_PORT_a_b), so /a/b was never asked.
    server = start(serving({"/a_b": POISONED, "/a/b": HONEST}))
    ok(invoke("fetch", f"--base-url={server.base_url}/a_b"))
    ok(invoke("fetch", f"--base-url={server.base_url}/a/b"))
    asked = [f"http:/a/b/v{VERSION}/{name}" for name in ("SHA256SUMS", ZIP)]
    assert fetched(server)[2:] == asked
    assert cached(tmp_path, f"{server.base_url}/a/b").read_bytes() == HONEST[ZIP]


def older_layout_key(base_url: str) -> str:
    """The cache folder an older alloy-sysext kept a source in: host, port and path, no scheme."""
    return base_url.split("://", 1)[1].replace(":", "_").replace("/", "_")


def test_an_older_layouts_cache_is_ignored_by_builds_and_removed_by_clean(
    invoke: Invoke, start, tmp_path: Path
) -> None:
    server = start(serving({"/alloy": HONEST}))
    base = f"{server.base_url}/alloy"
    # What an older version left: the same source's folder, under its older name, holding a
    # release that is not the one served (another tool, a poisoned http fetch, a fixed release).
    cache = tmp_path / "cache" / "alloy-sysext"
    older = cache / older_layout_key(base) / f"v{VERSION}"
    older.mkdir(parents=True)
    for name in ("SHA256SUMS", ZIP):
        (older / name).write_bytes(POISONED[name])
    ok(invoke("fetch", f"--base-url={base}"))
    assert len(fetched(server)) == 2
    assert cached(tmp_path, base).read_bytes() == HONEST[ZIP]
    ok(invoke("clean", "--cache"))
    assert [p.name for p in cache.iterdir()] == [CACHE_TAG]


# 2. Hostile URLs: refused before any request, in one line naming the URL and its source.


@pytest.fixture
def proxy(start) -> RawServer:
    """Where requests to any name go (HTTP_PROXY): a request that reaches it went to a host that
    is not this machine."""
    return start(serving({}))


def proxied(proxy: RawServer) -> dict[str, str]:
    local = "127.0.0.1,localhost"
    url = proxy.base_url
    return {"HTTP_PROXY": url, "http_proxy": url, "NO_PROXY": local, "no_proxy": local}


# (URL, with {port} the honest server's, and why it is refused)
HOSTILE = [
    # urllib3 ends the host at the backslash: this one connects to alloy.example.
    ("http://alloy.example\\@127.0.0.1:{port}/alloy", "backslash"),
    ("http://127.0.0.1:{port}/alloy\\x", "backslash"),
    ("http://user@127.0.0.1:{port}/alloy", "names a user"),
    ("http://user:secret@127.0.0.1:{port}/alloy", "names a user"),
    ("http://127.0.0.1:{port}@alloy.example/alloy", "names a user"),
    ("http://127.1:{port}/alloy", "four decimal numbers"),
    ("http://0x7f.0.0.1:{port}/alloy", "four decimal numbers"),
    ("http://0177.0.0.1:{port}/alloy", "four decimal numbers"),
    ("http://2130706433:{port}/alloy", "four decimal numbers"),
    ("http://127.0.0.1.:{port}/alloy", "four decimal numbers"),
    ("http://%31%32%37.0.0.1:{port}/alloy", "not a DNS name"),  # urllib3 decodes it
    ("http://[::1%25lo]:{port}/alloy", "not a DNS name"),
    ("http://127.0.0.1:{port}/al loy", "white space"),
    ("http://127.0.0.1\t:{port}/alloy", "white space"),  # urlsplit drops the tab
    ("http://127.0.0.1:{port}/alloy\x1b", "control character"),
    ("http://127.0.0.1:{port}/all\u00f6y", "non-ASCII"),
    ("http://127.0.0.1:{port}/alloy#x", "fragment"),
    ("http://127.0.0.1:{port}/alloy?x=1", "query"),
    ("http://127.0.0.1:+{port}/alloy", "HOST:PORT"),
]


@pytest.mark.parametrize(("template", "why"), HOSTILE, ids=[t for t, _ in HOSTILE])
def test_a_hostile_base_url_is_refused_before_any_request(
    invoke: Invoke, start, proxy: RawServer, template: str, why: str
) -> None:
    honest = start(serving({"/alloy": HONEST}))
    url = template.format(port=port(honest))
    result = invoke("fetch", f"--base-url={url}", "--retries=0", env=proxied(proxy))
    error_line(result, f"refusing the URL {url!r} (from --base-url): ", why)
    assert honest.requests == [] and proxy.requests == []


@pytest.mark.parametrize(
    ("option", "source"),
    [
        ("INVOKE_BASE_URL", "INVOKE_BASE_URL"),
        ("--api-url", "--api-url"),
        ("INVOKE_API_URL", "INVOKE_API_URL"),
    ],
)
def test_every_option_that_takes_a_url_checks_it(
    invoke: Invoke, start, proxy: RawServer, option: str, source: str
) -> None:
    honest = start(serving({"/alloy": HONEST}))
    url = f"http://alloy.example\\@127.0.0.1:{port(honest)}/alloy"
    env = proxied(proxy)
    args = ["fetch", "--version=latest", "--retries=0"]
    if option.startswith("--"):
        args.append(f"{option}={url}")
    else:
        env[option] = url
    error_line(invoke(*args, env=env), f"refusing the URL {url!r} (from {source}): ", "backslash")
    assert honest.requests == [] and proxy.requests == []


def redirecting_to(location: str) -> Answer:
    def answer(method: str, path: str, headers: dict[str, str]) -> list[bytes]:
        return [head("302 Found", {"Location": location, "Content-Length": "0"})]

    return answer


@pytest.mark.parametrize(
    ("template", "why"),
    [
        ("http://alloy.example\\@127.0.0.1:{port}/alloy/v{version}/SHA256SUMS", "backslash"),
        ("http://user:secret@127.0.0.1:{port}/alloy/v{version}/SHA256SUMS", "names a user"),
        ("http://127.1:{port}/alloy/v{version}/SHA256SUMS", "four decimal numbers"),
        ("/\\alloy.example/alloy/v{version}/SHA256SUMS", "backslash"),
    ],
)
def test_a_redirect_to_a_hostile_url_is_refused(
    invoke: Invoke, start, proxy: RawServer, template: str, why: str
) -> None:
    honest = start(serving({"/alloy": HONEST}))
    location = template.format(port=port(honest), version=VERSION)
    redirector = start(redirecting_to(location))
    sums_url = f"{redirector.base_url}/alloy/v{VERSION}/SHA256SUMS"
    result = invoke(
        "fetch", f"--base-url={redirector.base_url}/alloy", "--retries=0", env=proxied(proxy)
    )
    error_line(result, f"(from the redirect from {sums_url}): ", why)
    assert honest.requests == [] and proxy.requests == []
    assert len(redirector.requests) == 1


def test_a_hostile_link_to_the_next_page_of_releases_is_refused(
    invoke: Invoke, start, proxy: RawServer
) -> None:
    honest = start(serving({"/alloy": HONEST}))
    next_page = f"http://alloy.example\\@127.0.0.1:{port(honest)}/repos/releases?page=2"
    page = json.dumps([{"tag_name": "v1.10.2", "draft": False, "prerelease": False}]).encode()

    def api(method: str, path: str, headers: dict[str, str]) -> list[bytes]:
        link = f'<{next_page}>; rel="next"'
        return [head("200 OK", {"Content-Length": str(len(page)), "Link": link}), page]

    server = start(api)
    first = f"{server.base_url}/repos/releases?per_page=100"
    result = invoke(
        "fetch",
        "--version=latest",
        f"--api-url={server.base_url}/repos",
        "--retries=0",
        env=proxied(proxy),
    )
    error_line(
        result, f"refusing the URL {next_page!r} (from the Link: rel=next header of {first}): "
    )
    assert honest.requests == [] and proxy.requests == []
    assert len(server.requests) == 1


# 3. This machine: the host the client connects to, by name only `localhost`.


def test_a_loopback_url_through_a_remote_proxy_needs_allow_http(invoke: Invoke, start) -> None:
    honest = start(serving({"/alloy": HONEST}))
    far = "http://user:secret@192.0.2.1:9"  # TEST-NET-1: never connected to
    env = {"HTTP_PROXY": far, "http_proxy": far, "NO_PROXY": "", "no_proxy": ""}
    env["ALLOY_SYSEXT_TEST_TIMEOUT"] = "1"  # the code before this check tried to connect
    result = invoke("fetch", f"--base-url={honest.base_url}/alloy", "--retries=0", env=env)
    line = error_line(result, "through the proxy at 192.0.2.1 (HTTP_PROXY)", "NO_PROXY")
    assert "secret" not in line
    assert honest.requests == []


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://localhost./alloy/", "refusing plain http:// --publish-url"),  # a DNS name
        ("http://127.1/alloy/", "four decimal numbers"),
        ("http://0x7f000001/alloy/", "four decimal numbers"),
    ],
)
def test_release_takes_only_localhost_and_literal_loopback_as_this_machine(
    invoke: Invoke, tmp_path: Path, url: str, why: str
) -> None:
    (tmp_path / "output").mkdir()
    error_line(invoke("release", f"--publish-url={url}"), url, why)
    assert sorted(p.name for p in (tmp_path / "output").iterdir()) == []
