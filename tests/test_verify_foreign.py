"""invoke verify --image on images made elsewhere: mksquashfs's defaults as sysext-bakery packs
(gzip, 128 KiB blocks), zstd, lz4, any block size and BCJ filter, and EROFS with or without
LZ4 pass, each with what it uses said; lzo and lzma are refused in one line; --expect-format
and --expect-compression pin them; and the new decoders stay bounded on hostile blocks."""

from __future__ import annotations

import random
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from build.config import options
from build.core.errors import BuildError
from build.pipeline.verifybuilt import refuse_expect_without_image
from build.read import squashfs
from build.read.squashfs import SquashfsReader
from build.verify.checks import Expectations, static_checks
from build.verify.checks import verify as verify_image
from tests import verifying
from tests.conftest import REPO, Invoke
from tests.mutants.squashfs import BINARY, Layout, alloy_tree
from tests.mutants.squashfs import pack as pack_uncompressed
from tests.verifying import fails_because, verify

pytestmark = pytest.mark.needs("mksquashfs", "unsquashfs")

tree = verifying.tree  # the built image unpacked (a fixture): every file an Alloy sysext holds

GZIP_DEFAULTS = "squashfs, gzip compression, no BCJ filter, 131072-byte blocks"


def bakery(tree: Path, image: Path, *args: str) -> Path:
    """`tree` packed as sysext-bakery packs: mksquashfs DIR IMG -all-root, and `args`."""
    image.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mksquashfs", str(tree), str(image), "-all-root", "-noappend", "-no-progress", *args],
        check=True,
        capture_output=True,
    )
    return image


def passed(result: subprocess.CompletedProcess, superblock: str) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    assert f" ok   superblock: {superblock}\n" in result.stdout, result.stdout
    assert " FAIL " not in result.stdout


def one_line(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ") and all(f in line for f in fragments), line
    return line


# -- images sysext-bakery makes pass, and say what they use ----------------------------------


@pytest.mark.parametrize(
    ("args", "superblock"),
    [
        ((), GZIP_DEFAULTS),
        (("-comp", "zstd"), "squashfs, zstd compression, no BCJ filter, 131072-byte blocks"),
        (("-comp", "lz4"), "squashfs, lz4 compression, no BCJ filter, 131072-byte blocks"),
    ],
    ids=["gzip-defaults", "zstd", "lz4"],
)
def test_a_bakery_image_passes_verify_image(
    invoke: Invoke, tree: Path, tmp_path: Path, args: tuple[str, ...], superblock: str
) -> None:
    image = bakery(tree, tmp_path / "bakery" / "alloy.raw", *args)
    passed(verify(invoke, image), superblock)


@pytest.mark.parametrize(
    ("args", "superblock"),
    [
        (("-comp", "lz4", "-Xhc", "-b", "4K"), "lz4 compression, no BCJ filter, 4096-byte blocks"),
        (("-comp", "gzip", "-b", "1M"), "gzip compression, no BCJ filter, 1048576-byte blocks"),
        (("-comp", "xz", "-b", "64K"), "xz compression, no BCJ filter, 65536-byte blocks"),
        (("-comp", "xz", "-Xbcj", "x86"), "xz compression, BCJ filter x86, 131072-byte blocks"),
        (("-comp", "xz", "-Xbcj", "arm"), "xz compression, BCJ filter arm, 131072-byte blocks"),
        (("-comp", "zstd", "-b", "8K"), "zstd compression, no BCJ filter, 8192-byte blocks"),
    ],
    ids=["lz4hc-4k", "gzip-1m", "xz-64k", "xz-bcj-x86", "xz-bcj-arm", "zstd-8k"],
)
def test_any_block_size_and_filter_a_host_mounts_passes(
    tree: Path, tmp_path: Path, args: tuple[str, ...], superblock: str
) -> None:
    image = bakery(tree, tmp_path / "alloy.raw", *args)
    expect = Expectations(compression=None, names=[image.name], checksums=[])
    checks = {check.name: check for check in static_checks(image, expect)}
    assert (checks["superblock"].status, checks["superblock"].detail) == (
        "ok",
        f"squashfs, {superblock}",
    )
    assert [c.name for c in checks.values() if c.status != "ok"] == []


def test_the_build_s_own_check_still_insists_on_its_recipe(tree: Path, tmp_path: Path) -> None:
    """`invoke verify` after `invoke all` (and release's static checks) hold an image to what
    --compression packs: a gzip image is no xz build output."""
    image = bakery(tree, tmp_path / "alloy.raw")
    with pytest.raises(BuildError, match="superblock: gzip compression, no BCJ filter, 131072"):
        verify_image(image, Expectations(compression="xz", names=[image.name], checksums=[]))


@pytest.mark.needs("mkfs.erofs")
@pytest.mark.parametrize(
    ("args", "superblock", "pin", "pinned"),
    [
        (
            (),
            "EROFS, none compression, 4096-byte blocks",
            "lz4",  # the files LZ4 would not store smaller are stored as they are
            " ok   superblock: EROFS, none compression, 4096-byte blocks (nothing stored "
            "smaller lz4-compressed)",
        ),
        (
            ("-zlz4hc",),
            "EROFS, lz4 compression",
            "none",
            " FAIL superblock: EROFS, lz4 compression, 4096-byte blocks; expected none "
            "compression (--expect-compression)",
        ),
    ],
    ids=["uncompressed", "lz4hc"],
)
def test_an_erofs_image_made_elsewhere_passes(
    invoke: Invoke,
    tree: Path,
    tmp_path: Path,
    args: tuple[str, ...],
    superblock: str,
    pin: str,
    pinned: str,
) -> None:
    image = tmp_path / "erofs" / "alloy.raw"
    image.parent.mkdir()
    subprocess.run(
        ["mkfs.erofs", *args, "--all-root", "--quiet", str(image), str(tree)],
        check=True,
        capture_output=True,
    )
    result = verify(invoke, image)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f" ok   superblock: {superblock}" in result.stdout, result.stdout
    # --expect-compression pins it.
    result = verify(invoke, image, f"--expect-compression={pin}")
    if " FAIL " in pinned:
        fails_because(result, "superblock", pinned.split("superblock: ")[1])
    else:
        assert result.returncode == 0, result.stdout + result.stderr
    assert f"verify  {pinned}" in result.stdout.splitlines(), result.stdout


# -- uncompressed squashfs: judged by each block's bit, as the kernel reads it -----------------

STORED = ("-comp", "xz", "-noI", "-noD", "-noF", "-noX")
STORED_FLAGS = 0x1 | 0x2 | 0x8 | 0x100  # mksquashfs's -noI, -noD, -noF, -noX in the superblock
UNCOMPRESSED_XZ = (
    "squashfs, none compression (xz named for the mount), no BCJ filter, 131072-byte blocks"
)


def with_flags(image: Path, change: int) -> Path:
    """`image` with its superblock's flags XORed with `change`: the blocks' bits untouched."""
    data = bytearray(image.read_bytes())
    (flags,) = struct.unpack_from("<H", data, 24)
    struct.pack_into("<H", data, 24, flags ^ change)
    image.write_bytes(bytes(data))
    return image


def test_an_uncompressed_squashfs_is_none_and_only_none(
    invoke: Invoke, tree: Path, tmp_path: Path
) -> None:
    image = bakery(tree, tmp_path / "stored" / "alloy.raw", *STORED)
    passed(verify(invoke, image, "--expect-compression=none"), UNCOMPRESSED_XZ)
    fails_because(
        verify(invoke, image, "--expect-compression=xz"),
        "superblock",
        f"{UNCOMPRESSED_XZ}; expected xz compression (--expect-compression)",
    )
    packed = bakery(tree, tmp_path / "xz" / "alloy.raw", "-comp", "xz")
    fails_because(
        verify(invoke, packed, "--expect-compression=none"),
        "superblock",
        "squashfs, xz compression, no BCJ filter, 131072-byte blocks; expected none compression",
    )


def test_flags_claiming_uncompressed_over_compressed_blocks_do_not_make_it_none(
    invoke: Invoke, tree: Path, tmp_path: Path
) -> None:
    """The kernel reads each block by its own bit (the flags are only printed, under TRACE):
    so does the reader, and the kernel view agrees; but the image is xz-compressed."""
    image = with_flags(bakery(tree, tmp_path / "lying" / "alloy.raw", "-comp", "xz"), STORED_FLAGS)
    blocks = SquashfsReader(image)
    blocks.nodes()
    held = blocks.compressed_blocks
    assert held > 0
    detail = (
        f"squashfs, xz compression ({held} blocks compressed though the flags say inodes, "
        "data, fragments, xattrs stored uncompressed), no BCJ filter, 131072-byte blocks"
    )
    passed(verify(invoke, image), detail)
    fails_because(
        verify(invoke, image, "--expect-compression=none"),
        "superblock",
        f"{detail}; expected none compression (--expect-compression)",
    )


def test_stored_blocks_under_flags_that_say_compressed_are_none_to_the_kernel(
    invoke: Invoke, tree: Path, tmp_path: Path
) -> None:
    image = with_flags(bakery(tree, tmp_path / "quiet" / "alloy.raw", *STORED), STORED_FLAGS)
    result = verify(invoke, image, "--expect-compression=none")
    passed(
        result,
        "squashfs, xz compression, no BCJ filter, 131072-byte blocks (no block stored compressed)",
    )


# -- what verify --image refuses -----------------------------------------------------------


def test_lzo_is_refused_in_one_line(invoke: Invoke, tree: Path, tmp_path: Path) -> None:
    image = bakery(tree, tmp_path / "bad" / "alloy.raw", "-comp", "lzo")
    result = verify(invoke, image)
    line = one_line(result, f"cannot check {image}: it is lzo-compressed", "repack it with")
    assert "-comp zstd" in line and len(line) < 400
    assert "superblock" not in result.stdout  # stopped before any check


# Run the CLI with the system's liblz4 missing (or older than 1.9): squashfs lz4 cannot be read.
WITHOUT_LIBLZ4 = """
import sys
sys.path.insert(0, {repo!r})
from build.read import lz4native
lz4native.available = lambda: False
from invoke.main import program
program.run(["invoke", *sys.argv[1:]])
"""


def test_squashfs_lz4_without_liblz4_is_refused_in_one_line(
    cli_env: dict[str, str], tree: Path, tmp_path: Path
) -> None:
    image = bakery(tree, tmp_path / "bakery" / "alloy.raw", "-comp", "lz4")
    before = sorted(tmp_path.rglob("*"))
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            WITHOUT_LIBLZ4.format(repo=str(REPO)),
            *("--search-root", str(REPO), "verify", f"--image={image}"),
        ],
        cwd=tmp_path,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    one_line(
        result,
        f"cannot check {image}: it is lz4-compressed, and reading it needs liblz4 1.9 or newer",
        "install liblz4-1",
    )
    assert result.stdout == ""
    assert sorted(tmp_path.rglob("*")) == before


def test_lzma_is_refused_as_no_kernel_mounts_it(tree: Path, tmp_path: Path) -> None:
    image = bakery(tree, tmp_path / "alloy.raw", "-comp", "lzma")
    with pytest.raises(BuildError, match="lzma-compressed: no Linux kernel mounts squashfs lzma"):
        SquashfsReader(image)


# -- pins ------------------------------------------------------------------------------------


def test_expect_compression_and_format_pin_the_image(
    invoke: Invoke, tree: Path, tmp_path: Path
) -> None:
    image = bakery(tree, tmp_path / "bakery" / "alloy.raw")
    fails_because(
        verify(invoke, image, "--expect-compression=zstd"),
        "superblock",
        f"{GZIP_DEFAULTS}; expected zstd compression (--expect-compression)",
    )
    fails_because(
        verify(invoke, image, "--expect-format=erofs"),
        "superblock",
        f"{GZIP_DEFAULTS}; expected erofs (--expect-format)",
    )
    pinned = verify(invoke, image, "--expect-compression=gzip", "--expect-format=squashfs")
    passed(pinned, GZIP_DEFAULTS)


def test_only_a_compression_on_the_command_line_holds_it_to_this_tool_s_recipe(
    invoke: Invoke, tree: Path, tmp_path: Path
) -> None:
    """invoke.yaml's compression is for builds: it does not pin an image from elsewhere."""
    image = bakery(tree, tmp_path / "bakery" / "alloy.raw", "-comp", "zstd")
    config = tmp_path / "invoke.yaml"
    config.write_text("compression: xz\n")
    zstd = "squashfs, zstd compression, no BCJ filter, 131072-byte blocks"
    passed(invoke("-f", str(config), "verify", f"--image={image}"), zstd)
    fails_because(
        verify(invoke, image, "--compression=zstd"),
        "superblock",
        "zstd compression, no BCJ filter, 131072-byte blocks; "
        "expected zstd compression, no BCJ filter, 1048576-byte blocks",
    )


def test_expect_compression_xz_bcj_wants_the_binary_s_filter(tree: Path, tmp_path: Path) -> None:
    plain = bakery(tree, tmp_path / "plain" / "alloy.raw", "-comp", "xz")
    filtered = bakery(tree, tmp_path / "x86" / "alloy.raw", "-comp", "xz", "-Xbcj", "x86")

    def superblock(image: Path, expected: str) -> tuple[str, str]:
        expect = Expectations(None, [image.name], [], expect_compression=expected)
        [check] = [c for c in static_checks(image, expect) if c.name == "superblock"]
        return check.status, check.detail

    assert superblock(plain, "xz")[0] == superblock(filtered, "xz")[0] == "ok"
    assert superblock(filtered, "xz-bcj")[0] == "ok"
    status, detail = superblock(plain, "xz-bcj")
    assert status == "FAIL" and detail.endswith(
        "expected xz-bcj (BCJ filter x86: --expect-compression)"
    )


def test_a_compression_of_another_format_than_expected_is_one_line(
    invoke: Invoke, tree: Path, tmp_path: Path
) -> None:
    image = bakery(tree, tmp_path / "bakery" / "alloy.raw")
    result = verify(invoke, image, "--expect-format=squashfs", "--expect-compression=lz4hc")
    one_line(result, "unknown compression 'lz4hc' for --expect-format=squashfs", "gzip, xz, zstd")
    assert result.stdout == ""


@pytest.mark.parametrize("flag", ["--expect-format=erofs", "--expect-compression=gzip"])
def test_expect_flags_without_image_are_refused(invoke: Invoke, tmp_path: Path, flag: str) -> None:
    result = invoke("verify", flag)
    one_line(result, f"{flag.split('=')[0]} is for verify --image", "give --image=PATH")
    assert not (tmp_path / "output").exists()


def test_the_expect_flags_refusal_is_the_pipeline_s() -> None:
    """tasks.py only wires it: the rule lives beside the verify of built images."""
    values = options.resolve("verify", {"expect_format": "erofs"})
    with pytest.raises(BuildError, match="--expect-format is for verify --image"):
        refuse_expect_without_image(values)
    refuse_expect_without_image(options.resolve("verify", {}))


# -- hostile blocks: the new decoders are bounded as xz's is ---------------------------------


def _tree_with_blocks(tmp_path: Path) -> Path:
    return alloy_tree(tmp_path / "tree", binary_size=18_000)  # four 4 KiB blocks and a tail


def _with_block0(image: Path, stored: bytes) -> Path:
    """`image` (packed uncompressed, -noI -noD -noF -noX) with the binary's first data block
    replaced by `stored`, marked compressed: a block as the compressor wrote it."""
    layout = Layout(image.read_bytes())
    word = layout.get(BINARY, "block0")
    assert word & squashfs.DATA_UNCOMPRESSED and len(stored) == word & 0xFFFFFF
    start = layout.get(BINARY, "start")
    layout.data[start : start + len(stored)] = stored
    layout.set(BINARY, "block0", len(stored))
    image.write_bytes(bytes(layout.data))
    return image


def _read_binary(image: Path) -> SquashfsReader:
    reader = SquashfsReader(image)
    node = {node.path: node for node in reader.nodes()}[BINARY]
    reader.sha256(node, 1 << 30)
    return reader


def _gzip_bomb(size: int) -> bytes:
    """A zlib stream of exactly `size` bytes that inflates to 2 * `size` and more."""
    for random_bytes in range(size - 200, size):
        stream = zlib.compress(
            random.Random(random_bytes).randbytes(random_bytes) + bytes(size * 2)
        )
        if len(stream) == size:
            return stream
    raise AssertionError("no zlib stream of that size")


def _zstd_frame(stated: int, raw: bytes, repeat: int) -> bytes:
    """A zstd frame stating `stated` bytes: a raw block of `raw`, then an RLE block repeating
    one byte `repeat` times."""
    header = b"\x28\xb5\x2f\xfd" + bytes([0x60]) + struct.pack("<H", stated - 256)
    raw_block = struct.pack("<I", len(raw) << 3)[:3] + raw
    rle_block = struct.pack("<I", repeat << 3 | 1 << 1 | 1)[:3] + b"\0"
    return header + raw_block + rle_block


def _lz4_bomb(size: int) -> bytes:
    """One LZ4 block of exactly `size` bytes that decodes to over twice as many."""
    literals = size - 45
    assert 15 + 255 * 15 < literals < 15 + 255 * 16
    lengths = bytes([255] * 15 + [literals - 15 - 255 * 15])
    match = 4981  # +15 +4: a 5000-byte run of the last literal
    first = bytes([0xFF]) + lengths + random.Random(0).randbytes(literals)
    first += b"\x01\x00" + bytes([255] * 19 + [match - 255 * 19])
    block = first + bytes([5 << 4]) + b"tail!"
    assert len(block) == size
    return block


@pytest.mark.parametrize(
    ("comp", "stored", "refusal"),
    [
        ("gzip", _gzip_bomb(4096), "a gzip block decompresses to more than 4096 bytes"),
        ("zstd", _zstd_frame(12_000, b"x" * 4082, 7918), "states 12000 bytes, more than 4096"),
        # It states what fits, and holds more: libzstd stops at the stated size.
        ("zstd", _zstd_frame(4096, b"x" * 4082, 1 << 17), "a zstd block does not decompress"),
        ("lz4", _lz4_bomb(4096), "an lz4 block is malformed or decompresses to more than 4096"),
    ],
    ids=["gzip", "zstd-stated", "zstd-lying", "lz4"],
)
def test_a_block_that_decompresses_past_its_limit_is_refused(
    tmp_path: Path, comp: str, stored: bytes, refusal: str
) -> None:
    base = pack_uncompressed(_tree_with_blocks(tmp_path), tmp_path / "x.raw", 4096, "-comp", comp)
    image = _with_block0(base, stored)
    with pytest.raises(BuildError) as caught:
        _read_binary(image)
    message = str(caught.value)
    assert message.startswith(f"{image} is not a valid squashfs image: ") and refusal in message
    assert "\n" not in message and len(message) < 400


def test_the_lz4_options_the_kernel_needs(tmp_path: Path) -> None:
    base = pack_uncompressed(_tree_with_blocks(tmp_path), tmp_path / "x.raw", 4096, "-comp", "lz4")
    data = bytearray(base.read_bytes())
    # The options block: a 2-byte header (stored, 8 bytes), version 1 (LZ4_LEGACY), flags.
    assert data[96:106] == struct.pack("<HII", 0x8008, 1, 0)
    assert _read_binary(base)
    struct.pack_into("<I", data, 98, 2)
    versioned = tmp_path / "v2.raw"
    versioned.write_bytes(bytes(data))
    with pytest.raises(BuildError, match="its lz4 options say version 2, not 1"):
        SquashfsReader(versioned)
    (flags,) = struct.unpack_from("<H", data, 24)
    struct.pack_into("<H", data, 24, flags & ~squashfs.COMP_OPT_FLAG)
    bare = tmp_path / "bare.raw"
    bare.write_bytes(bytes(data))
    with pytest.raises(BuildError, match="lz4-compressed without its lz4 options"):
        SquashfsReader(bare)


@pytest.mark.parametrize(
    ("block_size", "block_log"), [(2 << 20, 21), (2048, 11), (4096, 13), (12288, 13)]
)
def test_a_block_size_the_kernel_refuses(tmp_path: Path, block_size: int, block_log: int) -> None:
    base = pack_uncompressed(_tree_with_blocks(tmp_path), tmp_path / "x.raw", 4096)
    data = bytearray(base.read_bytes())
    struct.pack_into("<I", data, 12, block_size)
    struct.pack_into("<H", data, 22, block_log)
    bad = tmp_path / "bad.raw"
    bad.write_bytes(bytes(data))
    with pytest.raises(BuildError, match=f"block size {block_size} \\(log {block_log}\\)"):
        SquashfsReader(bad)


@pytest.mark.parametrize(
    "dropped", ["usr/lib/sysusers.d/alloy.conf", "usr/lib/systemd/system/alloy-user.service"]
)
def test_an_option_s_files_come_together_or_not_at_all(
    invoke: Invoke, tree: Path, tmp_path: Path, dropped: str
) -> None:
    """verify --image takes an image with or without --run-as=alloy's files, not with some of
    them: its user unit runs the sysusers.d and tmpfiles.d files, which must be there."""
    (tree / dropped).unlink()
    image = bakery(tree, tmp_path / "bakery" / "alloy.raw")
    fails_because(
        verify(invoke, image), "entries", f"/{dropped}", "(--run-as=alloy ships them together)"
    )


@pytest.mark.parametrize("field", ["EXTENSION_RESTART_UNITS", "EXTENSION_RELOAD_OR_RESTART_UNITS"])
def test_an_extension_release_that_restarts_alloy_itself_is_refused(
    invoke: Invoke, tree: Path, tmp_path: Path, field: str
) -> None:
    """systemd 262 starts a unit named there at every merge; alloy.service at boot waits for
    sysinit.target, which waits for the merge: a host booting such an image hangs."""
    release = tree / "usr/lib/extension-release.d/extension-release.alloy"
    text = release.read_text()
    release.write_text(text + f'{field}="other.service alloy.service"\n')
    image = bakery(tree, tmp_path / "bakery" / "alloy.raw")
    fails_because(
        verify(invoke, image), "extension-release", f"{field}= names alloy.service", "hangs"
    )
