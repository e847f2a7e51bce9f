"""invoke verify --image on images made to get something past it: extra programs, links,
device nodes, forged names, xattrs, and images that are not squashfs at all."""

from __future__ import annotations

import os
import random
import struct
import subprocess
from pathlib import Path

import pytest

from build.core.errors import BuildError
from build.read.squashfs import SquashfsReader
from build.verify.checks import Expectations
from build.verify.checks import verify as verify_image
from tests import verifying
from tests.conftest import VERSION, Invoke
from tests.fakes import MACHINES, elf_binary
from tests.image import garbled_copies
from tests.verifying import RELEASE, STRICT_XATTR, UNIT, fails_because, repack, verify

pytestmark = pytest.mark.needs("mksquashfs", "unsquashfs")

BINARY = "usr/local/bin/alloy"
# A v2 vfs_cap_data (effective, cap_net_bind_service permitted), as setcap writes it.
CAPABILITY = struct.pack("<5I", 0x02000001, 1 << 10, 0, 0, 0)


built = verifying.built  # the built image, in the test's own output directory (a fixture)
tree = verifying.tree  # the built image unpacked (a fixture)


def bad_image(tree: Path, tmp_path: Path, *pseudo: str) -> Path:
    """The tree packed as a user would get it; `pseudo` are mksquashfs -p definitions."""
    extra = [arg for definition in pseudo for arg in ("-p", definition)]
    return repack(tree, tmp_path / "bad" / "alloy.raw", extra=tuple(extra))


def write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    path.write_bytes(data)
    path.chmod(mode)


def test_an_extra_program_that_shadows_a_host_one(
    invoke: Invoke, tree: Path, tmp_path: Path
) -> None:
    write(tree / "usr/bin/ls", elf_binary(MACHINES["amd64"]), 0o755)
    fails_because(
        verify(invoke, bad_image(tree, tmp_path)),
        "entries",
        "/usr/bin/ls is an extra file, not part of an Alloy sysext",
        "/usr/bin is an extra directory",
    )


def test_a_generator(invoke: Invoke, tree: Path, tmp_path: Path) -> None:
    write(tree / "usr/lib/systemd/system-generators/alloy", b"#!/bin/sh\n", 0o755)
    fails_because(
        verify(invoke, bad_image(tree, tmp_path)),
        "entries",
        "/usr/lib/systemd/system-generators/alloy is an extra file",
    )


def test_a_symlink(invoke: Invoke, tree: Path, tmp_path: Path) -> None:
    (tree / "usr/local/bin/alloy-agent").symlink_to("/usr/bin/sh")
    fails_because(
        verify(invoke, bad_image(tree, tmp_path)),
        "entries",
        "/usr/local/bin/alloy-agent is a symlink to /usr/bin/sh",
    )


def test_a_hard_link(invoke: Invoke, tree: Path, tmp_path: Path) -> None:
    os.link(tree / BINARY, tree / "usr/lib/systemd/alloy")
    fails_because(
        verify(invoke, bad_image(tree, tmp_path)),
        "entries",
        "/usr/local/bin/alloy is a hard link (one inode with /usr/lib/systemd/alloy)",
        "/usr/lib/systemd/alloy is a hard link (one inode with /usr/local/bin/alloy)",
    )


@pytest.mark.parametrize(
    ("definition", "fragment"),
    [
        ("usr/local/bin/null c 666 0 0 1 3", "/usr/local/bin/null is a character device (1, 3)"),
        ("usr/local/bin/disk b 644 0 0 7 0", "/usr/local/bin/disk is a block device (7, 0)"),
        ("usr/local/bin/pipe i 644 0 0 f", "/usr/local/bin/pipe is a FIFO"),
        ("usr/local/bin/sock i 644 0 0 s", "/usr/local/bin/sock is a socket"),
    ],
    ids=["char-device", "block-device", "fifo", "socket"],
)
def test_special_files(
    invoke: Invoke, tree: Path, tmp_path: Path, definition: str, fragment: str
) -> None:
    fails_because(verify(invoke, bad_image(tree, tmp_path, definition)), "entries", fragment)


def test_a_name_with_a_newline_cannot_forge_an_entry(
    invoke: Invoke, tree: Path, tmp_path: Path
) -> None:
    """unsquashfs -lln prints this directory's child as two lines, the second one a unit at
    /usr/lib/systemd/system/alloy.service: the unit seems present though it was removed."""
    (tree / UNIT).unlink()
    forger = tree / "usr" / "d\n-rw-r--r-- 0/0 1 2025-01-01 00:00 IMAGE"
    write(forger / UNIT, b"[Service]\nExecStart=/bin/sh\n")
    for directory in [forger, *(forger / UNIT).parents]:
        if directory.is_relative_to(forger):
            directory.chmod(0o755)
    fails_because(
        verify(invoke, bad_image(tree, tmp_path)),
        "entries",
        "/usr/d\\x0a-rw-r--r-- 0/0 1 2025-01-01 00:00 IMAGE has a control character in its name",
        f"/{UNIT} is missing",
    )


def test_a_name_with_an_arrow_is_a_name(invoke: Invoke, tree: Path, tmp_path: Path) -> None:
    unit = tree / UNIT
    unit.rename(unit.with_name("alloy.service -> elsewhere"))
    fails_because(
        verify(invoke, bad_image(tree, tmp_path)),
        "entries",
        f"/{UNIT} is missing",
        f"/{UNIT} -> elsewhere is an extra file",
    )


@pytest.mark.needs(root="to set security.capability")
def test_file_capabilities_on_the_binary(invoke: Invoke, tree: Path, tmp_path: Path) -> None:
    os.setxattr(tree / BINARY, "security.capability", CAPABILITY)
    fails_because(
        verify(invoke, bad_image(tree, tmp_path)),
        "entries",
        f"/{BINARY} has file capabilities (xattr security.capability)",
    )


def test_another_user_xattr(invoke: Invoke, tree: Path, tmp_path: Path) -> None:
    os.setxattr(tree / UNIT, "user.origin", b"elsewhere")
    os.setxattr(tree / UNIT, STRICT_XATTR, b"false")  # only the extension-release file may
    fails_because(
        verify(invoke, bad_image(tree, tmp_path)),
        "entries",
        f"/{UNIT} has the xattr user.origin",
        f"/{UNIT} has the xattr {STRICT_XATTR}",
    )


def test_an_extension_release_symlink_is_never_followed(
    invoke: Invoke, tree: Path, tmp_path: Path
) -> None:
    host_id = _host_id()
    (tree / RELEASE).unlink()
    (tree / RELEASE).symlink_to("/etc/os-release")
    result = verify(invoke, bad_image(tree, tmp_path))
    fails_because(result, "extension-release", f"/{RELEASE} is a symlink, not a regular file")
    fails_because(result, "entries", f"/{RELEASE} is a symlink to /etc/os-release")
    assert f"ID={host_id}" not in result.stdout


def test_the_autostart_drop_in_is_optional_for_any_image(invoke: Invoke, tmp_path: Path) -> None:
    """verify --image takes an image built with or without --autostart; the pipeline's own
    verify allows the drop-in only where it built one."""
    built = invoke("all", "--autostart", "--no-verify")
    assert built.returncode == 0, built.stdout + built.stderr
    image = tmp_path / "output" / f"alloy-{VERSION}-amd64.raw"
    result = verify(invoke, image)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " ok   entries: " in result.stdout
    with pytest.raises(BuildError, match=r"multi-user\.target\.d/10-alloy\.conf is an extra file"):
        verify_image(image, Expectations(compression="xz", names=[image.name], checksums=[]))


def test_an_image_that_is_not_squashfs_is_one_line(invoke: Invoke, built: Path) -> None:
    data = built.read_bytes()
    built.write_bytes(data[: len(data) // 2])
    result = verify(invoke, built)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: {built} is not a valid squashfs image: ")


def test_an_unsupported_compressor_is_one_line(invoke: Invoke, tree: Path, tmp_path: Path) -> None:
    image = tmp_path / "bad" / "alloy.raw"
    image.parent.mkdir()
    subprocess.run(
        ["mksquashfs", str(tree), str(image), "-comp", "lzo", "-all-root", "-no-progress"],
        check=True,
        capture_output=True,
    )
    result = verify(invoke, image)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: cannot check {image}: it is lzo-compressed: verify cannot decode lzo (Flatcar's "
        "kernels mount it); repack it with -comp zstd, xz, gzip or lz4 to have it checked"
    ]


# -- the reader on its own ---------------------------------------------------------------


@pytest.fixture
def zstd_image(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    write(root / "usr/lib/extension-release.d/extension-release.x", b"ID=_any\n")
    os.setxattr(root / "usr/lib/extension-release.d/extension-release.x", STRICT_XATTR, b"false")
    write(root / "usr/local/bin/x", elf_binary(MACHINES["arm64"], size=3 << 20), 0o755)
    (root / "usr/local/bin/y").symlink_to("x")
    image = tmp_path / "x.raw"
    subprocess.run(
        [
            *("mksquashfs", str(root), str(image), "-comp", "zstd", "-b", "1M", "-all-root"),
            *("-no-progress", "-p", "usr/local/bin/null c 600 0 0 1 3"),
        ],
        check=True,
        capture_output=True,
    )
    return image


def test_the_reader_on_a_zstd_image(zstd_image: Path) -> None:
    reader = SquashfsReader(zstd_image)
    assert (reader.superblock.compression, reader.superblock.block_size) == ("zstd", 1 << 20)
    nodes = {node.path: node for node in reader.nodes()}
    assert {path: node.mode for path, node in nodes.items()} == {
        "": "drwxr-xr-x",
        "usr": "drwxr-xr-x",
        "usr/lib": "drwxr-xr-x",
        "usr/lib/extension-release.d": "drwxr-xr-x",
        "usr/lib/extension-release.d/extension-release.x": "-rw-r--r--",
        "usr/local": "drwxr-xr-x",
        "usr/local/bin": "drwxr-xr-x",
        "usr/local/bin/null": "crw-------",
        "usr/local/bin/x": "-rwxr-xr-x",
        "usr/local/bin/y": "lrwxrwxrwx",
    }
    release = nodes["usr/lib/extension-release.d/extension-release.x"]
    assert release.xattrs == {STRICT_XATTR: b"false"}
    assert reader.head(release, 100) == b"ID=_any\n"
    binary = nodes["usr/local/bin/x"]
    assert binary.size == 3 << 20
    assert reader.head(binary, binary.size) == elf_binary(MACHINES["arm64"], size=3 << 20)
    assert nodes["usr/local/bin/y"].target == "x"
    assert nodes["usr/local/bin/null"].device == (1, 3)
    assert all(node.owner == "0/0" and node.nlink >= 1 for node in nodes.values())


@pytest.mark.parametrize(
    "data",
    [b"", b"not a squashfs image at all\n" * 10, b"hsqs" + bytes(200)],
    ids=["empty", "text", "magic-only"],
)
def test_the_reader_refuses_garbage(tmp_path: Path, data: bytes) -> None:
    image = tmp_path / "garbage.raw"
    image.write_bytes(data)
    with pytest.raises(BuildError, match=f"^{image} is not a valid squashfs image: "):
        SquashfsReader(image)


def test_the_reader_survives_truncated_and_garbled_images(zstd_image: Path, tmp_path: Path) -> None:
    """Each damaged copy reads or fails with one BuildError naming it: never another exception,
    never a hang. The damage falls on the superblock and the metadata at the image's end."""

    def spot(rng: random.Random, attempt: int, size: int) -> int:
        return rng.randrange(96) if attempt % 3 == 1 else size - rng.randint(1, 600)

    damaged = tmp_path / "damaged.raw"
    refused = 0
    for _, copy in garbled_copies(zstd_image.read_bytes(), 11, spot):
        damaged.write_bytes(bytes(copy))
        try:
            reader = SquashfsReader(damaged)
            for node in reader.nodes():
                if node.kind == "file":
                    reader.head(node, 4096)
        except BuildError as error:
            assert str(damaged) in str(error)
            refused += 1
    assert refused > 100


def _host_id() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("ID="):
            return line.removeprefix("ID=").strip("\"'")
    pytest.fail("this machine's /etc/os-release has no ID=")


def test_content_named_many_times_is_refused_before_anything_reads_it(
    invoke: Invoke, tree: Path, tmp_path: Path
) -> None:
    """Twenty names for one 2 MiB block list (mksquashfs stores duplicates once): a 2 MiB
    image whose files hold 40 MiB. Every file is within --max-binary-size, but the kernel
    view and the reader would each decompress the block twenty times."""
    data = random.Random(20).randbytes(2 << 20)
    for number in range(20):
        write(tree / f"usr/share/alloy/copy{number}", data)
    total = sum(path.stat().st_size for path in tree.rglob("*") if path.is_file())
    image = repack(tree, tmp_path / "bad" / "alloy.raw")
    assert image.stat().st_size < 4 << 20
    result = invoke("verify", f"--image={image}", "--max-binary-size=4")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: refusing {image}: its files hold {total} bytes "
        "in all, more than --max-binary-size (4194304) and 1 MiB for the small ones; an Alloy "
        "sysext holds one binary and a few small files: do not install it"
    ]
    assert "kernel view" not in result.stdout and "merge" not in result.stdout
