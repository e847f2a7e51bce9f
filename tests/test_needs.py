"""tests/needs.py: a missing tool or root skips a test locally and fails it under CI=true."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

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
