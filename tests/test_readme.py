"""README.md's commands are the ones that work: CI runs its test command, the tests run its
invoke commands against a local release."""

from __future__ import annotations

import difflib
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from build.config.matrix import VERSIONS
from build.pipeline.steps import STEPS
from tests import readme_layout
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


# The layout section and every path README.md names: drawn from the tree, or checked against it.

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# A path of the repository, not one on a host or in a container (/build/...), nor a URL's.
_PATH = re.compile(r"(?<![\w./~$@:-])((?:build|tests|benchmarks|docs|\.ci)/[\w./@-]*)")
# `build/image/stage.py`, `pack.py` and `alias.py`: the names after the first are its siblings.
_SIBLINGS = re.compile(
    r"`((?:build|tests|benchmarks|docs)/[\w./-]*)`((?:(?:,| and| or|, and) `[\w-]+\.\w+`)+)"
)


def missing_paths(text: str, repo: Path = REPO) -> list[str]:
    """The repository paths a text names that the tree does not hold."""
    named = [path.rstrip(".") for path in _PATH.findall(text)]
    for first, rest in _SIBLINGS.findall(text):
        folder = first if first.endswith("/") else first.rsplit("/", 1)[0] + "/"
        named += [folder + name for name in re.findall(r"`([^`]+)`", rest)]
    return sorted({path for path in named if not (repo / path).exists()})


def test_every_path_the_docs_name_exists() -> None:
    missing = {doc.name: missing_paths(doc.read_text()) for doc in DOCS}
    assert not any(missing.values()), f"named but not in the tree: {missing}"


def test_missing_paths_finds_what_moved() -> None:
    text = (
        "| `build/pipeline/runner.py`, `rule.py`, `fileio.py` | the runner |\n"
        "see build/verify.py. `build/image/stage.py`, `pack.py` and `pack_erofs.py`\n"
        "docker run ... /build/build-alloy-sysext.sh; https://example.com/build/x.py; "
        "[matrix](build/config/matrix.py) and tests/e2e/ and `build/templates/`"
    )
    assert missing_paths(text) == [
        "build/image/pack_erofs.py",
        "build/pipeline/fileio.py",
        "build/pipeline/rule.py",
        "build/verify.py",
    ]


def test_phases_diagram_draws_every_step_in_order() -> None:
    diagram = re.search(r"<!-- phases -->\n```text\n(.*?)\n```", README, re.S)
    assert diagram, "README.md has no text block after <!-- phases -->"
    rows = re.findall(r"^(\w+) +build/", diagram.group(1), re.M)
    assert rows == [*STEPS, "release"], "README.md's phases diagram differs from build/pipeline"


def test_layout_places_every_package() -> None:
    assert readme_layout.problems() == []


def test_layout_section_is_what_the_tree_gives() -> None:
    stands = readme_layout.current(README)
    assert stands is not None, f"README.md has lost its layout markers: {readme_layout.BEGIN}"
    wanted = readme_layout.section()
    diff = "\n".join(difflib.unified_diff(stands.splitlines(), wanted.splitlines(), lineterm=""))
    assert stands == wanted, (
        f"README.md's layout differs from the tree: run `{readme_layout.COMMAND}`\n{diff}"
    )


def fake_tree(repo: Path) -> None:
    """A repository holding every place of LAYERS, each with a one-line docstring."""
    for _, where in readme_layout.LAYERS:
        if where in readme_layout.NOT_PYTHON:
            (repo / where).mkdir(parents=True)
            (repo / where / "alloy.service").write_text("")
            continue
        source = repo / where / "__init__.py" if where.endswith("/") else repo / where
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(f'"""What {where} holds (one)."""\n')
        if where.startswith("build/") and where.endswith("/"):
            (repo / where / "one.py").write_text("")
    (repo / "README.md").write_text(
        f"# x\n\n{readme_layout.BEGIN}\n| stale |\n{readme_layout.END}\n\n## License\n"
    )


def test_layout_write_puts_a_new_module_into_the_section_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_tree(tmp_path)
    (tmp_path / "build/core/tools.py").write_text('"""Tool -> Debian package."""\n')
    assert readme_layout.main(["--write"], tmp_path) == 0
    written = (tmp_path / "README.md").read_text()
    assert readme_layout.current(written) == readme_layout.section(tmp_path)
    assert "| 1 | `build/core/` | `one`, `tools` | What build/core/ holds (one). |" in written
    assert "| `build/templates/` | `alloy.service` | no Python" in written
    assert written.startswith(f"# x\n\n{readme_layout.BEGIN}\n| layer |")
    assert written.endswith(f"|\n{readme_layout.END}\n\n## License\n")
    assert capsys.readouterr().err == ""


def test_layout_refuses_a_readme_without_its_markers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_tree(tmp_path)
    (tmp_path / "README.md").write_text("# x\n")
    assert readme_layout.main(["--write"], tmp_path) == 1
    assert (tmp_path / "README.md").read_text() == "# x\n"
    files = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    assert files == ["README.md", "noxfile.py", "tasks.py"]  # no temporary left beside it
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("README.md has no section from <!-- layout")


def test_layout_names_a_package_it_cannot_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_tree(tmp_path)
    (tmp_path / "build/host").mkdir()
    (tmp_path / "build/host/__init__.py").write_text('"""Host."""\n')
    (tmp_path / "build/fetch/__init__.py").write_text("")
    (tmp_path / "build/pipeline/__init__.py").unlink()
    (tmp_path / "build/pipeline/one.py").unlink()
    (tmp_path / "build/pipeline").rmdir()
    assert readme_layout.main([], tmp_path) == 1
    assert capsys.readouterr().err.splitlines() == [
        "build/host/ is not in tests/readme_layout.py's LAYERS: add it in its layer",
        "build/pipeline/ is in tests/readme_layout.py's LAYERS but not in the tree: remove it",
        "build/fetch/__init__.py has no docstring: say in a paragraph what it holds, naming its "
        "modules",
    ]


def test_layout_takes_only_its_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake_tree(tmp_path)
    before = (tmp_path / "README.md").read_text()
    assert readme_layout.main(["--wirte"], tmp_path) == 2
    assert capsys.readouterr().err == "usage: python -m tests.readme_layout [--write]\n"
    assert (tmp_path / "README.md").read_text() == before
