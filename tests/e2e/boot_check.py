"""What check.sh (run by a probe unit once a booted machine is up) is given and what it
records when the image works: shared by the nspawn boot test and the arm64 machine's."""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
from pathlib import Path

import pytest

from build.formats.table import open_image
from tests.conftest import VERSION, Invoke
from tests.e2e.conftest import HERE, ROOT_ENV
from tests.e2e.container import Boot

# What booting the nspawn boot tests' Debian 12 root needs (test_boot.py, test_run_as.py).
BOOT_MARKS = [
    pytest.mark.root,
    pytest.mark.skipif(
        not os.environ.get(ROOT_ENV),
        reason=f"the boot test needs a Debian root: run it with `nox -s e2e` (which builds the "
        f"root once and sets {ROOT_ENV})",
    ),
    pytest.mark.needs("systemd-nspawn", "unshare", "gcc", root="booting a container"),
    pytest.mark.skipif(
        platform.machine() != "x86_64", reason="the stand-in and the image are x86-64 (amd64)"
    ),
    pytest.mark.skipif(
        not Path("/dev/loop-control").exists(), reason="no /dev/loop-control (loop driver)"
    ),
]
IMAGE = f"alloy-{VERSION}-amd64.raw"

CONFIG_PATH = "/var/mnt/storage/alloy/config.alloy"  # the unit's default --config-path
CONFIG = 'logging {\n  level  = "info"\n  format = "logfmt"\n}\n'
STAND_IN_VERSION = "alloy, version v0.0.0-e2e (stand-in for the alloy-sysext boot test)"


def build_image(invoke: Invoke, tmp_path: Path, *options: str) -> Path:
    """`invoke all` with `options`; the image it wrote (under --output-dir=, if given)."""
    output = next((o.split("=", 1)[1] for o in options if o.startswith("--output-dir=")), "output")
    result = invoke("all", *options)
    assert result.returncode == 0, result.stderr
    return tmp_path / output / IMAGE


def seed_check(seed: Path, check: str, unit: str, config: bool = True) -> None:
    """Alloy's config (unless not `config`), the `check` script and the probe `unit` that runs it
    once the machine is up, and the drop-in that has systemd-sysext reload the manager."""
    if config:
        config_file = seed / CONFIG_PATH.lstrip("/")
        config_file.parent.mkdir(parents=True)
        config_file.write_text(CONFIG)
    (seed / "etc/alloy-e2e").mkdir(parents=True)
    shutil.copy(HERE / check, seed / "etc/alloy-e2e/check.sh")
    units = seed / "etc/systemd/system"
    (units / "systemd-sysext.service.d").mkdir(parents=True)
    shutil.copy(HERE / "sysext-reload-manager.conf", units / "systemd-sysext.service.d")
    (units / "multi-user.target.wants").mkdir(parents=True)
    shutil.copy(HERE / unit, units)
    (units / "multi-user.target.wants" / unit).symlink_to(f"/etc/systemd/system/{unit}")


def observed(booted: Boot, expected: dict[str, str]) -> dict[str, str | None]:
    return {key: booted.results.get(key) for key in expected}


def unit_sha256(image: Path, tmp_path: Path) -> str:
    """Of the unit as the image holds it, read by the reader of its format (squashfs or EROFS)."""
    unit = open_image(image).head("usr/lib/systemd/system/alloy.service", 1 << 20)
    return hashlib.sha256(unit).hexdigest()


def expected_run(booted: Boot, image: Path, tmp_path: Path) -> dict[str, str]:
    """Everything check.sh records, as it is when the image works."""
    return {
        "sysext_service": "active/success",
        "alloy_path": "/usr/local/bin/alloy",
        "alloy_version": STAND_IN_VERSION,
        "load_state": "loaded",
        "fragment_path": "/usr/lib/systemd/system/alloy.service",
        "fragment_sha256": unit_sha256(image, tmp_path),  # the unit systemd runs: the image's
        "enable_status": "0",
        "is_enabled": "enabled",
        "started_file": "yes",
        "active_after_start": "active/running",
        "restarts": "0",
        "reload_status": "0",
        "reloads_file": "yes",
        "active_after_reload": "active/running",
        "main_pid_after_reload": booted.results.get("main_pid", "?"),
        "stop_status": "0",
        "active_after_stop": "inactive/dead",
        "result_after_stop": "success",
        "main_pid_after_stop": "0",
        "pid_alive_after_stop": "no",
        "processes_after_stop": "0",
    }
