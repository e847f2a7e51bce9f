from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from build.spec import source_key
from tests.fakes import release_assets

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
