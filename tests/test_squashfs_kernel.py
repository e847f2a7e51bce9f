"""The squashfs reader and the kernel read the same bytes: what the kernel would interpret
otherwise than the reader's listing walk is refused in one line, and every read is bounded in
work (counted, not timed) whatever the image claims."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from build.core.errors import BuildError
from build.read import squashfs
from build.read.squashfs import SquashfsReader
from build.verify import kernelview
from tests.conftest import Invoke
from tests.fakes import MACHINES, elf_binary
from tests.mutants import squashfs as mutants
from tests.mutants.squashfs import BINARY, RELEASE, UNIT, Layout, base_image
from tests.mutants.squashfs_writer import Dir, File, Node, Symlink, build
from tests.verifying import verify

CAPABILITY = struct.pack("<5I", 0x02000001, 1 << 21, 0, 0, 0)  # cap_sys_admin, effective


def alloy_tree(evil: Dir | None = None) -> Dir:
    """The files of an Alloy sysext; with `evil`, usr/local/bin has an index aimed at it."""
    release = File(b"ID=_any\nARCHITECTURE=x86-64\n", xattrs={mutants.STRICT_XATTR: b"false"})
    binary = Dir({"alloy": File(elf_binary(MACHINES["amd64"], size=20_000), 0o755)})
    if evil is not None:
        binary.index = [(b"a", evil)]
    unit = File(b"[Service]\nExecStart=/usr/local/bin/alloy run\n")
    lib: dict[str, Node] = {
        "extension-release.d": Dir({"extension-release.alloy": release}),
        "systemd": Dir({"system": Dir({"alloy.service": unit})}),
    }
    return Dir({"usr": Dir({"lib": Dir(lib), "local": Dir({"bin": binary})})})


def refused(image: Path, fragment: str, read: Callable[[SquashfsReader], object] | None = None):
    """The reader refuses `image` in one line holding `fragment` (reading what `read` reads,
    else every entry)."""
    with pytest.raises(BuildError) as caught:
        reader = SquashfsReader(image)
        (read or SquashfsReader.nodes)(reader)
    message = str(caught.value)
    assert message.startswith(
        (f"{image} is not a valid squashfs image: ", f"refusing {image}: ")
    ), message
    assert fragment in message, message
    assert "\n" not in message and len(message) < 400


def patched(tmp_path: Path, variant: str, change: Callable[[Layout], None]) -> Path:
    layout = Layout(base_image(tmp_path / "base", variant).read_bytes())
    change(layout)
    image = tmp_path / "patched.raw"
    image.write_bytes(bytes(layout.data))
    return image


def content(path: str) -> Callable[[SquashfsReader], object]:
    def read(reader: SquashfsReader) -> object:
        node = {node.path: node for node in reader.nodes()}[path]
        return reader.sha256(node, 1 << 30)

    return read


# -- the headline: an index the kernel follows and the listing does not show --------------


def test_an_index_aiming_the_kernels_lookup_at_a_setuid_alloy_is_refused(
    invoke: Invoke, tmp_path: Path
) -> None:
    """usr/local/bin lists an honest alloy (0755, no xattr) for every listing walk, and its
    index sends the kernel's lookup and readdir to a listing no directory names, whose alloy is
    setuid root with cap_sys_admin. The reader of before took it (verify passed)."""
    evil = Dir({"alloy": File(b"#!/bin/sh\nid\n", 0o4755, {"security.capability": CAPABILITY})})
    image = build(
        alloy_tree(evil), tmp_path / "alloy.raw", 1 << 20, orphans=(evil,), compressor="xz"
    )
    result = verify(invoke, image)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: refusing {image}: /usr/local/bin has a directory index (the kernel's lookup "
        "follows it, not the listing); an Alloy sysext's directories hold a few entries "
        "(mksquashfs indexes listings over 8 KiB, which verify refuses): do not install it"
    ]
    if kernelview.cannot_mount("squashfs") is None:  # the kernel indeed sees the other alloy
        view = kernelview.kernel_view(image, "squashfs", [BINARY], 1 << 20)
        seen = view.looked_up[BINARY]
        assert (seen.permissions, seen.xattrs) == (0o4755, {"security.capability": CAPABILITY})


def test_the_same_tree_without_the_index_reads_as_the_kernel_shows_it(tmp_path: Path) -> None:
    image = build(alloy_tree(), tmp_path / "alloy.raw")
    reader = SquashfsReader(image)
    nodes = {node.path: node for node in reader.nodes()}
    assert nodes[BINARY].permissions == 0o755 and nodes[RELEASE].xattrs
    if kernelview.cannot_mount("squashfs") is None:
        view = kernelview.kernel_view(image, "squashfs", list(nodes), 1 << 20)
        shas = {path: reader.sha256(node, 1 << 20) for path, node in nodes.items() if node.is_file}
        assert kernelview.differences(nodes, view, shas.__getitem__) == []


# -- what the kernel reads otherwise ------------------------------------------------------


@pytest.mark.needs("mksquashfs")
def test_an_unsorted_listing(tmp_path: Path) -> None:
    image = patched(tmp_path, "fragment", lambda layout: layout.swap("usr/lib", "usr/local"))
    refused(image, "/usr's listing is not sorted (lib after local)")


def _renumber(path: str, number: Callable[[Layout], int]) -> Callable[[Layout], None]:
    def change(layout: Layout) -> None:
        new = number(layout)
        layout.set(path, "number", new)
        layout.set_entry(path, 2, "<h", new - layout.header_base(path))

    return change


@pytest.mark.needs("mksquashfs")
@pytest.mark.parametrize(
    ("number", "fragment"),
    [
        (lambda layout: layout.inodes["usr/local/bin"].number, "which names another inode"),
        (lambda layout: layout.inodes[UNIT].number, "which names another inode"),
        (lambda layout: 0, f"/{BINARY} has inode number 0 (the image has 11)"),
        (lambda layout: 12, f"/{BINARY} has inode number 12 (the image has 11)"),
    ],
    ids=["a-directorys", "another-files", "zero", "past-the-count"],
)
def test_an_inode_number_the_kernel_caches_otherwise(
    tmp_path: Path, number: Callable[[Layout], int], fragment: str
) -> None:
    """squashfs_iget() finds inodes by number: a file numbered as a directory is that
    directory to the kernel."""
    refused(patched(tmp_path, "fragment", _renumber(BINARY, number)), fragment)


def test_xattrs_on_a_symlink(tmp_path: Path) -> None:
    """Files carry xattrs, and directories (security.selinux on an SELinux build host); an
    Alloy sysext has no symlink to carry one."""
    tree = alloy_tree()
    link = Symlink(b"alloy", xattrs={"security.capability": CAPABILITY})
    tree.children["usr"].children["local"].children["bin"].children["link"] = link  # type: ignore[union-attr]
    refused(build(tree, tmp_path / "x.raw"), "/usr/local/bin/link is a symlink with xattrs")


def test_xattrs_on_a_directory_read_as_the_kernel_shows_them(tmp_path: Path) -> None:
    tree = alloy_tree()
    tree.children["usr"].xattrs = {"security.selinux": b"system_u:object_r:usr_t:s0\0"}
    image = build(tree, tmp_path / "x.raw")
    nodes = {node.path: node for node in SquashfsReader(image).nodes()}
    assert nodes["usr"].xattrs == {"security.selinux": b"system_u:object_r:usr_t:s0\0"}
    if kernelview.cannot_mount("squashfs") is None:
        view = kernelview.kernel_view(image, "squashfs", list(nodes), 1 << 20)
        assert view.looked_up["usr"].xattrs == nodes["usr"].xattrs


@pytest.mark.needs("mksquashfs")
@pytest.mark.parametrize(("path", "delta"), [("usr/lib", 1), ("usr/local/bin", -1)])
def test_nlink_other_than_the_names(tmp_path: Path, path: str, delta: int) -> None:
    def change(layout: Layout) -> None:
        layout.set(path, "nlink", layout.get(path, "nlink") + delta)

    refused(patched(tmp_path, "fragment", change), f"/{path} has nlink")


@pytest.mark.needs("mksquashfs")
def test_type_bits_in_a_mode(tmp_path: Path) -> None:
    """Older kernels OR the inode type into the mode, newer ones refuse the inode."""

    def change(layout: Layout) -> None:
        layout.set(BINARY, "mode", 0o100755)

    refused(patched(tmp_path, "fragment", change), f"/{BINARY} is a file whose mode holds type")


def test_a_sparse_block(tmp_path: Path) -> None:
    tree = alloy_tree()
    tree.children["usr"].children["local"].children["bin"].children["alloy"] = File(  # type: ignore[union-attr]
        block_words=[0, 4096 | 1 << 24], size=8192, mode=0o755
    )
    refused(build(tree, tmp_path / "x.raw"), f"/{BINARY} has a sparse block")


@pytest.mark.needs("mksquashfs")
def test_a_block_shorter_than_the_file_needs(tmp_path: Path) -> None:
    def change(layout: Layout) -> None:
        layout.set(BINARY, "block1", layout.get(BINARY, "block1") - 1)

    image = patched(tmp_path, "blocks", change)
    refused(image, f"/{BINARY} has a block of 4095 bytes, not 4096", content(BINARY))


@pytest.mark.needs("mksquashfs")
def test_a_fragment_on_a_file_of_whole_blocks(tmp_path: Path) -> None:
    image = patched(tmp_path, "fragment", lambda layout: layout.set(BINARY, "size", 128 << 10))
    refused(image, f"/{BINARY} names a fragment but has no tail to put in it")


@pytest.mark.needs("mksquashfs")
def test_a_fragment_past_the_fragment_count(tmp_path: Path) -> None:
    image = patched(tmp_path, "fragment", lambda layout: layout.set(BINARY, "fragment", 1))
    refused(image, f"/{BINARY} names fragment 1, past the fragment table")


@pytest.mark.needs("mksquashfs")
def test_a_tail_past_its_fragment_block(tmp_path: Path) -> None:
    def change(layout: Layout) -> None:
        layout.set(UNIT, "frag_offset", layout.get(UNIT, "frag_offset") + 30_000)

    refused(patched(tmp_path, "fragment", change), "tail runs past its fragment", content(UNIT))


@pytest.mark.needs("mksquashfs")
def test_an_export_table_naming_another_inode(tmp_path: Path) -> None:
    def change(layout: Layout) -> None:
        spots = layout.export_field(layout.inodes[BINARY].number)
        layout._write(spots, struct.pack("<Q", layout.inodes[UNIT].ref))

    refused(patched(tmp_path, "fragment", change), "the export table names another inode")


@pytest.mark.parametrize(
    ("target", "fragment"),
    [
        (b"alloy\0/usr/bin/sh", "whose target holds a NUL"),
        (b"", "0-byte target"),
        (b"a" * 4096, "4096-byte target"),  # the kernel shows 4095 bytes of it
    ],
    ids=["nul", "empty", "a-page"],
)
def test_symlink_targets_readlink_shows_otherwise(
    tmp_path: Path, target: bytes, fragment: str
) -> None:
    tree = alloy_tree()
    tree.children["usr"].children["local"].children["bin"].children["link"] = Symlink(target)  # type: ignore[union-attr]
    refused(build(tree, tmp_path / "x.raw"), fragment)


# -- bounds ---------------------------------------------------------------------------------


def test_an_image_over_the_largest_is_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = build(alloy_tree(), tmp_path / "x.raw")
    monkeypatch.setattr(squashfs, "MAX_IMAGE_BYTES", 4096)
    refused(image, f"{image.stat().st_size} bytes; verify reads images of at most 4096 bytes")


def test_one_deadline_covers_the_read(tmp_path: Path) -> None:
    """A clock that runs 1 s a look: the walk stops at 5 s, in one line."""
    ticks = iter(range(1_000_000))
    image = build(alloy_tree(), tmp_path / "x.raw")
    with pytest.raises(BuildError, match=r"^refusing .*: reading it took more than "):
        SquashfsReader(image, clock=lambda: float(next(ticks)), seconds=5).nodes()


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return dict(mutants.bombs(tmp_path_factory.mktemp("bombs")))


def _read(image: Path) -> tuple[SquashfsReader, str]:
    reader = SquashfsReader(image)
    try:
        reader.nodes()
    except BuildError as error:
        return reader, str(error)
    return reader, "accepted"


def test_a_listing_claiming_48_mib_costs_its_inode(bombs: dict[str, Path]) -> None:
    """i_size claims a 48 MiB listing of compressed zero blocks: the reader of before joined
    them quadratically (killed after minutes); this one refuses before reading it."""
    reader, outcome = _read(bombs["metadata chain of 48 MiB"])
    assert "/usr/local has a 50331645-byte listing, over 16 KiB with no index" in outcome
    assert reader.work.metadata_bytes <= 64 << 10


def test_inodes_sharing_an_xattr_id_parse_it_once(bombs: dict[str, Path]) -> None:
    """Counted on each entry, as the kernel view lists them, 8,000 x 60 KB is refused at 8 MiB;
    the shared set is parsed once."""
    reader, outcome = _read(bombs["8,000 inodes sharing 60 KB of xattrs"])
    assert "more than 8 MiB of xattrs, counted on each entry" in outcome
    assert reader.work.xattr_parses == 1
    assert reader.work.inodes_parsed < 300
    assert reader.work.parsed_bytes <= 1 << 20


def test_a_long_block_list_under_many_names_is_parsed_once(bombs: dict[str, Path]) -> None:
    reader, outcome = _read(bombs["60,000-block list under 9,000 names"])
    assert outcome == "accepted"
    assert reader.work.inodes_parsed == 93  # the root, /usr, 90 directories, one file
    assert reader.work.parsed_bytes <= 60_000 * 4 + 9000 * 20 + 4096


def test_a_listing_of_9990_long_names_is_refused_unread(bombs: dict[str, Path]) -> None:
    """Without an index the kernel's lookup scans the listing for each name: n^2 for the
    kernel view."""
    reader, outcome = _read(bombs["listing of 9,990 255-byte names"])
    assert "/usr has a 2627850-byte listing, over 16 KiB with no index" in outcome
    assert reader.work.metadata_bytes <= 64 << 10


# -- the whole content -----------------------------------------------------------------------


@pytest.mark.needs("mksquashfs")
@pytest.mark.parametrize("variant", ["fragment", "blocks"])
def test_sha256_of_a_whole_file(tmp_path: Path, variant: str) -> None:
    _, binary_size, _ = mutants.VARIANTS[variant]
    reader = SquashfsReader(base_image(tmp_path, variant))
    node = {node.path: node for node in reader.nodes()}[BINARY]
    expected = hashlib.sha256(elf_binary(MACHINES["amd64"], size=binary_size)).hexdigest()
    assert reader.sha256(node, binary_size) == expected
    assert binary_size <= reader.work.data_bytes <= binary_size + 4096  # a fragment's others
    with pytest.raises(BuildError, match=f"is {binary_size} bytes, more than {binary_size - 1}"):
        reader.sha256(node, binary_size - 1)


# -- the differential suite's generator --------------------------------------------------------


@pytest.mark.needs("mksquashfs")
def test_mutants_are_reproducible(tmp_path: Path) -> None:
    def made(workdir: Path) -> list[tuple[str, str]]:
        return [
            (what, hashlib.sha256(image.read_bytes()).hexdigest())
            for what, image in mutants.mutants(workdir, 7, 12)
        ]

    first = made(tmp_path / "one")
    assert len(first) == 12 and len({sha for _, sha in first}) > 6
    assert made(tmp_path / "two") == first


@pytest.mark.needs("mksquashfs")
def test_a_fragment_count_whose_index_runs_into_the_next_table(tmp_path: Path) -> None:
    """super.c refuses the mount; the reader of before never read the count."""

    def change(layout: Layout) -> None:
        struct.pack_into("<I", layout.data, 16, 100_000)

    refused(patched(tmp_path, "fragment", change), "its fragment table index runs into the table")
