"""Boot test: a minimal Debian with systemd as PID 1 merges the built image at boot, and
alloy.service (a compiled stand-in for alloy inside) starts, reloads and stops.

Run with `nox -s e2e`, which builds the Debian root once (tests/e2e/make-root.sh) and sets
ALLOY_E2E_ROOT. Each test builds an image with the real `invoke all`, boots the root in
systemd-nspawn with the image in /etc/extensions, and lets check.sh, run by a unit once the
container is up, do what README.md tells users and record what happened."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from build.formats.table import image_format
from build.release import host as layout
from tests.conftest import REPO, Invoke
from tests.e2e.boot_check import (
    BOOT_MARKS,
    CONFIG,
    CONFIG_PATH,
    IMAGE,
    build_image,
    expected_run,
    observed,
    seed_check,
)
from tests.e2e.container import Boot, boot

pytestmark = BOOT_MARKS


def seed_root(
    seed: Path, image: Path, install: str, check: str = "check.sh", config: bool = True
) -> Path:
    """What the booted root holds on top of the cached one: the image installed as a host
    would (README's two ways), Alloy's config, and the check that runs once it is up."""
    if install == "versioned":  # /etc/extensions/alloy-1.10.2-amd64.raw
        (seed / "etc/extensions").mkdir(parents=True)
        shutil.copy(image, seed / "etc/extensions" / image.name)
    else:  # sysext-bakery: /etc/extensions/alloy.raw -> /opt/extensions/alloy/VERSIONED
        images, link = layout.EXTENSIONS_DIR, layout.CURRENT_SYMLINK
        (seed / images.lstrip("/")).mkdir(parents=True)
        shutil.copy(image, seed / images.lstrip("/") / image.name)
        (seed / link.lstrip("/")).parent.mkdir(parents=True)
        (seed / link.lstrip("/")).symlink_to(f"{images}/{image.name}")
    seed_check(seed, check, "alloy-e2e-check.service", config)
    return seed


def boot_with(
    e2e_root: Path,
    tmp_path: Path,
    image: Path,
    install: str,
    report_time: Callable[[str], None],
    **seed: Any,
) -> Boot:
    booted = boot(
        e2e_root, seed_root(tmp_path / "seed", image, install, **seed), tmp_path / "shared"
    )
    usec = booted.results.get("boot_usec", "")
    in_container = f", systemd to multi-user.target {int(usec) / 1000:.0f} ms" if usec else ""
    report_time(f"boot+check+shutdown {booted.seconds:.1f} s{in_container}")
    print(f"boot+check+shutdown took {booted.seconds:.1f} s{in_container}")
    assert booted.returncode is not None, booted.report()
    assert booted.results.get("finished") == "yes", booted.report()
    return booted


@pytest.mark.parametrize(
    ("install", "extension"),
    [("versioned", IMAGE.removesuffix(".raw")), ("symlink", "alloy")],
    ids=["etc-extensions-versioned-name", "etc-extensions-alloy.raw-symlink"],
)
def test_booted_host_merges_the_image_and_runs_reloads_and_stops_alloy(
    invoke: Invoke,
    tmp_path: Path,
    e2e_root: Path,
    report_time: Callable[[str], None],
    install: str,
    extension: str,
) -> None:
    image = build_image(invoke, tmp_path)
    booted = boot_with(e2e_root, tmp_path, image, install, report_time)
    expected = expected_run(booted, image, tmp_path)
    assert observed(booted, expected) == expected, booted.report()
    assert booted.returncode == 0, booted.report()

    # Merged at boot under the name it was installed as.
    assert re.search(rf"^{re.escape(extension)}\s", booted.text("sysext-list.txt"), re.M), (
        booted.report() + "\n--- sysext-list.txt:\n" + booted.text("sysext-list.txt")
    )
    # The stand-in ran as the unit's main process, with the config and storage the unit gives it.
    assert booted.text("started") == (
        f"pid={booted.results['main_pid']}\nconfig={CONFIG_PATH}\nconfig_bytes={len(CONFIG)}\n"
    )
    # One reload, which re-read the config; the stop was a SIGTERM it exited on, after it.
    assert booted.text("reloads") == f"reload=1 config_bytes={len(CONFIG)}\n"
    assert booted.text("stopped") == "reloads=1\n"
    # What it logged reached the journal, under the unit.
    journal = booted.text("alloy.journal")
    for line in ("now listening", "config reloaded reload=1", "received shutdown signal"):
        assert line in journal, booted.report()


@pytest.mark.needs("mkfs.erofs")
@pytest.mark.parametrize(
    "root_fixture", ["e2e_root", "trixie_root"], ids=["debian12-systemd252", "debian13-systemd257"]
)
def test_booted_host_merges_an_erofs_image_and_runs_alloy(
    invoke: Invoke,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    report_time: Callable[[str], None],
    root_fixture: str,
) -> None:
    """--format=erofs: the image Flatcar Beta and Alpha would get, merged at boot by the
    systemd Debian 12 has and by the one Flatcar Stable runs (257)."""
    image = build_image(invoke, tmp_path, "--format=erofs")
    assert image_format(image) == "erofs"
    booted = boot_with(
        request.getfixturevalue(root_fixture), tmp_path, image, "versioned", report_time
    )
    expected = expected_run(booted, image, tmp_path)
    assert observed(booted, expected) == expected, booted.report()
    assert booted.returncode == 0, booted.report()
    extension = re.escape(IMAGE.removesuffix(".raw"))
    assert re.search(rf"^{extension}\s", booted.text("sysext-list.txt"), re.M), booted.report()
    assert booted.text("reloads") == f"reload=1 config_bytes={len(CONFIG)}\n"


def test_boot_check_sees_a_reload_that_does_not_reach_alloy(
    invoke: Invoke,
    tmp_path: Path,
    e2e_root: Path,
    report_time: Callable[[str], None],
) -> None:
    """The control: a unit whose ExecReload sends nothing fails the reload check, and only it."""
    template, replaced = re.subn(
        r"^ExecReload=.*$",
        "ExecReload=/bin/true",
        (REPO / "build/templates/image/alloy.service").read_text(),
        flags=re.M,
    )
    assert replaced == 1
    (tmp_path / "alloy.service").write_text(template)
    image = build_image(invoke, tmp_path, f"--unit-template={tmp_path / 'alloy.service'}")
    booted = boot_with(e2e_root, tmp_path, image, "versioned", report_time)
    expected = {**expected_run(booted, image, tmp_path), "reloads_file": "no"}
    assert observed(booted, expected) == expected, booted.report()
    assert booted.text("reloads") == ""
    assert booted.text("stopped") == "reloads=0\n"


@pytest.mark.parametrize(
    ("root_fixture", "config"),
    [("e2e_root", True), ("e2e_root", False), ("testing_root", False)],
    ids=["config-at-boot", "no-config-yet", "no-config-yet-262"],
)
def test_autostart_image_runs_alloy_at_boot_without_enable_and_waits_for_a_config(
    invoke: Invoke,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    report_time: Callable[[str], None],
    root_fixture: str,
    config: bool,
) -> None:
    """On 262 too: there, with systemd's default StartLimitBurst=, Upholds='s retries while
    no config exists failed the unit (start-limit-hit) and the admin's start was refused."""
    image = build_image(invoke, tmp_path, "--autostart")
    booted = boot_with(
        request.getfixturevalue(root_fixture),
        tmp_path,
        image,
        "versioned",
        report_time,
        check="check-autostart.sh",
        config=config,
    )
    expected = {
        "sysext_service": "active/success",
        "is_enabled": "disabled",  # nobody enabled it: Upholds= on multi-user.target started it
        "restarts_at_boot": "0",
    }
    if config:
        expected |= {
            "started_file": "yes",
            "active_at_boot": "active/running",
            "condition_at_boot": "yes",
            "start_attempts": "1",
        }
    else:  # skipped on its condition, not failing and restarting; starts once there is a config
        expected |= {
            "active_at_boot": "inactive/dead",
            # ExecCondition=, as the config's path comes from /etc/default/alloy (issue 24).
            "result_at_boot": "exec-condition",
            "start_status": "0",
            "started_file_later": "yes",
            "active_later": "active/running",
        }
    assert observed(booted, expected) == expected, booted.report()
    if not config:
        # Each skip is logged; systemd stops retrying after 16 (its auto-start rate limit) and
        # nothing runs or restarts meanwhile. Without the condition alloy would fail, restart.
        attempts = int(booted.results["start_attempts"])
        assert 1 <= attempts <= 16, booted.report()
        assert "tried this too often recently" in booted.text("boot.journal") or attempts < 16
    assert booted.returncode == 0, booted.report()


def test_image_without_autostart_leaves_alloy_alone_at_boot(
    invoke: Invoke, tmp_path: Path, e2e_root: Path, report_time: Callable[[str], None]
) -> None:
    image = build_image(invoke, tmp_path)
    booted = boot_with(
        e2e_root, tmp_path, image, "versioned", report_time, check="check-autostart.sh"
    )
    expected = {"is_enabled": "disabled", "started_file": "no", "active_at_boot": "inactive/dead"}
    assert observed(booted, expected) == expected, booted.report()


def test_autostart_image_with_its_restart_unit_boots_on_262(
    invoke: Invoke, tmp_path: Path, testing_root: Path, report_time: Callable[[str], None]
) -> None:
    """262 reads EXTENSION_RESTART_UNITS=: systemd-sysext.service (before sysinit.target) runs
    the image's alloy-sysext-restart.service after the merge. It has no default dependencies
    and only queues a try-restart, so the boot goes on (alloy.service in the field would hang
    it) and the --autostart image's alloy starts once, at multi-user.target. The image without
    --autostart boots on 262 in the update tests (tests/e2e/test_update.py)."""
    image = build_image(invoke, tmp_path, "--autostart")
    booted = boot_with(
        testing_root, tmp_path, image, "versioned", report_time, check="check-autostart.sh"
    )
    expected = {
        "sysext_service": "active/success",
        "started_file": "yes",
        "active_at_boot": "active/running",
        "restarts_at_boot": "0",
        "start_attempts": "1",
    }
    assert observed(booted, expected) == expected, booted.report()
    journal = booted.text("boot.journal")
    ran = journal.index("Finished alloy-sysext-restart.service")
    assert ran < journal.index("Reached target sysinit.target"), booted.report()
    assert booted.returncode == 0, booted.report()
