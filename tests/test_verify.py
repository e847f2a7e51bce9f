"""invoke verify: passes on what the pipeline builds, fails with the right reason on images
broken on purpose."""

from __future__ import annotations

import json
import os
import platform
import socket
from pathlib import Path

import pytest

from build.verify import kernelview, merge
from tests import verifying
from tests.conftest import VERSION, Invoke, Release
from tests.fakes import MACHINES, elf_binary
from tests.image import extract
from tests.verifying import (
    RELEASE,
    STRICT_XATTR,
    UNIT,
    fails_because,
    repack,
    verify,
)

CAN_MERGE = merge.cannot_merge("x86-64") is None
needs_merge = pytest.mark.skipif(
    not CAN_MERGE, reason=f"real merges not possible here: {merge.cannot_merge('x86-64')}"
)

built = verifying.built  # the built image, in the test's own output directory (a fixture)
tree = verifying.tree  # the built image unpacked (a fixture)


def test_all_verifies_and_records_it(invoke: Invoke, tmp_path: Path) -> None:
    first = invoke("all")
    assert first.returncode == 0, first.stdout + first.stderr
    lines = [line for line in first.stdout.splitlines() if line.startswith("verify")]
    checks = {line.split()[2].rstrip(":") for line in lines[:-1]}
    assert {
        "superblock",
        "entries",
        "extension-release",
        "architecture",
        "name",
        "checksum",
    } <= checks
    assert all(line.split()[1] in ("ok", "skip") for line in lines[:-1])
    if kernelview.cannot_mount("squashfs") is None:  # the build's verify holds the kernel's view
        assert lines[0].startswith("verify   ok   kernel view: mounted alone, "), lines
    if CAN_MERGE:
        assert sum(" ok   merge: " in line for line in lines) == 3  # versioned, compat, alloy.raw
        assert any("ok   systemd-analyze: verify alloy.service" in line for line in lines)
    again = invoke("all")
    assert again.stdout.splitlines()[-1] == "verify   up to date"  # no internal path
    skipped = invoke("all", "--no-verify")
    assert not any(line.startswith("verify") for line in skipped.stdout.splitlines())


def test_any_image_by_path_under_its_extension_name_needs_no_xattr(
    invoke: Invoke, tree: Path, tmp_path: Path
) -> None:
    os.removexattr(tree / RELEASE, STRICT_XATTR)
    image = repack(tree, tmp_path / "elsewhere" / "alloy.raw")
    result = verify(invoke, image)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok   name: alloy.raw matches extension-release.alloy" in result.stdout


def test_missing_xattr_under_a_versioned_name(invoke: Invoke, tree: Path, tmp_path: Path) -> None:
    os.removexattr(tree / RELEASE, STRICT_XATTR)
    image = repack(tree, tmp_path / "bad" / f"alloy-{VERSION}-amd64.raw")
    result = verify(invoke, image)
    fails_because(result, "name", f"without {STRICT_XATTR}=false", "refuses")
    if CAN_MERGE:  # and systemd agrees: the real merge under that name brings nothing
        fails_because(result, "merge", f"as alloy-{VERSION}-amd64.raw", "did not appear")


@pytest.mark.parametrize(
    ("architecture", "fragments"),
    [
        ("arm64", ("ARCHITECTURE=arm64 but /usr/local/bin/alloy is built for x86-64",)),
        ("amd64", ("ARCHITECTURE=amd64 is not one of systemd's names",)),
        ("aarch64", ("ARCHITECTURE=aarch64 is not one of systemd's names",)),
    ],
)
def test_wrong_architecture(
    invoke: Invoke, tree: Path, tmp_path: Path, architecture: str, fragments: tuple[str, ...]
) -> None:
    release = tree / RELEASE
    release.write_text(f"ID=_any\nARCHITECTURE={architecture}\n")
    os.setxattr(release, STRICT_XATTR, b"false")
    fails_because(
        verify(invoke, repack(tree, tmp_path / "bad" / "alloy.raw")), "architecture", *fragments
    )


def test_binary_for_another_machine(invoke: Invoke, tree: Path, tmp_path: Path) -> None:
    (tree / "usr/local/bin/alloy").write_bytes(elf_binary(MACHINES["arm64"]))
    image = repack(tree, tmp_path / "bad" / "alloy.raw")
    fails_because(verify(invoke, image), "architecture", "is built for AArch64")


@pytest.mark.needs(root="to chown the tree")
def test_wrong_owner(invoke: Invoke, tree: Path, tmp_path: Path) -> None:
    os.chown(tree / "usr/local/bin/alloy", 1000, 1000)
    image = repack(tree, tmp_path / "bad" / "alloy.raw", all_root=False)
    fails_because(verify(invoke, image), "entries", "/usr/local/bin/alloy is owned by 1000/1000")


@pytest.mark.parametrize(
    ("stray", "fragment"),
    [
        ("etc/alloy/config.alloy", "/etc is outside /usr"),
        ("usr/sbin/alloy", "/usr/sbin must not be shipped"),
        ("usr/local/sbin/alloy", "/usr/local/sbin must not be shipped"),
        ("usr/lib/os-release", "/usr/lib/os-release must not be shipped"),
    ],
)
def test_stray_path(invoke: Invoke, tree: Path, tmp_path: Path, stray: str, fragment: str) -> None:
    (tree / stray).parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    (tree / stray).write_text("stray\n")
    fails_because(verify(invoke, repack(tree, tmp_path / "bad" / "alloy.raw")), "entries", fragment)


def test_narrow_directory_mode(invoke: Invoke, tree: Path, tmp_path: Path) -> None:
    os.chmod(tree / "usr/lib", 0o700)
    image = repack(tree, tmp_path / "bad" / "alloy.raw")
    fails_because(verify(invoke, image), "entries", "directory /usr/lib has mode drwx------")


@pytest.mark.needs("systemd-sysext", "unshare", "systemd-analyze", root="real merges")
def test_bad_unit(invoke: Invoke, tree: Path, tmp_path: Path) -> None:
    unit = tree / UNIT
    unit.write_text(unit.read_text().replace("Restart=on-failure", "Restart=sometimes"))
    image = repack(tree, tmp_path / "bad" / "alloy.raw")
    fails_because(verify(invoke, image), "systemd-analyze", "alloy.service", "sometimes")


def test_checksum_and_superblock(invoke: Invoke, built: Path) -> None:
    fails_because(verify(invoke, built, "--compression=zstd"), "superblock", "expected zstd")
    checksum = built.with_name(built.name + ".sha256")
    checksum.write_text("0" * 64 + f"  {built.name}\n")
    fails_because(invoke("verify"), "checksum", f"{built.name} does not match {checksum.name}")


def test_superblock_checks_the_bcj_filter_both_ways(invoke: Invoke, built: Path) -> None:
    fails_because(
        verify(invoke, built, "--compression=xz-bcj"),
        "superblock",
        "xz compression, no BCJ filter, 1048576-byte blocks; "
        "expected xz compression, BCJ filter x86, 1048576-byte blocks",
    )
    rebuilt = invoke("all", "--compression=xz-bcj", "--no-verify")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    for compression in ("xz", "zstd"):
        fails_because(
            verify(invoke, built, f"--compression={compression}"),
            "superblock",
            "xz compression, BCJ filter x86, 1048576-byte blocks; "
            f"expected {compression} compression, no BCJ filter",
        )
    passed = verify(invoke, built, "--compression=xz-bcj")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "ok   superblock: xz compression, BCJ filter x86, 1048576-byte blocks" in passed.stdout


def test_another_filter_than_the_binarys_fails(invoke: Invoke, tree: Path, tmp_path: Path) -> None:
    image = repack(tree, tmp_path / "bad" / "alloy.raw", extra=("-Xbcj", "arm"))
    fails_because(
        verify(invoke, image, "--compression=xz-bcj"),
        "superblock",
        "BCJ filter arm,",
        "expected xz compression, BCJ filter x86",
    )


def test_xz_bcj_filter_follows_the_binary_not_arch(invoke: Invoke, tmp_path: Path) -> None:
    """An arm64 image has no filter to check for (squashfs-tools has no arm64 BCJ), whatever
    --arch says: verify --image takes the architecture from the image's binary."""
    built = invoke("all", "--arch=arm64", "--compression=xz-bcj", "--no-verify")
    assert built.returncode == 0, built.stdout + built.stderr
    image = tmp_path / "output" / f"alloy-{VERSION}-arm64.raw"
    for arch in ("amd64", "arm64"):
        result = verify(invoke, image, "--compression=xz-bcj", f"--arch={arch}")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "ok   superblock: xz compression, no BCJ filter" in result.stdout
    tree = extract(image, tmp_path / "tree")
    x86_filtered = repack(tree, tmp_path / "bad" / "alloy.raw", extra=("-Xbcj", "x86"))
    fails_because(
        verify(invoke, x86_filtered, "--compression=xz-bcj"),
        "superblock",
        "BCJ filter x86,",
        "expected xz compression, no BCJ filter",
    )


def test_xz_bcj_without_a_known_binary_fails_on_the_architecture(
    invoke: Invoke, tree: Path, tmp_path: Path
) -> None:
    (tree / "usr/local/bin/alloy").write_text("#!/bin/sh\nexec true\n")
    image = repack(tree, tmp_path / "bad" / "alloy.raw", extra=("-Xbcj", "x86"))
    result = verify(invoke, image, "--compression=xz-bcj")
    fails_because(result, "architecture", "/usr/local/bin/alloy is not an ELF")
    assert (
        "ok   superblock: xz compression, BCJ filter x86, 1048576-byte blocks "
        "(filter not checked: the binary's architecture is unknown)"
    ) in result.stdout


def test_an_image_for_another_machine_skips_the_merges_and_says_why(
    invoke: Invoke, tmp_path: Path
) -> None:
    result = invoke("all", "--arch=arm64")
    assert result.returncode == 0, result.stdout + result.stderr
    skips = [line for line in result.stdout.splitlines() if " skip " in line]
    if platform.machine() == "x86_64" and os.geteuid() == 0:
        reason = "the image is for arm64, this machine is x86-64"
        assert f"verify   skip merge: as alloy-{VERSION}-arm64.raw: {reason}" in skips
    assert any("skip systemd-analyze" in line for line in skips)


def test_an_arm64_image_is_checked_only_under_the_names_it_is_shipped_under(
    invoke: Invoke, tmp_path: Path
) -> None:
    """With the default --compat-arch=amd64, alloy-VERSION.raw is amd64's: no merge under it is
    listed for arm64 (nor recorded as skipped in its build info)."""
    result = invoke("all", "--arch=arm64")
    assert result.returncode == 0, result.stdout + result.stderr
    merges = [line for line in result.stdout.splitlines() if " merge: as " in line]
    assert any(f"merge: as alloy-{VERSION}-arm64.raw" in line for line in merges), merges
    assert not any(f"as alloy-{VERSION}.raw" in line for line in merges), merges
    info = tmp_path / "output" / f"alloy-{VERSION}-arm64.raw.buildinfo.json"
    assert f"alloy-{VERSION}.raw" not in info.read_text()


def closed_port() -> str:
    """An http:// URL on this machine where nothing listens."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def check_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("verify ")]


def test_verify_checks_what_is_built_without_a_download_every_time(
    invoke: Invoke, release: Release, tmp_path: Path
) -> None:
    """invoke verify after a build from a mirror: no download (the source is gone), and the
    checks are shown again on each run, not "up to date"."""
    built = invoke("all")
    assert built.returncode == 0, built.stdout + built.stderr
    asked = len(release.requests())
    for _ in range(2):
        result = invoke("verify", f"--base-url={closed_port()}")
        assert result.returncode == 0, result.stdout + result.stderr
        lines = check_lines(result.stdout)
        assert any(line.startswith("verify   ok   superblock: ") for line in lines), lines
        assert any(line.startswith("verify   ok   checksum: ") for line in lines), lines
        assert f"alloy-{VERSION}-amd64.raw: " in lines[-1] and " checks passed, " in lines[-1]
        assert not any(line.split()[0] in ("fetch", "stage", "pack") for line in lines)
        assert "up to date" not in lines[-1].split(";")[0]
    again = invoke("verify")  # the build's own source, still served: not asked either
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(release.requests()) == asked
    info = json.loads(
        (tmp_path / "output" / f"alloy-{VERSION}-amd64.raw.buildinfo.json").read_text()
    )
    assert info["verify"]["result"] == "passed"


@pytest.mark.parametrize(
    ("built_with", "missing"),
    [
        ((), f"alloy-{VERSION}-amd64.raw"),
        (("pack",), f"alloy-{VERSION}-amd64.raw.sha256"),
    ],
)
def test_verify_with_nothing_built_is_one_line(
    invoke: Invoke, release: Release, tmp_path: Path, built_with: tuple[str, ...], missing: str
) -> None:
    if built_with:
        assert invoke(*built_with).returncode == 0
    output = tmp_path / "output"
    before = sorted(output.rglob("*")) if output.exists() else None
    asked = len(release.requests())
    result = invoke("verify", f"--version={VERSION}", "--arch=amd64")  # the one named
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        f"error: nothing to verify: {Path('output') / missing} is missing; build it first with "
        "the same options: invoke all (or invoke alias, which does not verify)"
    ]
    assert (sorted(output.rglob("*")) if output.exists() else None) == before
    assert len(release.requests()) == asked


def test_verify_after_a_single_pack_says_what_is_out_of_date_and_records_nothing(
    invoke: Invoke, tmp_path: Path
) -> None:
    """README's `invoke pack --config-path=...` after a build repacks the image only: its
    .sha256 is older than it. verify says so, instead of failing the checksum check."""
    assert invoke("all").returncode == 0
    assert invoke("pack", "--config-path=/etc/alloy/config.alloy").returncode == 0
    info = tmp_path / "output" / f"alloy-{VERSION}-amd64.raw.buildinfo.json"
    before = info.read_bytes()
    result = invoke("verify", "--config-path=/etc/alloy/config.alloy")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        f"error: nothing to verify yet: checksum is out of date "
        f"({Path('output') / f'alloy-{VERSION}-amd64.raw'} is newer); build it first with the "
        "same options: invoke all (or invoke alias, which does not verify)"
    ]
    assert info.read_bytes() == before
    # Once the chain is made again, verify checks it.
    assert invoke("alias", "--config-path=/etc/alloy/config.alloy").returncode == 0
    checked = invoke("verify", "--config-path=/etc/alloy/config.alloy")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_verify_with_other_options_than_the_build_says_so_and_records_nothing(
    invoke: Invoke, tmp_path: Path
) -> None:
    """A verify that would fail only because it was asked with other options than the build's
    must not record a failure over the build's passed verify: a plain verify checks the image
    as built (tests/test_verify_as_built.py), a flag that contradicts the build is refused."""
    assert invoke("all", "--compression=zstd", "--autostart").returncode == 0
    info = tmp_path / "output" / f"alloy-{VERSION}-amd64.raw.buildinfo.json"
    before = info.read_bytes()
    result = invoke("verify", "--compression=xz", "--no-autostart")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        f"error: {Path('output') / f'alloy-{VERSION}-amd64.raw'} was built with "
        "--compression=zstd, --autostart, not --compression=xz, --no-autostart as given; nothing "
        "was checked or written; leave those options out to check it as it was built, or "
        f"rebuild it with them: invoke all --version={VERSION} --arch=amd64 --compression=xz "
        "--no-autostart"
    ]
    assert result.stdout == ""
    assert info.read_bytes() == before
    same = invoke("verify", "--compression=zstd", "--autostart")
    assert same.returncode == 0, same.stdout + same.stderr
    plain = invoke("verify")
    assert plain.returncode == 0, plain.stdout + plain.stderr


def test_cannot_merge_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(merge.os, "geteuid", lambda: 1000)
    assert merge.cannot_merge("x86-64") == "needs root (mount namespaces, loop devices)"
    monkeypatch.setattr(merge.os, "geteuid", lambda: 0)
    monkeypatch.setattr(merge.shutil, "which", lambda tool: None if tool == "unshare" else "/x")
    assert merge.cannot_merge("x86-64") == "unshare is not installed"


def test_no_image_is_one_line(invoke: Invoke, tmp_path: Path) -> None:
    result = verify(invoke, tmp_path / "nothing.raw")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: no image at {tmp_path / 'nothing.raw'}; build it first, or check --image"
    ]


def test_a_binary_that_is_not_elf(invoke: Invoke, tree: Path, tmp_path: Path) -> None:
    (tree / "usr/local/bin/alloy").write_text("#!/bin/sh\nexec true\n")
    image = repack(tree, tmp_path / "bad" / "alloy.raw")
    fails_because(verify(invoke, image), "architecture", "/usr/local/bin/alloy is not an ELF")


def test_an_image_without_the_unit(invoke: Invoke, tree: Path, tmp_path: Path) -> None:
    (tree / UNIT).unlink()
    image = repack(tree, tmp_path / "bad" / "alloy.raw")
    fails_because(verify(invoke, image), "entries", f"/{UNIT} is missing")


@pytest.mark.needs("systemd-sysext", "unshare", "systemd-analyze", root="real merges")
def test_a_unit_may_name_host_programs_through_bin(invoke: Invoke, tmp_path: Path) -> None:
    """The scratch root has the host's /bin (a link into /usr, or a read-only bind): a unit's
    /bin/true is found there, as on the host."""
    template = Path(__file__).resolve().parent.parent / "build/templates/image/alloy.service"
    unit = tmp_path / "alloy.service"
    unit.write_text(
        template.read_text().replace("[Service]\n", "[Service]\nExecStartPre=/bin/true\n")
    )
    result = invoke("all", f"--unit-template={unit}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok   systemd-analyze: verify alloy.service: no warnings" in result.stdout
