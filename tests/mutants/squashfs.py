"""squashfs images mutated by structure, for the reader-versus-kernel differential suite.

Each mutant is a real mksquashfs image of an Alloy-like tree (metadata, data and xattrs stored
uncompressed, -noI -noD -noF -noX, so every field can be found and rewritten in place), with
one field rewritten: a directory index and its start_block/offsets, the order of a listing, an
inode number, an xattr id, a fragment, a block list, nlink, a mode, an owner's id index. Never
random bytes: those risk an oops in the host's kernel when the suite mounts the image.

bombs() gives the resource bombs (benchmarks/hostile.py runs verify on both): small images,
written by tests/mutants/squashfs_writer.py, that cost the reader of before minutes or
gigabytes.
"""

from __future__ import annotations

import os
import random
import struct
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.fakes import MACHINES, elf_binary
from tests.mutants.squashfs_writer import Dir, File, Node, build

BINARY = "usr/local/bin/alloy"
UNIT = "usr/lib/systemd/system/alloy.service"
RELEASE = "usr/lib/extension-release.d/extension-release.alloy"
STRICT_XATTR = "user.extension-release.strict"
NO_XATTR = 0xFFFFFFFF
NO_FRAGMENT = 0xFFFFFFFF
UNCOMPRESSED = ("-noI", "-noD", "-noF", "-noX")

# Variants of the base tree: (block size, binary size, extra entries in usr/local/bin).
VARIANTS = {
    "fragment": (128 << 10, 20_000, 0),  # the binary wholly in a fragment
    "blocks": (4096, 18_000, 0),  # four blocks and a tail in a fragment
    "bigdir": (4096, 9000, 120),  # usr/local/bin's listing over 8 KiB: it gets an index
    "xattrs": (4096, 9000, -1),  # xattrs on every file, one value shared; a symlink
}


def alloy_tree(root: Path, extra: int = 0, binary_size: int = 20_000) -> Path:
    """usr/local/bin/alloy (a small ELF), its unit, its extension-release file with
    user.extension-release.strict=false, and `extra` empty files with long names beside it."""
    files = {
        BINARY: (elf_binary(MACHINES["amd64"], size=binary_size), 0o755),
        UNIT: (b"[Service]\nExecStart=/usr/local/bin/alloy run\n", 0o644),
        RELEASE: (b"ID=_any\nARCHITECTURE=x86-64\n", 0o644),
    }
    for number in range(max(extra, 0)):
        files[f"usr/local/bin/zz-{number:03d}-{'x' * 90}"] = (b"", 0o644)
    for name, (data, mode) in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)
    os.setxattr(root / RELEASE, STRICT_XATTR, b"false")
    if extra < 0:  # the xattrs variant
        for name in (BINARY, UNIT):
            os.setxattr(root / name, "user.note", b"shared value " * 8)
        os.setxattr(root / BINARY, "user.own", b"own")
        (root / "usr/local/bin/alloy-link").symlink_to("alloy")
    for directory in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        directory.chmod(0o755)
    return root


def pack(root: Path, image: Path, block_size: int, *extra: str) -> Path:
    image.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            *("mksquashfs", str(root), str(image), "-noappend", "-all-root", "-no-progress"),
            *("-b", str(block_size), *UNCOMPRESSED, *extra),
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "SOURCE_DATE_EPOCH": "1700000000"},
    )
    return image


def base_image(workdir: Path, variant: str) -> Path:
    """The unmutated image of `variant` (built once per workdir)."""
    workdir.mkdir(parents=True, exist_ok=True)
    image = workdir / f"base-{variant}.raw"
    if not image.exists():
        block_size, binary_size, extra = VARIANTS[variant]
        tree = alloy_tree(workdir / f"tree-{variant}", extra, binary_size)
        pack(tree, image, block_size)
    return image


# -- finding structures in an uncompressed image -------------------------------------------


class Table:
    """A chain of uncompressed metadata blocks from `start`: a position (block, offset) as the
    image's references give it, to the file offsets of its bytes."""

    def __init__(self, data: bytes | bytearray, start: int) -> None:
        self.data = data
        self.start = start

    def _block(self, block: int) -> tuple[int, int]:
        (word,) = struct.unpack_from("<H", self.data, self.start + block)
        if not word & 0x8000:
            raise ValueError(f"the metadata block at {self.start + block} is compressed")
        return self.start + block + 2, word & 0x7FFF

    def offsets(self, block: int, offset: int, size: int) -> list[int]:
        out: list[int] = []
        while len(out) < size:
            at, length = self._block(block)
            take = min(size - len(out), length - offset)
            out.extend(range(at + offset, at + offset + take))
            offset += take
            if offset == length:
                block, offset = block + 2 + length, 0
        return out

    def read(self, block: int, offset: int, size: int) -> bytes:
        return bytes(self.data[i] for i in self.offsets(block, offset, size))

    def advance(self, block: int, offset: int, size: int) -> tuple[int, int]:
        """The position `size` bytes on."""
        if size == 0:
            return block, offset
        last = self.offsets(block, offset, size)[-1] + 1
        at, length = self._block(block)
        while not at <= last <= at + length:
            block += 2 + length
            at, length = self._block(block)
        if last == at + length:
            return block + 2 + length, 0
        return block, last - at


@dataclass
class Inode:
    path: str
    ref: int
    type: int
    number: int
    fields: dict[str, tuple[int, str]]  # name -> (offset from the inode's start, struct format)
    blocks: int = 0  # a file's block list length
    index: list[int] = field(default_factory=list)  # offsets of a directory's index entries


@dataclass
class Entry:
    path: str  # the named entry's
    directory: str
    header: tuple[int, int]  # where its listing header is, in the directory table
    at: tuple[int, int]  # where the entry is
    size: int  # the entry's bytes: 8 + its name


class Layout:
    """The inodes, listings and fields of an image mksquashfs wrote with UNCOMPRESSED."""

    def __init__(self, data: bytes | bytearray) -> None:
        self.data = bytearray(data)
        (self.inode_count,) = struct.unpack_from("<I", data, 4)
        (self.block_size, self.fragments) = struct.unpack_from("<II", data, 12)
        root, _, _, self.xattr_table, inode_table, dir_table, self.fragment_table = (
            struct.unpack_from("<7Q", data, 32)
        )
        self.inodes_table = Table(self.data, inode_table)
        self.dirs_table = Table(self.data, dir_table)
        self.inodes: dict[str, Inode] = {}
        self.entries: dict[str, Entry] = {}
        self.headers: dict[tuple[int, int], list[Entry]] = {}  # header position -> entries
        self._walk(root)

    def _field(self, ref: int, rel: int, fmt: str) -> list[int]:
        block, offset = self.inodes_table.advance(ref >> 16, ref & 0xFFFF, rel)
        return self.inodes_table.offsets(block, offset, struct.calcsize(fmt))

    def get(self, path: str, name: str) -> int:
        inode = self.inodes[path]
        rel, fmt = inode.fields[name]
        raw = bytes(self.data[i] for i in self._field(inode.ref, rel, fmt))
        return struct.unpack(fmt, raw)[0]

    def set(self, path: str, name: str, value: int) -> None:
        inode = self.inodes[path]
        rel, fmt = inode.fields[name]
        self._write(self._field(inode.ref, rel, fmt), struct.pack(fmt, value))

    def _write(self, offsets: list[int], raw: bytes) -> None:
        for at, byte in zip(offsets, raw, strict=True):
            self.data[at] = byte

    def _walk(self, root: int) -> None:
        pending = [("", root)]
        while pending:
            path, ref = pending.pop()
            inode = self._inode(path, ref)
            self.inodes[path] = inode
            if inode.type in (1, 8):
                for entry, child_ref in self._listing(inode):
                    self.entries[entry.path] = entry
                    if entry.path not in self.inodes:
                        pending.append((entry.path, child_ref))

    def _inode(self, path: str, ref: int) -> Inode:
        head = self.inodes_table.read(ref >> 16, ref & 0xFFFF, 16)
        kind, _, _, _, _, number = struct.unpack("<HHHHII", head)
        fields = {"type": (0, "<H"), "mode": (2, "<H"), "uid": (4, "<H"), "gid": (6, "<H")}
        fields["number"] = (12, "<I")
        layouts = {
            1: {"start": (16, "<I"), "nlink": (20, "<I"), "size": (24, "<H"), "offset": (26, "<H")},
            8: {
                **{"nlink": (16, "<I"), "size": (20, "<I"), "start": (24, "<I")},
                **{"i_count": (32, "<H"), "offset": (34, "<H"), "xattr": (36, "<I")},
            },
            2: {
                **{"start": (16, "<I"), "fragment": (20, "<I")},
                **{"frag_offset": (24, "<I"), "size": (28, "<I")},
            },
            9: {
                **{"start": (16, "<Q"), "size": (24, "<Q"), "sparse": (32, "<Q")},
                **{"nlink": (40, "<I"), "fragment": (44, "<I"), "frag_offset": (48, "<I")},
                "xattr": (52, "<I"),
            },
            3: {"nlink": (16, "<I"), "target_size": (20, "<I")},
            10: {"nlink": (16, "<I"), "target_size": (20, "<I")},
        }
        fields.update(layouts.get(kind, {}))
        inode = Inode(path, ref, kind, number, fields)
        if kind in (2, 9):
            size = self.get_raw(ref, fields["size"])
            fragment = self.get_raw(ref, fields["fragment"])
            whole, tail = divmod(size, self.block_size)
            inode.blocks = whole + (1 if tail and fragment == NO_FRAGMENT else 0)
            first = 32 if kind == 2 else 56
            for number_ in range(inode.blocks):
                fields[f"block{number_}"] = (first + 4 * number_, "<I")
        if kind == 8:
            at = 40
            for _ in range(self.get_raw(ref, fields["i_count"])):
                inode.index.append(at)
                (name_size,) = struct.unpack("<I", self._raw(ref, at + 8, 4))
                at += 12 + name_size + 1
        return inode

    def _raw(self, ref: int, rel: int, size: int) -> bytes:
        block, offset = self.inodes_table.advance(ref >> 16, ref & 0xFFFF, rel)
        return self.inodes_table.read(block, offset, size)

    def get_raw(self, ref: int, spot: tuple[int, str]) -> int:
        rel, fmt = spot
        return struct.unpack(fmt, self._raw(ref, rel, struct.calcsize(fmt)))[0]

    def _listing(self, directory: Inode) -> Iterator[tuple[Entry, int]]:
        left = self.get_raw(directory.ref, directory.fields["size"]) - 3
        position = (
            self.get_raw(directory.ref, directory.fields["start"]),
            self.get_raw(directory.ref, directory.fields["offset"]),
        )
        table = self.dirs_table
        while left > 0:
            header = position
            count, inode_block, _ = struct.unpack("<III", table.read(*position, 12))
            position = table.advance(*position, 12)
            left -= 12
            for _ in range(count + 1):
                offset, _, _, name_size = struct.unpack("<HhHH", table.read(*position, 8))
                name = table.read(*table.advance(*position, 8), name_size + 1)
                path = f"{directory.path}/{name.decode()}".lstrip("/")
                entry = Entry(path, directory.path, header, position, 8 + name_size + 1)
                self.headers.setdefault(header, []).append(entry)
                yield entry, (inode_block << 16) | offset
                position = table.advance(*position, entry.size)
                left -= entry.size

    # -- rewriting listings --------------------------------------------------------------

    def entry_field(self, path: str, rel: int, fmt: str) -> list[int]:
        entry = self.entries[path]
        return self.dirs_table.offsets(
            *self.dirs_table.advance(*entry.at, rel), struct.calcsize(fmt)
        )

    def get_entry(self, path: str, rel: int, fmt: str) -> int:
        raw = bytes(self.data[i] for i in self.entry_field(path, rel, fmt))
        return struct.unpack(fmt, raw)[0]

    def set_entry(self, path: str, rel: int, fmt: str, value: int) -> None:
        self._write(self.entry_field(path, rel, fmt), struct.pack(fmt, value))

    def header_field(self, header: tuple[int, int], rel: int) -> list[int]:
        return self.dirs_table.offsets(*self.dirs_table.advance(*header, rel), 4)

    def swap(self, first: str, second: str) -> None:
        """Swap two neighbouring entries of one listing header (first before second)."""
        one, two = self.entries[first], self.entries[second]
        spots = self.dirs_table.offsets(*one.at, one.size + two.size)
        raw = bytes(self.data[i] for i in spots)
        self._write(spots, raw[one.size :] + raw[: one.size])

    def header_base(self, path: str) -> int:
        """The inode number base of the listing header that holds `path`'s entry."""
        spots = self.header_field(self.entries[path].header, 8)
        return struct.unpack("<I", bytes(self.data[i] for i in spots))[0]

    def xattr_entries(self) -> list[int]:
        """File offsets of each xattr entry's type field, in the key/value area."""
        if self.xattr_table == 0xFFFFFFFFFFFFFFFF:
            return []
        kv_start, count, _ = struct.unpack_from("<QII", self.data, self.xattr_table)
        (ids_block,) = struct.unpack_from("<Q", self.data, self.xattr_table + 16)
        rows = Table(self.data, 0)
        kv = Table(self.data, kv_start)
        found = []
        for number in range(count):
            ref, pairs, _ = struct.unpack("<QII", rows.read(ids_block, 16 * number, 16))
            position = (ref >> 16, ref & 0xFFFF)
            for _ in range(pairs):
                found.append(kv.offsets(*position, 1)[0])
                _, name_size = struct.unpack("<HH", kv.read(*position, 4))
                position = kv.advance(*position, 4 + name_size)
                (value_size,) = struct.unpack("<I", kv.read(*position, 4))
                position = kv.advance(*position, 4 + value_size)
        return found

    def export_field(self, number: int) -> list[int]:
        """Where the export table's entry for inode `number` is."""
        (lookup_table,) = struct.unpack_from("<Q", self.data, 88)
        (block,) = struct.unpack_from("<Q", self.data, lookup_table)
        return Table(self.data, 0).offsets(block, 8 * (number - 1), 8)

    def index_field(self, path: str, number: int, rel: int, fmt: str = "<I") -> list[int]:
        inode = self.inodes[path]
        return self._field(inode.ref, inode.index[number] + rel, fmt)


# -- the mutations -----------------------------------------------------------------------

Mutation = Callable[[Layout, random.Random], str | None]


def _file_paths(layout: Layout) -> list[str]:
    return sorted(path for path, inode in layout.inodes.items() if inode.type in (2, 9))


def _mode(layout: Layout, rng: random.Random) -> str:
    path = rng.choice(sorted(layout.inodes))
    old = layout.get(path, "mode")
    new = rng.choice([old | 0o4000, old | 0o2000, old ^ 0o022, (old & 0o7777) | 0o100000, 0o777])
    layout.set(path, "mode", new)
    return f"mode of /{path} {old:o} -> {new:o}"


def _owner(layout: Layout, rng: random.Random) -> str:
    path = rng.choice(sorted(layout.inodes))
    which = rng.choice(["uid", "gid"])
    layout.set(path, which, rng.choice([1, 2, 0xFFFF]))
    return f"{which} index of /{path}"


def _inode_number(layout: Layout, rng: random.Random) -> str:
    path = rng.choice(sorted(layout.entries))
    other = rng.choice(sorted(layout.inodes))
    target = rng.choice(
        [layout.inodes[other].number, 0, layout.inode_count + 1, layout.inodes[path].number + 1]
    )
    where = rng.choice(["inode", "entry", "both"])
    delta = target - layout.header_base(path)
    if where in ("inode", "both"):
        layout.set(path, "number", target & 0xFFFFFFFF)
    if where in ("entry", "both") and -0x8000 <= delta < 0x8000:
        layout.set_entry(path, 2, "<h", delta)
    return f"inode number of /{path} -> {target} ({where})"


def _listing_order(layout: Layout, rng: random.Random) -> str | None:
    pairs = [
        (entries[i].path, entries[i + 1].path)
        for entries in layout.headers.values()
        for i in range(len(entries) - 1)
    ]
    if not pairs:
        return None
    first, second = rng.choice(sorted(pairs))
    layout.swap(first, second)
    return f"listing order: /{second} before /{first}"


def _header(layout: Layout, rng: random.Random) -> str:
    header = rng.choice(sorted(layout.headers))
    rel, what = rng.choice([(4, "start_block"), (8, "inode number base"), (0, "count")])
    spots = layout.header_field(header, rel)
    (old,) = struct.unpack("<I", bytes(layout.data[i] for i in spots))
    new = max(0, old + rng.choice([-1, 1, 2, 8194]))
    layout._write(spots, struct.pack("<I", new))
    return f"listing header {header}: {what} {old} -> {new}"


def _directory_index(layout: Layout, rng: random.Random) -> str | None:
    indexed = sorted(path for path, inode in layout.inodes.items() if inode.index)
    if not indexed:
        return None
    path = rng.choice(indexed)
    number = rng.randrange(len(layout.inodes[path].index))
    rel, what = rng.choice([(0, "index"), (4, "start_block"), (12, "name")])
    if what == "name":
        spots = layout.index_field(path, number, 12, "<B")
        layout._write(spots, bytes([rng.choice(b"a.-0")]))
    else:
        spots = layout.index_field(path, number, rel)
        (old,) = struct.unpack("<I", bytes(layout.data[i] for i in spots))
        new = max(0, old + rng.choice([-8194, -12, 12, 8194]))
        layout._write(spots, struct.pack("<I", new))
    return f"directory index {number} of /{path}: {what}"


def _xattr_id(layout: Layout, rng: random.Random) -> str | None:
    carriers = sorted(path for path, inode in layout.inodes.items() if "xattr" in inode.fields)
    if not carriers:
        return None
    path = rng.choice(carriers)
    value = rng.choice([NO_XATTR, 0, 1, 2])
    layout.set(path, "xattr", value)
    return f"xattr id of /{path} -> {value:#x}"


def _fragment(layout: Layout, rng: random.Random) -> str | None:
    paths = [path for path in _file_paths(layout) if layout.get(path, "fragment") != NO_FRAGMENT]
    if not paths:
        return None
    path = rng.choice(paths)
    which = rng.choice(["fragment", "frag_offset"])
    old = layout.get(path, which)
    new = max(0, old + rng.choice([-1, 1, 4096, layout.fragments]))
    layout.set(path, which, new)
    return f"{which} of /{path} {old} -> {new}"


def _block_list(layout: Layout, rng: random.Random) -> str | None:
    paths = [path for path in _file_paths(layout) if layout.inodes[path].blocks]
    if not paths:
        return None
    path = rng.choice(paths)
    number = rng.randrange(layout.inodes[path].blocks)
    old = layout.get(path, f"block{number}")
    new = rng.choice([0, old + 1, old - 1, old ^ (1 << 24), old | (1 << 25)]) & 0xFFFFFFFF
    layout.set(path, f"block{number}", new)
    return f"block {number} of /{path} {old:#x} -> {new:#x}"


def _file_size(layout: Layout, rng: random.Random) -> str:
    path = rng.choice(_file_paths(layout))
    old = layout.get(path, "size")
    new = max(0, old + rng.choice([-1, 1, -layout.block_size, layout.block_size]))
    layout.set(path, "size", new)
    return f"size of /{path} {old} -> {new}"


def _nlink(layout: Layout, rng: random.Random) -> str | None:
    paths = sorted(path for path, inode in layout.inodes.items() if "nlink" in inode.fields)
    path = rng.choice(paths)
    old = layout.get(path, "nlink")
    new = max(0, old + rng.choice([-1, 1]))
    layout.set(path, "nlink", new)
    return f"nlink of /{path} {old} -> {new}"


def _symlink(layout: Layout, rng: random.Random) -> str | None:
    links = sorted(path for path, inode in layout.inodes.items() if inode.type in (3, 10))
    if not links:
        return None
    path = rng.choice(links)
    old = layout.get(path, "target_size")
    new = max(0, old + rng.choice([-1, 1, 4096]))
    layout.set(path, "target_size", new)
    return f"symlink target size of /{path} {old} -> {new}"


def _xattr_entry(layout: Layout, rng: random.Random) -> str | None:
    entries = layout.xattr_entries()
    if not entries:
        return None
    at = rng.choice(entries)
    old = struct.unpack_from("<H", layout.data, at)[0]
    new = rng.choice([0, 1, 2, 3, old ^ 0x100, old | 0x200])
    struct.pack_into("<H", layout.data, at, new)
    return f"xattr entry type at byte {at} {old:#x} -> {new:#x}"


MUTATIONS: tuple[Mutation, ...] = (
    _symlink,
    _xattr_entry,
    _mode,
    _owner,
    _inode_number,
    _listing_order,
    _header,
    _directory_index,
    _xattr_id,
    _fragment,
    _block_list,
    _file_size,
    _nlink,
)


def mutants(workdir: Path, seed: int, count: int) -> Iterator[tuple[str, Path]]:
    """(what was changed, the image) for `count` mutants, the same for the same seed."""
    rng = random.Random(seed)
    bases = {name: base_image(workdir, name).read_bytes() for name in VARIANTS}
    made = 0
    while made < count:
        variant = rng.choice(sorted(VARIANTS))
        layout = Layout(bases[variant])
        changes = [rng.choice(MUTATIONS)(layout, rng) for _ in range(rng.choice((1, 1, 2)))]
        if None in changes:
            continue
        what = "; ".join(change for change in changes if change)
        image = workdir / f"mutant-{seed}-{made:04d}.raw"
        image.write_bytes(bytes(layout.data))
        made += 1
        yield f"{variant}: {what}", image


# -- resource bombs ------------------------------------------------------------------------


def _chain() -> Dir:
    """A listing whose i_size claims 48 MiB: gzip'd zero blocks, a few KiB of image each MiB."""
    return Dir({"usr": Dir({"local": Dir(size=48 << 20, padding=48 << 20)})})


def _shared_xattrs() -> Dir:
    """8,000 files (80 directories of 100) sharing one xattr id of 60 values of 1,000 bytes."""
    xattrs = {f"user.v{number:02d}": bytes([number]) * 1000 for number in range(60)}
    directories: dict[str, Node] = {
        f"d{number:02d}": Dir({f"f{name:03d}": File(b"", xattrs=xattrs) for name in range(100)})
        for number in range(80)
    }
    return Dir({"usr": Dir(directories)})


def _long_block_list() -> Dir:
    """One file of 60,000 4-byte blocks, under 9,000 names in 90 directories."""
    big = File(block_words=[4 | 1 << 24] * 60_000, size=60_000 * 4096, xattrs={"user.a": b"b"})
    directories: dict[str, Node] = {
        f"d{number:02d}": Dir({f"f{name:03d}": big for name in range(100)}) for number in range(90)
    }
    return Dir({"usr": Dir(directories)})


def _max_listing() -> Dir:
    """9,990 names of 255 bytes in one directory, all one small file."""
    small = File(b"x", xattrs={"user.a": b"b"})
    names: dict[str, Node] = {f"{number:05d}{'n' * 250}": small for number in range(9990)}
    return Dir({"usr": Dir(names, extended=True)})


BOMBS: dict[str, Callable[[], Dir]] = {
    "metadata chain of 48 MiB": _chain,
    "8,000 inodes sharing 60 KB of xattrs": _shared_xattrs,
    "60,000-block list under 9,000 names": _long_block_list,
    "listing of 9,990 255-byte names": _max_listing,
}


def bombs(workdir: Path) -> Iterator[tuple[str, Path]]:
    """(what, the image) of each resource bomb: small images that cost a naive reader minutes
    or gigabytes."""
    for number, (what, tree) in enumerate(BOMBS.items()):
        yield what, build(tree(), workdir / f"bomb-{number}.raw", compress=True)
