"""EROFS images: the mkfs.erofs command line, reproducible packing, real merges, and the reader
(build/read/erofs.py) on every layout mkfs.erofs writes and on images made to break it."""

from __future__ import annotations

import hashlib
import os
import platform
import random
import stat
import struct
import subprocess
from pathlib import Path

import pytest

from build.core.errors import BuildError
from build.formats.erofs import (
    BUILD_TIME,
    LZ4HC_LEVEL,
    PCLUSTER_BYTES,
    image_uuid,
    mkfs_erofs_args,
    mkfs_erofs_version,
    pack_erofs,
)
from build.formats.table import image_format, open_image
from build.read import erofs
from build.read.erofs import ErofsReader, lz4_decompress
from build.read.image import ErofsImage, SquashfsImage
from build.verify import merge
from build.verify.checks import Expectations
from build.verify.checks import verify as verify_image
from tests.conftest import VERSION, Invoke
from tests.fakes import MACHINES, elf_binary
from tests.image import extract, garbled_copies
from tests.needs import need
from tests.trees import write

RELEASE = "usr/lib/extension-release.d/extension-release.alloy"
BINARY = "usr/local/bin/alloy"
UNIT = "usr/lib/systemd/system/alloy.service"
STRICT_XATTR = "user.extension-release.strict"
IMAGE_ID = image_uuid("alloy", "1.10.2", "amd64")
SUPERBLOCK = erofs.SUPERBLOCK_OFFSET
BLOCK = 4096


def alloy_tree(root: Path, binary_size: int = 3 << 20, strict: bool = True) -> Path:
    """What stage lays out, with explicit modes (checkouts and umasks vary)."""
    root.mkdir(parents=True)
    root.chmod(0o755)
    write(root / RELEASE, b"ID=_any\nARCHITECTURE=x86-64\n")
    if strict:
        os.setxattr(root / RELEASE, STRICT_XATTR, b"false")
    write(root / UNIT, b"[Service]\nExecStart=/usr/local/bin/alloy run\n")
    write(root / BINARY, elf_binary(MACHINES["amd64"], size=binary_size), 0o755)
    return root


def mkfs(tree: Path, image: Path, *options: str) -> Path:
    """mkfs.erofs with other options than ours: the reader must read what mkfs.erofs writes."""
    image.parent.mkdir(parents=True, exist_ok=True)
    env = {"PATH": os.environ["PATH"], "LC_ALL": "C"}
    subprocess.run(
        ["mkfs.erofs", *options, str(image), str(tree)], check=True, capture_output=True, env=env
    )
    return image


def files_of(tree: Path) -> dict[str, bytes]:
    found = {}
    for directory, _, names in os.walk(tree):
        for name in names:
            path = Path(directory) / name
            if not path.is_symlink() and path.is_file():
                found[str(path.relative_to(tree))] = path.read_bytes()
    return found


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def patched(image: Path, at: int, data: bytes, checksum: bool = True) -> Path:
    """A copy of `image` with `data` at byte `at` and, unless told not to, the superblock
    checksum made right again: the damage is then all the reader sees."""
    copy = bytearray(image.read_bytes())
    copy[at : at + len(data)] = data
    if checksum:
        fix_checksum(copy)
    out = image.with_name("patched.raw")
    out.write_bytes(bytes(copy))
    return out


def fix_checksum(data: bytearray) -> None:
    block = bytearray(data[SUPERBLOCK:BLOCK])
    block[4:8] = bytes(4)
    data[SUPERBLOCK + 4 : SUPERBLOCK + 8] = struct.pack("<I", erofs.crc32c(bytes(block)))


def refused(image: Path, *fragments: str) -> str:
    """The one BuildError reading `image` (all of it) raises; it names the image."""
    with pytest.raises(BuildError) as caught:
        read_everything(image)
    message = str(caught.value)
    assert str(image) in message
    for fragment in fragments:
        assert fragment in message
    return message


def read_everything(image: Path) -> list:
    reader = ErofsReader(image)
    nodes = reader.nodes()
    heads = [reader.head(node, 1 << 16) for node in nodes if node.kind == "file"]
    return [*nodes, *heads]


# -- the command line --------------------------------------------------------------------


def test_the_command_line() -> None:
    assert mkfs_erofs_args("lz4hc", IMAGE_ID) == [
        f"-zlz4hc,{LZ4HC_LEVEL}",
        f"-C{PCLUSTER_BYTES}",
        "-Eztailpacking",
        "--all-root",
        f"-T{BUILD_TIME}",
        f"-U{IMAGE_ID}",
        "--quiet",
    ]
    assert mkfs_erofs_args("none", IMAGE_ID) == [
        "--all-root",
        f"-T{BUILD_TIME}",
        f"-U{IMAGE_ID}",
        "--quiet",
    ]


def test_the_uuid_follows_name_version_and_architecture() -> None:
    ids = {
        image_uuid("alloy", "1.10.2", "amd64"),
        image_uuid("alloy", "1.10.2", "arm64"),
        image_uuid("alloy", "1.10.3", "amd64"),
        image_uuid("alloy-x", "1.10.2", "amd64"),
        image_uuid("alloy", "1.10.2\namd64", ""),  # the separator cannot be forged
    }
    assert len(ids) == 5
    assert image_uuid("alloy", "1.10.2", "amd64") == IMAGE_ID
    assert IMAGE_ID.version == 5
    assert IMAGE_ID.int != 0


def fake_mkfs(directory: Path, script: str) -> None:
    directory.mkdir(exist_ok=True)
    tool = directory / "mkfs.erofs"
    tool.write_text("#!/bin/sh\n" + script)
    tool.chmod(0o755)


@pytest.mark.parametrize(
    ("script", "version"),
    [
        # 1.4 and 1.5 print their version, then refuse --version.
        ("echo 'mkfs.erofs 1.4'; echo \"unrecognized option '$1'\" >&2; exit 1\n", "1.4"),
        ("echo 'mkfs.erofs 1.5'; exit 1\n", "1.5"),
        ("echo 'mkfs.erofs (erofs-utils) 1.8.6'\n", "1.8.6"),
    ],
    ids=["1.4", "1.5", "1.8"],
)
def test_the_version_of_each_erofs_utils(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str, version: str
) -> None:
    fake_mkfs(tmp_path / "bin", script)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert mkfs_erofs_version() == version


def test_a_version_that_says_nothing_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_mkfs(tmp_path / "bin", "echo hello\n")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(BuildError, match="--version does not say which version it is; install"):
        mkfs_erofs_version()


def test_missing_mkfs_erofs_names_its_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = alloy_tree(tmp_path / "tree", binary_size=4096)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    expected = (
        "mkfs.erofs not found on PATH; install the package erofs-utils "
        "(e.g. apt-get install erofs-utils)"
    )
    with pytest.raises(BuildError) as caught:
        pack_erofs(tree, tmp_path / "x.raw", "lz4hc", IMAGE_ID)
    assert str(caught.value) == expected
    assert not (tmp_path / "x.raw").exists()
    with pytest.raises(BuildError) as caught:
        mkfs_erofs_version()
    assert str(caught.value) == expected


# -- packing -----------------------------------------------------------------------------

needs_mkfs = pytest.mark.needs("mkfs.erofs")


@needs_mkfs
def test_a_failing_mkfs_erofs_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"^mkfs\.erofs failed: mkfs\.erofs says: "):
        pack_erofs(tmp_path / "no-tree", tmp_path / "x.raw", "lz4hc", IMAGE_ID)


@needs_mkfs
def test_images_are_bit_identical_across_directories_umasks_times_and_environments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = alloy_tree(tmp_path / "a" / "tree")
    os.utime(first / BINARY, (1_000_000_000, 1_000_000_000))
    pack_erofs(first, tmp_path / "a.raw", "lz4hc", IMAGE_ID)

    old = os.umask(0o077)
    try:
        second = alloy_tree(tmp_path / "b" / "elsewhere" / "tree")
    finally:
        os.umask(old)
    for directory, _, names in os.walk(second):  # other days
        for name in [".", *names]:
            os.utime(Path(directory) / name, (1_900_000_000, 1_900_000_000))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1234567890")
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    (tmp_path / "b.raw").write_bytes(b"an old image to replace")
    pack_erofs(second, tmp_path / "b.raw", "lz4hc", IMAGE_ID)
    assert sha256(tmp_path / "a.raw") == sha256(tmp_path / "b.raw")

    # The control: the comparison can fail.
    pack_erofs(second, tmp_path / "c.raw", "lz4hc", image_uuid("alloy", "1.10.3", "amd64"))
    assert sha256(tmp_path / "a.raw") != sha256(tmp_path / "c.raw")


@needs_mkfs
@pytest.mark.parametrize("compression", ["lz4hc", "none"])
def test_what_pack_erofs_writes_reads_back(tmp_path: Path, compression: str) -> None:
    tree = alloy_tree(tmp_path / "tree")
    image = tmp_path / "alloy-1.10.2-amd64.raw"
    pack_erofs(tree, image, compression, IMAGE_ID)
    assert image_format(image) == "erofs"
    opened = open_image(image)
    assert isinstance(opened, ErofsImage)
    assert opened.superblock == {
        "Compression": "lz4" if compression == "lz4hc" else "none",
        "Block size": "4096",
        "UUID": str(IMAGE_ID),
        "Build time": "0",
    }
    assert {path: (e.mode, e.owner) for path, e in opened.entries.items()} == {
        "": ("drwxr-xr-x", "0/0"),
        "usr": ("drwxr-xr-x", "0/0"),
        "usr/lib": ("drwxr-xr-x", "0/0"),
        "usr/lib/extension-release.d": ("drwxr-xr-x", "0/0"),
        RELEASE: ("-rw-r--r--", "0/0"),
        "usr/lib/systemd": ("drwxr-xr-x", "0/0"),
        "usr/lib/systemd/system": ("drwxr-xr-x", "0/0"),
        UNIT: ("-rw-r--r--", "0/0"),
        "usr/local": ("drwxr-xr-x", "0/0"),
        "usr/local/bin": ("drwxr-xr-x", "0/0"),
        BINARY: ("-rwxr-xr-x", "0/0"),
    }
    assert opened.entries[RELEASE].xattrs == {STRICT_XATTR: b"false"}
    assert all(not e.xattrs for path, e in opened.entries.items() if path != RELEASE)
    assert opened.head(RELEASE, 1 << 16) == b"ID=_any\nARCHITECTURE=x86-64\n"
    binary = elf_binary(MACHINES["amd64"], size=3 << 20)
    assert opened.head(BINARY, 64) == binary[:64]
    assert opened.head(BINARY, 1 << 20) == binary[: 1 << 20]
    assert opened.entries[BINARY].size == len(binary)
    assert opened.hard_links() == {}


@pytest.mark.needs("mksquashfs")
def test_a_squashfs_image_still_opens_as_squashfs(tmp_path: Path) -> None:
    tree = alloy_tree(tmp_path / "tree", binary_size=4096)
    image = tmp_path / "x.raw"
    subprocess.run(
        ["mksquashfs", str(tree), str(image), "-all-root", "-no-progress", "-comp", "xz"],
        check=True,
        capture_output=True,
    )
    assert image_format(image) == "squashfs"
    assert isinstance(open_image(image), SquashfsImage)
    garbage = tmp_path / "garbage.raw"
    garbage.write_bytes(b"neither\n" * 200)
    with pytest.raises(BuildError, match="is not a valid squashfs image: no squashfs magic"):
        open_image(garbage)


# -- real merges -------------------------------------------------------------------------


def merged(image: Path) -> merge.Merged:
    return merge.merge_in_scratch_root(image, image.name, "ID=scratch\n", [RELEASE, UNIT, BINARY])


@pytest.mark.root
@pytest.mark.needs("mkfs.erofs", "systemd-sysext", "unshare", root="merging: mount namespaces")
@pytest.mark.skipif(platform.machine() != "x86_64", reason="the test image is x86-64 (amd64)")
def test_systemd_sysext_merges_an_erofs_image_under_its_versioned_name(tmp_path: Path) -> None:
    image = tmp_path / "alloy-1.10.2-amd64.raw"
    pack_erofs(alloy_tree(tmp_path / "tree"), image, "lz4hc", IMAGE_ID)
    result = merged(image)
    assert result.missing == [], result.log
    assert result.present == [RELEASE, UNIT, BINARY]

    # The control: without the xattr, systemd refuses the versioned name.
    unmarked = tmp_path / "unmarked" / "alloy-1.10.2-amd64.raw"
    unmarked.parent.mkdir()
    pack_erofs(alloy_tree(tmp_path / "tree2", strict=False), unmarked, "lz4hc", IMAGE_ID)
    assert merged(unmarked).present == []


# -- the reader on every layout ----------------------------------------------------------


def varied_tree(root: Path) -> Path:
    """Files for every data layout: tiny, compressible, incompressible, block-sized."""
    alloy_tree(root, binary_size=700_000)
    rng = random.Random(5)
    write(root / "usr/share/random", rng.randbytes(150_000))
    write(root / "usr/share/text", b"a line of text that compresses\n" * 20_000)
    write(root / "usr/share/block", rng.randbytes(BLOCK))
    write(root / "usr/share/empty", b"")
    write(root / "usr/share/mixed", rng.randbytes(9000) + bytes(70_000) + rng.randbytes(5000))
    (root / "usr/share/link").symlink_to("../local/bin/alloy")
    (root / "usr/share/long-link").symlink_to("x" * 3000)
    os.link(root / "usr/share/text", root / "usr/share/text-again")
    for index in range(300):  # a listing over several directory blocks
        write(root / "usr/share/many" / f"entry-{index:03}-{'n' * 40}", b"%d" % index)
    for name in ("usr/share/text", "usr/share/block", "usr/share/random"):
        os.setxattr(root / name, "user.shared", b"the same value on three files")
    os.setxattr(root / "usr/share/text", "user.empty", b"")
    return root


MKFS_OPTIONS = {
    "ours": (f"-zlz4hc,{LZ4HC_LEVEL}", f"-C{PCLUSTER_BYTES}", "-Eztailpacking", "-T0"),
    "default-lz4hc": ("-zlz4hc",),
    "lz4-full-indexes": ("-zlz4", "-Elegacy-compress"),
    "big-pcluster-full-indexes": ("-zlz4hc", "-C16384", "-Elegacy-compress"),
    "1MiB-pclusters": ("-zlz4hc,9", "-C1048576", "-Eztailpacking"),
    "uncompressed": (),
    "shared-xattrs": ("-zlz4hc", "-x1"),
}


@needs_mkfs
@pytest.mark.parametrize("options", MKFS_OPTIONS.values(), ids=MKFS_OPTIONS.keys())
def test_the_reader_reads_every_layout_back(tmp_path: Path, options: tuple[str, ...]) -> None:
    tree = varied_tree(tmp_path / "tree")
    image = mkfs(tree, tmp_path / "x.raw", *options)
    reader = ErofsReader(image)
    nodes = {node.path: node for node in reader.nodes()}
    expected = files_of(tree)
    assert {path for path, node in nodes.items() if node.kind == "file"} == set(expected)
    for path, data in expected.items():
        assert nodes[path].size == len(data), path
        assert reader.head(nodes[path], len(data)) == data, path
        assert reader.head(nodes[path], 100) == data[:100], path
    assert nodes["usr/share/link"].target == "../local/bin/alloy"
    assert nodes["usr/share/long-link"].target == "x" * 3000
    assert nodes["usr/share/text"].inode == nodes["usr/share/text-again"].inode
    assert nodes["usr/share/text"].nlink == 2
    assert nodes["usr/share/text"].xattrs == {
        "user.shared": b"the same value on three files",
        "user.empty": b"",
    }
    assert nodes["usr/share/block"].xattrs == {"user.shared": b"the same value on three files"}
    assert nodes[RELEASE].xattrs == {STRICT_XATTR: b"false"}
    compressed = {"-zlz4", "-zlz4hc"} & {option.split(",")[0] for option in options}
    assert reader.used_algorithms == ({"lz4"} if compressed else set())
    layouts = {reader.layout(node) for node in nodes.values()}
    if "-T0" in options:
        assert {size for size, _ in layouts} == {"compact"}
    else:  # the files' own times differ from the build time: 64-byte inodes
        assert "extended" in {size for size, _ in layouts}


@needs_mkfs
@pytest.mark.needs(root="devices, other owners and the trusted and security xattrs")
def test_devices_owners_and_every_xattr_prefix(tmp_path: Path) -> None:
    tree = alloy_tree(tmp_path / "tree", binary_size=4096)
    os.mknod(tree / "usr/local/bin/null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(tree / "usr/local/bin/disk", 0o644 | stat.S_IFBLK, os.makedev(259, 70000))
    os.mkfifo(tree / "usr/local/bin/pipe", 0o644)
    os.chown(tree / UNIT, 70000, 1234)  # an owner only an extended inode holds
    os.setxattr(tree / BINARY, "trusted.overlay.opaque", b"y")
    os.setxattr(tree / BINARY, "security.capability", struct.pack("<5I", 0x02000001, 1, 0, 0, 0))
    os.setxattr(tree / UNIT, "user.origin", b"elsewhere")
    for options in [("-zlz4hc", "-T0"), ("-zlz4hc", "-x1", "-T0")]:
        image = mkfs(tree, tmp_path / f"x{len(options)}.raw", *options)
        reader = ErofsReader(image)
        nodes = {node.path: node for node in reader.nodes()}
        assert nodes["usr/local/bin/null"].device == (1, 3)
        assert nodes["usr/local/bin/null"].mode == "crw-------"
        assert nodes["usr/local/bin/disk"].device == (259, 70000)
        assert nodes["usr/local/bin/disk"].kind == "block device"
        assert nodes["usr/local/bin/pipe"].kind == "FIFO"
        assert nodes[UNIT].owner == "70000/1234"
        assert reader.layout(nodes[UNIT])[0] == "extended"
        assert nodes[BINARY].xattrs == {
            "trusted.overlay.opaque": b"y",
            "security.capability": struct.pack("<5I", 0x02000001, 1, 0, 0, 0),
        }
        assert nodes[UNIT].xattrs == {"user.origin": b"elsewhere"}


# -- the reader on hostile images --------------------------------------------------------


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """Ours, with a symlink: small enough to garble hundreds of times."""
    tree = alloy_tree(tmp_path / "tree", binary_size=200_000)
    (tree / "usr/local/bin/y").symlink_to("alloy")
    need("mkfs.erofs")
    image = tmp_path / "image" / "alloy.raw"
    image.parent.mkdir()
    pack_erofs(tree, image, "lz4hc", IMAGE_ID)
    return image


def nids(image: Path) -> dict[str, int]:
    return {node.path: node.inode for node in ErofsReader(image).nodes()}


def position_of(image: Path, path: str) -> int:
    """Where the inode of `path` starts (metadata starts at block 0 in mkfs.erofs images)."""
    (meta_blkaddr,) = struct.unpack_from("<I", image.read_bytes(), SUPERBLOCK + 40)
    return meta_blkaddr * BLOCK + nids(image)[path] * erofs.INODE_SLOT


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not an image at all\n" * 100,
        bytes(1024) + erofs.MAGIC.to_bytes(4, "little") + bytes(200),
        bytes(BLOCK),
    ],
    ids=["empty", "text", "magic-only", "zeros"],
)
def test_the_reader_refuses_garbage(tmp_path: Path, data: bytes) -> None:
    image = tmp_path / "garbage.raw"
    image.write_bytes(data)
    with pytest.raises(BuildError, match=f"^{image} is not a valid EROFS image: "):
        ErofsReader(image)


def test_a_damaged_superblock_fails_its_checksum(image: Path) -> None:
    damaged = patched(image, SUPERBLOCK + 48, b"\xff", checksum=False)
    refused(damaged, "its superblock checksum does not match")


def test_a_truncated_image(image: Path) -> None:
    data = image.read_bytes()
    for size in (100, SUPERBLOCK + 64, BLOCK - 1, len(data) // 2, len(data) - 1):
        short = image.with_name("short.raw")
        short.write_bytes(data[:size])
        refused(short, "is not a valid EROFS image")


@pytest.mark.parametrize(
    ("offset", "data", "fragment"),
    [
        (SUPERBLOCK, b"\x00\x00\x00\x00", "no EROFS magic at byte 1024"),
        (SUPERBLOCK + 12, bytes([30]), "a block size of 2^30 bytes"),
        (SUPERBLOCK + 36, struct.pack("<I", 1 << 20), "truncated"),
        (SUPERBLOCK + 40, struct.pack("<I", 1 << 20), "runs past its end"),
        (SUPERBLOCK + 14, struct.pack("<H", 0xFFFF), "runs past its end"),
        (SUPERBLOCK + 80, struct.pack("<I", 1 << 30), "features this reader does not know"),
        (SUPERBLOCK + 86, struct.pack("<H", 2), "its data spans 2 more devices"),
    ],
    ids=["magic", "block-size", "blocks", "metadata", "root", "feature", "devices"],
)
def test_a_forged_superblock(image: Path, offset: int, data: bytes, fragment: str) -> None:
    refused(patched(image, offset, data), fragment)


def test_a_compressor_the_kernel_cannot_read(image: Path) -> None:
    """LZMA declared: Flatcar's kernels decompress only LZ4 in EROFS."""
    damaged = patched(image, SUPERBLOCK + 84, struct.pack("<H", 0b11))
    message = refused(damaged, "it is lzma-compressed, and verify reads lz4 EROFS images")
    assert message.endswith("repack it with mkfs.erofs -zlz4hc")


def test_a_directory_loop(image: Path) -> None:
    """usr/lib's entry in usr points back at the root."""
    found = nids(image)
    data = bytearray(image.read_bytes())
    old = struct.pack("<Q", found["usr/lib"])
    usr = position_of(image, "usr")
    at = data.index(old, usr + erofs.INODE_SLOT)
    data[at : at + 8] = struct.pack("<Q", found[""])
    fix_checksum(data)  # the checksum covers the rest of block 0, where the inodes start
    damaged = image.with_name("loop.raw")
    damaged.write_bytes(bytes(data))
    refused(damaged, "/usr/lib is a directory reached twice (a loop)")


def test_an_entry_pointing_past_the_image(image: Path) -> None:
    found = nids(image)
    data = bytearray(image.read_bytes())
    usr = position_of(image, "usr")
    at = data.index(struct.pack("<Q", found["usr/local"]), usr + erofs.INODE_SLOT)
    data[at : at + 8] = struct.pack("<Q", 1 << 40)
    fix_checksum(data)
    damaged = image.with_name("far.raw")
    damaged.write_bytes(bytes(data))
    refused(damaged, "its inode of /usr/local at byte", "runs past its end")


def test_huge_sizes_and_counts(image: Path) -> None:
    usr = position_of(image, "usr")
    refused(patched(image, usr + 8, struct.pack("<I", 0xFFFFFFFF)), "4294967295-byte listing")
    release = position_of(image, RELEASE)
    # Its inline tail would now run over the inodes after it.
    refused(patched(image, release + 8, struct.pack("<I", 0xFFFFFFFF)), "overlaps another inode")
    link = position_of(image, "usr/local/bin/y")
    refused(patched(image, link + 8, struct.pack("<I", 1 << 20)), "a 1048576-byte target")
    refused(patched(image, release + 2, struct.pack("<H", 0xFFFF)), "is not a valid EROFS image")


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    need("mkfs.erofs")
    tree = tmp_path / "tree"
    deep = tree.joinpath(*["d"] * 40)
    write(deep / "file", b"x")
    image = mkfs(tree, tmp_path / "deep.raw", "-T0")
    refused(image, f"directories nested deeper than {erofs.MAX_DEPTH}")


def test_too_many_entries_are_refused(image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(erofs, "MAX_ENTRIES", 5)
    refused(image, "more than 5 entries")


def test_special_entries_are_reported_like_squashfs(image: Path) -> None:
    nodes = {node.path: node for node in ErofsReader(image).nodes()}
    assert nodes["usr/local/bin/y"].kind == "symlink"
    assert nodes["usr/local/bin/y"].target == "alloy"
    assert nodes["usr/local/bin/y"].mode == "lrwxrwxrwx"
    assert [path for path, node in nodes.items() if node.kind == "file"] == [
        RELEASE,
        UNIT,
        BINARY,
    ]


def test_lz4_blocks_that_refer_outside_themselves() -> None:
    assert lz4_decompress(bytes([0x40]) + b"abcd", 100) == b"abcd"
    # "ab", then a 10-byte match 2 back: overlapping copies repeat it.
    assert lz4_decompress(bytes([0x26]) + b"ab" + b"\x02\x00", 100) == b"ab" * 6
    assert lz4_decompress(bytes([0x26]) + b"ab" + b"\x02\x00", 5) == b"ababa"
    huge_match = bytes([0x1F]) + b"a" + b"\x01\x00" + b"\xff" * 1000 + b"\x00"
    assert len(lz4_decompress(huge_match, 1 << 16)) == 1 << 16  # bounded by the limit
    for bad, why in [
        (bytes([0x10]) + b"a" + b"\x02\x00", "refers before its start"),
        (bytes([0x10]) + b"a" + b"\x00\x00", "refers before its start"),
        (bytes([0x50]) + b"ab", "literals run past its end"),
        (bytes([0x10]) + b"a" + b"\x01", "ends inside a match"),
        (bytes([0xF0]) + b"\xff\xff", "ends inside a length"),
    ]:
        with pytest.raises(erofs.Malformed, match=why):
            lz4_decompress(bad, 100)


def test_the_reader_survives_truncated_and_garbled_images(image: Path, tmp_path: Path) -> None:
    """Each damaged copy reads or fails with one BuildError naming it: never another exception,
    never a hang. The damage falls on the metadata (with the superblock checksum made right,
    else that check alone would refuse most) and anywhere else."""

    def spot(rng: random.Random, attempt: int, size: int) -> int:
        return rng.randrange(SUPERBLOCK, 2 * BLOCK) if attempt % 3 == 1 else rng.randrange(size)

    damaged = tmp_path / "damaged.raw"
    outcomes = {"refused": 0, "read": 0}
    for attempt, copy in garbled_copies(image.read_bytes(), 15, spot):
        if attempt % 3 and len(copy) >= BLOCK and attempt % 2:
            fix_checksum(copy)
        damaged.write_bytes(bytes(copy))
        try:
            first = read_everything(damaged)
            assert read_everything(damaged) == first  # and reads the same again
            outcomes["read"] += 1
        except BuildError as error:
            assert str(damaged) in str(error)
            assert "\n" not in str(error)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 100
    assert outcomes["read"] > 10


# -- verify on EROFS images --------------------------------------------------------------


@pytest.fixture
def built_tree(invoke: Invoke, tmp_path: Path) -> Path:
    """The tree of a real build (packed as squashfs today), to pack as EROFS."""
    need("mkfs.erofs", "mksquashfs", "unsquashfs")
    result = invoke("all", "--no-verify")
    assert result.returncode == 0, result.stderr
    return extract(tmp_path / "output" / f"alloy-{VERSION}-amd64.raw", tmp_path / "tree")


def verified(image: Path, compression: str = "lz4hc") -> dict[str, list[tuple[str, str]]]:
    """check name -> [(status, detail)], from build.verify.checks; raises BuildError on a FAIL."""
    checks = verify_image(image, Expectations(compression, names=[image.name], checksums=[]))
    found: dict[str, list[tuple[str, str]]] = {}
    for check in checks:
        found.setdefault(check.name, []).append((check.status, check.detail))
    return found


def test_verify_passes_an_erofs_build(built_tree: Path, tmp_path: Path) -> None:
    image = tmp_path / "erofs" / f"alloy-{VERSION}-amd64.raw"
    image.parent.mkdir()
    pack_erofs(built_tree, image, "lz4hc", IMAGE_ID)
    checks = verified(image)
    assert checks["superblock"] == [("ok", "EROFS, lz4 compression, 4096-byte blocks")]
    assert checks["entries"][0][0] == "ok"
    assert checks["extension-release"] == [("ok", f"{RELEASE}: ID=_any")]
    assert checks["name"][0][0] == "ok"
    assert checks["architecture"][0][0] == "ok"
    if merge.cannot_merge("x86-64") is None:
        assert [status for status, _ in checks["merge"]] == ["ok", "ok"]
        assert all(status == "ok" for status, _ in checks["systemd-analyze"])


def test_verify_reads_an_uncompressed_erofs_image_as_none(built_tree: Path, tmp_path: Path) -> None:
    image = tmp_path / "erofs" / f"alloy-{VERSION}-amd64.raw"
    image.parent.mkdir()
    pack_erofs(built_tree, image, "none", IMAGE_ID)
    assert verified(image, "none")["superblock"] == [
        ("ok", "EROFS, none compression, 4096-byte blocks")
    ]
    with pytest.raises(BuildError, match="superblock: EROFS, none compression, 4096-byte blocks; "):
        verified(image, "xz")  # a squashfs choice


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ("symlink", "/usr/local/bin/alloy-agent is a symlink to /usr/bin/sh"),
        ("xattr", f"/{UNIT} has the xattr user.origin"),
        ("extra", "/usr/bin/ls is an extra file, not part of an Alloy sysext"),
        ("no-strict", "without user.extension-release.strict=false"),
    ],
)
def test_verify_fails_a_doctored_erofs_image_as_it_fails_squashfs(
    built_tree: Path, tmp_path: Path, change: str, fragment: str
) -> None:
    if change == "symlink":
        (built_tree / "usr/local/bin/alloy-agent").symlink_to("/usr/bin/sh")
    elif change == "xattr":
        os.setxattr(built_tree / UNIT, "user.origin", b"elsewhere")
    elif change == "extra":
        write(built_tree / "usr/bin/ls", elf_binary(MACHINES["amd64"]), 0o755)
    else:
        os.removexattr(built_tree / RELEASE, STRICT_XATTR)
    image = tmp_path / "erofs" / f"alloy-{VERSION}-amd64.raw"
    image.parent.mkdir()
    pack_erofs(built_tree, image, "lz4hc", IMAGE_ID)
    with pytest.raises(BuildError, match="failed verification") as caught:
        verified(image)
    assert fragment in str(caught.value)


def test_chunk_based_files_are_refused_in_one_line(tmp_path: Path) -> None:
    need("mkfs.erofs")
    tree = alloy_tree(tmp_path / "tree", binary_size=3 * BLOCK)
    image = mkfs(tree, tmp_path / "chunks.raw", "-T0", f"--chunksize={BLOCK}")
    message = refused(image, "it uses the incompatible feature chunked_file, which verify does")
    assert message.startswith(f"cannot check {image}: it uses")


@pytest.mark.parametrize(
    ("advise", "fragment"),
    [
        (erofs.ADVISE_FRAGMENT_PCLUSTER, "is stored in fragments"),
        (erofs.ADVISE_INTERLACED_PCLUSTER, "is stored in fragments"),
    ],
    ids=["fragments", "interlaced"],
)
def test_features_mkfs_erofs_writes_only_with_fragments_are_refused(
    image: Path, advise: int, fragment: str
) -> None:
    reader = ErofsReader(image)
    binary = next(node for node in reader.nodes() if node.path == BINARY)
    header = -(-reader._inodes[binary.inode].end // 8) * 8  # the binary's compression map
    (old,) = struct.unpack_from("<H", image.read_bytes(), header + 4)
    damaged = patched(image, header + 4, struct.pack("<H", old | advise))
    refused(damaged, f"cannot check {damaged}: /{BINARY} {fragment}")
