"""release and sums read only regular files of the output directory (issue 12): an image,
.sha256 or build info that is a symlink, FIFO or device is refused, naming it, and nothing is
written or read through it."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import AMD64, INVOKE_CLI, VERSION, Invoke, Prebuilt, copy_output

PUBLISH = "--publish-url=https://downloads.example.com/alloy/"
IMAGE = f"alloy-{VERSION}-amd64.raw"
SECRET = b"root:$6$notarealhash:19000:0:99999:7:::\n"


@pytest.fixture
def output(prebuilt: Prebuilt, tmp_path: Path) -> Path:
    """The test's own copy of what `invoke all` built."""
    return copy_output(prebuilt(*AMD64), tmp_path)


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A stand-in for /etc/shadow: a file outside the output directory."""
    path = tmp_path / "elsewhere" / "shadow"
    path.parent.mkdir()
    path.write_bytes(SECRET)
    return path


def refused(result: subprocess.CompletedProcess, path: Path, kind: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: refusing {path}: it is {kind}, not a regular file"), line


def published_nothing(output: Path, secret: Path | None = None) -> None:
    for name in ("SHA256SUMS", "index.json", "sysupdate", "flatcar"):
        assert not (output / name).exists(), name
    if secret is not None:
        assert secret.read_bytes() == SECRET


def replace_with_symlink(path: Path, target: Path) -> None:
    path.unlink()
    path.symlink_to(target)


@pytest.mark.parametrize("task", [("release", PUBLISH), ("sums",)])
def test_an_image_symlinked_elsewhere_is_refused(
    invoke: Invoke, output: Path, secret: Path, task: tuple[str, ...]
) -> None:
    compat = output / f"alloy-{VERSION}.raw"
    replace_with_symlink(compat, secret)
    digest = hashlib.sha256(SECRET).hexdigest()
    (output / f"{compat.name}.sha256").write_text(f"{digest}  {compat.name}\n")
    refused(invoke(*task), Path("output") / compat.name, "a symlink")
    published_nothing(output, secret)


@pytest.mark.parametrize("task", [("release", PUBLISH), ("sums",)])
def test_a_fifo_named_like_a_checksum_does_not_hang(
    invoke: Invoke, output: Path, task: tuple[str, ...]
) -> None:
    checksum = output / f"{IMAGE}.sha256"
    checksum.unlink()
    os.mkfifo(checksum)
    refused(invoke(*task), Path("output") / checksum.name, "a FIFO")  # the fixture's timeout
    published_nothing(output)


def test_a_fifo_named_like_an_image_does_not_hang(invoke: Invoke, output: Path) -> None:
    image = output / f"alloy-{VERSION}.raw"
    image.unlink()
    os.mkfifo(image)
    refused(invoke("release", PUBLISH), Path("output") / image.name, "a FIFO")
    published_nothing(output)


def test_a_symlinked_build_info_is_refused(invoke: Invoke, output: Path, secret: Path) -> None:
    buildinfo = output / f"{IMAGE}.buildinfo.json"
    shutil.copy(buildinfo, secret)  # even one that says all the right things
    replace_with_symlink(buildinfo, secret)
    refused(invoke("release", PUBLISH), Path("output") / buildinfo.name, "a symlink")
    published_nothing(output)


@pytest.mark.needs(root="mknod")
def test_a_device_under_an_image_name_is_refused(invoke: Invoke, output: Path) -> None:
    image = output / f"alloy-{VERSION}.raw"
    image.unlink()
    os.mknod(image, stat.S_IFCHR | 0o644, os.makedev(1, 5))  # /dev/zero: never ends
    refused(invoke("release", PUBLISH), Path("output") / image.name, "a character device")
    published_nothing(output)


def test_regular_files_still_publish(invoke: Invoke, output: Path) -> None:
    result = invoke("release", PUBLISH)
    assert result.returncode == 0, result.stderr
    assert (output / "SHA256SUMS").is_file()


USER_TEXT = b"mine, not the tool's\n"


@pytest.mark.parametrize(
    "name",
    ["SHA256SUMS", "index.json", "sysupdate/amd64/alloy.transfer", "flatcar/alloy-amd64.ign"],
)
def test_release_never_replaces_a_file_it_did_not_write(
    invoke: Invoke, output: Path, name: str
) -> None:
    path = output / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(USER_TEXT)
    result = invoke("release", PUBLISH)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        f"error: refusing to replace output/{name}: this tool did not write it, or it changed "
        "since; move it away (or release into another --output-dir); nothing was written"
    ]
    assert path.read_bytes() == USER_TEXT
    assert not (output / "index.json").exists() or name == "index.json"


def test_release_replaces_its_own_files_but_not_one_changed_since(
    invoke: Invoke, output: Path
) -> None:
    assert invoke("release", PUBLISH).returncode == 0
    assert invoke("release", PUBLISH).returncode == 0  # its own files: replaced
    index = output / "index.json"
    index.write_bytes(USER_TEXT)  # edited by someone since
    assert invoke("release", PUBLISH).returncode == 1
    assert index.read_bytes() == USER_TEXT


def test_sums_never_replaces_a_file_it_did_not_write(invoke: Invoke, output: Path) -> None:
    (output / "SHA256SUMS").write_bytes(USER_TEXT)
    result = invoke("sums")
    assert result.returncode == 1
    assert "refusing to replace output/SHA256SUMS" in result.stderr
    assert (output / "SHA256SUMS").read_bytes() == USER_TEXT


def test_a_stale_architectures_file_the_tool_did_not_write_stays(
    invoke: Invoke, output: Path
) -> None:
    stale = output / "flatcar/alloy-arm64.bu"
    stale.parent.mkdir()
    stale.write_bytes(USER_TEXT)  # no arm64 image: release would remove its files by name
    result = invoke("release", PUBLISH)
    assert result.returncode == 0, result.stderr
    assert stale.read_bytes() == USER_TEXT
    assert "kept output/flatcar/alloy-arm64.bu: this tool did not write it" in result.stdout


def test_release_waits_for_a_clean_holding_the_directory(
    invoke: Invoke, output: Path, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """clean holds .staging/output.lock exclusively: a release started meanwhile waits for it,
    then runs, instead of interleaving with the removals."""
    lock = output / ".staging/output.lock"
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # as clean does
        release = subprocess.Popen(
            [*INVOKE_CLI, "release", PUBLISH],
            cwd=tmp_path,
            env=cli_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        with pytest.raises(subprocess.TimeoutExpired):
            release.wait(timeout=3)  # still waiting on the lock
        assert not (output / "SHA256SUMS").exists()
    _, stderr = release.communicate(timeout=120)
    assert release.returncode == 0, stderr
    assert (output / "SHA256SUMS").is_file()
