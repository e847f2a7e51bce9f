"""The image's alloy-sysext-restart.service, which extension-release's EXTENSION_RESTART_UNITS=
names (systemd 262): every build holds it and verify requires it there; an image an earlier
release built lacks it, and `invoke verify --image` still takes that one."""

from __future__ import annotations

from pathlib import Path

import pytest

from build.image import content
from build.verify import checks
from tests import verifying
from tests.conftest import Invoke
from tests.results import ok
from tests.verifying import repack, verify

tree = verifying.tree  # the built image unpacked (a fixture)

RESTART_UNIT = "usr/lib/systemd/system/alloy-sysext-restart.service"
RELEASE = "usr/lib/extension-release.d/extension-release.alloy"


def entries(image: Path, built_now: bool) -> str:
    expect = checks.Expectations(
        compression=None,
        names=[image.name],
        checksums=[],
        required=checks.required_files(False, False, "alloy", built_now=built_now),
        optional=[] if built_now else [file.path for file in content.optional()],
    )
    [row] = [check for check in checks.static_checks(image, expect) if check.name == "entries"]
    return f"{row.status} {row.detail}"


def test_every_build_holds_it_with_either_run_as() -> None:
    assert content.RESTART_UNIT.path == RESTART_UNIT
    for run_as in ("alloy", "root"):
        assert RESTART_UNIT in checks.required_files(False, False, run_as)
        assert RESTART_UNIT not in checks.required_files(False, False, run_as, built_now=False)


@pytest.mark.needs("mksquashfs", "unsquashfs")
def test_verify_refuses_a_build_without_it(tree: Path, tmp_path: Path) -> None:
    assert (tree / RELEASE).read_text().splitlines()[-1] == (
        "EXTENSION_RESTART_UNITS=alloy-sysext-restart.service"
    )
    (tree / RESTART_UNIT).unlink()
    image = repack(tree, tmp_path / "short" / "alloy.raw")
    assert entries(image, built_now=True) == f"FAIL /{RESTART_UNIT} is missing"


@pytest.mark.needs("mksquashfs", "unsquashfs", root="merging the image")
def test_verify_image_takes_one_an_earlier_release_built(
    invoke: Invoke, tree: Path, tmp_path: Path
) -> None:
    """What earlier releases built: no restart unit, no field naming it."""
    (tree / RESTART_UNIT).unlink()
    release = tree / RELEASE
    release.write_text(
        release.read_text().replace(f"EXTENSION_RESTART_UNITS={Path(RESTART_UNIT).name}\n", "")
    )
    image = repack(tree, tmp_path / "old" / "alloy.raw")
    assert entries(image, built_now=False).startswith("ok ")
    ok(verify(invoke, image))
