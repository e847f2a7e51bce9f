"""The build matrix: its declaration, the ALLOY_VERSIONS/ALLOY_ARCHS overrides, the nox sessions
made from it, and a real parallel `nox -s build-matrix` against a local release."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from build.config import matrix
from build.config.matrix import ARCHS, VERSIONS, Cell, cells
from build.core.errors import BuildError
from tests.conftest import REPO, VERSION, Release
from tests.fakes import release_assets


def test_declared_matrix_is_every_version_times_every_arch() -> None:
    assert "1.10.2" in VERSIONS
    assert ARCHS == ("amd64", "arm64")
    assert cells({}) == [Cell(v, a) for v in VERSIONS for a in ARCHS]
    assert cells({"ALLOY_VERSIONS": "", "ALLOY_ARCHS": " "}) == cells({})


def test_environment_overrides_the_matrix_for_one_run() -> None:
    environ = {"ALLOY_VERSIONS": " 1.9.2, 1.11.0-rc.1 ,1.9.2", "ALLOY_ARCHS": "arm64"}
    assert cells(environ) == [Cell("1.9.2", "arm64"), Cell("1.11.0-rc.1", "arm64")]
    assert [c.id for c in cells({"ALLOY_ARCHS": "arm64,amd64", "ALLOY_VERSIONS": "1.10.2"})] == [
        "1.10.2-arm64",
        "1.10.2-amd64",
    ]


@pytest.mark.parametrize(
    ("environ", "fragment"),
    [
        ({"ALLOY_VERSIONS": "1.10.2,newest"}, "ALLOY_VERSIONS holds 'newest'"),
        ({"ALLOY_VERSIONS": "Latest"}, "ALLOY_VERSIONS holds 'Latest'"),
        ({"ALLOY_ARCHS": "amd64,x86_64"}, "ALLOY_ARCHS holds 'x86_64'"),
    ],
)
def test_bad_override_is_refused(environ: dict[str, str], fragment: str) -> None:
    with pytest.raises(BuildError, match=fragment):
        cells(environ)


def test_latest_is_a_version_of_the_matrix_not_of_the_declared_one() -> None:
    assert "latest" not in VERSIONS  # CI builds what a commit names, not what GitHub says today
    environ = {"ALLOY_VERSIONS": "latest,1.10.2", "ALLOY_ARCHS": "amd64"}
    assert [c.id for c in cells(environ)] == ["latest-amd64", "1.10.2-amd64"]
    # Its nox session, build-matrix(latest-amd64): tests/test_upstream_latest.py.


def nox(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO):
    return subprocess.run(
        [sys.executable, "-m", "nox", "--noxfile", str(REPO / "noxfile.py"), *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=600,
    )


def listed(*args: str, env: dict[str, str] | None = None) -> list[dict]:
    result = nox("--list", "--json", *args, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_streams_nox_release_publishes_are_the_matrix_minor_lines() -> None:
    declared = matrix.cells({})
    assert matrix.streams(declared) == ["1.10", "1.17"]
    environ = {"ALLOY_VERSIONS": "1.20.0,latest,1.9.1,1.20.1,1.21.0-rc.1", "ALLOY_ARCHS": "amd64"}
    assert matrix.streams(matrix.cells(environ)) == ["1.9", "1.20"]


def test_each_cell_is_a_named_tagged_session() -> None:
    env = {"ALLOY_VERSIONS": "1.10.2,1.9.2", "ALLOY_ARCHS": "amd64,arm64"}
    sessions = {s["session"]: s for s in listed("-t", "build", env=env)}
    assert list(sessions) == [
        "build-matrix(1.10.2-amd64)",
        "build-matrix(1.10.2-arm64)",
        "build-matrix(1.9.2-amd64)",
        "build-matrix(1.9.2-arm64)",
    ]
    cell = sessions["build-matrix(1.9.2-arm64)"]
    assert set(cell["tags"]) == {"build", "arm64", "1.9.2"}
    assert cell["call_spec"] == {"version": "1.9.2", "arch": "arm64"}
    assert [s["session"] for s in listed("-t", "arm64", env=env)] == [
        "build-matrix(1.10.2-arm64)",
        "build-matrix(1.9.2-arm64)",
    ]
    assert [s["session"] for s in listed("-s", "build-matrix(1.9.2-amd64)", env=env)] == [
        "build-matrix(1.9.2-amd64)"
    ]


def test_a_bare_nox_runs_lint_and_tests_not_the_matrix() -> None:
    result = nox("--list")
    assert result.returncode == 0, result.stderr
    selected = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("* ")]
    assert selected == ["tests-3.10", "tests-3.11", "lint"]
    for line in result.stdout.splitlines():
        if line.startswith(("* ", "- ")):
            assert " -> " in line and len(line.split(" -> ", 1)[1]) > 20  # each one explained


def test_bad_override_stops_nox_with_one_line() -> None:
    result = nox("--list", env={"ALLOY_ARCHS": "riscv64"})
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "noxfile.py: error: ALLOY_ARCHS holds 'riscv64', not an architecture; "
        "use comma-separated values from: amd64, arm64"
    ]


def test_parallel_matrix_fetches_each_file_once(release: Release, tmp_path: Path) -> None:
    release.publish("1.10.3", release_assets(seed=3))
    env = {"ALLOY_VERSIONS": f"{VERSION},1.10.3", "ALLOY_ARCHS": "amd64,arm64"}
    args = [
        "-j",
        "2",
        "-s",
        "build-matrix",
        "--",
        f"--base-url={release.base_url}",
        f"--output-dir={tmp_path / 'out'}",
        f"--cache-dir={tmp_path / 'cache'}",
    ]
    result = nox(*args, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    requests = release.requests()
    for version in (VERSION, "1.10.3"):
        for asset in ("SHA256SUMS", "alloy-linux-amd64.zip", "alloy-linux-arm64.zip"):
            assert requests.count(f"/v{version}/{asset}") == 1, (asset, requests)
    images = sorted(p.name for p in (tmp_path / "out").glob("*.raw"))
    assert images == [
        "alloy-1.10.2-amd64.raw",
        "alloy-1.10.2-arm64.raw",
        "alloy-1.10.2.raw",
        "alloy-1.10.3-amd64.raw",
        "alloy-1.10.3-arm64.raw",
        "alloy-1.10.3.raw",
    ]
    check = subprocess.run(
        ["sha256sum", "-c", *(f"{name}.sha256" for name in images)], cwd=tmp_path / "out"
    )
    assert check.returncode == 0

    warm = nox(*args, env=env, cwd=tmp_path)
    assert warm.returncode == 0, warm.stdout + warm.stderr
    assert release.requests() == requests
