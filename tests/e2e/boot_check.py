"""What check.sh (run by a probe unit once a booted machine is up) is given and what it
records when the image works: shared by the nspawn boot test and the arm64 machine's."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from build.formats.table import open_image
from tests.e2e.conftest import HERE
from tests.e2e.container import Boot

CONFIG_PATH = "/var/mnt/storage/alloy/config.alloy"  # the unit's default --config-path
CONFIG = 'logging {\n  level  = "info"\n  format = "logfmt"\n}\n'
STAND_IN_VERSION = "alloy, version v0.0.0-e2e (stand-in for the alloy-sysext boot test)"


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
