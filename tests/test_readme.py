"""README.md's commands are the ones that work: CI runs its test command, the tests run its
invoke commands against a local release."""

from __future__ import annotations

import ast
import difflib
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from build.config.matrix import VERSIONS
from build.core.tools import packages
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
    assert printed.strip().endswith("$SUDO .venv/bin/nox -s lint tests e2e")


def test_build_command_builds_the_main_job() -> None:
    command = block_after("build-command")
    assert command.endswith(".venv/bin/invoke all --version=1.10.2")
    assert "squashfs-tools" in command and "-r requirements-runtime.txt" in command


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


def test_version_streams_commands_work(invoke: Invoke, release: Release, tmp_path: Path) -> None:
    """The section's commands, in order, against the test release (which serves each version
    they build): the 1.19 stream's feed holds its line, and its transfer the floor."""
    section = README.split("## Version streams\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    lines = [line for block in blocks for line in block.splitlines() if line.startswith("invoke ")]
    built = sorted({v for line in lines for v in re.findall(r"--version=([0-9.]+)", line)})
    assert built == ["1.19.2", "1.20.0"] and any("--stream=1.19" in line for line in lines)
    for seed, version in enumerate(built, start=2):
        release.publish(version, release_assets(seed=seed))
    for line in lines:
        env, words = split_env(line)
        assert words[0] == "invoke"
        result = invoke(*words[1:], env=env)
        assert result.returncode == 0, result.stdout + result.stderr
    feed = tmp_path / "output/streams/1.19"
    assert (feed / "SHA256SUMS").read_text().split()[1::2] == ["alloy-1.19.2-amd64.raw"]
    assert "MinVersion=1.19.2\n" in (feed / "sysupdate/amd64/alloy.transfer").read_text()
    assert (feed / "flatcar/alloy-amd64.ign").is_file()


@pytest.mark.needs("mkfs.erofs", "xz")
def test_compressed_transport_commands_work(
    invoke: Invoke, release: Release, tmp_path: Path
) -> None:
    """The section's commands, in order: an EROFS none image, released with its .xz beside it,
    SHA256SUMS listing both and the transfer fetching the .xz."""
    section = README.split("## Compressed transport\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    lines = [line for block in blocks for line in block.splitlines() if line.startswith("invoke ")]
    assert any("--transport=xz" in line for line in lines), lines
    for line in lines:
        env, words = split_env(line)
        result = invoke(*words[1:], env=env)
        assert result.returncode == 0, result.stdout + result.stderr
    output = tmp_path / "output"
    listed = (output / "SHA256SUMS").read_text().split()[1::2]
    assert f"alloy-{VERSION}-amd64.raw.xz" in listed and f"alloy-{VERSION}-amd64.raw" in listed
    text = (output / "sysupdate/amd64/alloy.transfer").read_text()
    assert "MatchPattern=alloy-@v-amd64.raw.xz\n" in text


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


# The quick start and the test commands, as a newcomer pastes them: as root (where there may be
# no sudo) or as a user; installing what building or testing needs, and nothing more.

SETUP_BLOCKS = ["build-command", "quick-test-command", "test-command"]
# What a fresh Debian or Ubuntu has without asking: Essential packages, and what gnupg brings.
PRESENT = {"coreutils", "util-linux", "mount", "gpgv", "gpgconf"}
STUB = """#!/bin/sh
echo "${SUDOED:+sudo }${0##*/} $*" >> "$LOG"
"""
FAKE_PYTHON3 = """#!/bin/sh
echo "python3 $*" >> "$LOG"
/bin/mkdir -p .venv/bin
for tool in pip invoke nox; do /bin/cp "$STUB" ".venv/bin/$tool"; done
"""


def paste(command: str, shell: str, uid: int, tmp_path: Path) -> tuple[int, list[str]]:
    """Run `command` in `shell` as if pasted by `uid` on a machine whose apt-get, python3 (and,
    for a user, sudo) only log how they were called; the log's lines."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name, text in {
        "apt-get": STUB,
        "id": f'#!/bin/sh\n[ "$1" = -u ] && echo {uid}\n',
        "python3": FAKE_PYTHON3,
        **({"sudo": '#!/bin/sh\nSUDOED=1 exec "$@"\n'} if uid else {}),
    }.items():
        (stubs / name).write_text(text)
        (stubs / name).chmod(0o755)
    log = tmp_path / "log"
    result = subprocess.run(
        [shell, "-c", command],
        cwd=tmp_path,
        env={"PATH": str(stubs), "LOG": str(log), "STUB": str(stubs / "apt-get")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stderr == ""
    return result.returncode, log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize("shell", ["/bin/sh", "/bin/bash"])
@pytest.mark.parametrize(("who", "uid"), [("root without sudo", 0), ("a user", 1000)])
@pytest.mark.parametrize("marker", SETUP_BLOCKS)
def test_setup_commands_work_as_pasted(
    marker: str, who: str, uid: int, shell: str, tmp_path: Path
) -> None:
    code, calls = paste(block_after(marker), shell, uid, tmp_path)
    assert code == 0, f"{who}: {calls}"
    apt = [call for call in calls if "apt-get " in call]
    assert [call.split(" install")[0] for call in apt] == (
        ["sudo apt-get update", "sudo apt-get"] if uid else ["apt-get update", "apt-get"]
    )
    assert calls[len(apt)] == "python3 -m venv .venv"
    # Only the full tests run as root (the real merges, the boot tests); building does not.
    as_root = marker == "test-command"
    assert calls[-1].startswith("sudo ") == bool(uid and as_root), calls
    assert calls[-1].split()[-1 if as_root else 0] != "sudo"


def apt_packages(command: str) -> list[str]:
    match = re.search(r"apt-get install -y ([^\n&]*)", command)
    assert match, command
    return match.group(1).split()


def pip_requirements(command: str) -> str:
    match = re.search(r"pip install -r (\S+)", command)
    assert match, command
    return match.group(1)


def requirement_names(name: str) -> set[str]:
    """The packages a requirements file pins, following its -r includes."""
    found: set[str] = set()
    for line in (REPO / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            found |= requirement_names(line[3:].strip())
        elif line:
            found.add(re.split(r"[=<>;\[ ]", line, maxsplit=1)[0].lower())
    return found


def test_quick_start_installs_only_what_building_needs() -> None:
    command = block_after("build-command")
    assert apt_packages(command) == ["python3-venv", "squashfs-tools"]
    installed = requirement_names(pip_requirements(command))
    assert {"invoke", "requests", "zstandard"} <= installed
    assert not {"pytest", "nox", "pytest-httpserver", "ruff", "mypy"} & installed
    assert {"pytest", "nox"} <= requirement_names("requirements.txt")  # the check can fail


def tools_tests_need(root: bool) -> set[str]:
    """Every package a test's need()/@pytest.mark.needs() asks for; with root=False only those
    of calls that do not need root (what the quick tests need), without tests/e2e."""
    named: set[str] = set()
    for path in (REPO / "tests").rglob("*.py"):
        if not root and "e2e" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            called = isinstance(node, ast.Call) and (
                getattr(node.func, "attr", None) or getattr(node.func, "id", None)
            )
            if not isinstance(node, ast.Call) or called not in ("needs", "need"):
                continue
            if not root and any(keyword.arg == "root" for keyword in node.keywords):
                continue
            named |= {
                arg.value
                for arg in node.args
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
            }
    if root:
        from tests.noxfile_module import load_noxfile

        named |= set(load_noxfile().E2E_TOOLS)
    return set(packages(sorted(named)).split())


@pytest.mark.parametrize(
    ("marker", "root"), [("quick-test-command", False), ("test-command", True)]
)
def test_test_commands_install_every_tool_their_tests_need(marker: str, root: bool) -> None:
    """So that no test skips for a missing tool (the full command's ignition included)."""
    wanted = tools_tests_need(root) - PRESENT
    assert len(wanted) > (10 if root else 3)  # the scan finds them
    listed = set(apt_packages(block_after(marker)))
    assert not wanted - listed, f"add to README's {marker}: {sorted(wanted - listed)}"


def test_quick_test_command_needs_no_root() -> None:
    command = block_after("quick-test-command")
    assert command.splitlines()[-1].endswith(".venv/bin/nox -s quick")
    assert "sudo" not in command.splitlines()[-1].replace("$SUDO apt-get", "")


def test_ci_installs_nothing_beyond_the_readme_command() -> None:
    """.ci/run runs README's command alone: what it needs must be in that command."""
    ci = (REPO / ".ci/run").read_text()
    assert "apt-get" not in ci and "sudo()" not in ci


def test_mirror_command_builds_from_a_mirror(invoke: Invoke, release: Release) -> None:
    command = block_after("mirror-command")
    words = shlex.split(command.replace("https://mirror.example.com/alloy", release.base_url))
    assert words[0] == ".venv/bin/invoke" and f"--base-url={release.base_url}" in words
    result = invoke(*words[1:], env={"INVOKE_BASE_URL": "https://unreachable.invalid/"})
    assert result.returncode == 0, result.stdout + result.stderr


TOP = "\n".join(README.splitlines()[:40]) + "\n"


def test_top_of_readme_holds_what_a_newcomer_needs() -> None:
    """What it is, the build command, the quick and the full test command with what each
    costs, and links to the rest, in the first 40 lines."""
    assert TOP.startswith("# alloy-sysext\n\nBuilds [Grafana Alloy]")
    for marker in SETUP_BLOCKS:
        assert re.search(rf"<!-- {marker} -->\n```sh\n.*?\n```\n", TOP, re.S), marker
    build, quick, full = (
        TOP.split("<!-- build-command -->")[0].split("## Quick start")[1],
        TOP.split("<!-- quick-test-command -->")[0].rsplit("```", 1)[1],
        TOP.split("<!-- test-command -->")[0].rsplit("```", 1)[1],
    )
    assert all(re.search(r"\d+ MB|\d+ GB", text) for text in (build, quick, full))
    assert all("minutes" in text for text in (build, quick, full))
    assert "no root" in build and "no root" in quick and "root" in full.replace("roots", "")
    assert "Debian's mirror" in full and "cold" in full and "warm" in full
    linked = set(re.findall(r"\]\(#([\w-]+)\)", TOP))
    anchors = {
        re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.*)$", README, re.M)
    }
    assert len(linked) >= 6 and linked <= anchors, linked - anchors


# What README states a full run costs, held against what CI recorded (.ci/record-run).

CI_RUNS = REPO / "docs/ci-runs.tsv"


def stated_minutes(caches: str) -> tuple[int, int]:
    match = re.search(rf"\*\*{caches} (\d+)-(\d+) minutes\*\*", TOP)
    assert match, f"README.md's top states no '**{caches} A-B minutes**'"
    return int(match.group(1)), int(match.group(2))


def recorded_runs() -> list[tuple[str, int, str]]:
    rows = [line.split("\t") for line in CI_RUNS.read_text().splitlines()]
    return [(row[0], int(row[2]), row[3]) for row in rows if not row[0].startswith("#")]


@pytest.mark.parametrize("caches", ["cold", "warm"])
def test_stated_ci_time_holds_every_recorded_run(caches: str) -> None:
    low, high = stated_minutes(caches)
    runs = [(date, seconds) for date, seconds, kind in recorded_runs() if kind == caches]
    assert runs, f"docs/ci-runs.tsv records no {caches} run"
    outside = [(date, seconds) for date, seconds in runs if not low * 60 <= seconds <= high * 60]
    assert not outside, f"README.md says {caches} {low}-{high} minutes; CI recorded {outside}"


def test_record_run_appends_one_line(tmp_path: Path) -> None:
    record = tmp_path / "runs.tsv"
    record.write_text("# header\n")
    result = subprocess.run(
        [REPO / ".ci/record-run", "1263", "cold", record], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "passed in 21 min 3 s (cold caches" in result.stdout
    assert record.read_text().startswith("# header\n")
    (line,) = record.read_text().splitlines()[1:]
    fields = line.split("\t")
    assert fields[2:4] == ["1263", "cold"] and fields[-1] == ".ci/run" and len(fields) == 7


@pytest.mark.parametrize("args", [["12x", "cold"], ["60", "lukewarm"], ["60"]])
def test_record_run_refuses_what_is_not_a_run(tmp_path: Path, args: list[str]) -> None:
    record = tmp_path / "runs.tsv"
    result = subprocess.run(
        [REPO / ".ci/record-run", *args, record], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr == "usage: .ci/record-run SECONDS cold|warm|partial [RECORD]\n"
    assert not record.exists()


@pytest.mark.parametrize(
    ("built", "caches"),
    [
        ([], "cold"),
        (["arm64"], "partial"),
        (["bookworm", "trixie", "testing", "arm64"], "partial"),  # no x86-64 machine yet
        (None, "warm"),
    ],
)
def test_e2e_caches_says_what_a_run_will_build(
    tmp_path: Path, built: list[str] | None, caches: str
) -> None:
    every = ["bookworm", "trixie", "testing", "arm64", "x86-64"]
    for name in every if built is None else built:
        (tmp_path / "alloy-sysext-e2e" / name).mkdir(parents=True)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path)}
    result = subprocess.run(
        [REPO / ".ci/e2e-caches"], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout == f"{caches}\n"


def test_ci_run_records_its_time_after_the_readme_command() -> None:
    ci = (REPO / ".ci/run").read_text()
    assert ci.index("caches=$(.ci/e2e-caches)") < ci.index('eval "$test_command"')
    assert ci.rstrip().endswith('.ci/record-run "$((SECONDS - start))" "$caches"')
