"""arm64 boot test: an emulated arm64 machine (qemu-system-aarch64, Debian 12's arm64 kernel and
systemd 252) merges an arm64 image built with the real `invoke all --arch=arm64` at boot, and
alloy.service (the stand-in, cross-compiled for arm64) starts, reloads and stops; an image built
with --autostart runs it with no `systemctl enable`; an arm64 image that says
ARCHITECTURE=x86-64 is refused.

User-mode emulation cannot do this (qemu-user refuses the clone flags systemd-dissect uses), so
the whole machine is emulated: slow (about a minute a boot), hence three boots only. Run with
`nox -s e2e`, which builds the machine once (tests/e2e/make-arm64-machine.sh) and sets
ALLOY_E2E_ARM64_MACHINE. The probe unit runs the same check.sh as the nspawn boot test and the
host reads what it recorded from a second disk after power-off (tests/e2e/machine_arm64.py)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from tests.conftest import VERSION, Invoke, Release
from tests.e2e.boot_check import (
    CONFIG,
    CONFIG_PATH,
    STAND_IN_VERSION,
    expected_run,
    observed,
    seed_check,
)
from tests.e2e.conftest import GCC, HERE
from tests.e2e.container import Boot
from tests.e2e.machine_arm64 import SHARED, boot, cached_machine
from tests.fakes import sums, zip_bytes
from tests.image import extract

CROSS_GCC = "aarch64-linux-gnu-gcc"
pytestmark = [
    pytest.mark.root,
    pytest.mark.needs(
        "qemu-system-aarch64",
        CROSS_GCC,
        "mke2fs",
        "mksquashfs",
        "unsquashfs",
        root="the machine's root disk keeps the cached root's owners",
    ),
]

IMAGE = f"alloy-{VERSION}-arm64.raw"
EXTENSION = IMAGE.removesuffix(".raw")  # the name it merges as, under /var/lib/extensions
RELEASE_FILE = "usr/lib/extension-release.d/extension-release.alloy"
STRICT_XATTR = "user.extension-release.strict"  # false: the versioned file name is accepted


@pytest.fixture(scope="session")
def arm64_stand_in(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """fake_alloy.c, cross-compiled: static, so it runs in the arm64 root; stage checks it is
    AArch64, as it checks Alloy's own arm64 binary."""
    binary = tmp_path_factory.mktemp("fake-alloy-arm64") / "alloy"
    compiled = subprocess.run(
        [CROSS_GCC, *GCC[1:], "-o", str(binary), str(HERE / "fake_alloy.c")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert compiled.returncode == 0, (
        f"{CROSS_GCC} failed (is libc6-dev-arm64-cross installed?):\n{compiled.stderr}"
    )
    return binary.read_bytes()


@pytest.fixture
def release(httpserver: HTTPServer, arm64_stand_in: bytes) -> Release:
    """What `invoke` builds from: alloy-linux-arm64.zip holds the arm64 stand-in."""
    published = Release(httpserver)
    zips = {"alloy-linux-arm64.zip": zip_bytes({"alloy-linux-arm64": arm64_stand_in})}
    published.publish(VERSION, {**zips, "SHA256SUMS": sums(zips)})
    return published


@pytest.fixture
def arm64_machine() -> Path:
    """The cached machine; asked for first, so a missing one skips before anything is built."""
    return cached_machine()


def build_image(invoke: Invoke, tmp_path: Path, *options: str) -> Path:
    result = invoke("all", "--arch=arm64", *options)
    assert result.returncode == 0, result.stderr
    return tmp_path / "output" / IMAGE


def seed_root(seed: Path, image: Path, check: str) -> Path:
    """What the booted root holds on top of the cached one: the image in /var/lib/extensions,
    Alloy's config, the check and the probe unit that runs it once the machine is up."""
    (seed / "var/lib/extensions").mkdir(parents=True)
    shutil.copy(image, seed / "var/lib/extensions" / image.name)
    (seed / SHARED.lstrip("/")).mkdir()
    seed_check(seed, check, "alloy-e2e-arm64-check.service")
    return seed


def boot_with(
    arm64_machine: Path,
    tmp_path: Path,
    image: Path,
    report_time: Callable[[str], None],
    check: str = "check.sh",
) -> Boot:
    booted = boot(arm64_machine, seed_root(tmp_path / "seed", image, check), tmp_path / "vm")
    usec = booted.results.get("boot_usec", "")
    inside = f", systemd to multi-user.target {int(usec) / 1e6:.1f} s" if usec else ""
    report_time(f"arm64 VM: disk+boot+check+power-off {booted.seconds:.1f} s{inside}")
    print(f"arm64 VM: disk+boot+check+power-off {booted.seconds:.1f} s{inside}")
    assert booted.returncode == 0, booted.report()
    assert booted.results.get("finished") == "yes", booted.report()
    assert booted.text("probe-result") == "success/0\n", booted.report()
    assert booted.text("machine") == "aarch64\n", booted.report()  # uname -m: no x86 in sight
    return booted


def merged(booted: Boot) -> bool:
    """Whether `systemd-sysext status` lists the image among /usr's extensions."""
    status = booted.text("sysext-status.txt")
    return re.search(rf"^/usr\s.*\b{re.escape(EXTENSION)}\b", status, re.M) is not None


def assert_merged_and_ran(booted: Boot, image: Path, tmp_path: Path) -> None:
    """What a working arm64 image does on the booted machine (README's steps, by check.sh)."""
    expected = expected_run(booted, image, tmp_path)
    assert observed(booted, expected) == expected, booted.report()
    assert merged(booted), booted.report()
    assert booted.text("started") == (
        f"pid={booted.results['main_pid']}\nconfig={CONFIG_PATH}\nconfig_bytes={len(CONFIG)}\n"
    )
    assert booted.text("reloads") == f"reload=1 config_bytes={len(CONFIG)}\n"
    assert booted.text("stopped") == "reloads=1\n"
    journal = booted.text("alloy.journal")
    for line in ("now listening", "config reloaded reload=1", "received shutdown signal"):
        assert line in journal, booted.report()


def test_arm64_machine_merges_the_image_at_boot_and_runs_reloads_and_stops_alloy(
    arm64_machine: Path, invoke: Invoke, tmp_path: Path, report_time: Callable[[str], None]
) -> None:
    image = build_image(invoke, tmp_path)
    booted = boot_with(arm64_machine, tmp_path, image, report_time)
    assert booted.results["alloy_version"] == STAND_IN_VERSION
    assert_merged_and_ran(booted, image, tmp_path)


def test_arm64_autostart_image_runs_alloy_at_boot_without_enable(
    arm64_machine: Path, invoke: Invoke, tmp_path: Path, report_time: Callable[[str], None]
) -> None:
    image = build_image(invoke, tmp_path, "--autostart")
    booted = boot_with(arm64_machine, tmp_path, image, report_time, check="check-autostart.sh")
    expected = {
        "sysext_service": "active/success",
        "is_enabled": "disabled",  # nobody enabled it: Upholds= on multi-user.target started it
        "config_at_boot": "yes",
        "started_file": "yes",
        "active_at_boot": "active/running",
        "condition_at_boot": "yes",
        "restarts_at_boot": "0",
        "start_attempts": "1",
    }
    assert observed(booted, expected) == expected, booted.report()


def with_architecture(image: Path, architecture: str, tmp_path: Path) -> Path:
    """`image` repacked with ARCHITECTURE=`architecture` in its extension-release (everything
    else, the file name and the extended attributes included, as built)."""
    tree = extract(image, tmp_path / "broken-tree")
    release_file = tree / RELEASE_FILE
    text, replaced = re.subn(
        r"^ARCHITECTURE=.*$", f"ARCHITECTURE={architecture}", release_file.read_text(), flags=re.M
    )
    assert replaced == 1
    release_file.write_text(text)
    broken = tmp_path / "broken" / image.name
    broken.parent.mkdir()
    subprocess.run(
        ["mksquashfs", str(tree), str(broken), "-all-root", "-noappend", "-comp", "xz", "-quiet"],
        check=True,
        capture_output=True,
    )
    # Still accepted under its versioned name: refused for its ARCHITECTURE= alone.
    repacked = extract(broken, tmp_path / "broken-check") / RELEASE_FILE
    assert os.getxattr(repacked, STRICT_XATTR) == b"false"
    assert repacked.read_text() == text
    return broken


def test_arm64_machine_refuses_an_arm64_image_that_says_x86_64(
    arm64_machine: Path, invoke: Invoke, tmp_path: Path, report_time: Callable[[str], None]
) -> None:
    """The control: the original tool's bug (ARCHITECTURE=x86-64 in every image) on an arm64
    image. The arm64 host skips it, so the checks the working image passes fail on it."""
    image = with_architecture(build_image(invoke, tmp_path), "x86-64", tmp_path)
    booted = boot_with(arm64_machine, tmp_path, image, report_time)
    assert booted.results["sysext_service"] == "active/success"  # 252 skips it without failing
    # Found in /var/lib/extensions, and left out of the merge.
    assert re.search(rf"^{re.escape(EXTENSION)}\s", booted.text("sysext-list.txt"), re.M), (
        booted.report() + "\n--- sysext-list.txt:\n" + booted.text("sysext-list.txt")
    )
    assert not merged(booted), booted.report() + "\n" + booted.text("sysext-status.txt")
    assert booted.results["alloy_path"] == "", booted.report()
    assert booted.results["load_state"] == "not-found", booted.report()
    with pytest.raises(AssertionError):
        assert_merged_and_ran(booted, image, tmp_path)
