"""Merge built images with the real systemd-sysext, in a private mount namespace."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import AMD64, VERSION, Prebuilt
from tests.image import extract

pytestmark = [
    pytest.mark.root,
    pytest.mark.needs(
        "systemd-sysext", "unshare", "mksquashfs", root="merging: mount namespaces, loop devices"
    ),
    pytest.mark.skipif(
        platform.machine() != "x86_64", reason="the merge test images are x86-64 (amd64)"
    ),
]

# A tmpfs /run keeps systemd-sysext's bookkeeping out of the host's; making the copied mounts
# private first detaches them from the host's peer groups, so nothing propagates back.
MERGE = r"""
set -e
mount --make-rprivate /
mount --make-rshared /
mount -t tmpfs tmpfs /run
systemd-sysext --root="$1" merge || true
echo "-- merged files:"
cd "$1"
find usr \( -path usr/.systemd-sysext -o -path usr/lib/os-release \) -prune -o -type f -print | sort
systemd-sysext --root="$1" unmerge >/dev/null
"""


def merged_files(root: Path, image: Path) -> list[str]:
    """Merge `image` into a scratch root under its own file name; return the files that appeared."""
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/os-release").write_text("ID=debian\nVERSION_ID=12\n")
    extensions = root / "var/lib/extensions"
    extensions.mkdir(parents=True)
    shutil.copy(image, extensions / image.name)
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", MERGE, "merge", str(root)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split("-- merged files:\n", 1)[1].split()


EXPECTED = [
    "usr/lib/extension-release.d/extension-release.alloy",
    "usr/lib/systemd/system/alloy-sysext-restart.service",
    "usr/lib/systemd/system/alloy-user.service",
    "usr/lib/systemd/system/alloy.service",
    "usr/lib/sysusers.d/alloy.conf",
    "usr/lib/tmpfiles.d/alloy.conf",
    "usr/local/bin/alloy",
    "usr/share/factory/etc/default/alloy",
]


@pytest.fixture
def built(prebuilt: Prebuilt) -> Path:
    """The output directory of `invoke all` (shared: read it only)."""
    return prebuilt(*AMD64)


@pytest.mark.parametrize("name", [f"alloy-{VERSION}-amd64.raw", f"alloy-{VERSION}.raw"])
def test_systemd_sysext_merges_the_image_under_its_published_name(
    built: Path, tmp_path: Path, name: str
) -> None:
    assert merged_files(tmp_path / "root", built / name) == EXPECTED


def test_without_the_strict_xattr_the_versioned_name_is_refused(built: Path, tmp_path: Path):
    """The control: proves the merge test can fail, and why the xattr is there."""
    tree = extract(built / f"alloy-{VERSION}-amd64.raw", tmp_path / "tree")
    os.removexattr(
        tree / "usr/lib/extension-release.d/extension-release.alloy",
        "user.extension-release.strict",
    )
    unmarked = tmp_path / f"alloy-{VERSION}-amd64.raw"
    subprocess.run(
        ["mksquashfs", str(tree), str(unmarked), "-all-root", "-noappend", "-no-progress"],
        capture_output=True,
        check=True,
    )
    assert merged_files(tmp_path / "root", unmarked) == []


ANALYZE = r"""
set -e
mount --make-rprivate /
mount --make-rshared /
mount -t tmpfs tmpfs /run
mkdir /run/extensions
cp "$1" /run/extensions/
systemd-sysext merge >/run/merge.log 2>&1 || { cat /run/merge.log >&2; exit 1; }
systemd-analyze verify /usr/lib/systemd/system/alloy.service
echo "verified"
"""


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze missing")
def test_unit_passes_systemd_analyze_verify_after_a_real_merge(built: Path) -> None:
    """Merged over the host's /usr in a private mount namespace, where the binary exists."""
    result = subprocess.run(
        [
            "unshare",
            "-m",
            "sh",
            "-c",
            ANALYZE,
            "analyze",
            str(built / f"alloy-{VERSION}-amd64.raw"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "verified"
    assert result.stderr == ""  # unknown keys and bad values only warn
