"""Fixtures of the boot test: the compiled stand-in for alloy, a release serving it, the root."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from tests.conftest import VERSION, Release
from tests.fakes import sums, zip_bytes

HERE = Path(__file__).resolve().parent
ROOT_ENV = "ALLOY_E2E_ROOT"
ROOT_STAMP = ".alloy-sysext-e2e-root"  # written last by make-root.sh
GCC = ["gcc", "-static", "-O2", "-s", "-std=c11", "-Wall", "-Wextra"]

_times: list[str] = []


@pytest.fixture(scope="session")
def fake_alloy(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """fake_alloy.c, compiled: static, so it runs in any root; x86-64, as stage's check wants."""
    binary = tmp_path_factory.mktemp("fake-alloy") / "alloy"
    compiled = subprocess.run(
        [*GCC, "-o", str(binary), str(HERE / "fake_alloy.c")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert compiled.returncode == 0, f"gcc failed (is libc6-dev installed?):\n{compiled.stderr}"
    return binary.read_bytes()


@pytest.fixture
def release(httpserver: HTTPServer, fake_alloy: bytes) -> Release:
    """Replaces tests/conftest.py's release for these tests (and so what `invoke` builds from):
    alloy-linux-amd64.zip holds the compiled stand-in, listed in SHA256SUMS."""
    published = Release(httpserver)
    zips = {"alloy-linux-amd64.zip": zip_bytes({"alloy-linux-amd64": fake_alloy})}
    published.publish(VERSION, {**zips, "SHA256SUMS": sums(zips)})
    return published


@pytest.fixture
def e2e_root() -> Path:
    """The Debian root tests/e2e/make-root.sh built (nox -s e2e runs it), used read-only."""
    root = Path(os.environ[ROOT_ENV]).resolve()
    if not (root / ROOT_STAMP).is_file():
        pytest.fail(
            f"{ROOT_ENV}={root} is not a root made by tests/e2e/make-root.sh: "
            f"run 'tests/e2e/make-root.sh {root}' or 'nox -s e2e'",
            pytrace=False,
        )
    if any(char in str(root) for char in ",:"):
        pytest.fail(f"{ROOT_ENV}={root}: overlayfs takes no ',' or ':' in a path", pytrace=False)
    return root


@pytest.fixture
def report_time(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Adds a line to the "boot test times" section printed at the end of the run."""
    return lambda line: _times.append(f"{request.node.name}: {line}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _times:
        terminalreporter.section("boot test times")
        for line in _times:
            terminalreporter.write_line(line)
