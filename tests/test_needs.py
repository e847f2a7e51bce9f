"""tests/needs.py: a missing tool or root skips a test locally and fails it under CI=true."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.smalldisk import run_on_small_tmpfs

NEEDY = """
import pytest
from tests.needs import need

@pytest.mark.needs("no-such-tool-alloy-sysext")
def test_marked():
    pass

def test_called():
    need("no-such-tool-alloy-sysext")
"""


@pytest.mark.parametrize(("ci", "outcome"), [("", "2 skipped"), ("true", "1 failed, 1 error")])
def test_missing_tool_skips_locally_and_fails_in_ci(tmp_path: Path, ci: str, outcome: str) -> None:
    test = tmp_path / "test_needy.py"
    test.write_text(NEEDY)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-p",
            "tests.needs",
            "-rsf",
            str(test),
        ],
        cwd=REPO,
        env={**os.environ, "CI": ci, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert outcome in result.stdout, result.stdout + result.stderr
    assert "missing no-such-tool-alloy-sysext (apt-get install no-such-tool-alloy-sysext)" in (
        result.stdout
    )
    if ci:
        assert "CI=true, and this test cannot run" in result.stdout


CANNOT = [("", pytest.skip.Exception), ("true", pytest.fail.Exception)]


@pytest.mark.parametrize(("ci", "outcome"), CANNOT)
def test_a_small_tmpfs_that_cannot_be_mounted_skips_locally_and_fails_in_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ci: str, outcome: type[BaseException]
) -> None:
    """As in an unprivileged container: unshare -m is refused, and the run never starts."""
    refused = "unshare: unshare failed: Operation not permitted"
    fake = tmp_path / "bin" / "unshare"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho '{refused}' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CI", ci)
    ran = tmp_path / "ran"
    with pytest.raises(outcome) as raised:
        run_on_small_tmpfs(dict(os.environ), tmp_path, tmp_path / "at", f": > '{ran}'")
    reason = str(raised.value)
    assert reason.startswith("CI=true, and this test cannot run: " if ci else ""), reason
    assert (
        f"cannot mount a tmpfs in a mount namespace here: {refused}" in reason
        or "needs root (mounting a small tmpfs)" in reason  # where the tests do not run as root
    ), reason
    assert not ran.exists()


PYTEST = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "tests.needs"]
QUICK = """
import pytest
from tests.needs import need

@pytest.fixture
def needs_sysupdate():
    pass

@pytest.mark.needs(root="mounting")
def test_root():
    pass

@pytest.mark.root
def test_root_marked():
    pass

def test_network(needs_sysupdate):
    pass

def test_tool():
    need("no-such-tool-alloy-sysext")

def test_plain():
    pass
"""


@pytest.mark.parametrize(
    ("ci", "outcome"), [("", "1 passed, 4 skipped"), ("true", "1 failed, 1 passed, 3 skipped")]
)
def test_quick_leaves_out_root_and_network_tests(tmp_path: Path, ci: str, outcome: str) -> None:
    """nox -s quick: root and network tests are left out (skipped with the reason, never failed
    by CI=true), whoever runs it; a test missing a tool skips, or fails under CI=true."""
    test = tmp_path / "test_quick.py"
    test.write_text(QUICK)
    result = subprocess.run(
        [*PYTEST, "--quick", "-rsf", str(test)],
        cwd=REPO,
        env={**os.environ, "CI": ci, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert f"= {outcome}" in result.stdout, result.stdout + result.stderr
    assert "missing no-such-tool-alloy-sysext" in result.stdout
    left = "left out of the quick run (nox -s quick): needs root"
    assert f"{left} (mounting)" in result.stdout and f"{left}\n" in result.stdout
    assert "needs systemd-sysupdate, which tests/fetch-sysupdate.sh downloads" in result.stdout
