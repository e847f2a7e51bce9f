"""The table of what an image holds (build/image/content.py) is what stage writes and what verify
expects: the same files, modes and xattrs, for every combination of the options that add files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from build.image import content
from build.image.stage import stage
from build.verify import checks
from tests.fakes import MACHINES, elf_binary, zip_bytes
from tests.specs import spec_of

COMBINATIONS = [
    (autostart, trust_keys, run_as)
    for autostart in (False, True)
    for trust_keys in (False, True)
    for run_as in ("alloy", "root")
]


@pytest.mark.parametrize(("autostart", "trust_keys", "run_as"), COMBINATIONS)
def test_stage_writes_the_tables_files_modes_and_xattrs(
    tmp_path: Path, autostart: bool, trust_keys: bool, run_as: str
) -> None:
    spec = spec_of({"output_dir": tmp_path / "out", "cache_dir": tmp_path / "c"})
    zip_path = tmp_path / "a.zip"
    zip_path.write_bytes(zip_bytes({"alloy-linux-amd64": elf_binary(MACHINES["amd64"])}))
    held = content.held(autostart, trust_keys, run_as)
    texts: dict[str, str | bytes] = {f.path: "x\n" for f in held if f is not content.BINARY}
    tree = tmp_path / "tree"
    tree.mkdir(mode=0o700)
    old = os.umask(0o077)
    try:
        stage(spec, zip_path, tree, texts)
    finally:
        os.umask(old)
    found = {
        str(path.relative_to(tree)).removeprefix("."): stat.S_IMODE(path.stat().st_mode)
        for path in [tree, *tree.rglob("*")]
    }
    wanted = {f.path: f.mode for f in held}
    wanted |= {directory: content.DIR_MODE for directory in content.directories(wanted)}
    assert found == wanted
    for file in held:
        assert {
            name: os.getxattr(tree / file.path, name) for name in os.listxattr(tree / file.path)
        } == dict(file.xattrs)


@pytest.mark.parametrize(("autostart", "trust_keys", "run_as"), COMBINATIONS)
def test_verify_expects_the_tables_files(autostart: bool, trust_keys: bool, run_as: str) -> None:
    required = checks.required_files(autostart, trust_keys, run_as)
    expected = {*required, content.IMAGE_EXTENSION_RELEASE}
    assert expected == {file.path for file in content.held(autostart, trust_keys, run_as)}


def test_run_as_alloy_adds_exactly_the_user_files_and_root_none() -> None:
    alloy = {file.path for file in content.held(False, False, "alloy")}
    root = {file.path for file in content.held(False, False, "root")}
    assert alloy - root == {
        "usr/lib/sysusers.d/alloy.conf",
        "usr/lib/tmpfiles.d/alloy.conf",
        "usr/lib/systemd/system/alloy-user.service",
        "usr/share/factory/etc/default/alloy",
    }
    assert root < alloy


def test_verify_expects_the_tables_modes() -> None:
    assert {
        content.IMAGE_BINARY: "-rwxr-xr-x",
        content.IMAGE_UNIT: "-rw-r--r--",
        content.IMAGE_EXTENSION_RELEASE: "-rw-r--r--",
        content.IMAGE_AUTOSTART: "-rw-r--r--",
        content.IMAGE_TRUST_KEYS: "-rw-r--r--",
        content.SYSUSERS.path: "-rw-r--r--",
        content.TMPFILES.path: "-rw-r--r--",
        content.USER_UNIT.path: "-rw-r--r--",
        content.ENV_FACTORY.path: "-rw-r--r--",
        content.RESTART_UNIT.path: "-rw-r--r--",
    } == checks.EXPECTED_FILE_MODES
    assert content.DIR_LISTED_MODE == "drwxr-xr-x"
    # What an image from elsewhere may hold or not: the files an option adds, and only those.
    assert {file.when for file in content.optional()} == {
        content.When.AUTOSTART,
        content.When.TRUST_KEYS,
        content.When.RUN_AS_USER,
        content.When.SINCE_RESTART_UNITS,  # an earlier release's image lacks the restart unit
    }
