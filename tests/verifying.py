"""`invoke verify` on images broken on purpose: the built image (or its tree) to break, a
repack with the build's mksquashfs options, and the check a result must fail. The fixtures
`built` and `tree` are taken into a test module by name (`built = verifying.built`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import VERSION, Invoke, Prebuilt, copy_output
from tests.image import extract

STRICT_XATTR = "user.extension-release.strict"
RELEASE = "usr/lib/extension-release.d/extension-release.alloy"
UNIT = "usr/lib/systemd/system/alloy.service"

IMAGE = f"alloy-{VERSION}-amd64.raw"
UNVERIFIED = ("--no-verify",)  # `invoke all --no-verify`: the image, not verified yet


@pytest.fixture
def built(prebuilt: Prebuilt, tmp_path: Path) -> Path:
    """The image of `invoke all --no-verify`, in the test's own copy of its output directory."""
    return copy_output(prebuilt(UNVERIFIED), tmp_path) / IMAGE


@pytest.fixture
def tree(prebuilt: Prebuilt, tmp_path: Path) -> Path:
    """The built image unpacked (owners and xattrs kept), to break and repack."""
    return extract(prebuilt(UNVERIFIED) / IMAGE, tmp_path / "tree")


def repack(tree: Path, image: Path, all_root: bool = True, extra: tuple[str, ...] = ()) -> Path:
    image.parent.mkdir(parents=True, exist_ok=True)
    args = ["mksquashfs", str(tree), str(image), "-noappend", "-comp", "xz", "-b", "1M", *extra]
    subprocess.run(
        [*args, "-no-progress", *(["-all-root"] if all_root else [])],
        check=True,
        capture_output=True,
    )
    return image


def verify(invoke: Invoke, image: Path, *flags: str) -> subprocess.CompletedProcess:
    return invoke("verify", f"--image={image}", *flags)


def fails_because(result: subprocess.CompletedProcess, check: str, *fragments: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ") and "failed verification" in line
    failed = [row for row in result.stdout.splitlines() if " FAIL " in row]
    assert any(f"FAIL {check}:" in row and all(f in row for f in fragments) for row in failed), (
        result.stdout
    )
