"""What the Dockerfile relies on exists in the project and works. No Docker engine runs here, so
the entry scripts run directly, the way the image's ENTRYPOINT runs them; CI builds the image."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from build.config.options import BY_NAME
from tests.conftest import REPO, VERSION
from tests.image import listing

DOCKERFILE = (REPO / "Dockerfile").read_text()


def instructions(name: str) -> list[str]:
    """Every `NAME ...` instruction, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [
        line[len(name) + 1 :].strip() for line in joined.splitlines() if line.startswith(name + " ")
    ]


def test_base_is_ubuntu_2204_as_an_argument_without_an_invented_digest() -> None:
    assert instructions("ARG") == ["BASE_IMAGE=ubuntu:22.04"]
    assert instructions("FROM") == ["${BASE_IMAGE}"]
    assert "sha256:" not in "".join(instructions("ARG") + instructions("FROM"))


def test_every_copied_file_exists_and_is_not_docker_ignored() -> None:
    ignored = [
        line
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    for copy in instructions("COPY"):
        *sources, _ = copy.split()
        for source in sources:
            assert (REPO / source).exists(), source
            assert source.rstrip("/") not in ignored, source
    for kept_out in (".git", "output", ".nox", ".venv", "tests"):
        assert kept_out in ignored


def test_installs_the_tools_and_the_pinned_runtime_requirements() -> None:
    run = " ".join(instructions("RUN"))
    for package in ("ca-certificates", "python3", "python3-venv", "squashfs-tools"):
        assert f" {package} " in f" {run} "
    assert "pip install --no-cache-dir -r /build/requirements-runtime.txt" in run
    runtime = (REPO / "requirements-runtime.txt").read_text()
    pins = [line for line in runtime.splitlines() if line and not line.startswith("#")]
    assert pins and all("==" in line for line in pins)
    assert {"invoke", "requests", "tqdm"} <= {line.split("==")[0] for line in pins}
    # The tests sessions install requirements.txt on Python 3.10 and 3.11: so do these.
    assert "-r requirements-runtime.txt" in (REPO / "requirements.txt").read_text().splitlines()


def test_environment_names_options_the_pipeline_reads() -> None:
    env = " ".join(instructions("ENV"))
    for name in re.findall(r"INVOKE_([A-Z_]+)=", env):
        assert name.lower() in BY_NAME
    assert "INVOKE_OUTPUT_DIR=/output" in env


def test_runs_as_a_non_root_user_with_the_entry_script() -> None:
    assert instructions("USER") == ["1000:1000"]
    assert instructions("ENTRYPOINT") == ['["/build/docker-entrypoint.sh"]']
    assert instructions("CMD") == ['["all"]']
    for script in ("docker-entrypoint.sh", "build-alloy-sysext.sh"):
        path = REPO / script
        assert os.access(path, os.X_OK), script
        assert subprocess.run(["sh", "-n", str(path)]).returncode == 0


@pytest.fixture
def container_env(cli_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The image's ENV, pointed at the test's directories, with invoke on PATH."""
    (tmp_path / "output").mkdir()
    return {
        **cli_env,
        "INVOKE_OUTPUT_DIR": str(tmp_path / "output"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }


def entry(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(REPO / "docker-entrypoint.sh"), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )


@pytest.mark.needs("mksquashfs")
def test_entrypoint_default_and_arguments_build_into_output(
    container_env: dict[str, str], tmp_path: Path
) -> None:
    default = entry("all", env=container_env, cwd=tmp_path)  # CMD ["all"]
    assert default.returncode == 0, default.stderr
    arm = entry("all", f"--version={VERSION}", "--arch=arm64", env=container_env, cwd=tmp_path)
    assert arm.returncode == 0, arm.stderr
    output = tmp_path / "output"
    assert sorted(p.name for p in output.glob("*.raw")) == [
        f"alloy-{VERSION}-amd64.raw",
        f"alloy-{VERSION}-arm64.raw",
        f"alloy-{VERSION}.raw",
    ]
    listed = entry("--list", env=container_env, cwd=tmp_path)
    assert listed.returncode == 0 and "Default task: all" in listed.stdout


@pytest.mark.needs("mksquashfs")
def test_original_script_reads_version_and_architecture_from_the_environment(
    container_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**container_env, "VERSION": VERSION, "ARCHITECTURE": "arm64"}
    result = entry(str(REPO / "build-alloy-sysext.sh"), env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    image = tmp_path / "output" / f"alloy-{VERSION}-arm64.raw"
    assert "usr/local/bin/alloy" in listing(image)


@pytest.mark.needs("setpriv", root="to run as another user")
def test_unwritable_output_is_one_clear_line(container_env: dict[str, str]) -> None:
    """What happens when Docker created ./output as root and the builder user cannot write it."""
    with tempfile.TemporaryDirectory(dir="/tmp") as scratch:
        root = Path(scratch)
        os.chmod(root, 0o755)  # reachable by the other user, unlike pytest's tmp_path
        shutil.copy(REPO / "docker-entrypoint.sh", root)
        (root / "output").mkdir(mode=0o755)  # root's, like a directory the Docker daemon made
        result = subprocess.run(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                str(root / "docker-entrypoint.sh"),
                "all",
            ],
            env={**container_env, "INVOKE_OUTPUT_DIR": str(root / "output")},
            cwd="/",
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: {root / 'output'} is not writable by uid 65534; create ./output first "
        '(mkdir -p output) and run with --user "$(id -u):$(id -g)"'
    ]
