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
from tests.needs import unavailable

HERE = Path(__file__).resolve().parent
ROOT_ENV = "ALLOY_E2E_ROOT"
TRIXIE_ENV = "ALLOY_E2E_TRIXIE_ROOT"
TESTING_ENV = "ALLOY_E2E_TESTING_ROOT"
ROOT_STAMP = ".alloy-sysext-e2e-root"  # written last by make-root.sh
GCC = ["gcc", "-static", "-O2", "-s", "-std=c11", "-Wall", "-Wextra"]

_times: list[str] = []


StandIn = Callable[..., bytes]


@pytest.fixture(scope="session")
def stand_in(tmp_path_factory: pytest.TempPathFactory) -> StandIn:
    """stand_in(version=None, ready=True): fake_alloy.c, compiled: static, so it runs in any root;
    x86-64, as stage's check wants. It reports `version`; with ready=False, /-/ready never is."""
    built: dict[tuple[str | None, bool], bytes] = {}

    def compile_stand_in(version: str | None = None, ready: bool = True) -> bytes:
        if (version, ready) not in built:
            binary = tmp_path_factory.mktemp("fake-alloy") / "alloy"
            defines = [f'-DSTAND_IN_VERSION="{version}"'] if version else []
            defines += [] if ready else ["-DSTAND_IN_NEVER_READY"]
            compiled = subprocess.run(
                [*GCC, *defines, "-o", str(binary), str(HERE / "fake_alloy.c")],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert compiled.returncode == 0, (
                f"gcc failed (is libc6-dev installed?):\n{compiled.stderr}"
            )
            built[version, ready] = binary.read_bytes()
        return built[version, ready]

    return compile_stand_in


@pytest.fixture(scope="session")
def fake_alloy(stand_in: StandIn) -> bytes:
    return stand_in()


@pytest.fixture
def release(httpserver: HTTPServer, fake_alloy: bytes) -> Release:
    """Replaces tests/conftest.py's release for these tests (and so what `invoke` builds from):
    alloy-linux-amd64.zip holds the compiled stand-in, listed in SHA256SUMS."""
    published = Release(httpserver)
    publish_stand_in(published, VERSION, fake_alloy)
    return published


def publish_stand_in(release: Release, version: str, binary: bytes) -> None:
    """Upstream's release `version` (zip and SHA256SUMS), holding `binary`."""
    zips = {"alloy-linux-amd64.zip": zip_bytes({"alloy-linux-amd64": binary})}
    release.publish(version, {**zips, "SHA256SUMS": sums(zips)})


def cached_root(variable: str, make: str) -> Path:
    """The root tests/e2e/make-root.sh built, named by the environment `variable`."""
    if not os.environ.get(variable):
        unavailable(f"this boot test needs a Debian root: run it with `nox -s e2e` ({make})")
    root = Path(os.environ[variable]).resolve()
    if not (root / ROOT_STAMP).is_file():
        pytest.fail(
            f"{ROOT_ENV}={root} is not a root made by tests/e2e/make-root.sh: "
            f"run 'tests/e2e/make-root.sh {root}' or 'nox -s e2e'",
            pytrace=False,
        )
    if any(char in str(root) for char in ",:"):
        pytest.fail(f"{variable}={root}: overlayfs takes no ',' or ':' in a path", pytrace=False)
    return root


@pytest.fixture
def e2e_root() -> Path:
    """The Debian 12 root (systemd 252) tests/e2e/make-root.sh built (nox -s e2e), read-only."""
    return cached_root(ROOT_ENV, f"which builds it once and sets {ROOT_ENV}")


@pytest.fixture
def trixie_root() -> Path:
    """The Debian 13 root (systemd 257 with systemd-sysupdate, curl, gpg), read-only."""
    return cached_root(TRIXIE_ENV, f"make-root.sh --suite=trixie, which sets {TRIXIE_ENV}")


@pytest.fixture
def testing_root() -> Path:
    """The Debian testing root (forky: systemd 262 when it was added), read-only."""
    return cached_root(TESTING_ENV, f"make-root.sh --suite=testing, which sets {TESTING_ENV}")


@pytest.fixture
def report_time(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Adds a line to the "boot test times" section printed at the end of the run."""
    return lambda line: _times.append(f"{request.node.name}: {line}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _times:
        terminalreporter.section("boot test times")
        for line in _times:
            terminalreporter.write_line(line)
