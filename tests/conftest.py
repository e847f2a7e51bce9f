from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from build.config.spec import source_key
from build.fetch import http
from tests.fakes import release_assets
from tests.gpgkeys import Keys, make_keys
from tests.needs import need, unavailable
from tests.rawserver import Answer, RawServer
from tests.release_files import SYSUPDATE
from tests.shared import once, shared_keys

REPO = Path(__file__).resolve().parent.parent
VERSION = "1.10.2"


class Release:
    """A GitHub-like release download tree on the test's HTTP server: /vVERSION/ASSET."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.base_url = server.url_for("").rstrip("/")

    def publish(self, version: str, assets: dict[str, bytes]) -> None:
        for name, data in assets.items():
            self.server.expect_request(f"/v{version}/{name}").respond_with_data(
                data, content_type="application/octet-stream"
            )

    def cached(self, cache_dir: Path, version: str = VERSION, name: str = "") -> Path:
        """Where a build keeps this release's files in `cache_dir`."""
        return cache_dir / source_key(self.base_url) / f"v{version}" / name

    def requests(self) -> list[str]:
        return [request.path for request, _ in self.server.log]


@pytest.fixture
def release(httpserver: HTTPServer) -> Release:
    published = Release(httpserver)
    published.publish(VERSION, release_assets())
    return published


Invoke = Callable[..., subprocess.CompletedProcess]
INVOKE_CLI = [sys.executable, "-m", "invoke", "--search-root", str(REPO)]


def nox_sessions(args: list[str], env: dict[str, str], output: Path, versions: str) -> list[str]:
    """Run the checkout's `nox ARGS`, building `versions` (ALLOY_VERSIONS) for amd64 into
    `output`; it must pass. The sessions that succeeded, in the order nox lists them."""
    result = subprocess.run(
        [sys.executable, "-m", "nox", *args],
        cwd=REPO,
        env={
            **env,
            "INVOKE_OUTPUT_DIR": str(output),
            "ALLOY_VERSIONS": versions,
            "ALLOY_ARCHS": "amd64",
        },
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return re.findall(r"nox > \* (\S+): success", result.stderr)


@pytest.fixture
def cli_env(tmp_path: Path, release: Release) -> dict[str, str]:
    """The environment of a CLI run: the test release as base URL, a cache of the test's own."""
    return {
        **os.environ,
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "INVOKE_BASE_URL": release.base_url,
    }


@pytest.fixture
def invoke(tmp_path: Path, cli_env: dict[str, str]) -> Invoke:
    """Run the real `invoke` CLI against the test release, in tmp_path."""

    def run(
        *args: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        umask: int | None = None,
        stderr: int | None = subprocess.PIPE,
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*INVOKE_CLI, *args],
            cwd=cwd or tmp_path,
            env={**cli_env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            stdin=subprocess.DEVNULL,
            preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
            timeout=300,
        )

    return run


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    """Throwaway gpg keys, made once a run for every worker (tests only sign and export with
    them)."""
    need("gpg", "gpgv", "gpgconf")
    return shared_keys(tmp_path_factory, "keys", make_keys, Keys, "ag.")


@pytest.fixture
def needs_sysupdate() -> None:
    if SYSUPDATE is None:
        unavailable(
            "no systemd-sysupdate: Debian 12's systemd 252 does not ship it; "
            "tests/fetch-sysupdate.sh unpacks 254 from bookworm-backports where this test finds it"
        )


@pytest.fixture
def missing_is_404(release: Release) -> None:
    """Like GitHub: an asset that is not there is a 404 (pytest-httpserver's default is 500)."""
    release.server.no_handler_status_code = 404


@pytest.fixture
def serve() -> Iterator[Callable[..., RawServer]]:
    """`serve(answer, host="127.0.0.1")`: a RawServer answering with `answer`, stopped after the
    test."""
    servers: list[RawServer] = []

    def start(answer: Answer, host: str = "127.0.0.1") -> RawServer:
        servers.append(RawServer(answer, host))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries without the wait between them."""
    monkeypatch.setattr(http, "BACKOFF", 0)


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    """A download's final path, in a directory of its own so leftovers are easy to see."""
    directory = tmp_path / "cache" / f"v{VERSION}"
    directory.mkdir(parents=True)
    return directory / "alloy-linux-amd64.zip"


def beside(final: Path) -> list[str]:
    """Every name in `final`'s directory: the final file and whatever a download left there."""
    return sorted(p.name for p in final.parent.iterdir())


Prebuilt = Callable[..., Path]
# The runs of `invoke all` that several modules build on, spelled once so they share the build.
AMD64 = ((),)  # `invoke all`: the verified amd64 image
BOTH_ARCHES = (("--arch=amd64",), ("--arch=arm64",))  # one verified image of each architecture


@pytest.fixture(scope="session")
def prebuilt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prebuilt]:
    """`prebuilt(("--arch=arm64",), ...)`: the output directory of one `invoke all` per argument
    tuple, run in a directory of their own against a release served for them, once per test
    run for the same tuples, whichever xdist worker asks first (tests/shared.py). Tests only
    read it (checked at the end of each worker's session): `copy_output` gives a copy to
    change."""
    used: dict[Path, str] = {}

    def build(*runs: tuple[str, ...]) -> Path:
        name = "prebuilt-" + hashlib.sha256(repr(runs).encode()).hexdigest()[:16]
        made = once(tmp_path_factory, name, lambda root: _build_all(root, runs))
        output = Path(made["output"])
        used[output] = made["state"]
        return output

    yield build
    for output, state in used.items():
        assert _digest(output) == state, f"a test changed the shared build {output}"


def _build_all(root: Path, runs: tuple[tuple[str, ...], ...]) -> dict[str, str]:
    """`invoke all ARGS` in `root` for each of `runs`: its output directory, and its digest."""
    with HTTPServer(host="127.0.0.1", port=0) as server:
        served = Release(server)
        served.publish(VERSION, release_assets())
        env = {
            **os.environ,
            "XDG_CACHE_HOME": str(root / "cache"),
            "INVOKE_BASE_URL": served.base_url,
        }
        for args in runs:
            result = subprocess.run(
                [*INVOKE_CLI, "all", *args],
                cwd=root,
                env=env,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=300,
            )
            assert result.returncode == 0, result.stdout + result.stderr
    return {"output": str(root / "output"), "state": _digest(root / "output")}


def _digest(root: Path) -> str:
    return hashlib.sha256(repr(sorted(_state(root).items())).encode()).hexdigest()


def _state(root: Path) -> dict[str, tuple[int, bytes | str]]:
    """Every entry under root: its mode and its bytes (a file's), target (a link's) or ''."""
    state: dict[str, tuple[int, bytes | str]] = {}
    for path in root.rglob("*"):
        mode = path.lstat().st_mode
        if path.is_symlink():
            state[str(path.relative_to(root))] = (mode, os.readlink(path))
        elif path.is_file():
            state[str(path.relative_to(root))] = (mode, path.read_bytes())
        else:
            state[str(path.relative_to(root))] = (mode, "")
    return state


def copy_output(output: Path, tmp_path: Path) -> Path:
    """A copy of a prebuilt output directory as tmp_path/output, where `invoke` looks for it."""
    copy = tmp_path / "output"
    shutil.copytree(output, copy, symlinks=True)
    return copy
