"""A failed build never replaces a good one, and only verified images are published (issue 11,
§3): `invoke all` gives the new files their final names only after verify passed on them; the
build info records the verify result and the checks it could not make; release refuses the
rest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.conftest import AMD64, BOTH_ARCHES, VERSION, Invoke, Prebuilt, copy_output
from tests.results import error_line, ok

UNIT_TEMPLATE = Path(__file__).resolve().parent.parent / "build/templates/image/alloy.service"
PUBLISH = "--publish-url=https://downloads.example.com/alloy/"


def outputs(output: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file of the output directory but the build's own .staging: bytes, mtime, inode."""
    return {
        path.name: (path.read_bytes(), path.stat().st_mtime_ns, path.stat().st_ino)
        for path in output.iterdir()
        if path.is_file()
    }


def buildinfo(output: Path, arch: str = "amd64") -> dict:
    return json.loads((output / f"alloy-{VERSION}-{arch}.raw.buildinfo.json").read_text())


@pytest.mark.needs("systemd-sysext", "unshare", "systemd-analyze", root="real merges")
def test_a_failed_verify_leaves_every_earlier_output_as_it_was(
    invoke: Invoke, tmp_path: Path
) -> None:
    ok(invoke("all"))
    output = tmp_path / "output"
    before = outputs(output)
    image = output / f"alloy-{VERSION}-amd64.raw"
    assert buildinfo(output)["verify"] == {
        "result": "passed",
        "sha256": hashlib.sha256(image.read_bytes()).hexdigest(),
        "skipped": [],
    }
    # A unit that builds but that systemd-analyze refuses: the new image fails verify.
    bad = tmp_path / "bad.service"
    bad.write_text(UNIT_TEMPLATE.read_text().replace("Restart=on-failure", "Restart=sometimes"))
    result = invoke("all", f"--unit-template={bad}")
    line = error_line(result, "failed verification", "systemd-analyze", "alloy.service")
    assert line.startswith(f"error: the new output/alloy-{VERSION}-amd64.raw failed verification")
    assert line.endswith(
        "the new image was not installed: every earlier output in output is as it was"
    )
    assert "FAIL systemd-analyze" in result.stdout
    assert outputs(output) == before  # same bytes, same times, same files
    assert not (output / f".staging/alloy-{VERSION}-amd64/pending").exists()
    # And the good image is still what release publishes.
    released = ok(invoke("release", PUBLISH))
    assert "is not verified" not in released.stdout
    # The failed build left no record that would make the next run skip anything.
    again = ok(invoke("all", f"--unit-template={bad}", "--no-verify"))
    assert "pack     packed" in again.stdout


def test_single_steps_and_no_verify_record_not_verified_and_release_refuses(
    invoke: Invoke, tmp_path: Path
) -> None:
    ok(invoke("all", "--no-verify"))
    output = tmp_path / "output"
    assert buildinfo(output)["verify"]["result"] == "not run"
    command = f"invoke verify --version={VERSION} --arch=amd64 --output-dir=output"
    line = error_line(
        invoke("release", PUBLISH), f"alloy-{VERSION}-amd64.raw is not verified", command
    )
    assert "says: not run" in line
    assert sorted(p.name for p in output.iterdir() if p.is_file()) == [
        f"alloy-{VERSION}-amd64.raw",
        f"alloy-{VERSION}-amd64.raw.buildinfo.json",
        f"alloy-{VERSION}-amd64.raw.sha256",
        f"alloy-{VERSION}.raw",
        f"alloy-{VERSION}.raw.sha256",
    ]  # release wrote nothing
    # The command it names does the job.
    ok(invoke(*command.split()[1:]))
    verified = buildinfo(output)["verify"]
    assert verified["result"] == "passed"
    released = ok(invoke("release", PUBLISH))
    for skipped in verified["skipped"]:  # e.g. not root: the merges
        assert f"verify could not check {skipped}" in released.stdout


def test_checks_that_could_not_be_made_are_recorded_with_their_reasons(
    invoke: Invoke, prebuilt: Prebuilt, tmp_path: Path
) -> None:
    """An arm64 image on this x86-64 machine: the merges cannot be made. They do not count as
    passed: the build info lists them, and release says so."""
    output = copy_output(prebuilt(*BOTH_ARCHES), tmp_path)  # `invoke all` for each architecture
    verified = buildinfo(output, "arm64")["verify"]
    assert verified["result"] == "passed"
    merges = [
        s for s in verified["skipped"] if s.startswith(f"merge: as alloy-{VERSION}-arm64.raw: ")
    ]
    assert merges, verified
    assert any(s.startswith("systemd-analyze: ") for s in verified["skipped"])
    released = ok(invoke("release", PUBLISH))
    assert f"alloy-{VERSION}-arm64.raw: verify could not check {merges[0]}" in released.stdout


def test_a_failed_single_verify_is_recorded_and_release_refuses(
    invoke: Invoke, prebuilt: Prebuilt, tmp_path: Path
) -> None:
    output = copy_output(prebuilt(*AMD64), tmp_path)  # `invoke all`
    checksum = output / f"alloy-{VERSION}-amd64.raw.sha256"
    good = checksum.read_text()
    checksum.write_text("0" * 64 + f"  alloy-{VERSION}-amd64.raw\n")
    error_line(invoke("verify", "--force"), "failed verification", "does not match")
    assert buildinfo(output)["verify"]["result"] == "failed"
    checksum.write_text(good)  # the image is as built again, but nothing verified it since
    error_line(invoke("release", PUBLISH), "is not verified", "says: failed")


@pytest.mark.parametrize(
    "path",
    ["/../../etc/shadow", "/etc/alloy/../shadow", "/etc/./alloy", "//etc/alloy", "/etc/alloy/"],
)
def test_config_path_must_be_absolute_and_normal(invoke: Invoke, tmp_path: Path, path: str) -> None:
    result = invoke("pack", f"--config-path={path}")
    error_line(result, f"invalid config path {path!r}", "normal absolute path")
    assert not (tmp_path / "output").exists()
    assert result.stdout == ""  # refused before anything was fetched


def test_release_refuses_an_image_other_than_the_one_verify_passed(
    invoke: Invoke, prebuilt: Prebuilt, tmp_path: Path
) -> None:
    """A file put under a verified image's name, with a .sha256 to match, is not what verify
    vetted: the build info records the sha256 of the bytes it passed."""
    output = copy_output(prebuilt(*AMD64), tmp_path)  # `invoke all`
    image = output / f"alloy-{VERSION}-amd64.raw"
    for name in (image.name, f"alloy-{VERSION}.raw"):
        (output / name).unlink()
        (output / name).write_bytes(b"")  # 0 bytes under the image's names
        sha256 = hashlib.sha256(b"").hexdigest()
        (output / f"{name}.sha256").write_text(f"{sha256}  {name}\n")
    line = error_line(invoke("release", PUBLISH), f"{image.name} is not the image verify passed")
    assert "invoke verify --version=1.10.2 --arch=amd64 --output-dir=output --force" in line
    assert not (output / "SHA256SUMS").exists()
