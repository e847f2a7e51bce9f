"""invoke release: the files a fleet needs beside the images, checked with the tools that read them
(sha256sum, ignition-validate, systemd-sysupdate, systemd-analyze) where this machine has them,
and by our own reading where it does not."""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pytest_httpserver import HTTPServer

from build.config.spec import parse_output_name
from build.release import butane
from build.release import host as layout
from build.release.sysupdate import match_pattern, pattern_match
from tests.conftest import (
    AMD64,
    BOTH_ARCHES,
    INVOKE_CLI,
    REPO,
    VERSION,
    Invoke,
    Prebuilt,
    Release,
    copy_output,
    nox_sessions,
)
from tests.fakes import release_assets
from tests.image import sha256
from tests.needs import need
from tests.noxfile_module import load_noxfile
from tests.release_files import (
    PUBLISH_URL,
    host_transfer,
    listed,
    serve,
    snapshot,
    sums,
    sysupdate,
)
from tests.results import error_line, ok
from tests.shared import once

NEWER = "1.17.1"
ARCHES = ("amd64", "arm64")
TRANSFER_KEYS = {
    "Transfer": {"Verify"},
    "Source": {"Type", "Path", "MatchPattern"},
    "Target": {"Type", "Path", "MatchPattern", "CurrentSymlink", "InstancesMax"},
}
RELEASE_FILES = [
    "SHA256SUMS",
    "index.json",
    *(f"sysupdate/{arch}/alloy.{ext}" for arch in ARCHES for ext in ("transfer", "conf")),
    *(f"flatcar/alloy-{arch}.{ext}" for arch in ARCHES for ext in ("bu", "ign")),
]


def build(run: Callable[..., subprocess.CompletedProcess], *cells: tuple[str, str], **kw: Any):
    """Build images through the real CLI, verified (release publishes only verified images)."""
    flags = [
        f"--{key.replace('_', '-')}" + ("" if value is True else f"={value}")
        for key, value in kw.items()
    ]
    for version, arch in cells:
        ok(run("all", f"--version={version}", f"--arch={arch}", *flags))


# One directory of four images and their release files, built once a run (whichever xdist
# worker asks first: tests/shared.py) for the tests that only read.
@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, make_httpserver: HTTPServer) -> Path:
    def publish(root: Path) -> dict[str, str]:
        make_httpserver.clear()
        served = Release(make_httpserver)
        served.publish(VERSION, release_assets())
        served.publish(NEWER, release_assets(seed=2))
        env = {
            **os.environ,
            "XDG_CACHE_HOME": str(root / "cache"),
            "INVOKE_BASE_URL": served.base_url,
        }

        def run(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                [*INVOKE_CLI, *args], cwd=root, env=env, capture_output=True, text=True, timeout=300
            )

        build(run, *((v, a) for v in (VERSION, NEWER) for a in ARCHES))
        ok(run("release", f"--publish-url={PUBLISH_URL}"))
        make_httpserver.clear()
        return {"output": str(root / "output")}

    return Path(once(tmp_path_factory, "published", publish)["output"])


def test_release_writes_every_file_and_sha256sums_checks(published: Path) -> None:
    for name in RELEASE_FILES:
        assert (published / name).is_file(), name
    assert not [p for p in published.rglob(".*") if p.name != ".staging"], "temporary files left"
    listed = sums(published)
    images = sorted(p.name for p in published.glob("*.raw"))
    assert sorted(listed) == images and len(images) == 6  # 4 versioned, 2 compat names
    result = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], cwd=published, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": OK\n") == 6
    # The format systemd-sysupdate reads: 64 hex digits, a space, a space or '*', the name.
    for line in (published / "SHA256SUMS").read_text().splitlines(keepends=True):
        assert re.fullmatch(r"[0-9a-f]{64}  alloy-[0-9a-z.-]+\.raw\n", line), line


@pytest.mark.parametrize("arch", ARCHES)
def test_transfer_files_have_exactly_the_keys_and_values(published: Path, arch: str) -> None:
    transfer = (published / f"sysupdate/{arch}/alloy.transfer").read_text()
    assert (published / f"sysupdate/{arch}/alloy.conf").read_text() == transfer
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(transfer)
    found = {section: set(parser[section]) for section in parser.sections()}
    assert found == TRANSFER_KEYS
    assert dict(parser["Transfer"]) == {"Verify": "false"}
    assert dict(parser["Source"]) == {
        "Type": "url-file",
        "Path": PUBLISH_URL,
        "MatchPattern": f"alloy-@v-{arch}.raw",
    }
    assert dict(parser["Target"]) == {
        "Type": "regular-file",
        "Path": layout.EXTENSIONS_DIR,
        "MatchPattern": f"alloy-@v-{arch}.raw",
        "CurrentSymlink": layout.CURRENT_SYMLINK,
        "InstancesMax": "3",
    }
    # Said plainly, beside the setting it explains.
    assert "We do not sign SHA256SUMS yet" in transfer and "SHA256SUMS.gpg" in transfer


@pytest.mark.parametrize("arch", ARCHES)
def test_match_pattern_picks_this_arch_versioned_images_only(published: Path, arch: str) -> None:
    pattern = match_pattern(arch)
    names = list(sums(published))
    matched = {name: pattern_match(pattern, name) for name in names}
    expected = {
        name: parse_output_name(name)[0]  # type: ignore[index]
        for name in names
        if parse_output_name(name)[1] == arch  # type: ignore[index]
    }
    assert {name: v for name, v in matched.items() if v is not None} == expected
    assert sorted(expected.values()) == [VERSION, NEWER]
    other = next(a for a in ARCHES if a != arch)
    for name in [f"alloy-{VERSION}.raw", f"alloy-{VERSION}-{other}.raw"]:
        assert name in names and pattern_match(pattern, name) is None
    # Nor anything else a directory may hold; a release candidate would match (hence refused).
    for name in [
        f"alloy-{VERSION}-{arch}.raw.sha256",
        f"alloy-{VERSION}-{arch}.raw.buildinfo.json",
    ]:
        assert pattern_match(pattern, name) is None
    assert pattern_match(pattern, f"alloy-1.11.0-rc.1-{arch}.raw") == "1.11.0-rc.1"


def test_pattern_match_follows_systemd() -> None:
    # The field ends at the first occurrence of the literal after it, as in sysupdate-pattern.c.
    assert pattern_match("a-@v-x.raw", "a-1-x.raw-x.raw") is None
    assert pattern_match("a-@v", "a-1.2.3") == "1.2.3"
    assert pattern_match("a-@v.raw", "a-.raw") is None  # an empty version is not valid
    assert pattern_match("a-@v.raw", "a-1 2.raw") is None  # nor one with a space
    assert pattern_match("a-@v.raw", "b-1.raw") is None


@pytest.mark.usefixtures("needs_sysupdate")
def test_real_systemd_sysupdate_lists_updates_and_keeps_two(
    invoke: Invoke, release: Release, httpserver: HTTPServer, tmp_path: Path
) -> None:
    release.publish(NEWER, release_assets(seed=2))
    release.publish("1.18.0", release_assets(seed=3))
    build(invoke, (VERSION, "amd64"), (NEWER, "amd64"), (NEWER, "arm64"))
    output = tmp_path / "output"
    url = serve(httpserver, output)
    ok(invoke("release", f"--publish-url={url}"))
    host = tmp_path / "host"
    amd64 = host_transfer(output, "amd64", host)
    arm64 = host_transfer(output, "arm64", host)

    # Each architecture sees its own versions only, never the compat names.
    assert listed(amd64) == {NEWER: (False, True), VERSION: (False, True)}
    assert listed(arm64) == {NEWER: (False, True)}

    # A host as an older provisioning left it: 1.10.2 installed and linked.
    installed = host / layout.EXTENSIONS_DIR.lstrip("/")
    link = host / layout.CURRENT_SYMLINK.lstrip("/")
    shutil.copy(output / f"alloy-{VERSION}-amd64.raw", installed)
    link.symlink_to(installed / f"alloy-{VERSION}-amd64.raw")
    assert ok(sysupdate(amd64, "check-new")).stdout.strip() == NEWER
    ok(sysupdate(amd64, "update"))
    assert link.resolve() == installed / f"alloy-{NEWER}-amd64.raw"
    assert sha256(link) == sums(output)[f"alloy-{NEWER}-amd64.raw"]

    # A newer release: the link follows it, and InstancesMax=3 keeps the two before it (one of
    # them may be what runs after a rollback).
    build(invoke, ("1.18.0", "amd64"))
    ok(invoke("release", f"--publish-url={url}"))
    ok(sysupdate(amd64, "update"))
    assert link.resolve() == installed / "alloy-1.18.0-amd64.raw"
    assert sorted(p.name for p in installed.iterdir()) == [
        f"alloy-{VERSION}-amd64.raw",
        f"alloy-{NEWER}-amd64.raw",
        "alloy-1.18.0-amd64.raw",
    ]
    after = sysupdate(amd64, "check-new")  # nothing newer: exit 1, nothing printed
    assert (after.returncode, after.stdout) == (1, ""), after.stderr
    assert listed(amd64) == {
        "1.18.0": (True, True),
        NEWER: (True, True),
        VERSION: (True, True),
    }


# Butane and Ignition


def decode_data_url(url: str) -> str:
    assert url.startswith("data:,"), url
    return urllib.parse.unquote(url.removeprefix("data:,"))


def butane_to_ignition(config: dict[str, Any]) -> dict[str, Any]:
    """What Butane does to our config: the header, and inline contents as data URLs (which we
    decode on the Ignition side instead, to compare text with text)."""
    assert config.pop("variant") == "flatcar" and config.pop("version") == "1.0.0"
    return {"ignition": {"version": "3.3.0"}, **config}


def ignition_with_text(config: dict[str, Any]) -> dict[str, Any]:
    for file in config.get("storage", {}).get("files", []):
        source = file["contents"]["source"]
        if source.startswith("data:"):
            file["contents"] = {"inline": decode_data_url(source)}
    return config


@pytest.mark.parametrize("arch", ARCHES)
def test_butane_and_ignition_say_the_same(published: Path, arch: str) -> None:
    bu = yaml.safe_load((published / f"flatcar/alloy-{arch}.bu").read_text())
    ign = json.loads((published / f"flatcar/alloy-{arch}.ign").read_text())
    assert butane_to_ignition(bu) == ignition_with_text(ign)


@pytest.mark.parametrize("arch", ARCHES)
def test_provisioning_installs_the_newest_image_with_its_hash(published: Path, arch: str) -> None:
    ign = ignition_with_text(json.loads((published / f"flatcar/alloy-{arch}.ign").read_text()))
    name = f"alloy-{NEWER}-{arch}.raw"
    files = {file["path"]: file for file in ign["storage"]["files"]}
    image = files[f"{layout.EXTENSIONS_DIR}/{name}"]
    assert image["contents"] == {
        "source": PUBLISH_URL + name,
        "verification": {"hash": f"sha256-{sums(published)[name]}"},
    }
    assert image["mode"] == 0o644
    assert ign["storage"]["links"] == [
        {
            "path": layout.CURRENT_SYMLINK,
            "target": f"{layout.EXTENSIONS_DIR}/{name}",
            "hard": False,
        }
    ]
    transfer = (published / f"sysupdate/{arch}/alloy.transfer").read_text()
    for installed in ("alloy.transfer", "alloy.conf"):
        assert files[f"{layout.TRANSFER_DIR}/{installed}"]["contents"] == {"inline": transfer}
    buildinfo = json.loads((published / f"{name}.buildinfo.json").read_text())
    # Never written at the config path itself (a kept config must survive re-provisioning):
    # a placeholder beside, copied into place by a unit only where no config exists.
    assert buildinfo["config_path"] not in files
    placeholder = files[layout.PLACEHOLDER_CONFIG]
    assert placeholder["mode"] == 0o600 and "overwrite" not in placeholder
    assert placeholder["contents"]["inline"].startswith("// ")  # an Alloy comment: valid
    units = {unit["name"]: unit for unit in ign["systemd"]["units"]}
    copier = units[layout.PLACEHOLDER_UNIT]
    assert copier["enabled"] is True
    assert f"ConditionPathExists=!{buildinfo['config_path']}\n" in copier["contents"]
    assert (
        f"ExecStart=/usr/bin/install -D -m 0640 {layout.PLACEHOLDER_CONFIG} "
        f"{buildinfo['config_path']}\n"
    ) in copier["contents"]
    # alloy.service runs as user alloy: its group reads the config, once sysusers made it.
    assert (
        f'systemd-sysusers alloy.conf && chgrp alloy "$$1"; fi\' - {buildinfo["config_path"]}\n'
    ) in copier["contents"]
    # /etc/default/alloy, seeded once: never replacing a host's own.
    defaults = files["/etc/default/alloy"]
    assert defaults["mode"] == 0o644 and defaults["overwrite"] is False
    text = defaults["contents"]["inline"]
    assert f'CONFIG_FILE="{buildinfo["config_path"]}"\n' in text
    assert 'CUSTOM_ARGS=""\n' in text
    # systemd 257 and older name sysupdate's timer and unit systemd-sysupdate.*, 258+
    # systemd-sysupdate-update.* (the old names are aliases there, and `systemctl preset` skips
    # an alias: enabling only the old name leaves a 262 host without updates). Both timers, and
    # one drop-in under one file name in both units' directories: systemd applies it once.
    for timer in ("systemd-sysupdate.timer", "systemd-sysupdate-update.timer"):
        assert units[timer] == {"name": timer, "enabled": True}
    [dropin] = units["systemd-sysupdate.service"]["dropins"]
    assert units["systemd-sysupdate-update.service"] == {
        "name": "systemd-sysupdate-update.service",
        "dropins": [dropin],
    }
    assert dropin["name"] == "alloy.conf"
    assert "/usr/lib/systemd/systemd-sysupdate -C alloy update" in dropin["contents"]
    # Around the update, the activate script the config ships: merge, restart, health gate.
    assert f"ExecStartPre=+{layout.ACTIVATE_SCRIPT} before\n" in dropin["contents"]
    assert f"ExecStartPre=+{layout.ACTIVATE_SCRIPT} after\n" in dropin["contents"]
    assert "\nExecStartPost=" not in dropin["contents"]  # 258+ ExecStart= would race it
    assert "TimeoutStartSec=15min\n" in dropin["contents"]
    activate = files[layout.ACTIVATE_SCRIPT]
    assert activate["mode"] == 0o755
    assert "health_url='http://127.0.0.1:12345/-/ready'\n" in activate["contents"]["inline"]


def test_ignition_files_pass_ignition_validate(published: Path) -> None:
    need("ignition-validate")
    for arch in ARCHES:
        path = published / f"flatcar/alloy-{arch}.ign"
        result = subprocess.run(["ignition-validate", str(path)], capture_output=True, text=True)
        assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr
    # And it does look: a wrong hash is refused.
    broken = json.loads((published / "flatcar/alloy-amd64.ign").read_text())
    broken["storage"]["files"][0]["contents"]["verification"]["hash"] = "sha256-abc"
    path = published.parent / "broken.ign"
    path.write_text(json.dumps(broken))
    assert subprocess.run(["ignition-validate", str(path)], capture_output=True).returncode != 0


needs_analyze = pytest.mark.needs("systemd-analyze")


def analyze(unit_dir: Path, unit: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["systemd-analyze", "verify", str(unit_dir / unit)],
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{unit_dir}:"},
        capture_output=True,
        text=True,
    )


@needs_analyze
def test_units_pass_systemd_analyze(published: Path, tmp_path: Path) -> None:
    units = {
        unit["name"]: unit
        for unit in json.loads((published / "flatcar/alloy-amd64.ign").read_text())["systemd"][
            "units"
        ]
    }
    (tmp_path / "alloy-first-boot.service").write_text(
        units["alloy-first-boot.service"]["contents"]
    )
    result = analyze(tmp_path, "alloy-first-boot.service")
    assert result.returncode == 0 and not result.stderr, result.stderr
    (tmp_path / "alloy-config-placeholder.service").write_text(
        units["alloy-config-placeholder.service"]["contents"]
    )
    result = analyze(tmp_path, "alloy-config-placeholder.service")
    assert result.returncode == 0 and not result.stderr, result.stderr
    # The drop-in, on a stand-in for systemd-sysupdate.service (this host may have none): the
    # binaries it names are swapped for ones that exist here, so only its syntax is judged.
    [dropin] = units["systemd-sysupdate.service"]["dropins"]
    (tmp_path / "systemd-sysupdate.service").write_text(
        "[Service]\nType=simple\nExecStart=/usr/bin/true\nRestrictNamespaces=net\n"
    )
    (tmp_path / "systemd-sysupdate.service.d").mkdir()
    (tmp_path / "systemd-sysupdate.service.d" / dropin["name"]).write_text(
        dropin["contents"]
        .replace("/usr/lib/systemd/systemd-sysupdate", "/usr/bin/true")
        .replace(layout.ACTIVATE_SCRIPT, "/usr/bin/true")
    )
    result = analyze(tmp_path, "systemd-sysupdate.service")
    assert result.returncode == 0 and not result.stderr, result.stderr


def test_autostart_replaces_the_first_boot_unit(
    invoke: Invoke, prebuilt: Prebuilt, tmp_path: Path
) -> None:
    def units(output: Path) -> dict[str, dict[str, Any]]:
        ign = json.loads((output / "flatcar/alloy-amd64.ign").read_text())
        return {unit["name"]: unit for unit in ign["systemd"]["units"]}

    shutil.copytree(prebuilt(*AMD64), tmp_path / "plain", symlinks=True)
    build(invoke, (VERSION, "amd64"), output_dir="autostart", autostart=True)
    for name in ("plain", "autostart"):
        ok(invoke("release", f"--output-dir={name}", f"--publish-url={PUBLISH_URL}"))

    plain = units(tmp_path / "plain")["alloy-first-boot.service"]
    assert plain["enabled"] is True
    assert "After=systemd-sysext.service" in plain["contents"]
    assert "ExecStart=/usr/bin/systemctl enable --now alloy.service\n" in plain["contents"]
    assert "alloy-first-boot.service" not in units(tmp_path / "autostart")
    bu = (tmp_path / "autostart/flatcar/alloy-amd64.bu").read_text()
    names = [unit["name"] for unit in yaml.safe_load(bu)["systemd"]["units"]]
    assert "alloy-first-boot.service" not in names and "alloy-config-placeholder.service" in names
    assert "built with --autostart" in bu


# index.json


def test_index_lists_every_image_with_size_hash_and_tools(published: Path) -> None:
    index = json.loads((published / "index.json").read_text())
    assert index["publish_url"] == PUBLISH_URL
    assert index["latest"] == {"amd64": NEWER, "arm64": NEWER}
    listed = sums(published)
    entries = {entry["file"]: entry for entry in index["images"]}
    assert sorted(entries) == sorted(listed)
    for name, entry in entries.items():
        path = published / name
        assert entry["size"] == path.stat().st_size
        assert entry["sha256"] == listed[name] == sha256(path)
        version, arch = parse_output_name(name)  # type: ignore[misc]
        assert entry["version"] == version
        twin = f"alloy-{version}-{arch or 'amd64'}.raw"  # compat names hold amd64's image
        assert entry["compat_of"] == (None if arch else twin)
        assert entry["arch"] == (arch or "amd64")
        buildinfo = json.loads((published / f"{twin}.buildinfo.json").read_text())
        for key in ("mksquashfs", "liblzma", "compression", "autostart", "config_path"):
            assert entry[key] == buildinfo[key], key
        assert entry["mksquashfs"]


# What release refuses, in one line, writing nothing


def test_release_candidate_in_the_directory_is_refused(
    invoke: Invoke, release: Release, prebuilt: Prebuilt, tmp_path: Path
) -> None:
    release.publish("1.11.0-rc.1", release_assets(seed=4))
    copy_output(prebuilt(*AMD64), tmp_path)
    ok(invoke("release", f"--publish-url={PUBLISH_URL}"))
    build(invoke, ("1.11.0-rc.1", "amd64"))
    output = tmp_path / "output"
    before = snapshot(output)

    line = error_line(invoke("release", f"--publish-url={PUBLISH_URL}"))
    assert "alloy-1.11.0-rc.1-amd64.raw" in line and "release candidates" in line
    assert "invoke clean --version=1.11.0-rc.1" in line
    assert snapshot(output) == before  # nothing half-written, nothing touched

    ok(invoke("clean", "--version=1.11.0-rc.1"))
    ok(invoke("release", f"--publish-url={PUBLISH_URL}"))


def test_release_candidate_alone_writes_nothing(
    invoke: Invoke, release: Release, tmp_path: Path
) -> None:
    release.publish("1.11.0-rc.1", release_assets(seed=4))
    build(invoke, ("1.11.0-rc.1", "arm64"))
    error_line(invoke("release", f"--publish-url={PUBLISH_URL}"))
    output = tmp_path / "output"
    assert not (output / "SHA256SUMS").exists() and not (output / "sysupdate").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), "--publish-url is required"),
        (("--publish-url=ftp://example.com/alloy/",), "invalid publish URL"),
        (("--publish-url=https://example.com/a b/",), "invalid publish URL"),
        (("--publish-url=https://example.com/%41/",), "invalid publish URL"),
    ],
)
def test_publish_url_is_required_and_plain(
    invoke: Invoke, prebuilt: Prebuilt, tmp_path: Path, args: tuple[str, ...], expected: str
) -> None:
    copy_output(prebuilt(*AMD64), tmp_path)
    before = snapshot(tmp_path / "output")
    assert expected in error_line(invoke("release", *args))
    assert snapshot(tmp_path / "output") == before


def test_image_without_buildinfo_is_refused(invoke: Invoke, tmp_path: Path) -> None:
    build(invoke, (VERSION, "amd64"))
    (tmp_path / f"output/alloy-{VERSION}-amd64.raw.buildinfo.json").unlink()
    line = error_line(invoke("release", f"--publish-url={PUBLISH_URL}"))
    assert "has no alloy-1.10.2-amd64.raw.buildinfo.json" in line
    assert "invoke all --version=1.10.2 --arch=amd64" in line
    assert not (tmp_path / "output/SHA256SUMS").exists()
    ok(invoke("all", f"--version={VERSION}"))  # which makes it again
    ok(invoke("release", f"--publish-url={PUBLISH_URL}"))


def test_an_architecture_gone_takes_its_release_files_along(
    invoke: Invoke, prebuilt: Prebuilt, tmp_path: Path
):
    copy_output(prebuilt(*BOTH_ARCHES), tmp_path)
    ok(invoke("release", f"--publish-url={PUBLISH_URL}"))
    output = tmp_path / "output"
    assert (output / "flatcar/alloy-arm64.ign").exists()
    ok(invoke("clean", "--arch=arm64"))
    ok(invoke("release", f"--publish-url={PUBLISH_URL}"))
    assert not (output / "sysupdate/arm64").exists()
    assert not (output / "flatcar/alloy-arm64.ign").exists()
    assert (output / "flatcar/alloy-amd64.ign").exists()


# The YAML writer, on strings that a careless one would get wrong


@pytest.mark.parametrize(
    "text",
    [
        "yes",
        "no",
        "1.0",
        "0644",
        "a: b",
        "# not a comment",
        "- item",
        '"quoted" and \\ backslash',
        " leading space\nsecond\n",
        "two\nlines\n",
        "no final newline\nhere",
        "trailing blank lines\n\n",
        "trailing spaces  \nline\n",
        "tab\there\n",
        "",
    ],
)
def test_butane_text_reads_back_exactly(text: str) -> None:
    config = butane.Provisioning(
        files=(butane.File("/etc/x", 0o640, inline=text),),
        units=(butane.Unit("x.service", enabled=False, contents=text),),
    )
    parsed = yaml.safe_load(butane.to_butane(config, comment="a\ncomment"))
    assert parsed["storage"]["files"][0] == {
        "path": "/etc/x",
        "mode": 0o640,
        "contents": {"inline": text},
    }
    assert parsed["systemd"]["units"][0]["contents"] == text
    ignition = ignition_with_text(json.loads(butane.to_ignition(config)))
    assert butane_to_ignition(parsed) == ignition


# README.md's walk-through


def fleet_commands(program: str) -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Fleets: systemd-sysupdate and Butane\n", 1)[1].split("\n## ", 1)[0]
    found = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        found += [line for line in block.splitlines() if line.startswith(f"{program} ")]
    return found


def test_readme_fleet_invoke_commands_work(
    invoke: Invoke, release: Release, tmp_path: Path
) -> None:
    commands = fleet_commands("invoke")
    assert any(command.startswith("invoke release --publish-url=") for command in commands)
    release.publish(NEWER, release_assets(seed=2))
    for command in commands:
        ok(invoke(*shlex.split(command)[1:]))
    output = tmp_path / "output"
    for name in RELEASE_FILES:
        assert (output / name).is_file(), name


def test_readme_fleet_nox_command_works(
    release: Release, cli_env: dict[str, str], tmp_path: Path
) -> None:
    [command] = fleet_commands(".venv/bin/nox")
    release.publish(NEWER, release_assets(seed=2))
    # Two of the declared cells are enough to see the session run after them, once.
    versions = f"{VERSION},{NEWER}"
    sessions = nox_sessions(shlex.split(command)[1:], cli_env, tmp_path / "output", versions)
    assert sessions == [f"build-matrix({VERSION}-amd64)", f"build-matrix({NEWER}-amd64)", "release"]
    index = json.loads((tmp_path / "output/index.json").read_text())
    assert index["latest"] == {"amd64": NEWER}
    # Each minor line of the matrix gets its stream too, listed in the default feed's index.
    lines = ["1.10", "1.17"]
    assert [entry["stream"] for entry in index["streams"]] == lines
    for line, version in zip(lines, (VERSION, NEWER), strict=True):
        feed = tmp_path / "output/streams" / line
        assert (feed / "SHA256SUMS").read_text().split()[1::2] == [f"alloy-{version}-amd64.raw"]
        assert (feed / "flatcar/alloy-amd64.ign").is_file()


def test_release_help_and_publish_url_from_the_environment(
    invoke: Invoke, prebuilt: Prebuilt, tmp_path: Path
) -> None:
    listed = ok(invoke("--list")).stdout
    assert "\n  release " in listed
    help_text = ok(invoke("--help", "release")).stdout
    assert "--publish-url" in help_text and "--output-dir" in help_text and "required" in help_text
    copy_output(prebuilt(*AMD64), tmp_path)
    ok(invoke("release", env={"INVOKE_PUBLISH_URL": PUBLISH_URL}))
    transfer = (tmp_path / "output/sysupdate/amd64/alloy.transfer").read_text()
    assert f"\nPath={PUBLISH_URL}\n" in transfer
    assert not (tmp_path / "output/sysupdate/arm64").exists()  # no arm64 image, no arm64 files


def test_nox_release_arguments_go_to_the_sessions_that_know_them() -> None:
    noxfile = load_noxfile()
    args = ["--publish-url", PUBLISH_URL, "--output-dir=out", "--force", "--base-url=http://m/"]
    assert noxfile._flags(args, noxfile.RELEASE_FLAGS, keep=True) == [
        "--publish-url",
        PUBLISH_URL,
        "--output-dir=out",
    ]
    assert noxfile._flags(args, noxfile.RELEASE_ONLY_FLAGS, keep=False) == [
        "--output-dir=out",
        "--force",
        "--base-url=http://m/",
    ]
    # --update-url is the release's too, given as --name=value or as --name value.
    args = ["--publish-url=https://x/", "--update-url", "https://y/", "--output-dir=o", "--force"]
    assert noxfile._flags(args, noxfile.RELEASE_FLAGS, keep=True) == [
        "--publish-url=https://x/",
        "--update-url",
        "https://y/",
        "--output-dir=o",
    ]
    assert noxfile._flags(args, noxfile.RELEASE_ONLY_FLAGS, keep=False) == [
        "--output-dir=o",
        "--force",
    ]
    # --allow-http goes to both, and takes no value: the argument after it is not swallowed.
    args = ["--allow-http", "--publish-url", "http://10.0.0.1/x/", "--base-url=http://m/"]
    assert noxfile._flags(args, noxfile.RELEASE_FLAGS, keep=True) == [
        "--allow-http",
        "--publish-url",
        "http://10.0.0.1/x/",
    ]
    assert noxfile._flags(args, noxfile.RELEASE_ONLY_FLAGS, keep=False) == [
        "--allow-http",
        "--base-url=http://m/",
    ]


def test_compat_name_without_its_versioned_image_is_refused(
    invoke: Invoke, prebuilt: Prebuilt, tmp_path: Path
):
    output = copy_output(prebuilt(*BOTH_ARCHES), tmp_path)
    for path in output.glob(f"alloy-{VERSION}-amd64.raw*"):
        path.unlink()
    line = error_line(invoke("release", f"--publish-url={PUBLISH_URL}"))
    assert f"alloy-{VERSION}.raw is the same as no versioned image of {VERSION}" in line
    assert not (output / "SHA256SUMS").exists()


def test_update_url_goes_to_the_transfer_and_the_image_comes_from_the_publish_url(
    invoke: Invoke, prebuilt: Prebuilt, tmp_path: Path
) -> None:
    copy_output(prebuilt(*AMD64), tmp_path)
    result = invoke(
        "release",
        "--publish-url=https://example.com/alloy/v1/",
        "--update-url=https://example.com/alloy/latest/",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    output = tmp_path / "output"
    transfer = (output / "sysupdate/amd64/alloy.transfer").read_text()
    assert "Path=https://example.com/alloy/latest/" in transfer.splitlines()
    ignition = json.loads((output / "flatcar/alloy-amd64.ign").read_text())
    files = {f["path"]: f["contents"]["source"] for f in ignition["storage"]["files"]}
    image = files[f"{layout.EXTENSIONS_DIR}/alloy-{VERSION}-amd64.raw"]
    assert image == f"https://example.com/alloy/v1/alloy-{VERSION}-amd64.raw"
    assert decode_data_url(files[f"{layout.TRANSFER_DIR}/alloy.transfer"]) == transfer
