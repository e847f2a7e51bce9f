"""README.md's commands are the ones that work: CI runs its test command, the tests run its
invoke commands against a local release."""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest

from tests.conftest import REPO, Invoke

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
    assert printed.strip().endswith(".venv/bin/python -m pytest")


def test_build_command_builds_the_main_job() -> None:
    command = block_after("build-command")
    assert command.endswith(".venv/bin/invoke all --version=1.10.2")
    assert "squashfs-tools" in command and "-r requirements.txt" in command


def usage_commands() -> list[str]:
    section = README.split("## Usage", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        commands += [line for line in block.splitlines() if "invoke " in line]
    return commands


def test_usage_has_the_commands_users_copy() -> None:
    assert "invoke all --version=1.10.2" in usage_commands()


@pytest.mark.parametrize("command", usage_commands())
def test_usage_command_works(invoke: Invoke, command: str) -> None:
    words = shlex.split(command)
    env = dict(w.split("=", 1) for w in words if re.fullmatch(r"[A-Z_]+=.*", w))
    args = words[words.index("invoke") + 1 :]
    result = invoke(*args, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
