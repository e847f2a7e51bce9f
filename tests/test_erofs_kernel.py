"""The EROFS reader reads what the kernel reads, or refuses (issue 20): directories the kernel's
binary search reads otherwise than a listing walk, feature bits and xattrs it does not model,
inodes that overlap; and every read is bounded: work counters, one deadline, a size limit."""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

import pytest

from build.core.errors import BuildError
from build.formats.erofs import pack_erofs
from build.read import erofs
from build.read.erofs import ErofsReader
from build.read.image import ErofsImage
from build.verify.kernelview import kernel_view
from tests.erofs_craft import lookback_chain_image
from tests.erofs_images import (
    BINARY,
    BLOCK,
    IMAGE_ID,
    RELEASE,
    STRICT_XATTR,
    SUPERBLOCK,
    alloy_tree,
    fix_checksum,
    mkfs,
    nids,
    patched,
    position_of,
    read_everything,
    refused,
)
from tests.fakes import MACHINES, elf_binary
from tests.needs import need
from tests.trees import write

BIN = "usr/local/bin"
CAPABILITY = struct.pack("<5I", 0x02000001, 1 << 21, 0, 0, 0)  # cap_sys_admin


@pytest.fixture
def evil(tmp_path: Path) -> Path:
    """Ours, plus usr/local/bin/evil: setuid root with cap_sys_admin, for directories that
    name it otherwise."""
    need("mkfs.erofs", root="to set security.capability")
    tree = alloy_tree(tmp_path / "tree", binary_size=20_000)
    write(tree / BIN / "evil", elf_binary(MACHINES["amd64"], size=20_000), 0o4755)
    os.setxattr(tree / BIN / "evil", "security.capability", CAPABILITY)
    image = tmp_path / "image" / "alloy.raw"
    image.parent.mkdir()
    pack_erofs(tree, image, "lz4hc", IMAGE_ID)
    return image


def with_listing(image: Path, directory: str, entries: list[tuple[bytes, int, int]],
                 size: int | None = None, tail: bytes = b"") -> Path:  # fmt: skip
    """A copy of `image` whose `directory` lists `entries` (stored name, nid, type) in that
    order, from a block of its own at the image's end (a plain layout), `size` bytes long
    (all of them by default) with `tail` stored after the names."""
    data = bytearray(image.read_bytes())
    names = b""
    dirents = bytearray()
    for name, nid, kind in entries:
        dirents += struct.pack("<QHBB", nid, 12 * len(entries) + len(names), kind, 0)
        names += name
    listing = bytes(dirents) + names
    block_number = len(data) // BLOCK
    data += (listing + tail).ljust(BLOCK, b"\0")
    at = position_of(image, directory)
    (i_format,) = struct.unpack_from("<H", data, at)
    assert not i_format & 1, "a compact inode"
    struct.pack_into("<H", data, at, (i_format & 1) | erofs.FLAT_PLAIN << 1)
    struct.pack_into("<I", data, at + 8, len(listing) if size is None else size)
    struct.pack_into("<I", data, at + 16, block_number)
    struct.pack_into("<I", data, SUPERBLOCK + 36, len(data) // BLOCK)
    fix_checksum(data)
    out = image.with_name("listing.raw")
    out.write_bytes(bytes(data))
    return out


def bin_entries(image: Path) -> dict[str, int]:
    found = nids(image)
    return {
        ".": found[BIN],
        "..": found["usr/local"],
        "alloy": found[f"{BIN}/alloy"],
        "evil": found[f"{BIN}/evil"],
    }


# -- directories as erofs_namei reads them -----------------------------------------------


def unsorted_alloy(evil: Path) -> Path:
    """`evil` with /usr/local/bin listed out of order: a listing walk finds the honest alloy,
    the kernel's binary search the setuid one."""
    nid = bin_entries(evil)
    return with_listing(
        evil,
        BIN,
        [(b".", nid["."], 2), (b"alloy", nid["alloy"], 1), (b"..", nid[".."], 2),
         (b"allo", nid["evil"], 1)],
        tail=b"y",
    )  # fmt: skip


def test_a_listing_the_binary_search_reads_as_setuid_alloy_is_refused(evil: Path) -> None:
    """readdir and a listing walk see ".", "alloy", "..", "allo"; the kernel's binary search
    for "alloy" looks at ".." then at the last entry, whose name lookup reads on past the
    listing's end ("alloy"): usr/local/bin/alloy is the setuid one with cap_sys_admin (see
    kernel_view below). Today's reader took the honest one."""
    crafted = unsorted_alloy(evil)
    refused(crafted, f"/{BIN} lists b'..' after b'alloy': not sorted")


@pytest.mark.needs("unshare", "mount", root="mounting the image in a private namespace")
def test_the_kernel_sees_the_setuid_alloy_today_s_reader_missed(evil: Path) -> None:
    """The control for the test above: the kernel's lookup of usr/local/bin/alloy in that
    image finds the setuid inode with cap_sys_admin, where a listing walk finds the honest
    one (what today's reader reported) and an "allo"."""
    crafted = unsorted_alloy(evil)
    view = kernel_view(crafted, "erofs", [f"{BIN}/alloy"], 1 << 20)
    alloy = view.looked_up[f"{BIN}/alloy"]
    assert alloy.permissions == 0o4755
    assert alloy.xattrs == {"security.capability": CAPABILITY}
    assert {f"{BIN}/alloy", f"{BIN}/allo"} <= set(view.listed)


def test_an_unsorted_listing_is_refused(evil: Path) -> None:
    """The binary search for "alloy" stops at "zz" and finds nothing: the kernel has no alloy
    where the listing has one."""
    nid = bin_entries(evil)
    entries = [(b".", nid["."], 2), (b"..", nid[".."], 2), (b"zz", nid["evil"], 1),
               (b"alloy", nid["alloy"], 1)]  # fmt: skip
    refused(with_listing(evil, BIN, entries), f"/{BIN} lists b'alloy' after b'zz': not sorted")


def test_a_name_twice_is_refused(evil: Path) -> None:
    nid = bin_entries(evil)
    entries = [(b".", nid["."], 2), (b"..", nid[".."], 2), (b"alloy", nid["alloy"], 1),
               (b"alloy", nid["evil"], 1)]  # fmt: skip
    refused(with_listing(evil, BIN, entries), f"/{BIN} lists b'alloy' twice")


def test_a_last_name_that_lookup_reads_on_is_refused(evil: Path) -> None:
    """readdir ends the last name at the listing's size; lookup reads to a NUL in the block:
    "alloy" is listed and cannot be looked up."""
    nid = bin_entries(evil)
    entries = [(b".", nid["."], 2), (b"..", nid[".."], 2), (b"alloy", nid["alloy"], 1)]
    refused(with_listing(evil, BIN, entries, tail=b"-evil"), "a last name that runs on past")


@pytest.mark.parametrize(
    ("dots", "fragment"),
    [
        ([b".."], "lacks its . or .. entry"),
        ([b"."], "lacks its . or .. entry"),
        ([b".", b"..", b".."], "lists b'..' twice"),
    ],
    ids=["no-dot", "no-dotdot", "dotdot-twice"],
)
def test_dot_entries_are_the_directory_and_its_parent(
    evil: Path, dots: list[bytes], fragment: str
) -> None:
    nid = bin_entries(evil)
    entries = [(name, nid[name.decode()], 2) for name in dots]
    entries.append((b"alloy", nid["alloy"], 1))
    refused(with_listing(evil, BIN, entries), fragment)


def test_a_dot_entry_of_another_type_is_refused(evil: Path) -> None:
    nid = bin_entries(evil)
    entries = [(b".", nid["."], 1), (b"..", nid[".."], 2), (b"alloy", nid["alloy"], 1)]
    refused(with_listing(evil, BIN, entries), f"/{BIN}'s . is not its own")


def test_an_inode_inside_another_is_refused(tmp_path: Path) -> None:
    """A file whose inline tail holds the bytes of a setuid inode, and an entry naming that
    inode: two nids, one set of bytes."""
    need("mkfs.erofs")
    tree = alloy_tree(tmp_path / "tree", binary_size=20_000)
    # A compact inode: regular, 04755, one link, empty.
    hidden = struct.pack("<HHHHIIIIHHI", 0, 0, 0o104755, 1, 0, 0, 0, 0, 0, 0, 0)
    write(tree / BIN / "carrier", hidden + b"x" * 40)
    image = tmp_path / "image" / "alloy.raw"
    image.parent.mkdir()
    pack_erofs(tree, image, "none", IMAGE_ID)
    found = nids(image)
    entries = [(b".", found[BIN], 2), (b"..", found["usr/local"], 2),
               (b"alloy", found[f"{BIN}/alloy"], 1), (b"carrier", found[f"{BIN}/carrier"], 1),
               (b"hidden", found[f"{BIN}/carrier"] + 1, 1)]  # fmt: skip
    crafted = with_listing(image, BIN, entries)
    refused(crafted, f"the inode of /{BIN}/", "overlaps another inode")


# -- superblock feature bits --------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "bit", "fragment"),
    [
        (SUPERBLOCK + 8, 0x4, "the compatible feature xattr_filter"),
        (SUPERBLOCK + 8, 0x10, "the compatible feature 0x10"),
        (SUPERBLOCK + 80, 0x8, "the incompatible feature device_table/compr_head2"),
        (SUPERBLOCK + 80, 0x20, "the incompatible feature fragments/dedupe"),
        (SUPERBLOCK + 80, 0x40, "the incompatible feature xattr_prefixes"),
    ],
    ids=["xattr-filter", "compat-unknown", "device-table", "fragments", "xattr-prefixes"],
)
def test_feature_bits_the_reader_does_not_model_are_refused(
    evil: Path, offset: int, bit: int, fragment: str
) -> None:
    (old,) = struct.unpack_from("<I", evil.read_bytes(), offset)
    message = refused(patched(evil, offset, struct.pack("<I", old | bit)), fragment)
    assert message.startswith("cannot check ")


def test_a_name_filter_cannot_hide_the_strict_xattr(evil: Path) -> None:
    """With xattr_filter, a set bit in an inode's h_name_filter makes the kernel's getxattr
    skip that name: systemd would not see user.extension-release.strict."""
    data = bytearray(patched(evil, SUPERBLOCK + 8, b"").read_bytes())
    (compat,) = struct.unpack_from("<I", data, SUPERBLOCK + 8)
    struct.pack_into("<I", data, SUPERBLOCK + 8, compat | 0x4)
    release = position_of(evil, RELEASE)
    struct.pack_into("<I", data, release + erofs.INODE_SLOT, 0xFFFFFFFF)  # h_name_filter
    fix_checksum(data)
    crafted = evil.with_name("filtered.raw")
    crafted.write_bytes(bytes(data))
    refused(crafted, "xattr_filter")


# -- xattrs, symlinks -----------------------------------------------------------------------


def xattr_entry_at(image: Path, path: str) -> int:
    """Where the first inline xattr entry of `path` (a compact inode, no shared ones) is."""
    at = position_of(image, path) + erofs.INODE_SLOT
    assert image.read_bytes()[at + 4] == 0, "no shared xattrs"
    return at + 12


def test_an_xattr_area_of_just_its_header_is_refused(evil: Path) -> None:
    release = position_of(evil, RELEASE)
    refused(patched(evil, release + 2, struct.pack("<H", 1)), "an xattr area of just its header")


def test_an_xattr_name_with_a_nul_is_refused(evil: Path) -> None:
    """listxattr shows "user.extension" and "release.strict"; the reader showed one name."""
    at = xattr_entry_at(evil, RELEASE) + 4 + len("extension")
    refused(patched(evil, at, b"\0"), "has an xattr named 'user.'")


def test_an_acl_with_a_suffix_is_refused(evil: Path) -> None:
    at = xattr_entry_at(evil, RELEASE)
    refused(patched(evil, at + 1, b"\x02"), "has an xattr named 'system.posix_acl_access'")


def test_a_symlink_target_with_a_nul_is_refused(tmp_path: Path) -> None:
    """readlink ends the target at its NUL: the kernel shows "/us", the reader showed more."""
    need("mkfs.erofs")
    tree = alloy_tree(tmp_path / "tree", binary_size=20_000)
    (tree / BIN / "link").symlink_to("/usr/bin/true")
    image = tmp_path / "image" / "alloy.raw"
    image.parent.mkdir()
    pack_erofs(tree, image, "lz4hc", IMAGE_ID)
    at = image.read_bytes().index(b"/usr/bin/true")
    refused(patched(image, at + 3, b"\0"), "is a symlink to b'/us\\x00/bin/true'")


# -- compressed files -----------------------------------------------------------------------


def map_header_at(image: Path, path: str) -> int:
    reader = ErofsReader(image)
    node = next(node for node in reader.nodes() if node.path == path)
    return -(-reader._inodes[node.inode].end // 8) * 8


def test_big_pcluster_bits_that_differ_on_compact_indexes_are_refused(evil: Path) -> None:
    header = map_header_at(evil, BINARY)
    (advise,) = struct.unpack_from("<H", evil.read_bytes(), header + 4)
    assert advise & erofs.ADVISE_BIG_PCLUSTER_2
    damaged = patched(evil, header + 4, struct.pack("<H", advise & ~erofs.ADVISE_BIG_PCLUSTER_2))
    refused(damaged, "compact indexes with one big-pcluster kind of two")


def test_cluster_bits_later_kernels_read_are_refused(evil: Path) -> None:
    header = map_header_at(evil, BINARY)
    refused(patched(evil, header + 7, b"\x08"), "has cluster bits 0x8")


def test_two_files_sharing_a_pcluster_are_refused(evil: Path) -> None:
    """The kernel keeps one pcluster per start block for the mount: evil's first extent named
    at alloy's blocks, with its own length and type, changes what alloy reads as, depending on
    which file is read first (found by the differential suite)."""
    reader = ErofsReader(evil)
    nodes = {node.path: node for node in reader.nodes()}
    maps = {name: reader._zmaps[nodes[f"{BIN}/{name}"].inode] for name in ("alloy", "evil")}
    position, shift = maps["evil"]._compact_position(0)
    pack_size = 8 if shift == 2 else 32
    base_at = position - position % pack_size + pack_size - 4
    (base,) = struct.unpack_from("<I", evil.read_bytes(), base_at)
    moved = base + maps["alloy"]._lcluster(0).pblk - maps["evil"]._lcluster(0).pblk
    refused(patched(evil, base_at, struct.pack("<I", moved)), "two compressed extents share block")


def test_a_lookback_chain_is_refused_in_bounded_work(tmp_path: Path) -> None:
    """26 MB of indexes: 100 files whose every NONHEAD looks back one or two lclusters, the
    kernel's tail lookup walking ~43,000 of them each (today: 4.3 million lcluster loads)."""
    image = lookback_chain_image(tmp_path / "chain.raw", files=100, lclusters=65_000)
    reader = ErofsReader(image)
    with pytest.raises(BuildError, match="has a lookback chain over 64 steps") as caught:
        reader.nodes()
    assert "\n" not in str(caught.value)
    assert reader.work.lcluster_loads <= erofs.MAX_LOOKBACK_STEPS + 1
    assert reader.work.inodes <= 2


def test_short_lookback_chains_read_in_linear_work(tmp_path: Path) -> None:
    files, lclusters = 100, 100
    image = lookback_chain_image(tmp_path / "chain.raw", files=files, lclusters=lclusters)
    reader = ErofsReader(image)
    heads = [reader.head(node, 1 << 16) for node in reader.nodes() if node.kind == "file"]
    assert heads == [bytes(1 << 16)] * files
    # Per file: the tail's chain, one pass over every lcluster (no two files share a block),
    # and the head's lclusters.
    head_lclusters = (1 << 16) // BLOCK
    per_file = erofs.MAX_LOOKBACK_STEPS + lclusters + head_lclusters + 4
    assert reader.work.lcluster_loads <= files * per_file
    assert reader.work.bytes_decompressed == files * (1 << 16)


@pytest.mark.parametrize("python", [False, True], ids=["liblz4", "python"])
def test_the_whole_file_of_a_chain_is_read_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, python: bool
) -> None:
    """sha256 reads forwards: each lcluster loaded about once, never a chain per lcluster;
    the extent's LZ4 stream decodes to less than the file, which is refused."""
    if python:
        monkeypatch.setattr(erofs.lz4native, "decompress", lambda *_: None)
    image = lookback_chain_image(tmp_path / "chain.raw", files=1, lclusters=60)
    opened = ErofsImage(image)
    with pytest.raises(BuildError, match="decompresses to other than the bytes it holds"):
        opened.sha256("f00000", 1 << 30)
    assert opened._reader.work.lcluster_loads <= 2 * 60 + erofs.MAX_LOOKBACK_STEPS + 4


# -- bounds -----------------------------------------------------------------------------------


def test_one_deadline_covers_the_read(evil: Path) -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 1.0  # every look at the clock: a second later
        return now[0]

    reader = ErofsReader(evil, clock=clock, seconds=5)
    with pytest.raises(BuildError) as caught:
        reader.nodes()
    assert str(caught.value).startswith(f"refusing {evil}: reading it took more than 5 s")
    assert "\n" not in str(caught.value)


def test_an_image_over_the_limit_is_refused_before_reading(
    evil: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(erofs, "MAX_IMAGE_BYTES", evil.stat().st_size - 1)
    with pytest.raises(BuildError, match=f"^refusing {evil}: {evil.stat().st_size} bytes, more"):
        ErofsReader(evil)


@pytest.mark.parametrize(
    ("compression", "decoder"),
    [("lz4hc", "liblz4"), ("lz4hc", "python"), ("none", "-")],
    ids=["lz4hc-liblz4", "lz4hc-python", "none"],
)
def test_sha256_streams_a_whole_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compression: str, decoder: str
) -> None:
    need("mkfs.erofs")
    if decoder == "python":
        monkeypatch.setattr(erofs.lz4native, "decompress", lambda *_: None)
    elif decoder == "liblz4" and not erofs.lz4native.available():
        pytest.skip("no liblz4 on this machine")
    tree = alloy_tree(tmp_path / "tree", binary_size=3 << 20)
    image = tmp_path / "image" / "alloy.raw"
    image.parent.mkdir()
    pack_erofs(tree, image, compression, IMAGE_ID)
    opened = ErofsImage(image)
    binary = (tree / BINARY).read_bytes()
    assert opened.sha256(BINARY, len(binary)) == hashlib.sha256(binary).hexdigest()
    work = opened._reader.work
    if compression == "lz4hc":
        assert 0 < work.bytes_decompressed <= len(binary)
        assert work.lcluster_loads <= 4 * len(binary) // BLOCK + 10
    else:
        assert work.bytes_copied >= len(binary)
    with pytest.raises(BuildError, match=f"/{BINARY} in {image} is {len(binary)} bytes, more"):
        opened.sha256(BINARY, len(binary) - 1)
    with pytest.raises(BuildError, match="is not a regular file"):
        opened.sha256("usr", 1 << 20)


def test_shared_xattrs_are_parsed_once(tmp_path: Path) -> None:
    need("mkfs.erofs")
    tree = alloy_tree(tmp_path / "tree", binary_size=20_000)
    for index in range(20):
        write(tree / "usr/share" / f"f{index}", b"x")
        os.setxattr(tree / "usr/share" / f"f{index}", "user.same", b"one value")
    image = mkfs(tree, tmp_path / "x.raw", "-zlz4hc", "-x1", "-T0")
    reader = ErofsReader(image)
    nodes = {node.path: node for node in reader.nodes()}
    assert nodes["usr/share/f7"].xattrs == {"user.same": b"one value"}
    assert nodes[RELEASE].xattrs == {STRICT_XATTR: b"false"}
    # 21 inodes' xattr areas, and each shared entry once (not 20 times).
    assert reader.work.xattr_parses <= 21 + 2 + 2


def test_read_everything_still_reads_ours(evil: Path) -> None:
    assert read_everything(evil)


def test_the_mutants_are_reproducible_and_structural(tmp_path: Path) -> None:
    """tests/mutants/erofs.py: the same seed, the same images; each differs from its base
    image (checksum made right) and reads or is refused in one line."""
    need("mkfs.erofs", root="the base images hold a file of another owner")
    from tests.mutants import erofs as erofs_mutants

    first = [
        (what, path.read_bytes()) for what, path in erofs_mutants.mutants(tmp_path / "a", 3, 12)
    ]
    again = [
        (what, path.read_bytes()) for what, path in erofs_mutants.mutants(tmp_path / "b", 3, 12)
    ]
    assert first == again
    assert len({data for _, data in first}) > 6
    for what, data in first:
        image = tmp_path / "one.raw"
        image.write_bytes(data)
        try:
            read_everything(image)
        except BuildError as error:
            assert "\n" not in str(error), what
            assert "superblock checksum" not in str(error), what


def lz4_zeros(size: int, final_literals: int) -> bytes:
    """A literal zero, a match of one back, `final_literals` literal zeros: `size` bytes."""
    extra = size - 1 - final_literals - 4 - 15
    lengths = b"\xff" * (extra // 255) + bytes([extra % 255])
    return (
        bytes([0x1F, 0])
        + b"\x01\x00"
        + lengths
        + bytes([final_literals << 4])
        + bytes(final_literals)
    )


@pytest.mark.parametrize(
    ("stream", "size", "good"),
    [
        (lz4_zeros(1000, 12), 1000, True),
        (lz4_zeros(1000, 5), 1000, True),  # 5 last literals: enough for a decoder
        (lz4_zeros(1000, 3), 1000, False),  # a match in the last 5 bytes
        (lz4_zeros(1000, 12) + b"\x00", 1000, False),  # input left over
        (lz4_zeros(1000, 12), 999, False),  # more output than the extent
        (lz4_zeros(1000, 12), 1001, False),  # less
    ],
    ids=["good", "five-literals", "match-at-end", "trailing", "longer", "shorter"],
)
def test_python_lz4_keeps_the_kernel_s_rules(stream: bytes, size: int, good: bool) -> None:
    """Decoding a whole extent, the Python decoder refuses what lib/lz4's LZ4_decompress_safe
    (the kernel's, and liblz4's) refuses; a head (partial) read refuses none of these."""

    def python(exact: bool) -> bytes:
        return b"".join(erofs.Lz4Stream(stream, size, exact=exact).chunks())

    if good:
        assert python(True) == bytes(size)
    else:
        with pytest.raises(erofs.Malformed):
            decoder = erofs.Lz4Stream(stream, size, exact=True)
            out = b"".join(decoder.chunks())
            if len(out) != size or not decoder.finished:
                raise erofs.Malformed("short")
    if erofs.lz4native.available():
        if good:
            assert erofs.lz4native.decompress(stream, size, True) == bytes(size)
        else:
            with pytest.raises(erofs.Malformed):
                erofs.lz4native.decompress(stream, size, True)
    assert python(False) == bytes(min(size, 1000))


def test_compressed_files_claiming_too_much_are_refused_before_their_indexes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every lcluster of a compressed file is read once: what they may claim in all is bounded
    before any index is read."""
    image = lookback_chain_image(tmp_path / "heads.raw", files=3, lclusters=5000, heads=True)
    monkeypatch.setattr(erofs, "MAX_COMPRESSED_BYTES", 5000 * BLOCK - 1)
    reader = ErofsReader(image)
    with pytest.raises(BuildError, match=f"^refusing {image}: its compressed files hold more"):
        reader.nodes()
    assert reader.work.lcluster_loads == 0


def test_pclusters_over_the_declared_size_are_refused(evil: Path) -> None:
    """The superblock's LZ4 config says 64 blocks at most (256 KiB); the kernel's buffers
    are sized by it. Declared as one block, the binary's big pclusters exceed it."""
    lz4_config = SUPERBLOCK + 128 + 2
    assert struct.unpack_from("<HH", evil.read_bytes(), lz4_config)[1] == 64
    refused(patched(evil, lz4_config + 2, struct.pack("<H", 1)), f"/{BINARY} has a ")


def test_file_data_past_the_image_is_refused_with_its_entries(tmp_path: Path) -> None:
    """Listing the entries checks every file's blocks lie in the image, not only the heads."""
    need("mkfs.erofs")
    tree = alloy_tree(tmp_path / "tree", binary_size=3 * BLOCK)
    image = tmp_path / "image" / "alloy.raw"
    image.parent.mkdir()
    pack_erofs(tree, image, "none", IMAGE_ID)
    damaged = patched(image, position_of(image, BINARY) + 16, struct.pack("<I", 1 << 20))
    with pytest.raises(BuildError, match=f"its data of /{BINARY} at byte .* runs past its end"):
        ErofsReader(damaged).nodes()


def test_a_whole_file_read_extends_the_deadline_by_its_size(evil: Path) -> None:
    """The deadline covers the static read; hashing a file adds time for its bytes only."""
    now = [0.0]
    reader = ErofsReader(evil, clock=lambda: now[0], seconds=5)
    binary = next(node for node in reader.nodes() if node.path == BINARY)
    now[0] = 5 + binary.size / erofs.content_rate() / 2
    assert len(reader.sha256(binary, binary.size)) == 64
    assert reader.deadline.seconds == 5 + binary.size / erofs.content_rate()
    now[0] = 1000.0
    with pytest.raises(BuildError, match="reading it took more than"):
        reader.sha256(binary, binary.size)


def test_a_refusal_naming_long_names_stays_one_short_line(evil: Path) -> None:
    """Names of 255 escaped bytes (four characters each) in an unsorted listing: the line
    stays within 400 characters, whatever the image puts in it."""
    nid = bin_entries(evil)
    long_one, long_two = b"\xff" * 200 + b"b", b"\xff" * 200 + b"a"
    entries = [(b".", nid["."], 2), (b"..", nid[".."], 2), (long_one, nid["alloy"], 1),
               (long_two, nid["evil"], 1)]  # fmt: skip
    crafted = with_listing(evil, BIN, entries)
    message = refused(crafted, f"/{BIN} lists b'\\xff")
    assert len(message) <= 400
