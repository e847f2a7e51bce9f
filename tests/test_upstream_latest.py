"""--version=latest: GitHub's releases API as the test server answers it (pages linked by Link:
rel="next", drafts, prereleases, tags of other kinds), the token, rate limits, the cached answer,
a whole build of "latest", and "latest" in the build matrix."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from build.config.matrix import Cell, cells
from build.core.errors import BuildError
from build.fetch import http
from build.fetch.latest import MAX_AGE, cache_file, highest_stable, resolve
from tests.conftest import REPO, Invoke, Release
from tests.fakes import release_assets
from tests.specs import latest_spec_of, spec_of

API = "/repos/grafana/alloy"
NEWEST = "1.17.1"


def github_release(tag: str, *, draft: bool = False, prerelease: bool = False) -> dict[str, Any]:
    """A release as GitHub's API lists it (the fields that matter here, and a few that do not)."""
    return {
        "tag_name": tag,
        "name": tag,
        "draft": draft,
        "prerelease": prerelease,
        "html_url": f"https://github.com/grafana/alloy/releases/tag/{tag}",
        "assets": [],
    }


# Newest first, as GitHub lists them; the highest stable release is on the second page.
PAGES = [
    [
        github_release("v1.19.0", draft=True),
        github_release("v1.18.0-rc.1", prerelease=True),
        github_release("v1.18.0", prerelease=True),
        github_release("helm-chart/1.5.0"),  # not vX.Y.Z: ignored, however it is flagged
        github_release("v2.0.0-beta.1"),
        github_release("v1.9.0"),
    ],
    [
        github_release(f"v{NEWEST}"),
        github_release("v1.10.0"),
        github_release("v1.16.3"),
    ],
]


class ReleasesAPI:
    """GitHub's releases API for Alloy on the test server, at {url}/releases?per_page=100."""

    def __init__(self, server: HTTPServer, pages: list[list[dict[str, Any]]] = PAGES) -> None:
        self.server = server
        self.url = server.url_for(API)
        for number, page in enumerate(pages, 1):
            headers = {}
            if number < len(pages):
                following = f"{self.url}/releases?per_page=100&page={number + 1}"
                last = f"{self.url}/releases?per_page=100&page={len(pages)}"
                headers["Link"] = f'<{following}>; rel="next", <{last}>; rel="last"'
            query = {"per_page": "100", **({"page": str(number)} if number > 1 else {})}
            server.expect_request(
                f"{API}/releases", method="GET", query_string=query
            ).respond_with_json(page, headers=headers)

    def requests(self) -> list[Any]:
        return [request for request, _ in self.server.log if request.path.startswith(API)]

    def lookups(self) -> int:
        """How many times the list was read from its first page."""
        return sum("page" not in request.args for request in self.requests())


@pytest.fixture(autouse=True)
def _no_token_no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.setattr(http, "BACKOFF", 0)


@pytest.fixture
def api(httpserver: HTTPServer) -> ReleasesAPI:
    return ReleasesAPI(httpserver)


# The answer


def test_highest_stable_release_across_pages(api: ReleasesAPI, tmp_path: Path) -> None:
    found = resolve(api.url, tmp_path, retries=0)
    assert (found.version, found.age) == (NEWEST, None)
    assert found.describe() == f"{NEWEST} (from {api.url})"
    requests = api.requests()
    assert [request.query_string.decode() for request in requests] == [
        "per_page=100",
        "per_page=100&page=2",
    ]
    for request in requests:
        assert request.headers["Accept"] == "application/vnd.github+json"
        assert request.headers["User-Agent"] == http.USER_AGENT
        assert "Authorization" not in request.headers


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (["v1.9.0", "v1.10.0"], "1.10.0"),  # as numbers, not as text
        (["v1.10.0", "v1.9.12"], "1.10.0"),
        (["v2.0.0", "v10.0.0", "v9.99.99"], "10.0.0"),
        (["v1.17.1", "v1.17.0", "1.18.0", "v1.18", "v1.18.0.1", "alloy-v1.18.0"], "1.17.1"),
    ],
)
def test_versions_compare_as_numbers(tags: list[str], expected: str) -> None:
    assert highest_stable([github_release(tag) for tag in tags], "API") == expected


def test_a_prerelease_loses_to_a_lower_stable_release() -> None:
    releases = [github_release("v1.18.0-rc.1", prerelease=True), github_release("v1.17.1")]
    assert highest_stable(releases, "API") == "1.17.1"
    releases = [github_release("v1.18.0", draft=True), github_release("v1.17.1")]
    assert highest_stable(releases, "API") == "1.17.1"


def test_no_stable_release_is_said_plainly(httpserver: HTTPServer, tmp_path: Path) -> None:
    only_candidates = [[github_release("v1.18.0-rc.1", prerelease=True), github_release("nightly")]]
    api = ReleasesAPI(httpserver, only_candidates)
    with pytest.raises(BuildError) as caught:
        resolve(api.url, tmp_path, retries=0)
    text = str(caught.value)
    assert text.startswith(f"no stable release at {api.url}/releases (2 releases")
    assert "pin --version=X.Y.Z" in text
    assert not cache_file(tmp_path, api.url).exists()


def test_token_is_sent_when_set(
    api: ReleasesAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_test123\n")
    assert resolve(api.url, tmp_path, retries=0).version == NEWEST
    headers = [request.headers.get("Authorization") for request in api.requests()]
    assert headers == ["Bearer ghp_test123", "Bearer ghp_test123"]


def test_token_is_not_sent_to_another_host(
    httpserver: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A next page elsewhere (here: the same server under its address, not its name)."""
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_test123")
    url = httpserver.url_for(API)
    elsewhere = url.replace("//localhost:", "//127.0.0.1:")
    assert elsewhere != url
    httpserver.expect_request(
        f"{API}/releases", query_string={"per_page": "100"}
    ).respond_with_json(PAGES[0], headers={"Link": f'<{elsewhere}/releases?page=2>; rel="next"'})
    httpserver.expect_request(f"{API}/releases", query_string={"page": "2"}).respond_with_json(
        PAGES[1]
    )
    assert resolve(url, tmp_path, retries=0).version == NEWEST
    first, second = (request for request, _ in httpserver.log)
    assert first.headers["Authorization"] == "Bearer ghp_test123"
    assert second.host.startswith("127.0.0.1:")
    assert "Authorization" not in second.headers


def test_a_5xx_is_retried(httpserver: HTTPServer, tmp_path: Path) -> None:
    url = httpserver.url_for(API)
    httpserver.expect_ordered_request(f"{API}/releases").respond_with_data("busy", status=502)
    httpserver.expect_ordered_request(f"{API}/releases").respond_with_json(PAGES[1])
    assert resolve(url, tmp_path, retries=1).version == NEWEST
    assert [response.status_code for _, response in httpserver.log] == [502, 200]


def test_a_wrong_api_url_is_said_plainly(httpserver: HTTPServer, tmp_path: Path) -> None:
    httpserver.no_handler_status_code = 404
    url = httpserver.url_for("/grafana/alloy")
    with pytest.raises(BuildError) as caught:
        resolve(url, tmp_path, retries=3)
    assert str(caught.value) == (
        f"{url}/releases?per_page=100 returned HTTP 404: no releases API there; "
        "check --api-url (GitHub's is https://api.github.com/repos/grafana/alloy)"
    )
    assert len(httpserver.log) == 1  # not retried


def test_an_answer_that_is_not_a_release_list(httpserver: HTTPServer, tmp_path: Path) -> None:
    httpserver.expect_request(f"{API}/releases").respond_with_data("<html></html>")
    with pytest.raises(BuildError, match="did not answer with a JSON list of releases"):
        resolve(httpserver.url_for(API), tmp_path, retries=0)


def test_an_invalid_api_url_is_refused_before_any_request(tmp_path: Path) -> None:
    options = {"version": "latest", "api_url": "api.github.com/repos/grafana/alloy"}
    with pytest.raises(BuildError, match=r"invalid API URL .*use --api-url=https://"):
        latest_spec_of({**options, "cache_dir": str(tmp_path)})


def test_a_pinned_version_asks_no_one(httpserver: HTTPServer, tmp_path: Path) -> None:
    options = {"version": "1.10.2", "api_url": httpserver.url_for(API), "cache_dir": tmp_path}
    assert latest_spec_of(options) == spec_of(options)
    assert httpserver.log == []


# Rate limits: one line on stderr, through the real CLI, and no second try.


def rate_limit_answers(server: HTTPServer, status: int, headers: dict[str, str]) -> None:
    server.expect_request(f"{API}/releases").respond_with_json(
        {"message": "API rate limit exceeded for 127.0.0.1."}, status=status, headers=headers
    )


@pytest.mark.parametrize(
    ("status", "headers", "reset"),
    [
        (
            403,
            {"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "RESET"},
            r"it resets at \d\d:\d\d:\d\d UTC, in (3[0-9]|40) min",
        ),
        (429, {"Retry-After": "30"}, r"it resets at \d\d:\d\d:\d\d UTC, in [23]\d s"),
    ],
)
def test_rate_limit_is_one_clear_line(
    invoke: Invoke,
    httpserver: HTTPServer,
    tmp_path: Path,
    status: int,
    headers: dict[str, str],
    reset: str,
) -> None:
    if headers.get("X-RateLimit-Reset") == "RESET":
        headers = {**headers, "X-RateLimit-Reset": str(int(time.time()) + 40 * 60)}
    rate_limit_answers(httpserver, status, headers)
    url = httpserver.url_for(API)
    result = invoke("all", "--version=latest", f"--api-url={url}", env={"GITHUB_TOKEN": ""})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    pattern = (
        rf"error: GitHub API rate limit reached at {re.escape(url)}/releases\?per_page=100 "
        rf"\(HTTP {status}\); {reset}; set GITHUB_TOKEN to a GitHub token \(a far higher limit\), "
        r"wait, or pin --version=X\.Y\.Z"
    )
    assert re.fullmatch(pattern, lines[0]), lines[0]
    assert len(httpserver.log) == 1  # no retry: a second later it would be refused as well
    assert not (tmp_path / "output").exists()


def test_rate_limit_with_a_token_says_to_wait(
    httpserver: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_test123")
    rate_limit_answers(httpserver, 403, {"X-RateLimit-Remaining": "0"})
    with pytest.raises(BuildError) as caught:
        resolve(httpserver.url_for(API), tmp_path, retries=3)
    text = str(caught.value)
    assert "no time it resets" in text
    assert text.endswith("wait until then, or pin --version=X.Y.Z (GITHUB_TOKEN is set)")


# The cached answer


def test_a_cached_answer_is_reused_until_it_is_old(api: ReleasesAPI, tmp_path: Path) -> None:
    assert resolve(api.url, tmp_path, retries=0).age is None
    assert api.lookups() == 1
    record = json.loads(cache_file(tmp_path, api.url).read_text())
    assert record["version"] == NEWEST and record["api_url"] == api.url

    again = resolve(api.url, tmp_path, retries=0)
    assert again.version == NEWEST and again.age is not None and 0 <= again.age < 60
    assert api.lookups() == 1
    assert re.fullmatch(rf"{NEWEST} \(from {api.url}, cached \d+ s ago\)", again.describe())

    record["fetched"] = time.time() - 4 * 60
    cache_file(tmp_path, api.url).write_text(json.dumps(record))
    assert resolve(api.url, tmp_path, retries=0).describe().endswith(", cached 4 min ago)")
    assert api.lookups() == 1

    record["fetched"] = time.time() - MAX_AGE - 1
    cache_file(tmp_path, api.url).write_text(json.dumps(record))
    assert resolve(api.url, tmp_path, retries=0).age is None
    assert api.lookups() == 2


def test_an_old_cached_answer_is_used_with_a_warning_when_the_api_is_down(
    httpserver: HTTPServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = httpserver.url_for(API)
    httpserver.expect_request(f"{API}/releases").respond_with_data("down", status=503)
    record = {"api_url": url, "version": "1.9.0", "fetched": time.time() - 3 * 3600}
    cache_file(tmp_path, url).write_text(json.dumps(record))
    found = resolve(url, tmp_path, retries=0)
    assert found.version == "1.9.0" and found.age is not None and found.age > MAX_AGE
    out = capsys.readouterr().out
    assert f"warning: {url}/releases could not be read (" in out
    assert "HTTP 503" in out and "using the answer cached 180 min ago" in out
    # Without a cached answer, the same outage is the error it always was.
    cache_file(tmp_path, url).unlink()
    with pytest.raises(BuildError, match="HTTP 503"):
        resolve(url, tmp_path, retries=0)


@pytest.mark.parametrize(
    "content",
    ["", "{", '{"version": "1.2.3"}', "[]", '"x"', "VERSION ../x", "VERSION 1.18.0-rc.1"],
)
def test_a_broken_cached_answer_is_asked_again(
    api: ReleasesAPI, tmp_path: Path, content: str
) -> None:
    if content.startswith("VERSION "):  # a fresh record of this API, but not a stable version
        record = {"api_url": api.url, "version": content.split()[1], "fetched": time.time()}
        content = json.dumps(record)
    cache_file(tmp_path, api.url).write_text(content)
    assert resolve(api.url, tmp_path, retries=0).version == NEWEST
    assert api.lookups() == 1


def test_each_api_url_has_its_own_answer(httpserver: HTTPServer, tmp_path: Path) -> None:
    api = ReleasesAPI(httpserver)
    mirror = httpserver.url_for("/mirror")
    httpserver.expect_request("/mirror/releases").respond_with_json([github_release("v1.10.2")])
    assert resolve(api.url, tmp_path, retries=0).version == NEWEST
    assert resolve(mirror, tmp_path, retries=0).version == "1.10.2"
    assert cache_file(tmp_path, api.url) != cache_file(tmp_path, mirror)


# The whole build, through the real CLI


@pytest.fixture
def newest(release: Release) -> Release:
    release.publish(NEWEST, release_assets(seed=17))
    return release


def downloads(release: Release) -> list[str]:
    return [path for path in release.requests() if not path.startswith(API)]


def test_all_with_latest_builds_the_newest_release(
    invoke: Invoke, newest: Release, api: ReleasesAPI, tmp_path: Path
) -> None:
    first = invoke("all", "--version=latest", f"--api-url={api.url}")
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"latest   {NEWEST} (from {api.url})\n" in first.stdout
    assert first.stdout.count("latest ") == 1
    images = sorted(path.name for path in (tmp_path / "output").glob("*.raw"))
    assert images == [f"alloy-{NEWEST}-amd64.raw", f"alloy-{NEWEST}.raw"]
    assert api.lookups() == 1
    assert downloads(newest) == [f"/v{NEWEST}/SHA256SUMS", f"/v{NEWEST}/alloy-linux-amd64.zip"]

    # Unchanged, within the cache's time: no request at all, not even to the API.
    count = len(newest.requests())
    again = invoke("all", "--version=latest", f"--api-url={api.url}")
    assert again.returncode == 0, again.stdout + again.stderr
    cached = rf"^latest   {NEWEST} \(from {re.escape(api.url)}, cached \d+ s ago\)$"
    assert re.search(cached, again.stdout, re.M), again.stdout
    assert "up to date" in again.stdout
    assert len(newest.requests()) == count

    # invoke.yaml or INVOKE_VERSION=latest, with INVOKE_API_URL, the same.
    env = {"INVOKE_VERSION": "latest", "INVOKE_API_URL": api.url}
    configured = invoke("checksum", "--force", env=env)
    assert configured.returncode == 0, configured.stdout + configured.stderr
    assert f"checksum wrote output/alloy-{NEWEST}-amd64.raw.sha256 " in configured.stdout
    assert len(newest.requests()) == count


def test_pinned_version_never_asks_the_api(
    invoke: Invoke, newest: Release, api: ReleasesAPI
) -> None:
    result = invoke("all", f"--version={NEWEST}", f"--api-url={api.url}", "--no-verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "latest" not in result.stdout
    assert api.requests() == []


def test_expired_answer_is_asked_again_through_the_cli(
    invoke: Invoke, newest: Release, api: ReleasesAPI, tmp_path: Path
) -> None:
    args = ("fetch", "--version=latest", f"--api-url={api.url}")
    assert invoke(*args).returncode == 0
    path = cache_file(tmp_path / "cache" / "alloy-sysext", api.url)
    record = json.loads(path.read_text())
    record["fetched"] -= MAX_AGE + 1
    path.write_text(json.dumps(record))
    result = invoke(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"latest   {NEWEST} (from {api.url})\n" in result.stdout
    assert api.lookups() == 2
    assert downloads(newest) == [f"/v{NEWEST}/SHA256SUMS", f"/v{NEWEST}/alloy-linux-amd64.zip"]


def test_clean_and_verify_image_need_no_answer(
    invoke: Invoke, newest: Release, api: ReleasesAPI, tmp_path: Path
) -> None:
    """A configured "latest" is not asked for where the version is not used."""
    built = invoke("all", "--version=latest", f"--api-url={api.url}", "--no-verify")
    assert built.returncode == 0, built.stdout + built.stderr
    assert api.lookups() == 1
    api.server.clear_all_handlers()  # from here on, the API answers 500
    env = {"INVOKE_VERSION": "latest", "INVOKE_API_URL": api.url}
    image = tmp_path / "output" / f"alloy-{NEWEST}-amd64.raw"
    checked = invoke("verify", f"--image={image}", env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "latest" not in checked.stdout
    # With --version=latest, clean removes that version's files: from the cached answer.
    cleaned = invoke("clean", "--version=latest", "--arch=amd64", env=env)
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert not image.exists()
    emptied = invoke("clean", env=env)
    assert emptied.returncode == 0, emptied.stdout + emptied.stderr
    assert not (tmp_path / "output").exists()
    assert api.lookups() == 1


# The build matrix


def nox(*args: str, env: dict[str, str], cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nox", "--noxfile", str(REPO / "noxfile.py"), *args],
        cwd=cwd,
        env={**os.environ, "GITHUB_TOKEN": "", **env},
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=600,
    )


def test_the_matrix_takes_latest() -> None:
    assert cells({"ALLOY_VERSIONS": "latest,1.10.2", "ALLOY_ARCHS": "amd64"}) == [
        Cell("latest", "amd64"),
        Cell("1.10.2", "amd64"),
    ]
    result = nox("--list", "--json", "-t", "build", env={"ALLOY_VERSIONS": "latest"})
    assert result.returncode == 0, result.stderr
    sessions = {s["session"]: s for s in json.loads(result.stdout)}
    assert list(sessions) == ["build-matrix(latest-amd64)", "build-matrix(latest-arm64)"]
    assert sessions["build-matrix(latest-amd64)"]["call_spec"] == {
        "version": "latest",
        "arch": "amd64",
    }
    assert set(sessions["build-matrix(latest-arm64)"]["tags"]) == {"build", "arm64", "latest"}


def test_parallel_latest_cells_ask_once(newest: Release, api: ReleasesAPI, tmp_path: Path) -> None:
    args = [
        "-j",
        "2",
        "-s",
        "build-matrix",
        "--",
        f"--base-url={newest.base_url}",
        f"--api-url={api.url}",
        f"--output-dir={tmp_path / 'out'}",
        f"--cache-dir={tmp_path / 'cache'}",
        "--no-verify",
    ]
    result = nox(*args, env={"ALLOY_VERSIONS": "latest"}, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert api.lookups() == 1
    images = sorted(path.name for path in (tmp_path / "out").glob("*.raw"))
    assert images == [
        f"alloy-{NEWEST}-amd64.raw",
        f"alloy-{NEWEST}-arm64.raw",
        f"alloy-{NEWEST}.raw",
    ]


def test_api_url_takes_no_short_flag_from_the_older_options(invoke: Invoke) -> None:
    result = invoke("--help", "verify")
    assert result.returncode == 0, result.stderr
    flags = {line.split()[0].rstrip(",") for line in result.stdout.splitlines() if "--" in line}
    assert {"--api-url=STRING", "-i", "-p", "-t"} <= flags
    assert re.search(r"-i STRING, --image=STRING", result.stdout)
    assert re.search(r"-p STRING, --compat-arch=STRING", result.stdout)
