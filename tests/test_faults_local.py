"""Local faults injected for real (issue 6): signals to a real `invoke` process in the middle of
fetch, stage and pack, SIGKILL leftovers, two builds at once on the same directories, a full
disk, a read-only output directory, a cache file corrupted on disk, zip bombs."""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from werkzeug import Request, Response

from tests.conftest import INVOKE_CLI, VERSION, Invoke, Release
from tests.fakes import MACHINES, elf_binary, sums, zip_bytes
from tests.processes import alive, gated_mksquashfs, pids, slow_mksquashfs, start, wait_for
from tests.results import error_line, ok
from tests.runs import MEMBER, OTHER, ZIP, cache_root, leftovers, outputs, publish_zip
from tests.smalldisk import WHY, run_on_small_tmpfs

ROOT = os.geteuid() == 0


pytestmark = pytest.mark.usefixtures("missing_is_404")


def temps(tmp_path: Path, pattern: str) -> list[Path]:
    return [*(tmp_path / "output").rglob(pattern), *cache_root(tmp_path).rglob(pattern)]


def busy_in(
    step: str, release: Release, tmp_path: Path
) -> tuple[dict[str, str], Callable[[], object]]:
    """Publish OTHER so that building it spends a while in `step` (stage or pack): the
    environment to build with, and a probe that is true once the build is inside the step."""
    if step == "stage":
        # 64 MiB of one byte: a small zip that takes a while to unpack (not zeros: mksquashfs
        # would store sparse blocks, which verify refuses as no Alloy binary has them).
        header = elf_binary(MACHINES["amd64"], size=4096)
        publish_zip(release, OTHER, header + b"\x01" * (64 << 20))
        return {}, lambda: temps(tmp_path, ".rootfs.*.tmp")
    publish_zip(release, OTHER, elf_binary(MACHINES["amd64"], seed=2))
    env, log = slow_mksquashfs(tmp_path, 30)
    return env, lambda: pids(log)


# (a) Signals


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("step", ["fetch", "stage", "pack"])
def test_signal_mid_step_exits_cleanly_and_the_next_run_finishes(
    invoke: Invoke,
    release: Release,
    cli_env: dict[str, str],
    tmp_path: Path,
    step: str,
    signum: int,
) -> None:
    ok(invoke("all", "--no-verify"))
    good = outputs(tmp_path)
    env: dict[str, str] = {}
    in_step: Callable[[], object]
    log = tmp_path / "mksquashfs.log"
    slow = threading.Event()
    slow.set()
    if step == "fetch":
        # The zip trickles out: 0.05 s per 512 bytes, until the test lets it go.
        data = zip_bytes({MEMBER: elf_binary(MACHINES["amd64"])})

        def trickle(request: Request) -> Response:
            def body():
                for at in range(0, len(data), 512):
                    yield data[at : at + 512]
                    if slow.is_set():
                        time.sleep(0.05)

            return Response(body(), headers={"Content-Length": str(len(data))})

        release.server.expect_request(f"/v{OTHER}/{ZIP}").respond_with_handler(trickle)
        release.publish(OTHER, {"SHA256SUMS": sums({ZIP: data})})
        in_step = lambda: temps(tmp_path, f".{ZIP}.*.tmp")  # noqa: E731
    else:
        env, in_step = busy_in(step, release, tmp_path)

    process = start(cli_env, tmp_path, "all", "--no-verify", f"--version={OTHER}", **env)
    wait_for(in_step, process)
    sent = time.monotonic()
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=10)
    assert time.monotonic() - sent < 5
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    error_line(result, "interrupted by", signal.Signals(signum).name, exit_code=128 + signum)
    # (The step's own line says it finished before the signal: a loaded machine can let that
    # happen; the clean exit above must hold anyway, and the rest is checked below.)
    caught_mid_step = not any(line.startswith(f"{step:<8}") for line in stdout.splitlines())
    assert leftovers(tmp_path) == []
    assert outputs(tmp_path) == good
    assert not any(alive(pid) for pid in pids(log))  # mksquashfs did not outlive the build

    slow.clear()
    ok(invoke("all", "--no-verify", f"--version={OTHER}"))
    assert leftovers(tmp_path) == []
    after = outputs(tmp_path)
    assert {name: after[name] for name in good} == good
    assert f"alloy-{OTHER}-amd64.raw" in after
    if not caught_mid_step:
        pytest.skip(f"the machine was too slow to signal mid-{step}: it had finished")


@pytest.mark.parametrize("step", ["stage", "pack"])
def test_after_sigkill_the_next_run_sweeps_the_leftovers_and_finishes(
    invoke: Invoke, release: Release, cli_env: dict[str, str], tmp_path: Path, step: str
) -> None:
    env, in_step = busy_in(step, release, tmp_path)
    log = tmp_path / "mksquashfs.log"
    process = start(cli_env, tmp_path, "all", "--no-verify", f"--version={OTHER}", **env)
    wait_for(in_step, process)
    process.kill()
    process.communicate(timeout=10)
    if step == "pack":
        for pid in pids(log):  # the kernel kills it too (PR_SET_PDEATHSIG); make sure
            with contextlib.suppress(ProcessLookupError):  # gone, and reaped
                os.kill(pid, signal.SIGKILL)
    assert leftovers(tmp_path) != []  # what a killed run leaves

    result = ok(invoke("all", "--no-verify", f"--version={OTHER}"))
    assert leftovers(tmp_path) == []
    assert "up to date" not in result.stdout.split(f"{step:<8}", 1)[1].splitlines()[0]
    image = tmp_path / "output" / f"alloy-{OTHER}-amd64.raw"
    ok(invoke("verify", f"--image={image}"))


# (b) Two builds at once


def sha256sum_check(output: Path) -> None:
    for checksum in output.glob("*.sha256"):
        subprocess.run(["sha256sum", "--quiet", "-c", checksum.name], cwd=output, check=True)


def test_two_builds_of_the_same_version_at_once_make_everything_once(
    invoke: Invoke, release: Release, cli_env: dict[str, str], tmp_path: Path
) -> None:
    env, log = slow_mksquashfs(tmp_path, 1)
    runs = [start(cli_env, tmp_path, "all", **env) for _ in range(2)]
    results = [run.communicate(timeout=120) for run in runs]
    for run, (stdout, stderr) in zip(runs, results, strict=True):
        assert run.returncode == 0, stdout + stderr
    assert len(pids(log)) == 1  # packed once: the other build waited, then found it up to date
    assert [path for path in release.requests() if path.endswith(".zip")] == [f"/v{VERSION}/{ZIP}"]
    output = tmp_path / "output"
    sha256sum_check(output)
    ok(invoke("all", "--output-dir=serial"))
    for name in (f"alloy-{VERSION}-amd64.raw", f"alloy-{VERSION}.raw"):
        assert (output / name).read_bytes() == (tmp_path / "serial" / name).read_bytes()
    assert leftovers(tmp_path) == []


def test_a_build_waiting_for_another_says_so_once_with_its_pid(
    invoke: Invoke, release: Release, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """issue 22: the second build says whom it waits for, then how long it waited."""
    env, log, gate = gated_mksquashfs(tmp_path)
    first = start(cli_env, tmp_path, "all", **env)
    wait_for(lambda: pids(log), first)  # packing, held at the gate: it holds the build's outputs
    second = start(cli_env, tmp_path, "all", **env)
    assert second.stdout is not None
    said: list[str] = []
    while not said or not said[-1].startswith("lock "):  # its wait, said before it waits
        said.append(second.stdout.readline().rstrip("\n"))
        assert said[-1] or second.poll() is None, said
    gate.touch()
    stdout, stderr = second.communicate(timeout=120)
    assert second.returncode == 0, stdout + stderr
    assert first.wait(timeout=120) == 0
    waits = [line for line in [*said, *stdout.splitlines()] if line.startswith("lock ")]
    assert len(waits) == 2, said + stdout.splitlines()
    assert waits[0] == f"lock     waiting for another build in output (pid {first.pid}) …"
    assert re.fullmatch(r"lock     waited \d+\.\d s for another build in output", waits[1])
    assert len(pids(log)) == 1  # and then found the image made


def test_two_builds_of_different_versions_at_once_share_the_directories(
    invoke: Invoke, release: Release, cli_env: dict[str, str], tmp_path: Path
) -> None:
    publish_zip(release, OTHER, elf_binary(MACHINES["amd64"], seed=2))
    runs = [start(cli_env, tmp_path, "all", f"--version={v}") for v in (VERSION, OTHER)]
    for run in runs:
        stdout, stderr = run.communicate(timeout=120)
        assert run.returncode == 0, stdout + stderr
    zips = sorted(path for path in release.requests() if path.endswith(".zip"))
    assert zips == [f"/v{VERSION}/{ZIP}", f"/v{OTHER}/{ZIP}"]
    sha256sum_check(tmp_path / "output")
    assert leftovers(tmp_path) == []
    result = ok(invoke("all", f"--version={OTHER}"))
    assert all("up to date" in line for line in result.stdout.splitlines())


# (c) A full disk


@pytest.mark.needs("unshare", root=WHY)
def test_disk_full_during_pack_is_one_line_and_leaves_nothing_partial(
    release: Release, cli_env: dict[str, str], tmp_path: Path
) -> None:
    # 3 MiB that no compressor shrinks: it stages (on disk), but its image cannot fit 1 MiB.
    noise = random.Random(3).randbytes(3 << 20)
    publish_zip(release, OTHER, elf_binary(MACHINES["amd64"], size=4096) + noise)
    output, staging = tmp_path / "output", tmp_path / "staging"
    staging.mkdir()
    script = (
        'mkdir "$AT/.staging" && mount --bind "$STAGING" "$AT/.staging" && '
        f"$INVOKE all --no-verify --version={OTHER}"
    )
    env = {**cli_env, "STAGING": str(staging)}
    result, listing = run_on_small_tmpfs(env, tmp_path, output, script)
    error_line(result, "no space left on device in", str(output), "--output-dir")
    on_tmpfs = [path for path in listing if Path(path).parent == output]
    assert on_tmpfs == [str(output / ".staging")]  # no image, no temporary file
    assert leftovers(tmp_path) == []


@pytest.mark.needs("unshare", "mkfs.erofs", "xz", root=WHY)
def test_disk_full_while_compressing_for_transport_is_one_line_and_leaves_nothing_partial(
    release: Release, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """The image fits, its .xz does not (noise does not shrink): release says so in one line
    and leaves no compressed file or temporary, and no release file."""
    noise = random.Random(4).randbytes(3 << 20)
    publish_zip(release, OTHER, elf_binary(MACHINES["amd64"], size=4096) + noise)
    output = tmp_path / "output"
    script = (
        f"$INVOKE all --version={OTHER} --format=erofs --compression=none && "
        "$INVOKE release --publish-url=https://example.com/alloy/ --transport=xz"
    )
    # 8 MiB: the staged tree and the image (3 MiB each) fit, and then not the .xz.
    result, listing = run_on_small_tmpfs(cli_env, tmp_path, output, script, size="8m")
    error_line(result, "no space left on device in", str(output), "xz stopped")
    names = sorted(Path(path).name for path in listing if Path(path).parent == output)
    assert not [name for name in names if ".xz" in name or name.startswith(".alloy")], names
    assert "SHA256SUMS" not in names and "index.json" not in names, names
    assert f"alloy-{OTHER}-amd64.raw" in names  # the build before it had room


# (d) A read-only output directory


def test_read_only_output_directory_is_one_line(
    invoke: Invoke, release: Release, cli_env: dict[str, str], tmp_path: Path
) -> None:
    ok(invoke("all", "--no-verify"))
    good = outputs(tmp_path)
    publish_zip(release, OTHER, elf_binary(MACHINES["amd64"], seed=2))
    output = tmp_path / "output"
    argv = [*INVOKE_CLI, "all", "--no-verify", f"--version={OTHER}"]
    if ROOT:  # root writes through 0555: a read-only bind mount, in a mount namespace of its own
        script = 'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" && shift && exec "$@"'
        argv = ["unshare", "-m", "sh", "-c", script, "sh", str(output), *argv]
    else:
        output.chmod(0o555)
    try:
        result = subprocess.run(
            argv, cwd=tmp_path, env=cli_env, capture_output=True, text=True, timeout=60
        )
    finally:
        output.chmod(0o755)
    error_line(result, "Read-only file system" if ROOT else "Permission denied", "output/")
    assert outputs(tmp_path) == good
    assert leftovers(tmp_path) == []


# (e) Zip bombs


def test_member_over_the_configured_size_limit_is_refused(
    invoke: Invoke, release: Release, tmp_path: Path
) -> None:
    header = elf_binary(MACHINES["amd64"], size=4096)
    publish_zip(release, OTHER, header + bytes(3 << 20))
    result = invoke("all", f"--version={OTHER}", "--max-binary-size=1")
    error_line(result, "more than 1 MiB", "--max-binary-size")
    assert outputs(tmp_path) == {}
    assert leftovers(tmp_path) == []
    assert not list((tmp_path / "output").rglob("alloy"))  # not a byte of it staged
    bad = invoke("all", f"--version={OTHER}", "--max-binary-size=0")
    error_line(bad, "invalid max binary size")


def test_member_whose_header_understates_its_size_is_refused(
    invoke: Invoke, release: Release, tmp_path: Path
) -> None:
    binary = elf_binary(MACHINES["amd64"], size=4096) + bytes(3 << 20)
    data = bytearray(zip_bytes({MEMBER: binary}))
    small = (64 << 10).to_bytes(4, "little")  # says 64 KiB, holds 3 MiB
    data[22:26] = small  # the local header's uncompressed size
    central = data.index(b"PK\x01\x02")
    data[central + 24 : central + 28] = small
    assets = {ZIP: bytes(data)}
    assets["SHA256SUMS"] = sums(assets)
    release.publish(OTHER, assets)
    result = invoke("all", f"--version={OTHER}", "--max-binary-size=1")
    error_line(result)
    assert outputs(tmp_path) == {}
    assert leftovers(tmp_path) == []
    assert not list((tmp_path / "output").rglob("alloy"))


def test_default_limit_takes_the_same_member(invoke: Invoke, release: Release) -> None:
    header = elf_binary(MACHINES["amd64"], size=4096)
    publish_zip(release, OTHER, header + bytes(3 << 20))
    ok(invoke("stage", f"--version={OTHER}"))
