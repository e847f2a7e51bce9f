"""README.md's commands are the ones that work: CI runs its test command, the tests run its
invoke commands against a local release."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from build.config.matrix import VERSIONS
from tests.conftest import REPO, VERSION, Invoke, Release
from tests.fakes import release_assets

README = (REPO / "README.md").read_text()


def block_after(marker: str) -> str:
    match = re.search(rf"<!-- {marker} -->\n```sh\n(.*?)\n```", README, re.S)
    assert match, f"README.md has no sh block after <!-- {marker} -->"
    return match.group(1)


def test_ci_runs_the_readme_test_command() -> None:
    assert "test_command=$(.ci/readme-test-command)" in (REPO / ".ci/run").read_text()
    printed = subprocess.run(
        [REPO / ".ci/readme-test-command"], capture_output=True, text=True, check=True
    ).stdout
    assert printed.strip() == block_after("test-command")
    assert printed.strip().endswith("sudo .venv/bin/nox -s lint tests e2e")


def test_build_command_builds_the_main_job() -> None:
    command = block_after("build-command")
    assert command.endswith(".venv/bin/invoke all --version=1.10.2")
    assert "squashfs-tools" in command and "-r requirements.txt" in command


def commands(section: str, program: str) -> list[str]:
    """The lines of sh blocks under `### {section}` that run `program`."""
    text = README.split(f"### {section}\n", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    found = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        found += [line for line in block.splitlines() if f"{program} " in f"{line} "]
    return found


def test_usage_has_the_commands_users_copy() -> None:
    assert "invoke all --version=1.10.2" in commands("Locally, with Invoke", "invoke")
    assert ".venv/bin/nox -s build-matrix" in commands("With nox: the whole matrix", "nox")


def split_env(command: str) -> tuple[dict[str, str], list[str]]:
    words = shlex.split(command)
    env = {}
    while re.fullmatch(r"[A-Z_]+=.*", words[0]):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    return env, words


@pytest.mark.parametrize("command", commands("Locally, with Invoke", "invoke"))
def test_invoke_command_works(invoke: Invoke, release: Release, command: str) -> None:
    env, words = split_env(command)
    assert words[0] == "invoke"
    # --version=latest asks GitHub's releases API: here, the test server, whose newest is VERSION.
    stable = {"tag_name": f"v{VERSION}", "draft": False, "prerelease": False}
    release.server.expect_request("/api/releases").respond_with_json([stable])
    result = invoke(*words[1:], env={"INVOKE_API_URL": release.server.url_for("/api"), **env})
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("command", commands("With nox: the whole matrix", "nox"))
def test_nox_command_works(
    command: str, release: Release, cli_env: dict[str, str], tmp_path: Path
) -> None:
    for version in VERSIONS:  # every version of the declared matrix, as a local release
        if version != VERSION:
            release.publish(version, release_assets())
    env, words = split_env(command.replace("https://mirror.example.com/alloy", release.base_url))
    assert words[0] == ".venv/bin/nox"
    result = subprocess.run(
        [sys.executable, "-m", "nox", *words[1:]],
        cwd=REPO,
        env={**cli_env, "INVOKE_OUTPUT_DIR": str(tmp_path / "output"), **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
