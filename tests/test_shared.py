"""What a run makes once for all its xdist workers (tests/shared.py): made by one worker only,
there for a worker that runs on after another has finished, and removed, gpg-agent and all,
when the run ends. Run as a pytest run of its own, on two workers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from build.keys.gpghome import daemons_of
from tests.conftest import REPO

# Two groups, so xdist's loadgroup puts each on a worker of its own: "early" finishes while
# "late" still runs; both sign, so each worker talks to the home's one gpg-agent.
CONFTEST = """
from tests.conftest import keys  # noqa: F401 (the fixture under test)
"""
TESTS = """
import os
import subprocess
import time
from pathlib import Path

import pytest


def sign(keys, tmp_path):
    data = tmp_path / "data"
    data.write_text("x")
    subprocess.run(
        ["gpg", "--batch", f"--homedir={keys.home}", f"--local-user={keys.plain}",
         "--detach-sign", str(data)],
        check=True, capture_output=True,
    )
    with open(os.environ["HOMES_LOG"], "a") as log:
        log.write(f"{os.environ.get('PYTEST_XDIST_WORKER')} {keys.home}\\n")


@pytest.mark.xdist_group("early")
def test_early(keys, tmp_path):
    sign(keys, tmp_path)


@pytest.mark.xdist_group("late")
def test_late(keys, tmp_path):
    time.sleep(3)  # the other worker has finished by now
    sign(keys, tmp_path)
"""


@pytest.mark.needs("gpg", "gpgconf")
def test_keys_are_made_once_a_run_and_their_agent_ends_with_the_run(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_inner.py").write_text(TESTS)
    log = tmp_path / "homes"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-p", "no:cacheprovider"),
            *("-p", "tests.needs", "-p", "tests.shared", "-n", "2", "--dist=loadgroup"),
            *(f"--basetemp={tmp_path / 'base'}", f"--rootdir={tmp_path}", str(tmp_path)),
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), "HOMES_LOG": str(log)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    signed = dict(line.split(" ", 1) for line in log.read_text().splitlines())
    assert sorted(signed) == ["gw0", "gw1"], signed  # one test on each worker
    [home] = set(signed.values())  # one home for both
    assert not Path(home).exists()
    assert daemons_of(Path(home)) == []
