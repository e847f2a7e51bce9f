"""Hostile servers, fed to the real CLI: encoded bodies, sizes past the caps, trickles, absurd
retry hints, release lists built to break a parser, SHA256SUMS that vouch twice, versions in other
scripts, and plain-http publish URLs. Each run ends in one `error:` line and exit code 1, leaves
nothing under a final name, and stays under MAX_RSS_MIB of memory."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from build.config.spec import source_key
from build.core.errors import BuildError
from build.core.sums import parse_sums
from tests.conftest import REPO, VERSION
from tests.fakes import release_assets, sums
from tests.rawserver import Answer, RawServer, head

ZIP = "alloy-linux-amd64.zip"
ZIP_PATH = f"/v{VERSION}/{ZIP}"
SUMS_PATH = f"/v{VERSION}/SHA256SUMS"
API = "/repos/grafana/alloy"
MiB = 1 << 20
MAX_RSS_MIB = 100
BOMB_SIZE = 256 * MiB  # what a gzip-encoded body below unpacks to
ASSETS = release_assets()
GOOD_ZIP = ASSETS[ZIP]
GOOD_SUMS = ASSETS["SHA256SUMS"]

# The CLI as `python -m invoke`, writing its own peak memory (VmHWM) to $PEAK_FILE when it exits.
# Not getrusage's ru_maxrss: a child forked from this test process starts out with the test
# process's memory counted in, and exec keeps that high-water mark.
_CLI_WITH_PEAK = """
import atexit, os, runpy, sys

def peak():
    status = open("/proc/self/status").read()
    kib = int(status.split("VmHWM:")[1].split()[0])
    with open(os.environ["PEAK_FILE"], "w") as out:
        out.write(str(kib))

atexit.register(peak)
sys.argv = ["invoke", *sys.argv[1:]]
runpy.run_module("invoke", run_name="__main__", alter_sys=True)
"""


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    peak_mib: float


def run_cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Run:
    peak_file = tmp_path / "peak"
    peak_file.unlink(missing_ok=True)
    result = subprocess.run(
        [sys.executable, "-c", _CLI_WITH_PEAK, "--search-root", str(REPO), *args],
        cwd=tmp_path,
        env={
            **os.environ,
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
            "PEAK_FILE": str(peak_file),
            **(env or {}),
        },
        capture_output=True,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=300,
    )
    return Run(result.returncode, result.stdout, result.stderr, int(peak_file.read_text()) / 1024)


def error_line(run: Run, *fragments: str) -> str:
    """One `error: ` line on stderr naming the problem, exit code 1, no traceback, memory
    bounded."""
    where = f"\nstdout:\n{run.stdout}\nstderr:\n{run.stderr[:3000]}"
    assert run.returncode == 1, where
    assert "Traceback" not in run.stderr, where
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), where
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in the error line{where}"
    assert run.peak_mib < MAX_RSS_MIB, f"peak memory {run.peak_mib:.0f} MiB{where}"
    return lines[0]


def kept_files(tmp_path: Path) -> list[str]:
    """Files under the cache and output directories, lock files and the cache's own tag aside:
    a refused run keeps none (no final name, no temporary file)."""
    found = []
    for root in (tmp_path / "cache", tmp_path / "output"):
        if root.exists():
            found += [
                str(p.relative_to(tmp_path))
                for p in root.rglob("*")
                if p.is_file() and not p.name.endswith(".lock") and p.name != "CACHEDIR.TAG"
            ]
    return sorted(found)


def body(data: bytes, **headers: str) -> Iterator[bytes]:
    yield head("200 OK", {"Content-Length": str(len(data)), **headers})
    yield data


def release(zip_answer: Callable[[], Iterable[bytes | float]], sums_data: bytes = GOOD_SUMS):
    """A release whose SHA256SUMS is `sums_data` and whose amd64 zip is `zip_answer()`."""

    def answer(method: str, path: str, headers: dict[str, str]) -> Iterable[bytes | float]:
        if path == SUMS_PATH:
            return body(sums_data)
        if path == ZIP_PATH:
            return zip_answer()
        return [head("404 Not Found", {"Content-Length": "0"})]

    return answer


@cache
def gzip_of_zeros(prefix: bytes, size: int) -> bytes:
    """gzip of `prefix` and zeros up to `size` bytes: a few hundred KiB that unpack to `size`."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [packer.compress(prefix)]
    zeros = bytes(MiB)
    for _ in range((size - len(prefix)) // MiB):
        out.append(packer.compress(zeros))
    out.append(packer.flush())
    return b"".join(out)


def fetch(tmp_path: Path, server: RawServer, *args: str, env: dict[str, str] | None = None):
    return run_cli(tmp_path, "fetch", f"--base-url={server.base_url}", *args, env=env)


# 1. Content-Encoding is never decoded: the bytes kept and hashed are the bytes served.


def test_a_gzip_encoded_sha256sums_is_not_unpacked(serve, tmp_path: Path) -> None:
    bomb = gzip_of_zeros(b"", BOMB_SIZE)
    assert len(bomb) < MiB  # under the SHA256SUMS cap: refused for what it is, not its size

    def answer(method: str, path: str, headers: dict[str, str]) -> Iterable[bytes]:
        return body(bomb, **{"Content-Encoding": "gzip"})

    server = serve(answer)
    run = fetch(tmp_path, server, "--retries=0")
    error_line(run, f"{server.base_url}{SUMS_PATH} is not a SHA256SUMS file")
    assert server.gets(SUMS_PATH)[0]["accept-encoding"] == "identity"
    assert kept_files(tmp_path) == []


def test_a_gzip_encoded_zip_is_kept_as_served_and_refused(serve, tmp_path: Path) -> None:
    # SHA256SUMS vouches for what the gzip unpacks to: only decoding would make it match.
    bomb = gzip_of_zeros(b"PK\x03\x04", BOMB_SIZE)
    unpacked = hashlib.sha256(b"PK\x03\x04")
    zeros = bytes(MiB)
    for _ in range((BOMB_SIZE - 4) // MiB):
        unpacked.update(zeros)
    sums_data = f"{unpacked.hexdigest()}  {ZIP}\n".encode()
    server = serve(release(lambda: body(bomb, **{"Content-Encoding": "gzip"}), sums_data))
    run = fetch(tmp_path, server, "--retries=0")
    error_line(run, f"{server.base_url}{ZIP_PATH} is not a zip archive")
    assert server.gets(ZIP_PATH)[0]["accept-encoding"] == "identity"
    cached = tmp_path / "cache/alloy-sysext" / source_key(server.base_url) / f"v{VERSION}"
    assert kept_files(tmp_path) == []  # the version folder this fetch made went, SHA256SUMS too
    assert not cached.exists()


# 2. Size caps: by Content-Length at once, and while streaming when there is none.


def test_a_huge_sha256sums_is_refused_by_its_content_length(serve, tmp_path: Path) -> None:
    def answer(method: str, path: str, headers: dict[str, str]) -> Iterable[bytes | float]:
        yield head("200 OK", {"Content-Length": str(200 * 1000 * 1000)})
        yield b"0" * 65536
        yield 30.0  # then silence: a client reading on waits, or times out

    server = serve(answer)
    run = fetch(tmp_path, server, "--retries=2", env={"ALLOY_SYSEXT_TEST_TIMEOUT": "5"})
    error_line(run, f"{server.base_url}{SUMS_PATH} is 200000000 bytes", "more than the 1 MiB")
    assert len(server.gets(SUMS_PATH)) == 1  # no retry mends a size
    assert kept_files(tmp_path) == []


def test_a_zip_past_max_download_size_is_refused_by_its_content_length(
    serve, tmp_path: Path
) -> None:
    big = b"PK\x03\x04" + bytes(2 * MiB)
    server = serve(release(lambda: body(big), sums({ZIP: big})))
    run = fetch(tmp_path, server, "--retries=2", "--max-download-size=1")
    error_line(run, f"{server.base_url}{ZIP_PATH} is {len(big)} bytes", "--max-download-size")
    assert len(server.gets(ZIP_PATH)) == 1
    assert not any(name.endswith(ZIP) or ".tmp" in name for name in kept_files(tmp_path))


@pytest.mark.parametrize("framing", ["close-delimited", "chunked", "a Content-Length of digits"])
def test_a_zip_past_max_download_size_is_refused_while_streaming(
    serve, tmp_path: Path, framing: str
) -> None:
    big = b"PK\x03\x04" + bytes(3 * MiB)

    def answer() -> Iterator[bytes]:
        if framing == "chunked":
            yield head("200 OK", {"Transfer-Encoding": "chunked"})
            for start in range(0, len(big), 65536):
                piece = big[start : start + 65536]
                yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
            yield b"0\r\n\r\n"
        else:  # no length this tool can use: the body ends where the connection closes
            unusable = {"Content-Length": "\u0663\u0660\u0660"}  # Arabic-Indic 300
            yield head("200 OK", unusable if framing != "close-delimited" else {})
            yield big

    server = serve(release(answer, sums({ZIP: big})))
    run = fetch(tmp_path, server, "--retries=0", "--max-download-size=1")
    error_line(run, f"{server.base_url}{ZIP_PATH} sent more than", "--max-download-size")
    assert not any(name.endswith(ZIP) or ".tmp" in name for name in kept_files(tmp_path))


def test_a_content_length_that_lies_low_stops_the_read_there(serve, tmp_path: Path) -> None:
    big = b"PK\x03\x04" + bytes(3 * MiB)

    def answer() -> Iterator[bytes]:
        yield head("200 OK", {"Content-Length": "1000"})
        yield big

    server = serve(release(answer, sums({ZIP: big})))
    run = fetch(tmp_path, server, "--retries=0", "--max-download-size=1")
    line = error_line(run, f"{server.base_url}{ZIP_PATH} does not match its SHA256SUMS line")
    assert hashlib.sha256(big[:1000]).hexdigest() in line
    assert not any(name.endswith(ZIP) or ".tmp" in name for name in kept_files(tmp_path))


# 3. Stalls and slow servers: the stall rule, and a deadline per attempt.


def trickle(piece: bytes, every: float, total: int) -> Callable[[], Iterator[bytes | float]]:
    def answer() -> Iterator[bytes | float]:
        yield head("200 OK", {"Content-Length": str(total)})
        yield b"PK\x03\x04"
        while True:  # until the client hangs up or the server stops
            yield piece
            yield every

    return answer


def test_a_trickling_server_is_abandoned_as_stalled(serve, tmp_path: Path) -> None:
    server = serve(release(trickle(b"x", 0.2, MiB)))
    run = fetch(tmp_path, server, "--retries=0", "--stall-timeout=1")
    error_line(run, f"download of {server.base_url}{ZIP_PATH} failed: stalled", "--stall-timeout")
    assert len(server.gets(ZIP_PATH)) == 1
    assert not any(name.endswith(ZIP) or ".tmp" in name for name in kept_files(tmp_path))


def test_a_stall_is_retried_per_retries(serve, tmp_path: Path) -> None:
    server = serve(release(trickle(b"x", 0.2, MiB)))
    run = fetch(tmp_path, server, "--retries=1", "--stall-timeout=0.5")
    error_line(run, "stalled", "(tried 2 times)")
    assert len(server.gets(ZIP_PATH)) == 2


def test_download_timeout_bounds_a_server_that_never_stalls(serve, tmp_path: Path) -> None:
    # 2 KiB every 0.2 s: far more than 1 KiB in any stall timeout, and never the end.
    server = serve(release(trickle(bytes(2048), 0.2, 1024 * MiB)))
    args = ["--retries=0", "--stall-timeout=1", "--download-timeout=2", "--max-download-size=2048"]
    error_line(fetch(tmp_path, server, *args), "took longer than 2 s", "--download-timeout")
    assert len(server.gets(ZIP_PATH)) == 1
    assert not any(name.endswith(ZIP) or ".tmp" in name for name in kept_files(tmp_path))


def slow_headers() -> Iterator[bytes | float]:
    """A status line, then a header that never ends: one byte at a time, 0.2 s apart."""
    yield b"HTTP/1.1 200 OK\r\nX-Slow: "
    while True:
        yield b"x"
        yield 0.2


def test_download_timeout_bounds_a_server_that_trickles_its_headers(serve, tmp_path: Path) -> None:
    server = serve(release(slow_headers))
    args = ["--retries=0", "--stall-timeout=1", "--download-timeout=2"]
    error_line(fetch(tmp_path, server, *args), "took longer than 2 s", "--download-timeout")
    assert not any(name.endswith(ZIP) or ".tmp" in name for name in kept_files(tmp_path))


def test_download_timeout_bounds_the_api_too(serve, tmp_path: Path) -> None:
    server = serve(api(slow_headers))
    run = latest(tmp_path, server, "--stall-timeout=1", "--download-timeout=2")
    error_line(run, f"request to {server.base_url}{API}/releases", "took longer than 2 s")
    assert kept_files(tmp_path) == []


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max-download-size", "0"),
        ("max-download-size", "1e3"),
        ("max-download-size", "99999999999"),
        ("max-download-size", "\u0662\u0660"),
        ("stall-timeout", "0"),
        ("stall-timeout", "-1"),
        ("stall-timeout", "nan"),
        ("stall-timeout", "inf"),
        ("stall-timeout", "1" * 5000),
        ("download-timeout", "abc"),
        ("download-timeout", "1e400"),
        ("download-timeout", "99999999"),
    ],
)
def test_absurd_download_options_are_one_line(tmp_path: Path, option: str, value: str) -> None:
    run = run_cli(tmp_path, "fetch", f"--{option}={value}", "--base-url=http://127.0.0.1:9/x")
    error_line(run, f"invalid {option.replace('-', ' ')}", f"--{option}=")
    assert len(error_line(run)) < 300
    env_run = run_cli(
        tmp_path,
        "fetch",
        "--base-url=http://127.0.0.1:9/x",
        env={f"INVOKE_{option.replace('-', '_').upper()}": value},
    )
    error_line(env_run, f"invalid {option.replace('-', ' ')}")
    assert kept_files(tmp_path) == []


def test_the_download_options_take_no_short_flag(tmp_path: Path) -> None:
    run = run_cli(tmp_path, "--help", "fetch")
    assert run.returncode == 0, run.stderr
    for option in ("max-download-size", "stall-timeout", "download-timeout"):
        assert f"  --{option}=STRING" in run.stdout  # no "-x STRING, " in front of it


# 4. Absurd retry hints: one line, never OverflowError or ValueError.

ABSURD_HINTS = [
    {"Retry-After": "99999999999999999999"},
    {"Retry-After": "9" * 5000},
    {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "99999999999999999999"},
    {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "9" * 5000},
]


@pytest.mark.parametrize("hint", ABSURD_HINTS, ids=lambda h: f"{len(str(h))}")
def test_an_absurd_retry_hint_on_the_zip(serve, tmp_path: Path, hint: dict[str, str]) -> None:
    status = "429 Too Many Requests" if "Retry-After" in hint else "403 Forbidden"
    server = serve(release(lambda: [head(status, {"Content-Length": "0", **hint})]))
    run = fetch(tmp_path, server, "--retries=1")
    line = error_line(run, f"download of {server.base_url}{ZIP_PATH} failed")
    assert len(line) < 400
    assert not any(name.endswith(ZIP) or ".tmp" in name for name in kept_files(tmp_path))


def api(pages: Callable[[], Iterable[bytes | float]]) -> Answer:
    def answer(method: str, path: str, headers: dict[str, str]) -> Iterable[bytes | float]:
        if path.startswith(f"{API}/releases"):
            return pages()
        return [head("404 Not Found", {"Content-Length": "0"})]

    return answer


def latest(tmp_path: Path, server: RawServer, *args: str) -> Run:
    return run_cli(
        tmp_path,
        "fetch",
        "--version=latest",
        f"--api-url={server.base_url}{API}",
        f"--base-url={server.base_url}/download",
        "--retries=0",
        *args,
    )


@pytest.mark.parametrize("hint", ABSURD_HINTS, ids=lambda h: f"{len(str(h))}")
def test_an_absurd_retry_hint_from_the_api(serve, tmp_path: Path, hint: dict[str, str]) -> None:
    status = "429 Too Many Requests" if "Retry-After" in hint else "403 Forbidden"
    server = serve(api(lambda: [head(status, {"Content-Length": "0", **hint})]))
    line = error_line(latest(tmp_path, server), f"{server.base_url}{API}/releases")
    assert len(line) < 400
    assert kept_files(tmp_path) == []


# 5. Release lists built to break a parser.


def json_page(data: bytes) -> Callable[[], Iterable[bytes]]:
    return lambda: body(data, **{"Content-Type": "application/json"})


def stable(tag: str) -> dict[str, object]:
    return {"tag_name": tag, "draft": False, "prerelease": False}


@pytest.mark.parametrize(
    "tag",
    [
        "v1." + "9" * 5000 + ".0",  # int() refuses more than 4300 digits
        "v1." + "9" * 4000 + ".0",  # int() takes it: a version no URL should carry
        "v\u0661.\u0662.\u0663",  # Arabic-Indic 1.2.3
    ],
    ids=["5000-digits", "4000-digits", "arabic-indic"],
)
def test_a_hostile_release_tag_is_not_a_stable_release(serve, tmp_path: Path, tag: str) -> None:
    server = serve(api(json_page(json.dumps([stable(tag)]).encode())))
    error_line(latest(tmp_path, server), f"no stable release at {server.base_url}{API}/releases")
    assert kept_files(tmp_path) == []


def test_a_hostile_tag_beside_a_good_one_is_passed_over(serve, tmp_path: Path) -> None:
    releases = [stable("v1." + "9" * 5000 + ".0"), stable("v\u0661.0.0"), stable("v0.0.1")]
    server = serve(api(json_page(json.dumps(releases).encode())))
    run = latest(tmp_path, server)  # 0.0.1 chosen, then not found at the base URL
    error_line(run, "Alloy v0.0.1 not found")
    assert "latest   0.0.1" in run.stdout


@pytest.mark.parametrize(
    "page",
    [
        b"[" * 200_000 + b"]" * 200_000,
        b'[{"tag_name": "v1.2.3", "draft": false}' + b", 0" * (3 * MiB) + b"]",
        b'["' + b"x" * (31 * MiB) + b'"]',
        b'["' + b"\\n" * (15 * MiB) + b'"]',
        b"[" + b'"ab",' * (6 * MiB) + b'"ab"]',
    ],
    ids=[
        "200000-deep",
        "millions-of-values",
        "31-MiB-string",
        "escapes",
        "short-strings",
    ],
)
def test_a_release_list_built_to_break_a_parser(serve, tmp_path: Path, page: bytes) -> None:
    server = serve(api(json_page(page)))
    run = latest(tmp_path, server)
    line = error_line(run, f"{server.base_url}{API}/releases")
    assert "did not answer with a JSON list of releases" in line or "no stable release" in line
    assert kept_files(tmp_path) == []


def test_a_gzip_encoded_api_page_is_not_unpacked(serve, tmp_path: Path) -> None:
    bomb = gzip_of_zeros(b"[", BOMB_SIZE)
    server = serve(api(lambda: body(bomb, **{"Content-Encoding": "gzip"})))
    run = latest(tmp_path, server)
    error_line(run, f"{server.base_url}{API}/releases", "did not answer with a JSON list")
    assert server.gets("releases?per_page=100")[0]["accept-encoding"] == "identity"
    assert kept_files(tmp_path) == []


def test_an_api_page_past_its_cap_is_refused_at_once(serve, tmp_path: Path) -> None:
    def answer() -> Iterator[bytes | float]:
        yield head("200 OK", {"Content-Length": str(33 * MiB)})
        yield b"["
        yield 30.0

    server = serve(api(answer))
    run = latest(tmp_path, server)
    error_line(run, f"is {33 * MiB} bytes, more than the 32 MiB")
    assert kept_files(tmp_path) == []


# 6. A SHA256SUMS that vouches for two different zips.


def test_a_sha256sums_with_two_hashes_for_the_zip_is_refused(serve, tmp_path: Path) -> None:
    other = hashlib.sha256(b"another zip").hexdigest()
    genuine = hashlib.sha256(GOOD_ZIP).hexdigest()
    # The genuine line last: the old reading (the last line wins) took the zip.
    two = f"{other}  {ZIP}\n{genuine}  {ZIP}\n".encode()
    server = serve(release(lambda: body(GOOD_ZIP), two))
    run = fetch(tmp_path, server, "--retries=0")
    error_line(run, f"{server.base_url}{SUMS_PATH} lists two different sha256 for '{ZIP}'")
    assert server.gets(ZIP_PATH) == []
    assert kept_files(tmp_path) == []


def test_the_same_hash_twice_is_harmless() -> None:
    genuine = hashlib.sha256(GOOD_ZIP).hexdigest()
    text = f"{genuine}  {ZIP}\n{genuine.upper()} *./{ZIP}\n"
    assert parse_sums(text) == {ZIP: genuine}
    with pytest.raises(BuildError, match="two different sha256"):
        parse_sums(f"{genuine}  {ZIP}\n{'0' * 64}  {ZIP}\n")


# 7. Versions take ASCII digits only.


@pytest.mark.parametrize(
    "version", ["\u0661.\u0660.\u0660", "v\u0661.\u0660.\u0660", "1.\u0661\u0660.2"]
)
def test_a_version_in_other_digits_is_refused_before_any_request(
    serve, tmp_path: Path, version: str
) -> None:
    server = serve(release(lambda: body(GOOD_ZIP)))
    run = fetch(tmp_path, server, f"--version={version}")
    error_line(run, "invalid version")
    assert server.requests == []
    assert kept_files(tmp_path) == []


def test_a_version_of_thousands_of_digits_is_one_short_line(serve, tmp_path: Path) -> None:
    server = serve(release(lambda: body(GOOD_ZIP)))
    line = error_line(fetch(tmp_path, server, f"--version=1.{'9' * 5000}.0"), "invalid version")
    assert len(line) < 300
    assert server.requests == []


# 8. release: a plain-http publish or update URL to another host needs --allow-http.


@pytest.mark.parametrize(
    "args",
    [
        ["--publish-url=http://downloads.example.com/alloy/"],
        ["--publish-url=https://downloads.example.com/alloy/", "--update-url=http://x.example/a/"],
    ],
)
def test_release_refuses_plain_http_to_another_host(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "output").mkdir()
    option = args[-1].split("=")[0]
    url = args[-1].split("=", 1)[1]
    error_line(run_cli(tmp_path, "release", *args), f"refusing plain http:// {option} {url}")
    assert kept_files(tmp_path) == []
    # With --allow-http (or INVOKE_ALLOW_HTTP) the URL passes, and the empty directory is next.
    allowed = run_cli(tmp_path, "release", *args, "--allow-http")
    error_line(allowed, "no images in")
    from_env = run_cli(tmp_path, "release", *args, env={"INVOKE_ALLOW_HTTP": "true"})
    error_line(from_env, "no images in")
    # Plain http to this machine needs no flag, as for downloads.
    local = [arg.replace("downloads.example.com", "127.0.0.1:8080") for arg in args]
    local = [arg.replace("x.example", "localhost") for arg in local]
    error_line(run_cli(tmp_path, "release", *local), "no images in")
