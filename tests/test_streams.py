"""Version streams and a floor: invoke release --stream=X.Y writes that minor line's own feed
in streams/X.Y/ (its images, full versions in their names, SHA256SUMS, transfers, Butane), and
--min-version=X.Y.Z a MinVersion= floor; each refusal is one line and writes nothing. A real
systemd-sysupdate reads the feeds where one can be had."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml
from pytest_httpserver import HTTPServer

from build.release import host as layout
from build.release import sysupdate as sysupdate_files
from tests.conftest import INVOKE_CLI, REPO, Invoke, Release
from tests.fakes import release_assets
from tests.gpgkeys import Keys, gpgv
from tests.image import sha256
from tests.release_files import (
    PUBLISH_URL,
    host_transfer,
    ignition,
    listed,
    serve,
    snapshot,
    sums,
    sysupdate,
)
from tests.results import error_line, ok
from tests.shared import once

OLD, LINE, NEWEST = "1.19.1", "1.19.2", "1.20.0"  # two of the 1.19 line, one of the next
STREAM_URL = PUBLISH_URL + "streams/1.19/"


def image(version: str, arch: str = "amd64") -> str:
    return f"alloy-{version}-{arch}.raw"


# The three amd64 images and an arm64 1.19.2, built once a run; each test releases a copy.
@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, make_httpserver: HTTPServer) -> Path:
    def build(root: Path) -> dict[str, str]:
        make_httpserver.clear()
        served = Release(make_httpserver)
        for seed, version in enumerate((OLD, LINE, NEWEST), start=2):
            served.publish(version, release_assets(seed=seed))
        env = {
            **os.environ,
            "XDG_CACHE_HOME": str(root / "cache"),
            "INVOKE_BASE_URL": served.base_url,
        }
        cells = [(OLD, "amd64"), (LINE, "amd64"), (NEWEST, "amd64"), (LINE, "arm64")]
        for version, arch in cells:
            result = subprocess.run(
                [*INVOKE_CLI, "all", f"--version={version}", f"--arch={arch}"],
                cwd=root,
                env=env,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=300,
            )
            ok(result)
        make_httpserver.clear()
        return {"output": str(root / "output")}

    return Path(once(tmp_path_factory, "streams-built", build)["output"])


@pytest.fixture
def output(built: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "output"
    shutil.copytree(built, copy, symlinks=True)
    return copy


def release(invoke: Invoke, *args: str, env: dict[str, str] | None = None):
    return invoke("release", f"--publish-url={PUBLISH_URL}", *args, env=env)


def transfer_lines(feed: Path, arch: str = "amd64") -> list[str]:
    return (feed / f"sysupdate/{arch}/alloy.transfer").read_text().splitlines()


def test_a_stream_is_a_feed_of_its_own_minor_line(invoke: Invoke, output: Path) -> None:
    before = snapshot(output)
    result = ok(release(invoke, "--stream=1.19"))
    feed = output / "streams/1.19"
    # Only the line's versioned images, full versions in their names; 1.20.0 never.
    assert sums(feed) == {
        image(OLD): sha256(output / image(OLD)),
        image(LINE): sha256(output / image(LINE)),
        image(LINE, "arm64"): sha256(output / image(LINE, "arm64")),
    }
    for name in sums(feed):  # the same files, no bytes copied
        assert os.path.samefile(feed / name, output / name), name
    checked = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=feed, capture_output=True)
    assert checked.returncode == 0, checked.stdout
    # The transfer fetches from the stream's URL; @v is the whole version.
    for arch in ("amd64", "arm64"):
        for name in layout.TRANSFER_NAMES:
            lines = (feed / f"sysupdate/{arch}/{name}").read_text().splitlines()
            assert f"Path={STREAM_URL}" in lines
            assert lines.count(f"MatchPattern=alloy-@v-{arch}.raw") == 2
            assert not [line for line in lines if line.startswith("MinVersion=")]
    # The Butane/Ignition config installs the line's newest from the stream, and follows it:
    # the transfers it writes to the host fetch from the stream's URL.
    config = ignition(feed)
    [installed] = [f for f in config["storage"]["files"] if f["path"].endswith(".raw")]
    assert installed["contents"]["source"] == STREAM_URL + image(LINE)
    written = {
        f["path"]: unquote(f["contents"]["source"].removeprefix("data:,"))
        for f in config["storage"]["files"]
        if f["path"].startswith(layout.TRANSFER_DIR + "/")
    }
    assert sorted(written) == [f"{layout.TRANSFER_DIR}/{n}" for n in sorted(layout.TRANSFER_NAMES)]
    for text in written.values():
        assert text == (feed / "sysupdate/amd64/alloy.transfer").read_text()
    assert "Stream 1.19: updates stay on 1.19.Z." in (feed / "flatcar/alloy-amd64.bu").read_text()
    index = json.loads((feed / "index.json").read_text())
    assert index["stream"] == "1.19" and index["publish_url"] == STREAM_URL
    assert index["latest"] == {"amd64": LINE, "arm64": LINE}
    assert "min_version" not in index
    assert f"fetch 1.19.Z updates from {STREAM_URL}" in result.stdout
    # The default feed is not written by a stream's release.
    after = snapshot(output)
    assert not (output / "SHA256SUMS").exists() and not (output / "index.json").exists()
    assert {k for k in after if not k.startswith(("streams", ".staging"))} == {
        k for k in before if not k.startswith(".staging")
    }


def test_the_default_feed_stays_latest_and_a_stream_release_leaves_it(
    invoke: Invoke, output: Path
) -> None:
    ok(release(invoke))
    assert image(NEWEST) in sums(output)
    index = json.loads((output / "index.json").read_text())
    assert index["latest"]["amd64"] == NEWEST and "streams" not in index
    assert f"Path={PUBLISH_URL}" in transfer_lines(output)
    before = {k: v for k, v in snapshot(output).items() if not k.startswith(".staging")}
    ok(release(invoke, "--stream=1.19"))
    after = {k: v for k, v in snapshot(output).items() if not k.startswith((".staging", "streams"))}
    # Only the default feed's index.json changed: it lists the stream now.
    assert {k: v for k, v in after.items() if k != "index.json"} == {
        k: v for k, v in before.items() if k != "index.json"
    }
    relisted = json.loads((output / "index.json").read_text())
    assert relisted == {**index, "streams": LISTED}
    # And the default release keeps the streams it did not write, and lists them.
    streamed = snapshot(output / "streams")
    result = ok(release(invoke))
    assert snapshot(output / "streams") == streamed
    assert json.loads((output / "index.json").read_text())["streams"] == LISTED
    assert "index.json lists the streams 1.19" in result.stdout


LISTED = [{"stream": "1.19", "index": "streams/1.19/index.json"}]


def test_the_default_feed_lists_streams_released_before_it(invoke: Invoke, output: Path) -> None:
    ok(release(invoke, "--stream=1.19"))
    ok(release(invoke))
    assert json.loads((output / "index.json").read_text())["streams"] == LISTED
    # A stream's index.json changed by hand is not the tool's: not listed as published.
    (output / "streams/1.19/index.json").write_text("{}\n")
    ok(release(invoke))
    assert "streams" not in json.loads((output / "index.json").read_text())


def test_streams_are_never_followed_out_of_the_output_directory(
    invoke: Invoke, output: Path, tmp_path: Path
) -> None:
    ok(release(invoke, "--stream=1.19"))
    elsewhere = tmp_path / "elsewhere"
    (output / "streams").rename(elsewhere)
    (output / "streams").symlink_to(elsewhere)
    before = snapshot(output)
    error_line(release(invoke), "output/streams is a symbolic link", "nothing was changed")
    assert snapshot(output) == before
    # A stream's own directory linked in from elsewhere is not listed as published.
    (output / "streams").unlink()
    (output / "streams").mkdir()
    (output / "streams/1.19").symlink_to(elsewhere / "1.19")
    ok(release(invoke))
    assert "streams" not in json.loads((output / "index.json").read_text())


def test_a_stream_release_keeps_a_default_index_it_did_not_write(
    invoke: Invoke, output: Path
) -> None:
    ok(release(invoke))
    (output / "index.json").write_text('{"mine": true}\n')
    result = ok(release(invoke, "--stream=1.19"))
    assert (output / "index.json").read_text() == '{"mine": true}\n'
    assert "kept output/index.json: this tool did not write it" in result.stdout


def remove_by_hand(output: Path, version: str) -> None:
    """An image and its files removed from the output directory without invoke clean."""
    for path in [*output.glob(f"alloy-{version}-*"), *output.glob(f"alloy-{version}.*")]:
        path.unlink()  # each architecture's image, .sha256, build info; the compat name


def test_update_url_takes_the_stream_path_too(invoke: Invoke, output: Path) -> None:
    updates = "https://updates.example.com/alloy/"
    ok(release(invoke, "--stream=1.19", f"--update-url={updates}"))
    feed = output / "streams/1.19"
    assert f"Path={updates}streams/1.19/" in transfer_lines(feed)
    [installed] = [f for f in ignition(feed)["storage"]["files"] if f["path"].endswith(".raw")]
    assert installed["contents"]["source"] == STREAM_URL + image(LINE)


def test_min_version_writes_the_floor_into_every_transfer(invoke: Invoke, output: Path) -> None:
    ok(release(invoke, "--stream=1.19", f"--min-version={LINE}"))
    feed = output / "streams/1.19"
    for arch in ("amd64", "arm64"):
        for name in layout.TRANSFER_NAMES:
            text = (feed / f"sysupdate/{arch}/{name}").read_text()
            transfer_section = text.split("[Source]")[0]
            assert f"\nMinVersion={LINE}\n" in transfer_section
    assert json.loads((feed / "index.json").read_text())["min_version"] == LINE
    # The same transfer is what the Butane config writes to hosts.
    written = [f for f in ignition(feed)["storage"]["files"] if f["path"].endswith(".transfer")]
    assert written and "MinVersion%3D1.19.2" in written[0]["contents"]["source"]
    ok(release(invoke, f"--min-version={OLD}"))  # the default feed: newest 1.20.0, 1.19.2
    assert f"MinVersion={OLD}" in transfer_lines(output)


def test_a_stream_release_drops_images_no_longer_in_the_output_directory(
    invoke: Invoke, output: Path
) -> None:
    ok(release(invoke, "--stream=1.19"))
    ok(invoke("clean", f"--version={OLD}"))
    ok(release(invoke, "--stream=1.19"))
    feed = output / "streams/1.19"
    assert not (feed / image(OLD)).exists()
    assert sorted(sums(feed)) == [image(LINE), image(LINE, "arm64")]


def test_a_default_release_names_a_streams_image_removed_by_hand(
    invoke: Invoke, output: Path
) -> None:
    ok(release(invoke, "--stream=1.19"))
    remove_by_hand(output, OLD)
    result = ok(release(invoke))
    assert (
        f"stream 1.19 still offers {image(OLD)}, no longer in output: "
        "invoke release --stream=1.19 brings its feed up to date"
    ) in result.stdout
    ok(release(invoke, "--stream=1.19"))
    assert not (output / "streams/1.19" / image(OLD)).exists()
    assert "still offers" not in ok(release(invoke)).stdout


@pytest.mark.parametrize("task", ["release", "sums"])
def test_a_stream_with_no_image_left_says_its_earlier_feed_stays(
    invoke: Invoke, output: Path, task: str
) -> None:
    ok(release(invoke, "--stream=1.19"))
    remove_by_hand(output, OLD)
    remove_by_hand(output, LINE)
    before = snapshot(output)
    args = (f"--publish-url={PUBLISH_URL}",) if task == "release" else ()
    error_line(
        invoke(task, *args, "--stream=1.19"),
        "no images of stream 1.19",
        f"streams/1.19/ keeps serving its earlier feed ({image(OLD)}, ",
        "as it was, until invoke clean removes it",
        "nothing was written",
    )
    assert snapshot(output) == before


@pytest.mark.needs("gpg", "gpgv")
def test_sums_rewrites_and_signs_a_streams_sha256sums(
    invoke: Invoke, output: Path, keys: Keys
) -> None:
    env = {"INVOKE_GNUPG_HOME": str(keys.home)}
    ok(release(invoke))
    ok(release(invoke, "--stream=1.19", f"--sign-key={keys.plain}", env=env))
    feed = output / "streams/1.19"
    default = {k: v for k, v in snapshot(output).items() if not k.startswith(("streams", ".st"))}
    remove_by_hand(output, OLD)
    # Unsigned: the stream's SHA256SUMS over what is left of its line; its signature goes.
    result = ok(invoke("sums", "--stream=1.19"))
    assert sorted(sums(feed)) == [image(LINE), image(LINE, "arm64")]
    assert not (feed / image(OLD)).exists() and not (feed / "SHA256SUMS.gpg").exists()
    assert "wrote output/streams/1.19/SHA256SUMS (2 images)" in result.stdout
    assert "output/streams/1.19/SHA256SUMS changed, so it is unsigned now" in result.stdout
    # Signed again with the key.
    ok(invoke("sums", "--stream=1.19", f"--sign-key={keys.plain}", env=env))
    verdict = gpgv(feed / "alloy-release-key.gpg", feed / "SHA256SUMS.gpg", feed / "SHA256SUMS")
    assert verdict.returncode == 0, verdict.stderr
    checked = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=feed, capture_output=True)
    assert checked.returncode == 0, checked.stdout
    # The default feed is not the stream's: untouched (its images were removed, not its files).
    after = {k: v for k, v in snapshot(output).items() if not k.startswith(("streams", ".st"))}
    assert {k: v for k, v in after.items() if "1.19.1" not in k} == {
        k: v for k, v in default.items() if "1.19.1" not in k
    }


@pytest.mark.parametrize(
    ("setup", "args", "fragments"),
    [
        (
            (),
            ("--stream=1.19",),
            ("no feed of stream 1.19", "invoke release --stream=1.19 --publish-url=URL"),
        ),
        (("--stream=1.19",), ("--stream=1.20",), ("no feed of stream 1.20",)),
        (("--stream=1.19",), ("--stream=1.19.2",), ("invalid stream '1.19.2'", "X.Y")),
    ],
)
def test_sums_of_a_stream_refuses_in_one_line_and_writes_nothing(
    invoke: Invoke, output: Path, setup: tuple[str, ...], args: tuple[str, ...], fragments
) -> None:
    if setup:
        ok(release(invoke, *setup))
    before = snapshot(output)
    error_line(invoke("sums", *args), *fragments)
    assert snapshot(output) == before


def test_sums_and_release_help_say_what_stream_and_floor_do(invoke: Invoke) -> None:
    said = " ".join(ok(invoke("--help", "sums")).stdout.split())
    assert "--stream" in said and "streams/X.Y/" in said
    said = " ".join(ok(invoke("--help", "release")).stdout.split())
    assert "a host already below it keeps running its version" in said
    assert "rollback may still go back below it" in said


def test_clean_removes_the_stream_feeds_with_the_release_files(
    invoke: Invoke, output: Path
) -> None:
    ok(release(invoke, "--stream=1.19"))
    foreign = output / "streams/1.19/notes.txt"
    foreign.write_text("the admin's\n")
    result = ok(invoke("clean"))
    assert sorted(p.name for p in (output / "streams").rglob("*")) == ["1.19", "notes.txt"]
    assert "kept output/streams/1.19/notes.txt: not written by this tool" in result.stdout
    foreign.unlink()
    ok(invoke("clean"))
    assert not (output / "streams").exists()


@pytest.mark.needs("gpg", "gpgv")
def test_a_signed_stream_signs_its_own_sha256sums(invoke: Invoke, output: Path, keys: Keys) -> None:
    env = {"INVOKE_GNUPG_HOME": str(keys.home)}
    ok(release(invoke, "--stream=1.19", f"--sign-key={keys.plain}", env=env))
    feed = output / "streams/1.19"
    verdict = gpgv(feed / "alloy-release-key.gpg", feed / "SHA256SUMS.gpg", feed / "SHA256SUMS")
    assert verdict.returncode == 0, verdict.stderr
    assert "Verify=yes" in transfer_lines(feed)
    # Released unsigned again: the stream's signature goes, as the default feed's does.
    ok(release(invoke, "--stream=1.19"))
    assert not (feed / "SHA256SUMS.gpg").exists()


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("--stream=1.18",), ("no images of stream 1.18", "1.19, 1.20", "invoke all")),
        (("--stream=1.19.2",), ("invalid stream '1.19.2'", "X.Y")),
        (("--stream=1",), ("invalid stream '1'",)),
        (("--stream=v1.19",), ("invalid stream 'v1.19'",)),
        (("--stream=1.19.@v",), ("invalid stream",)),
        (("--min-version=1.21.0",), ("--min-version=1.21.0 is above every version", "1.20.0")),
        (
            ("--stream=1.19", "--min-version=1.20.0"),
            ("--min-version=1.20.0 is above every version streams/1.19/", "1.19.2"),
        ),
        # amd64 has 1.20.0, but arm64 hosts would be left with nothing.
        (("--min-version=1.19.3",), ("1.19.2 for arm64",)),
        (("--min-version=1.19",), ("invalid min_version '1.19'", "X.Y.Z")),
        (("--min-version=1.19.2-rc.1",), ("invalid min_version",)),
        (("--min-version=latest",), ("invalid min_version",)),
    ],
)
def test_refusals_are_one_line_and_write_nothing(
    invoke: Invoke, output: Path, args: tuple[str, ...], fragments: tuple[str, ...]
) -> None:
    before = snapshot(output)
    error_line(release(invoke, *args), *fragments)
    assert snapshot(output) == before


@pytest.mark.usefixtures("needs_sysupdate")
def test_real_systemd_sysupdate_on_a_stream_takes_its_line_only(
    invoke: Invoke, output: Path, httpserver: HTTPServer, tmp_path: Path
) -> None:
    feed = output / "streams/1.19"
    url = serve(httpserver, feed, "/pub/streams/1.19/")
    ok(invoke("release", f"--publish-url={url.removesuffix('streams/1.19/')}", "--stream=1.19"))
    assert f"Path={url}" in transfer_lines(feed)
    host = tmp_path / "host"
    definitions = host_transfer(feed, "amd64", host)
    assert listed(definitions) == {OLD: (False, True), LINE: (False, True)}  # never 1.20.0
    installed = host / layout.EXTENSIONS_DIR.lstrip("/")
    link = host / layout.CURRENT_SYMLINK.lstrip("/")
    shutil.copy(output / image(OLD), installed)
    link.symlink_to(installed / image(OLD))
    ok(sysupdate(definitions, "update"))
    assert link.resolve() == installed / image(LINE)
    # A floor above the line (a host whose transfer says 1.20.0) installs nothing lower.
    link.unlink()
    (installed / image(LINE)).unlink()
    link.symlink_to(installed / image(OLD))
    for transfer in definitions.iterdir():
        text = transfer.read_text().replace("[Transfer]\n", f"[Transfer]\nMinVersion={NEWEST}\n")
        transfer.write_text(text)
    after = sysupdate(definitions, "check-new")
    assert (after.returncode, after.stdout) == (1, ""), after.stderr
    ok(sysupdate(definitions, "update"))
    assert link.resolve() == installed / image(OLD)
    assert sorted(p.name for p in installed.iterdir()) == [image(OLD)]


@pytest.mark.usefixtures("needs_sysupdate")
def test_real_systemd_sysupdate_below_the_floor_keeps_its_version_and_installs_no_lower(
    invoke: Invoke, output: Path, httpserver: HTTPServer, tmp_path: Path
) -> None:
    """A host on 1.19.1 whose transfer says MinVersion=1.19.2: 1.19.1 is obsolete but kept (it
    runs), nothing below the floor is offered, and the update takes the newest at or above it."""
    url = serve(httpserver, output, "/pub/")
    ok(invoke("release", f"--publish-url={url}", f"--min-version={LINE}"))
    host = tmp_path / "host"
    definitions = host_transfer(output, "amd64", host)
    installed = host / layout.EXTENSIONS_DIR.lstrip("/")
    link = host / layout.CURRENT_SYMLINK.lstrip("/")
    shutil.copy(output / image(OLD), installed)
    link.symlink_to(installed / image(OLD))
    assert ok(sysupdate(definitions, "check-new")).stdout.strip() == NEWEST
    ok(sysupdate(definitions, "update"))
    assert link.resolve() == installed / image(NEWEST)
    assert sorted(p.name for p in installed.iterdir()) == [image(OLD), image(NEWEST)]


def test_the_other_tasks_leave_a_stream_alone(
    invoke: Invoke, release: Release, output: Path
) -> None:
    release.publish(LINE, release_assets(seed=3))  # as built
    ok(invoke("release", f"--publish-url={PUBLISH_URL}", "--stream=1.19"))
    feed = snapshot(output / "streams")
    ok(invoke("sums"))
    ok(invoke("verify"))
    ok(invoke("all", f"--version={LINE}"))
    assert snapshot(output / "streams") == feed


def ci_release_step(name: str) -> str:
    """The shell of the CI release job's step `name` (.github/workflows/ci.yml)."""
    workflow = yaml.safe_load((REPO / ".github/workflows/ci.yml").read_text())
    [step] = [s for s in workflow["jobs"]["release"]["steps"] if s.get("name", "").startswith(name)]
    return step["run"]


def test_ci_release_writes_and_checks_every_minor_lines_stream(
    output: Path, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """The step itself, run by bash as GitHub runs it, over the directory the builds made, with
    `invoke` this checkout's: both lines get a feed; and a broken stream fails it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "invoke").write_text(f'#!/bin/sh\nexec {shlex.join(INVOKE_CLI)} "$@"\n')
    (bin_dir / "invoke").chmod(0o755)
    env = {
        **cli_env,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PUBLISH_URL": PUBLISH_URL,
        "UPDATE_URL": "https://updates.example.com/alloy/",
    }
    default = [*INVOKE_CLI, "release", f"--publish-url={PUBLISH_URL}"]
    ok(subprocess.run(default, cwd=tmp_path, env=env, capture_output=True, text=True))
    step = ci_release_step("Version streams")
    result = subprocess.run(
        ["bash", "-e", "-c", step], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    ok(result)
    assert sorted(p.name for p in (output / "streams").iterdir()) == ["1.19", "1.20"]
    assert sorted(sums(output / "streams/1.20")) == [image(NEWEST)]
    assert "Path=https://updates.example.com/alloy/streams/1.19/" in transfer_lines(
        output / "streams/1.19"
    )
    assert [e["stream"] for e in json.loads((output / "index.json").read_text())["streams"]] == [
        "1.19",
        "1.20",
    ]
    # A stream that cannot be written stops the step (and so the release) before Publish.
    (output / "streams/1.20/SHA256SUMS").write_text("the admin's\n")
    failed = subprocess.run(
        ["bash", "-e", "-c", step], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert failed.returncode != 0 and "streams/1.20/SHA256SUMS" in failed.stderr, failed


def test_the_target_pattern_is_the_one_every_earlier_release_wrote() -> None:
    """systemd 262's --cleanup=yes deletes every installed image of a pattern no transfer covers
    any more, the running one included (README "Moving a fleet set up by an earlier release"):
    every release so far installed alloy-@v-ARCH.raw in /opt/extensions/alloy/ behind
    /etc/extensions/alloy.raw. Changing that needs a migration for hosts, and the README."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Moving a fleet set up by an earlier release\n", 1)[1]
    assert "`MatchPattern=alloy-@v-ARCH.raw`" in section.split("\n## ", 1)[0]
    for arch in ("amd64", "arm64"):
        lines = sysupdate_files.transfer(arch, PUBLISH_URL).splitlines()
        target = lines[lines.index("[Target]") :]
        assert f"MatchPattern=alloy-@v-{arch}.raw" in target
        assert f"Path={layout.EXTENSIONS_DIR}" in target
        assert f"CurrentSymlink={layout.CURRENT_SYMLINK}" in target
    assert (layout.EXTENSIONS_DIR, layout.CURRENT_SYMLINK) == (
        "/opt/extensions/alloy",
        "/etc/extensions/alloy.raw",
    )
