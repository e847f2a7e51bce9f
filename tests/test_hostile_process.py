"""The build's own process against a hostile machine (issue 11, §6): a full disk or a path it
may not write ends in one line naming the path and what to do; a build killed outright takes
mksquashfs with it."""

from __future__ import annotations

import contextlib
import errno
import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from build.core.errors import doing, one_line
from tests.conftest import Release
from tests.fakes import MACHINES, elf_binary
from tests.processes import alive, pids, slow_mksquashfs, start, wait_for
from tests.runs import OTHER, cache_root, publish_zip
from tests.smalldisk import WHY, run_on_small_tmpfs

PLACES = {"--output-dir": Path("/srv/out"), "--cache-dir": Path("/var/cache/alloy-sysext")}


# The one line for an OSError


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (
            OSError(errno.ENOSPC, "No space left on device", "/srv/out/alloy-1.10.2-amd64.raw"),
            "error: no space left on device for /srv/out/alloy-1.10.2-amd64.raw; free space on "
            "that file system, or choose another --output-dir",
        ),
        (
            OSError(errno.EDQUOT, "Disk quota exceeded", "/var/cache/alloy-sysext/h/v1/a.zip"),
            "error: disk quota exceeded for /var/cache/alloy-sysext/h/v1/a.zip; free space on "
            "that file system, or choose another --cache-dir",
        ),
        (
            OSError(errno.EACCES, "Permission denied", "/srv/out/.staging"),
            "error: Permission denied: /srv/out/.staging is not writable; give this user write "
            "access to it (check the owner and mode), or choose another --output-dir",
        ),
        (
            OSError(errno.EROFS, "Read-only file system", "/var/cache/alloy-sysext/x"),
            "error: Read-only file system: /var/cache/alloy-sysext/x is not writable; remount "
            "that file system read-write, or choose another --cache-dir",
        ),
        (
            OSError(errno.EIO, "Input/output error", "/srv/out/x", None, "/srv/out/y"),
            "error: Input/output error: /srv/out/x -> /srv/out/y",
        ),
    ],
    ids=["enospc-output", "edquot-cache", "eacces", "erofs-cache", "eio-two-paths"],
)
def test_os_error_line_names_the_path_and_what_to_do(error: OSError, line: str) -> None:
    assert one_line(error, PLACES) == line


def test_os_error_without_a_file_names_the_one_the_build_was_writing() -> None:
    with pytest.raises(OSError) as raised, doing("unpacking the binary", "/srv/out/t/alloy"):
        raise OSError(errno.ENOSPC, "No space left on device")  # as a failed write() is
    assert one_line(raised.value, PLACES) == (
        "error: no space left on device for /srv/out/t/alloy while unpacking the binary; free "
        "space on that file system, or choose another --output-dir"
    )


def test_os_error_with_nothing_to_name_still_says_what_it_was_doing() -> None:
    with pytest.raises(OSError) as raised, doing("reading the release zip"):
        raise OSError(errno.EIO, "Input/output error")
    line = one_line(raised.value, PLACES)
    assert line == "error: Input/output error while reading the release zip"


# A full disk, for real: a small tmpfs in a mount namespace of the run's own


def exactly_one_line(result: subprocess.CompletedProcess, pattern: str) -> None:
    where = f"\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 1, where
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and re.fullmatch(pattern, lines[0]), where


@pytest.mark.needs("unshare", root=WHY)
def test_disk_full_while_unpacking_the_binary_names_the_file_and_stages_nothing(
    release: Release, cli_env: dict[str, str], tmp_path: Path
) -> None:
    # 3 MiB of zeros: a small zip, a binary the 1 MiB output file system cannot hold.
    publish_zip(release, OTHER, elf_binary(MACHINES["amd64"], size=4096) + bytes(3 << 20))
    output = tmp_path / "output"
    result, listing = run_on_small_tmpfs(
        cli_env, tmp_path, output, f"$INVOKE all --no-verify --version={OTHER}"
    )
    staging = re.escape(f"output/.staging/alloy-{OTHER}-amd64/")  # as --output-dir says it
    exactly_one_line(
        result,
        rf"error: no space left on device for {staging}\.rootfs\.\w+\.tmp/usr/local/bin/alloy "
        r"while unpacking the binary; free space on that file system, or choose another "
        r"--output-dir",
    )
    assert not [path for path in listing if re.search(r"rootfs|\.tmp|\.raw", path)], listing


@pytest.mark.needs("unshare", "mksquashfs", root=WHY)
def test_disk_full_while_writing_the_checksum_names_it_and_leaves_no_partial_file(
    release: Release, cli_env: dict[str, str], tmp_path: Path
) -> None:
    publish_zip(release, OTHER, elf_binary(MACHINES["amd64"], seed=2))
    output = tmp_path / "output"
    image = output / f"alloy-{OTHER}-amd64.raw"
    # Pack fits; then a file takes every byte left, and the checksum's write fails.
    script = (
        f"$INVOKE pack --version={OTHER} >/dev/null && "
        '{ cat /dev/zero > "$AT/filler" 2>/dev/null; true; } && '
        f"$INVOKE checksum --version={OTHER}"
    )
    result, listing = run_on_small_tmpfs(cli_env, tmp_path, output, script, size="4m")
    exactly_one_line(
        result,
        re.escape(
            f"error: no space left on device for output/{image.name}.sha256; free space on that "
            "file system, or choose another --output-dir"
        ),
    )
    assert f"{image}" in listing
    assert not [path for path in listing if ".sha256" in path], listing


@pytest.mark.needs("unshare", root=WHY)
def test_disk_full_in_the_cache_says_to_choose_another_cache_dir(
    release: Release, cli_env: dict[str, str], tmp_path: Path
) -> None:
    # 3 MiB that no compressor shrinks: the zip itself cannot fit the 1 MiB cache.
    noise = random.Random(3).randbytes(3 << 20)
    publish_zip(release, OTHER, elf_binary(MACHINES["amd64"], size=4096) + noise)
    cache = cache_root(tmp_path)
    result, listing = run_on_small_tmpfs(
        cli_env, tmp_path, cache, f"$INVOKE fetch --version={OTHER}"
    )
    where = f"\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    lines = result.stderr.splitlines()
    assert result.returncode == 1 and len(lines) == 1, where
    assert lines[0].startswith(f"error: no space left on device for {cache}/"), where
    assert lines[0].endswith("; free space on that file system, or choose another --cache-dir")
    assert not [path for path in listing if path.endswith(".zip")], listing


# A build killed outright


@pytest.mark.needs("mksquashfs")
def test_sigkill_of_the_build_kills_mksquashfs_and_leaves_no_image(
    release: Release, cli_env: dict[str, str], tmp_path: Path
) -> None:
    publish_zip(release, OTHER, elf_binary(MACHINES["amd64"], seed=2))
    env, log = slow_mksquashfs(tmp_path, 60)
    process = start(cli_env, tmp_path, "pack", f"--version={OTHER}", **env)
    wait_for(lambda: pids(log), process)
    [child] = pids(log)
    try:
        process.kill()
        process.communicate(timeout=10)
        # A bound on the kernel's delivery of the death signal, not on our code's speed.
        deadline = time.monotonic() + 10
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not alive(child), "mksquashfs outlived the build that started it"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    assert not (tmp_path / "output" / f"alloy-{OTHER}-amd64.raw").exists()
    assert list((tmp_path / "output").glob("*.raw")) == []


def test_os_error_about_a_descriptor_is_still_one_line() -> None:
    """os.fdopen and friends put the descriptor number where a path would be."""
    line = one_line(IsADirectoryError(errno.EISDIR, "Is a directory", 5), PLACES)
    assert line == "error: Is a directory"
