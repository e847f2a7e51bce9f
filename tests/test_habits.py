"""What a newcomer does out of habit (issue 22): a mistyped key in invoke.yaml, `invoke --list |
head`, a single `invoke pack` before a release, a download that fails halfway."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from invoke import Config

import tasks
from build.config.configkeys import closest_option, refuse_unknown_settings
from build.core.errors import BuildError
from build.image.checksum import packed_alone
from build.model.names import CHECKOUT, default_output_dir
from tests.conftest import AMD64, INVOKE_CLI, REPO, VERSION, Invoke, Prebuilt, Release, copy_output
from tests.fakes import sums, zip_bytes
from tests.release_files import PUBLISH_URL
from tests.results import error_line, ok
from tests.runs import MEMBER, ZIP, leftovers, outputs

# invoke.yaml: a key no option has is refused, never built around


@pytest.mark.parametrize(
    ("key", "near"),
    [
        ("architecture", "arch"),
        ("output-dir", "output_dir"),
        ("ARCH", "arch"),
        ("versoin", "version"),
    ],
)
def test_an_unknown_key_names_the_closest_option(key: str, near: str) -> None:
    assert closest_option(key) == near


def test_an_unknown_key_in_the_runtime_file_is_refused_before_anything_runs(
    invoke: Invoke, tmp_path: Path
) -> None:
    config = tmp_path / "mine.yaml"
    config.write_text("architecture: arm64\n")
    error_line(
        invoke("-f", str(config), "all"), "unknown key 'architecture'", str(config), "'arch'"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.yaml"]  # no output, no cache
    # Every task refuses it, not only the builds.
    error_line(invoke("-f", str(config), "clean"), "unknown key 'architecture'")


def test_an_unknown_key_in_the_project_file_is_named_with_its_path(tmp_path: Path) -> None:
    (tmp_path / "invoke.yaml").write_text("arch: arm64\nrun:\n  echo: true\nachr: x\n")
    config = Config(project_location=tmp_path)
    config.load_collection(tasks.ns.configuration())
    config.load_project()
    with pytest.raises(BuildError) as caught:
        refuse_unknown_settings(config, environ={})
    assert str(caught.value).startswith(f"unknown key 'achr' in {tmp_path / 'invoke.yaml'}")
    assert "did you mean 'arch'?" in str(caught.value)


def test_a_section_named_after_a_task_is_refused(invoke: Invoke, tmp_path: Path) -> None:
    config = tmp_path / "mine.yaml"
    config.write_text("all:\n  arch: arm64\n")
    error_line(invoke("-f", str(config), "all"), "section 'all'", "not set per task", "arch: arm64")
    assert not (tmp_path / "output").exists()


def test_options_and_invoke_s_own_settings_pass(tmp_path: Path) -> None:
    (tmp_path / "invoke.yaml").write_text(
        "arch: arm64\nrun:\n  echo: true\ntasks:\n  dedupe: true\n"
    )
    (tmp_path / "user.yaml").write_text("another_projects_key: 1\n")  # ~/.invoke.yaml: shared
    config = Config(project_location=tmp_path, user_prefix=str(tmp_path / "user."))
    config.load_collection(tasks.ns.configuration())
    config.load_base_conf_files()
    config.load_project()
    environ = {"INVOKE_ARCH": "arm64", "INVOKE_RUN_ECHO": "1", "INVOKE_DEBUG": "1", "PATH": "/bin"}
    refuse_unknown_settings(config, environ=environ)


def test_an_unknown_invoke_variable_is_refused(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke("stage", env={"INVOKE_ARCHITECTURE": "arm64"})
    error_line(result, "unknown variable 'INVOKE_ARCHITECTURE'", "INVOKE_ARCH?")
    assert not (tmp_path / "output").exists() and not (tmp_path / "cache").exists()


# `invoke --list | head -1`: the reader gone, no traceback


def with_stdout_closed(
    args: tuple[str, ...], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `invoke ARGS` with its stdout a pipe whose reader is gone, like `head` that has read
    its line: every write to it fails with EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [*INVOKE_CLI, *args],
            cwd=cwd,
            env=env,
            stdout=write_end,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize("args", [("--list",), ("--help", "all"), ("--list", "--list-format=json")])
def test_a_closed_pipe_on_stdout_ends_quietly(args: tuple[str, ...], tmp_path: Path) -> None:
    result = with_stdout_closed(args, tmp_path)
    assert result.stderr == ""
    assert result.returncode == 1  # as Python's own note on SIGPIPE does


def test_a_build_whose_stdout_closes_stops_in_one_line(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    result = with_stdout_closed(("stage",), tmp_path, cli_env)
    error_line(result, "stopped: the reader of its output (stdout) went away")
    assert "alloy-linux-amd64.zip" not in result.stderr  # no file is to blame
    assert not (tmp_path / "output").exists() and leftovers(tmp_path) == []


# A single `invoke pack` after `invoke all`: release names the cause and the fix


def test_release_after_a_single_pack_says_to_run_all(
    invoke: Invoke, prebuilt: Prebuilt, tmp_path: Path
) -> None:
    output = copy_output(prebuilt(*AMD64), tmp_path)
    ok(invoke("pack", "--config-path=/etc/alloy/other.alloy"))  # README's own example
    before = outputs(tmp_path)
    line = error_line(
        invoke("release", f"--publish-url={PUBLISH_URL}"),
        f"alloy-{VERSION}-amd64.raw was packed alone (invoke pack)",
        f"invoke all --version={VERSION} --arch=amd64",
    )
    assert "changed after it was built" not in line
    assert outputs(tmp_path) == before
    assert not (output / "SHA256SUMS").exists() and not (output / "index.json").exists()


def test_release_after_a_first_single_pack_says_to_run_all_not_verify(
    invoke: Invoke, tmp_path: Path
) -> None:
    ok(invoke("pack", "--output-dir=packed"))
    before = sorted((tmp_path / "packed").rglob("*"))
    line = error_line(
        invoke("release", f"--publish-url={PUBLISH_URL}", "--output-dir=packed"),
        f"alloy-{VERSION}-amd64.raw was packed alone (invoke pack)",
        f"invoke all --version={VERSION} --arch=amd64 --output-dir=packed",
    )
    assert "invoke verify" not in line  # which would answer that the .sha256 is missing
    assert sorted((tmp_path / "packed").rglob("*")) == before


def test_the_fix_after_a_single_pack_names_an_output_dir_only_where_it_is_not_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """From a subdirectory the default is the checkout's output/: no needless --output-dir."""
    name = f"alloy-{VERSION}-amd64.raw"
    monkeypatch.chdir(CHECKOUT / "build")
    assert "--output-dir" not in packed_alone(CHECKOUT / "output" / name, "x").hint
    assert "--output-dir=output " in packed_alone(Path("output") / name, "x").hint  # build/output
    monkeypatch.chdir(CHECKOUT)
    assert "--output-dir" not in packed_alone(Path("output") / name, "x").hint
    assert "--output-dir" not in packed_alone(CHECKOUT / "output" / name, "x").hint
    assert "--output-dir=elsewhere " in packed_alone(Path("elsewhere") / name, "x").hint


def test_an_image_changed_by_someone_else_is_still_said_so(
    invoke: Invoke, prebuilt: Prebuilt, tmp_path: Path
) -> None:
    output = copy_output(prebuilt(*AMD64), tmp_path)
    with (output / f"alloy-{VERSION}-amd64.raw").open("ab") as image:
        image.write(b"\0")
    error_line(invoke("sums"), "changed after it was built or copied")
    assert not (output / "SHA256SUMS").exists()


# A download that fails: no version folder left in the cache


@pytest.mark.parametrize(
    ("zip_data", "status"),
    [
        (b"gone", 404),  # a mirror that lacks the zip
        (zip_bytes({MEMBER: b"another binary"}), 200),  # its sha256 does not match
    ],
    ids=["404", "wrong-sha256"],
)
def test_a_download_failing_after_sha256sums_leaves_no_version_folder(
    invoke: Invoke, release: Release, tmp_path: Path, zip_data: bytes, status: int
) -> None:
    cache = tmp_path / "cache" / "alloy-sysext"
    listed = sums({ZIP: zip_bytes({MEMBER: b"\x7fELF the real one"})})
    release.server.expect_request("/v9.9.9/SHA256SUMS").respond_with_data(listed)
    release.server.expect_request(f"/v9.9.9/{ZIP}").respond_with_data(zip_data, status)
    ok(invoke("fetch"))  # the cache and its source folder exist already
    version_dir = release.cached(cache, "9.9.9")
    before = sorted(cache.rglob("*"))

    error_line(invoke("fetch", "--version=9.9.9", "--retries=0"), "9.9.9")
    assert not version_dir.exists()
    assert sorted(cache.rglob("*")) == before
    assert f"/v9.9.9/{ZIP}" in release.requests()


def test_a_failed_download_keeps_a_version_folder_it_did_not_make(
    invoke: Invoke, release: Release, tmp_path: Path
) -> None:
    cache = tmp_path / "cache" / "alloy-sysext"
    listed = sums({ZIP: zip_bytes({MEMBER: b"\x7fELF the real one"})})
    release.server.expect_request("/v9.9.9/SHA256SUMS").respond_with_data(listed)
    release.server.expect_request(f"/v9.9.9/{ZIP}").respond_with_data("gone", status=404)
    version_dir = release.cached(cache, "9.9.9")
    version_dir.mkdir(parents=True)
    (version_dir / "notes.txt").write_text("mine\n")
    error_line(invoke("fetch", "--version=9.9.9"), "404")
    assert (version_dir / "notes.txt").read_text() == "mine\n"
    assert (version_dir / "SHA256SUMS").read_bytes() == listed  # in a folder it did not make


# Run from a subdirectory of the checkout: the checkout's output/, said; a given path is the user's


def scratch_checkout(tmp_path: Path) -> Path:
    """A checkout of our own (tasks.py and build/, as the container image holds them), with a
    subdirectory to run from: the tests' own checkout's output/ is never written."""
    checkout = tmp_path / "checkout"
    shutil.copytree(
        REPO / "build", checkout / "build", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy2(REPO / "tasks.py", checkout / "tasks.py")
    (checkout / "docs").mkdir()
    return checkout


def test_a_build_from_a_subdirectory_goes_to_the_checkout_s_output(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    checkout = scratch_checkout(tmp_path)
    subdir = checkout / "docs"

    def run(
        *args: str, cwd: Path = subdir, env: dict[str, str] = cli_env
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "invoke", *args],  # Invoke finds tasks.py above it
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=300,
        )

    staged = f".staging/alloy-{VERSION}-amd64/stage.stamp"
    said = ok(run("stage")).stdout
    assert (checkout / "output" / staged).is_file()
    assert not (subdir / "output").exists()
    assert f"{checkout / 'output'}: the checkout's" in said

    said = ok(run("stage", "--output-dir=mine")).stdout  # a path the user gives is theirs: here
    assert (subdir / "mine" / staged).is_file()
    assert f"output   {subdir / 'mine'}: in this subdirectory, as --output-dir says" in said
    said = ok(run("stage", env={**cli_env, "INVOKE_OUTPUT_DIR": "theirs"})).stdout
    assert (subdir / "theirs" / staged).is_file()
    assert f"output   {subdir / 'theirs'}: in this subdirectory, as INVOKE_OUTPUT_DIR says" in said

    # The checkout's invoke.yaml means its own directory, wherever the run is.
    (checkout / "invoke.yaml").write_text("output_dir: built\n")
    said = ok(run("stage")).stdout
    assert (checkout / "built" / staged).is_file()
    assert not (subdir / "built").exists()
    assert f"output   {checkout / 'built'}: the checkout's, as its invoke.yaml says" in said
    said = ok(run("stage", cwd=checkout)).stdout  # in the checkout itself: nothing to say
    assert "output   " not in said and not (checkout / "output" / "built").exists()
    (checkout / "invoke.yaml").unlink()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ok(run("-r", str(checkout), "stage", cwd=elsewhere))  # outside the checkout: here, as before
    assert (elsewhere / "output" / staged).is_file()


def test_the_default_output_dir_is_the_checkout_s_only_inside_it(tmp_path: Path) -> None:
    assert default_output_dir(CHECKOUT) == Path("output")
    assert default_output_dir(CHECKOUT / "docs") == CHECKOUT / "output"
    assert default_output_dir(tmp_path) == Path("output")
