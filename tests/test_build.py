"""The real tasks, end to end, against a release served on 127.0.0.1."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pty
import re
import shutil
import struct
import subprocess
import termios
import threading
import time
import zipfile
from pathlib import Path

import pytest

from tests.conftest import (
    AMD64,
    BOTH_ARCHES,
    INVOKE_CLI,
    VERSION,
    Invoke,
    Prebuilt,
    Release,
    copy_output,
)
from tests.fakes import MACHINES, elf_binary, release_assets, zip_bytes
from tests.image import EXPECTED_LISTING, extract, listing, sha256, superblock
from tests.results import ok

STRICT_XATTR = "user.extension-release.strict"

# What invoke pack passes mksquashfs for the default xz on amd64, as build info records it.
XZ_ARGS = ["-noappend", "-all-root", "-no-sparse", "-comp", "xz", "-b", "1M"]


def snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every file and directory under root with its mtime, inode and size."""
    state = {}
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        state[str(path.relative_to(root))] = (st.st_mtime_ns, st.st_ino, st.st_size)
    return state


def test_all_builds_image_with_expected_layout(invoke: Invoke, tmp_path: Path) -> None:
    ok(invoke("all", f"--version={VERSION}"))
    output = tmp_path / "output"
    image = output / f"alloy-{VERSION}-amd64.raw"

    assert listing(image) == EXPECTED_LISTING
    assert superblock(image) == {"Compression": "xz", "Block size": "1048576"}

    root = extract(image, tmp_path / "root")
    assert (root / "usr/local/bin/alloy").read_bytes() == elf_binary(MACHINES["amd64"])
    release_file = root / "usr/lib/extension-release.d/extension-release.alloy"
    assert release_file.read_text() == (
        "ID=_any\nARCHITECTURE=x86-64\nEXTENSION_RELOAD_MANAGER=1\n"
        "EXTENSION_RESTART_UNITS=alloy-sysext-restart.service\n"
    )
    assert os.getxattr(release_file, STRICT_XATTR) == b"false"
    unit = (root / "usr/lib/systemd/system/alloy.service").read_text().splitlines()
    assert (
        "ExecStart=/usr/local/bin/alloy run $CUSTOM_ARGS --storage.path=/var/lib/alloy/data "
        "${CONFIG_FILE}"
    ) in unit
    assert "Environment=CONFIG_FILE=/var/mnt/storage/alloy/config.alloy" in unit
    assert sorted(p.name for p in output.iterdir()) == [
        ".staging",
        f"alloy-{VERSION}-amd64.raw",
        f"alloy-{VERSION}-amd64.raw.buildinfo.json",
        f"alloy-{VERSION}-amd64.raw.sha256",
        f"alloy-{VERSION}.raw",
        f"alloy-{VERSION}.raw.sha256",
    ]
    buildinfo = json.loads((output / f"alloy-{VERSION}-amd64.raw.buildinfo.json").read_text())
    versions = subprocess.run(["mksquashfs", "-version"], capture_output=True, text=True).stdout
    assert buildinfo["mksquashfs"] in versions.splitlines()[0]
    assert buildinfo["mksquashfs_args"] == XZ_ARGS
    assert (buildinfo["image"], buildinfo["version"], buildinfo["arch"]) == (
        image.name,
        VERSION,
        "amd64",
    )


def test_checksums_verify_with_sha256sum_and_alias_is_the_same_image(prebuilt: Prebuilt) -> None:
    output = prebuilt(*AMD64)  # `invoke all`'s output, read in place: a copy breaks hard links
    image, compat = output / f"alloy-{VERSION}-amd64.raw", output / f"alloy-{VERSION}.raw"
    check = subprocess.run(
        ["sha256sum", "-c", image.name + ".sha256", compat.name + ".sha256"],
        cwd=output,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.splitlines() == [f"{image.name}: OK", f"{compat.name}: OK"]
    assert compat.read_bytes() == image.read_bytes()
    assert compat.stat().st_ino == image.stat().st_ino  # a hard link on this filesystem
    assert (output / (compat.name + ".sha256")).read_text() == f"{sha256(image)}  {compat.name}\n"


def test_unchanged_rerun_touches_nothing_and_makes_no_request(
    invoke: Invoke, release: Release, tmp_path: Path
) -> None:
    ok(invoke("all"))
    before, requests_before = snapshot(tmp_path), len(release.requests())
    rerun = ok(invoke("all"))
    assert snapshot(tmp_path) == before
    assert len(release.requests()) == requests_before
    steps = [line.split()[0] for line in rerun.stdout.splitlines()]
    assert steps == ["fetch", "stage", "pack", "checksum", "alias", "verify"]
    assert all(line.endswith("up to date") for line in rerun.stdout.splitlines())


def test_pack_on_a_clean_tree_fetches_and_stages_first(invoke: Invoke, tmp_path: Path) -> None:
    result = ok(invoke("pack"))
    assert [line.split()[0] for line in result.stdout.splitlines() if line[:1] != " "] == [
        "fetch",
        "stage",
        "pack",
    ]
    output = tmp_path / "output"
    assert (output / f"alloy-{VERSION}-amd64.raw").is_file()
    assert not (output / f"alloy-{VERSION}-amd64.raw.sha256").exists()


def test_arm64_build_never_touches_the_amd64_compat_image(invoke: Invoke, tmp_path: Path) -> None:
    ok(invoke("all"))
    output = tmp_path / "output"
    compat = output / f"alloy-{VERSION}.raw"
    compat_state = (sha256(compat), compat.stat().st_mtime_ns)

    result = ok(invoke("all", "--arch=arm64"))
    assert "skipped" in result.stdout
    assert (sha256(compat), compat.stat().st_mtime_ns) == compat_state
    assert compat.read_bytes() == (output / f"alloy-{VERSION}-amd64.raw").read_bytes()

    root = extract(output / f"alloy-{VERSION}-arm64.raw", tmp_path / "arm64")
    release_file = root / "usr/lib/extension-release.d/extension-release.alloy"
    assert release_file.read_text() == (
        "ID=_any\nARCHITECTURE=arm64\nEXTENSION_RELOAD_MANAGER=1\n"
        "EXTENSION_RESTART_UNITS=alloy-sysext-restart.service\n"
    )
    assert (root / "usr/local/bin/alloy").read_bytes() == elf_binary(MACHINES["arm64"])


def test_compat_arch_hands_the_compat_name_to_arm64(invoke: Invoke, tmp_path: Path) -> None:
    ok(invoke("all", "--arch=arm64", "--compat-arch=arm64"))
    output = tmp_path / "output"
    assert (output / f"alloy-{VERSION}.raw").read_bytes() == (
        output / f"alloy-{VERSION}-arm64.raw"
    ).read_bytes()


def test_builds_are_bit_identical_across_directories_and_umasks(invoke: Invoke, tmp_path: Path):
    images = []
    for name, umask in (("a", 0o022), ("b", 0o077)):
        work = tmp_path / name
        work.mkdir()
        ok(
            invoke(
                "all",
                f"--cache-dir={work / 'cache'}",
                "--output-dir=out",
                cwd=work,
                umask=umask,
            )
        )
        images.append(work / "out" / f"alloy-{VERSION}-amd64.raw")
    assert sha256(images[0]) == sha256(images[1])
    assert listing(images[1]) == EXPECTED_LISTING  # umask 077 changed no mode


def test_zstd_compression_and_a_changed_option_repacks(invoke: Invoke, tmp_path: Path) -> None:
    ok(invoke("all"))
    result = ok(invoke("all", "--compression=zstd"))
    assert "; --compression changed from xz to zstd)" in outcomes(result)["pack"]
    image = tmp_path / "output" / f"alloy-{VERSION}-amd64.raw"
    assert superblock(image) == {"Compression": "zstd", "Block size": "1048576"}
    assert (
        subprocess.run(["sha256sum", "-c", image.name + ".sha256"], cwd=image.parent).returncode
        == 0
    )


def test_xz_bcj_adds_the_x86_filter_on_amd64_and_switching_repacks(
    invoke: Invoke, tmp_path: Path
) -> None:
    ok(invoke("all"))
    image = tmp_path / "output" / f"alloy-{VERSION}-amd64.raw"
    buildinfo = image.with_name(image.name + ".buildinfo.json")
    assert superblock(image) == {"Compression": "xz", "Block size": "1048576"}
    xz_image = image.read_bytes()

    result = ok(invoke("all", "--compression=xz-bcj"))
    assert "; --compression changed from xz to xz-bcj)" in outcomes(result)["pack"]
    assert superblock(image) == {"Compression": "xz", "Filters": "x86", "Block size": "1048576"}
    assert image.read_bytes() != xz_image
    info = json.loads(buildinfo.read_text())
    assert info["compression"] == "xz-bcj"
    args = ["-noappend", "-all-root", "-no-sparse", "-comp", "xz", "-Xbcj", "x86", "-b", "1M"]
    assert info["mksquashfs_args"] == args
    assert "ok   superblock: xz compression, BCJ filter x86, 1048576-byte blocks" in result.stdout
    check = subprocess.run(["sha256sum", "-c", image.name + ".sha256"], cwd=image.parent)
    assert check.returncode == 0

    back = ok(invoke("all", "--compression=xz"))
    assert "; --compression changed from xz-bcj to xz)" in outcomes(back)["pack"]
    assert image.read_bytes() == xz_image  # reproducible: the filter left no trace
    assert "ok   superblock: xz compression, no BCJ filter, 1048576-byte blocks" in back.stdout


def test_compression_none_stores_every_block_and_names_xz_for_the_mount(
    invoke: Invoke, tmp_path: Path
) -> None:
    """squashfs for hosts without EROFS (Flatcar LTS) sent with --transport: every block stored
    as it is (the binary's bytes lie in the image), xz named in the superblock because the
    kernel looks its decompressor up at mount; reproducible; recorded and verified as none."""
    result = ok(invoke("all", "--compression=none", "--output-dir=a"))
    name = f"alloy-{VERSION}-amd64.raw"
    image = tmp_path / "a" / name
    assert superblock(image) == {"Compression": "xz", "Block size": "1048576"}
    said = subprocess.run(["unsquashfs", "-s", str(image)], capture_output=True, text=True)
    for table in ("Inodes are", "Data is", "Fragments are", "Xattrs are"):
        assert f"{table} uncompressed" in said.stdout, said.stdout
    assert elf_binary(MACHINES["amd64"]) in image.read_bytes()
    info = json.loads(image.with_name(name + ".buildinfo.json").read_text())
    assert info["compression"] == "none"
    assert info["mksquashfs_args"] == [*XZ_ARGS[:5], "-noI", "-noD", "-noF", "-noX", "-b", "1M"]
    superblock_line = (
        "ok   superblock: none compression (xz named for the mount), no BCJ filter, "
        "1048576-byte blocks"
    )
    assert superblock_line in result.stdout
    if os.geteuid() == 0:  # verify mounts it and merges it for real
        assert "ok   kernel view: mounted alone" in result.stdout, result.stdout
        assert f"ok   merge: as {name}: 8 files appeared" in result.stdout, result.stdout
    ok(invoke("all", "--compression=none", "--output-dir=b"))
    assert image.read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_xz_bcj_on_arm64_packs_exactly_like_xz(invoke: Invoke, tmp_path: Path) -> None:
    """squashfs-tools 4.5 has no arm64 BCJ filter: the same image, no filter in it."""
    ok(invoke("all", "--arch=arm64", "--output-dir=xz"))
    result = ok(invoke("all", "--arch=arm64", "--compression=xz-bcj", "--output-dir=xz-bcj"))
    name = f"alloy-{VERSION}-arm64.raw"
    image = tmp_path / "xz-bcj" / name
    assert superblock(image) == {"Compression": "xz", "Block size": "1048576"}
    assert image.read_bytes() == (tmp_path / "xz" / name).read_bytes()
    info = json.loads(image.with_name(name + ".buildinfo.json").read_text())
    assert info["compression"] == "xz"  # what really packed it, as index.json then says
    assert info["mksquashfs_args"] == XZ_ARGS
    assert "ok   superblock: xz compression, no BCJ filter, 1048576-byte blocks" in result.stdout
    # Switching in place: the same mksquashfs command line, so nothing to repack; verify reruns.
    steps = outcomes(ok(invoke("all", "--arch=arm64", "--compression=xz-bcj", "--output-dir=xz")))
    assert steps["pack"].endswith("up to date"), steps["pack"]
    assert "; --compression changed from xz to xz-bcj)" in steps["verify"], steps["verify"]


def test_config_path_and_unit_template_reach_the_unit(invoke: Invoke, tmp_path: Path) -> None:
    template = tmp_path / "my.service"
    template.write_text("[Service]\nExecStart=@BINARY@ run @CONFIG_PATH@\n# @VERSION@\n")
    ok(invoke("all"))
    ok(
        invoke(
            "all",
            "--config-path=/etc/alloy/config.alloy",
            f"--unit-template={template}",
            "--run-as=root",  # a unit without @RUN_AS_…@ (test_run_as.py)
        )
    )
    root = extract(tmp_path / "output" / f"alloy-{VERSION}-amd64.raw", tmp_path / "root")
    unit = (root / "usr/lib/systemd/system/alloy.service").read_text()
    assert (
        unit
        == f"[Service]\nExecStart=/usr/local/bin/alloy run /etc/alloy/config.alloy\n# {VERSION}\n"
    )


def outcomes(result: subprocess.CompletedProcess) -> dict[str, str]:
    return {line.split()[0]: line for line in result.stdout.splitlines() if line[:1] != " "}


def test_newer_source_rebuilds_what_depends_on_it(invoke: Invoke, tmp_path: Path) -> None:
    ok(invoke("all"))
    staged = tmp_path / "output/.staging" / f"alloy-{VERSION}-amd64/rootfs/usr/local/bin/alloy"
    future = staged.stat().st_mtime_ns + 10**9
    os.utime(staged, ns=(future, future))
    steps = outcomes(ok(invoke("all")))
    for step in ("fetch", "stage"):
        assert steps[step].endswith("up to date"), steps[step]
    assert steps["pack"].endswith("; alloy changed)"), steps["pack"]
    for step in ("pack", "checksum", "alias"):
        assert not steps[step].endswith("up to date"), steps[step]


def test_same_zip_downloaded_again_rebuilds_nothing(
    invoke: Invoke, release: Release, tmp_path: Path
) -> None:
    """Stage depends on the zip's sha256, not its time: a re-download changes nothing."""
    ok(invoke("all"))
    cached_zip = release.cached(tmp_path / "cache/alloy-sysext", name="alloy-linux-amd64.zip")
    future = cached_zip.stat().st_mtime_ns + 10**9
    os.utime(cached_zip, ns=(future, future))
    assert all(line.endswith("up to date") for line in outcomes(ok(invoke("all"))).values())


def test_changed_templates_restage(invoke: Invoke, tmp_path: Path) -> None:
    template = tmp_path / "unit.service"
    template.write_text("[Service]\nExecStart=@BINARY@ run @CONFIG_PATH@\n")
    ok(invoke("all", f"--unit-template={template}", "--run-as=root"))
    template.write_text(
        "[Service]\nExecStart=@BINARY@ run --stability.level=public-preview @CONFIG_PATH@\n"
    )
    steps = outcomes(ok(invoke("all", f"--unit-template={template}", "--run-as=root")))
    assert "; files changed (usr/lib/systemd/system/alloy.service changed))" in steps["stage"]
    root = extract(tmp_path / "output" / f"alloy-{VERSION}-amd64.raw", tmp_path / "root")
    assert "public-preview" in (root / "usr/lib/systemd/system/alloy.service").read_text()


def test_force_downloads_and_rebuilds_the_same_bytes(
    invoke: Invoke, release: Release, tmp_path: Path
) -> None:
    ok(invoke("all"))
    image = tmp_path / "output" / f"alloy-{VERSION}-amd64.raw"
    first = (sha256(image), image.stat().st_ino)
    zip_requests = release.requests().count(f"/v{VERSION}/alloy-linux-amd64.zip")
    ok(invoke("all", "--force"))
    assert release.requests().count(f"/v{VERSION}/alloy-linux-amd64.zip") == zip_requests + 1
    assert sha256(image) == first[0]
    assert image.stat().st_ino != first[1]


def test_download_cache_is_shared_between_output_dirs(
    invoke: Invoke, release: Release, tmp_path: Path
) -> None:
    ok(invoke("all", "--output-dir=one"))
    ok(invoke("all", "--arch=arm64", "--output-dir=one"))
    requests = release.requests()
    ok(invoke("all", "--output-dir=two"))
    ok(invoke("all", "--arch=arm64", "--output-dir=two"))
    assert release.requests() == requests
    assert requests.count(f"/v{VERSION}/SHA256SUMS") == 1
    two = tmp_path / "two" / f"alloy-{VERSION}-amd64.raw"
    assert two.read_bytes() == (tmp_path / "one" / two.name).read_bytes()


def test_settings_come_from_environment_and_config_file_and_flags_win(
    invoke: Invoke, tmp_path: Path
) -> None:
    ok(invoke("pack", env={"INVOKE_ARCH": "arm64", "INVOKE_OUTPUT_DIR": "env-out"}))
    assert (tmp_path / "env-out" / f"alloy-{VERSION}-arm64.raw").is_file()

    config = tmp_path / "invoke.yaml"
    config.write_text("arch: arm64\noutput_dir: yaml-out\ncompression: zstd\n")
    ok(invoke("-f", str(config), "pack"))
    image = tmp_path / "yaml-out" / f"alloy-{VERSION}-arm64.raw"
    assert superblock(image)["Compression"] == "zstd"

    ok(invoke("pack", "--arch=amd64", env={"INVOKE_ARCH": "arm64", "INVOKE_OUTPUT_DIR": "flag"}))
    assert [p.name for p in (tmp_path / "flag").glob("*.raw")] == [f"alloy-{VERSION}-amd64.raw"]


def test_list_and_help_explain_every_task_and_flag(invoke: Invoke) -> None:
    listed = ok(invoke("--list")).stdout
    for name in ("fetch", "stage", "pack", "checksum", "alias", "all", "clean"):
        assert f"\n  {name} " in listed
    assert "Default task: all" in listed
    help_text = ok(invoke("--help", "all")).stdout
    for flag in (
        "--version",
        "--arch",
        "--base-url",
        "--output-dir",
        "--cache-dir",
        "--force",
        "--compression",
        "--config-path",
        "--unit-template",
        "--compat-arch",
        "--retries",
    ):
        assert flag in help_text


def test_clean_removes_outputs_and_keeps_the_cache_unless_asked(
    invoke: Invoke, release: Release, tmp_path: Path
) -> None:
    output, cache = tmp_path / "output", tmp_path / "cache" / "alloy-sysext"
    ok(invoke("all"))
    (output / "notes.txt").write_text("mine")
    ok(invoke("clean"))
    assert [p.name for p in output.iterdir()] == ["notes.txt"]
    assert release.cached(cache, name="alloy-linux-amd64.zip").is_file()
    ok(invoke("clean", "--cache"))
    assert [p.name for p in cache.iterdir()] == ["CACHEDIR.TAG"]  # the tagged cache itself stays


def test_zip_with_other_members_yields_only_the_binary(
    invoke: Invoke, release: Release, tmp_path: Path
) -> None:
    binary = elf_binary(MACHINES["amd64"], seed=7)
    zip_path = tmp_path / "extra.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("README.md", "readme")
        archive.writestr("alloy-linux-amd64", binary)
    data = zip_path.read_bytes()
    sums = f"{hashlib.sha256(data).hexdigest()}  alloy-linux-amd64.zip\n".encode()
    release.publish("1.10.9", {"alloy-linux-amd64.zip": data, "SHA256SUMS": sums})
    ok(invoke("all", "--version=1.10.9"))
    image = tmp_path / "output" / "alloy-1.10.9-amd64.raw"
    assert listing(image) == EXPECTED_LISTING
    assert (extract(image, tmp_path / "root") / "usr/local/bin/alloy").read_bytes() == binary
    assert not list(tmp_path.rglob("README.md"))


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_staged_binary_is_the_zip_member(invoke: Invoke, tmp_path: Path, arch: str) -> None:
    ok(invoke("stage", f"--arch={arch}"))
    staged = tmp_path / "output" / ".staging" / f"alloy-{VERSION}-{arch}" / "rootfs"
    assert (staged / "usr/local/bin/alloy").read_bytes() == elf_binary(MACHINES[arch])
    assert sorted(p.name for p in staged.iterdir()) == ["usr"]


def test_progress_is_plain_lines_in_logs_and_a_bar_on_a_terminal(invoke: Invoke, tmp_path: Path):
    logged = ok(invoke("fetch", "--output-dir=log"))
    progress = [line for line in logged.stdout.splitlines() if "alloy-linux-amd64.zip:" in line]
    assert progress and progress[-1].strip().endswith("(100%)")
    assert "\r" not in logged.stdout + logged.stderr

    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns
    shown = bytearray()

    def read_terminal() -> None:
        with contextlib.suppress(OSError):  # EIO once the terminal's other end is closed
            while chunk := os.read(primary, 4096):
                shown.extend(chunk)

    reader = threading.Thread(target=read_terminal)
    reader.start()
    result = invoke("fetch", "--force", stderr=secondary)
    os.close(secondary)
    reader.join(timeout=10)
    os.close(primary)
    assert result.returncode == 0
    assert b"\r" in shown and b"alloy-linux-amd64.zip" in shown  # tqdm redraws its line


def test_clean_can_pick_a_version_or_an_architecture(
    invoke: Invoke, release: Release, tmp_path: Path
) -> None:
    release.publish("1.10.3", release_assets(seed=3))
    for args in (("all",), ("all", "--arch=arm64"), ("all", "--version=1.10.3")):
        ok(invoke(*args))
    output, cache = tmp_path / "output", tmp_path / "cache" / "alloy-sysext"
    (output / f".alloy-{VERSION}-amd64.raw.k2j4.tmp").write_bytes(b"left by a killed run")

    ok(invoke("clean", "--arch=arm64"))
    assert sorted(p.name for p in output.glob("*.raw")) == [
        "alloy-1.10.2-amd64.raw",
        "alloy-1.10.2.raw",
        "alloy-1.10.3-amd64.raw",
        "alloy-1.10.3.raw",
    ]
    assert sorted(p.name for p in (output / ".staging").glob("alloy-*")) == [
        "alloy-1.10.2",  # the compat name's record, amd64's
        "alloy-1.10.2-amd64",
        "alloy-1.10.3",
        "alloy-1.10.3-amd64",
    ]

    cleaned = ok(invoke("clean", "--version=1.10.3", "--cache"))
    # issue 22: what kinds went, and from where, not "removed 36 entries"
    assert cleaned.stdout.splitlines() == [
        "clean    removed from output: 2 images, 2 checksums, 1 build info file, 8 staged files, "
        "4 step records, 6 lock files, 16 directories",
        f"clean    removed from the download cache {cache}: 1 downloaded zip, "
        "1 SHA256SUMS list, 2 lock files, 1 directory",
    ]
    assert sorted(p.name for p in output.iterdir()) == [
        ".alloy-1.10.2-amd64.raw.k2j4.tmp",
        ".staging",
        "alloy-1.10.2-amd64.raw",
        "alloy-1.10.2-amd64.raw.buildinfo.json",
        "alloy-1.10.2-amd64.raw.sha256",
        "alloy-1.10.2.raw",
        "alloy-1.10.2.raw.sha256",
    ]
    assert sorted(p.name for p in release.cached(cache).parent.iterdir()) == ["v1.10.2"]

    # A file the tool cannot show it wrote (here: one made by hand under a temporary's name)
    # stays, and clean says so.
    cleaned = ok(invoke("clean"))
    assert [p.name for p in output.iterdir()] == [f".alloy-{VERSION}-amd64.raw.k2j4.tmp"]
    assert f"kept output/.alloy-{VERSION}-amd64.raw.k2j4.tmp: not written" in cleaned.stdout


def test_clean_removes_the_release_files_once_an_image_goes(invoke: Invoke, tmp_path: Path) -> None:
    output = tmp_path / "output"
    ok(invoke("all"))
    ok(invoke("release", "--publish-url=https://example.com/alloy/"))
    (output / "flatcar" / "mine.bu").write_text("a user's own file")
    released = [
        "SHA256SUMS",
        "flatcar/alloy-amd64.bu",
        "flatcar/alloy-amd64.ign",
        "index.json",
        "sysupdate/amd64/alloy.conf",
        "sysupdate/amd64/alloy.transfer",
    ]
    files = sorted(str(p.relative_to(output)) for p in output.rglob("*") if p.is_file())
    assert set(released) <= set(files)

    kept = ok(invoke("clean", "--version=9.9.9"))  # no image of that version: the release holds
    assert kept.stdout == "clean    nothing to remove in output\n"
    assert sorted(str(p.relative_to(output)) for p in output.rglob("*") if p.is_file()) == files

    cleaned = ok(invoke("clean", "--arch=amd64"))
    assert cleaned.stdout.splitlines() == [
        "clean    removed from output: 2 images, 2 checksums, 1 build info file, 6 fleet files, "
        "8 staged files, 4 step records, 6 lock files, 18 directories",
    ]
    assert sorted(str(p.relative_to(output)) for p in output.rglob("*")) == [
        "flatcar",
        "flatcar/mine.bu",
    ]


def test_a_build_waiting_for_the_fetch_lock_uses_what_the_other_build_fetched(
    invoke: Invoke, release: Release, cli_env: dict[str, str], tmp_path: Path
) -> None:
    donor = tmp_path / "donor"
    ok(invoke("fetch", f"--cache-dir={donor}"))
    cache = tmp_path / "shared"
    lock = release.cached(cache, name=".alloy-linux-amd64.zip.lock")
    lock.parent.mkdir(parents=True)
    requests = release.requests()

    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another build is fetching
        waiting = subprocess.Popen(
            [*INVOKE_CLI, "fetch", f"--cache-dir={cache}"],
            cwd=tmp_path,
            env=cli_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while not _holds_open(waiting.pid, lock):
            assert waiting.poll() is None and time.monotonic() < deadline, waiting.communicate()
            time.sleep(0.02)
        shutil.copytree(release.cached(donor), lock.parent, dirs_exist_ok=True)
    stdout, stderr = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, stderr
    assert release.requests() == requests
    waited, took, fetched = stdout.splitlines()
    # issue 22: a wait is said, with the holder (this test), and how long it took
    holder = f"another build's fetch in {lock.parent}"
    # The pid when this test still held the lock as the waiter read /proc/locks: it lets go
    # as soon as the waiter has the file open.
    said = rf"lock     waiting for {re.escape(holder)}(?: \(pid {os.getpid()}\))? …"
    assert re.fullmatch(said, waited), waited
    assert re.fullmatch(rf"lock     waited \d+\.\d s for {re.escape(holder)}", took)
    assert fetched == f"fetch    {release.cached(cache, name='alloy-linux-amd64.zip')}: up to date"


def test_sums_lists_every_image_checkable_with_sha256sum(
    invoke: Invoke, prebuilt: Prebuilt, tmp_path: Path
) -> None:
    output = copy_output(prebuilt(*BOTH_ARCHES), tmp_path)  # `invoke all` for each architecture
    result = ok(invoke("sums"))
    assert "3 images" in result.stdout
    check = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], cwd=output, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.splitlines() == [
        f"alloy-{VERSION}-amd64.raw: OK",
        f"alloy-{VERSION}-arm64.raw: OK",
        f"alloy-{VERSION}.raw: OK",
    ]

    arm = output / f"alloy-{VERSION}-arm64.raw"
    arm.write_bytes(arm.read_bytes() + b"\0")
    tampered = invoke("sums")
    assert tampered.returncode == 1
    assert tampered.stderr.splitlines() == [
        f"error: output/{arm.name} does not match {arm.name}.sha256; the image changed after "
        "it was built or copied; rebuild it with --force"
    ]
    empty = invoke("sums", "--output-dir=nothing-here")
    assert empty.returncode == 1
    assert empty.stderr.startswith("error: no images in nothing-here")


def test_owner_of_the_compat_name_takes_it_back(invoke: Invoke, tmp_path: Path) -> None:
    output = tmp_path / "output"
    compat, amd64 = output / f"alloy-{VERSION}.raw", output / f"alloy-{VERSION}-amd64.raw"
    ok(invoke("all"))
    ok(invoke("all", "--arch=arm64", "--compat-arch=arm64"))
    assert compat.stat().st_ino == (output / f"alloy-{VERSION}-arm64.raw").stat().st_ino
    steps = outcomes(ok(invoke("all")))
    arm64 = f"alloy-{VERSION}-arm64.raw"
    assert f"; image changed from {arm64} to {amd64.name})" in steps["alias"], steps["alias"]
    assert compat.stat().st_ino == amd64.stat().st_ino
    assert (output / f"{compat.name}.sha256").read_text() == f"{sha256(amd64)}  {compat.name}\n"
    assert outcomes(ok(invoke("all")))["alias"].endswith("up to date")


@pytest.mark.needs(root="to hand the staged tree to another user")
def test_image_is_root_owned_whoever_owns_the_staged_files(invoke: Invoke, tmp_path: Path) -> None:
    ok(invoke("stage"))
    tree = tmp_path / "output/.staging" / f"alloy-{VERSION}-amd64/rootfs"
    for path in [tree, *tree.rglob("*")]:
        os.lchown(path, 65534, 65534)
    ok(invoke("pack", "--force"))
    owners = {
        owner for _, owner in listing(tmp_path / "output" / f"alloy-{VERSION}-amd64.raw").values()
    }
    assert owners == {"0/0"}


def test_autostart_ships_the_upholds_dropin(invoke: Invoke, tmp_path: Path) -> None:
    dropin = "usr/lib/systemd/system/multi-user.target.d/10-alloy.conf"
    ok(invoke("all"))
    image = tmp_path / "output" / f"alloy-{VERSION}-amd64.raw"
    assert dropin not in listing(image)
    steps = outcomes(ok(invoke("all", "--autostart")))
    assert f"; files changed ({dropin} added))" in steps["stage"], steps["stage"]
    entries = listing(image)
    assert entries[dropin] == ("-rw-r--r--", "0/0")
    assert entries["usr/lib/systemd/system/multi-user.target.d"] == ("drwxr-xr-x", "0/0")
    root = extract(image, tmp_path / "root")
    lines = (root / dropin).read_text().splitlines()
    assert lines[-2:] == ["[Unit]", "Upholds=alloy.service"]
    unit = (root / "usr/lib/systemd/system/alloy.service").read_text().splitlines()
    assert "Environment=CONFIG_FILE=/var/mnt/storage/alloy/config.alloy" in unit
    buildinfo = json.loads(image.with_name(image.name + ".buildinfo.json").read_text())
    assert buildinfo["autostart"] is True


def test_a_binary_with_a_block_of_zeros_builds_and_verifies(
    invoke: Invoke, release: Release, tmp_path: Path
) -> None:
    """mksquashfs stores an all-zero block sparse unless told not to, and verify refuses sparse
    blocks: our own build must never make an image our own verify refuses."""
    binary = bytearray(elf_binary(MACHINES["amd64"], size=3 << 20, seed=9))
    binary[1 << 20 : 2 << 20] = bytes(1 << 20)  # the second 1 MiB block: all zeros
    data = zip_bytes({"alloy-linux-amd64": bytes(binary)})
    sums = f"{hashlib.sha256(data).hexdigest()}  alloy-linux-amd64.zip\n".encode()
    release.publish("1.10.8", {"alloy-linux-amd64.zip": data, "SHA256SUMS": sums})
    ok(invoke("all", "--version=1.10.8"))
    image = tmp_path / "output" / "alloy-1.10.8-amd64.raw"
    assert (extract(image, tmp_path / "root") / "usr/local/bin/alloy").read_bytes() == binary


def _holds_open(pid: int, path: Path) -> bool:
    """Whether process `pid` has `path` open (an fd may close while we look: not this one)."""
    for fd in Path(f"/proc/{pid}/fd").glob("*"):
        try:
            if os.readlink(fd) == str(path):
                return True
        except OSError:
            continue
    return False
