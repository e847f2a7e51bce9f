"""EROFS images mutated by structure, for the differential suite (the reader's view against the
kernel's) and the hostile bench.

From a base Alloy-like image (mkfs.erofs with the project's flags, build/formats/erofs.py; LZ4 and
uncompressed) each mutant changes one to three structures, never random bytes (those risk an
oops in the host's kernel): directory entries (order, nids, types, nameoffs), inode modes,
owners, link counts, sizes, layouts and block addresses, xattr entries (name index, name, value,
counts, shared ids), the compressed map (advise bits, lcluster types, lookback distances, block
addresses). The superblock checksum is made right after each change. Seeded: the same seed and
count give the same images.

`bombs()` yields images built to cost readers time: lookback chains as long as the files.
"""

from __future__ import annotations

import os
import random
import struct
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from build.formats.erofs import MKFS_EROFS, image_uuid, mkfs_erofs_args, pack_erofs
from build.read import erofs
from build.read.erofs import ErofsReader
from tests.erofs_craft import fix_checksum, lookback_chain_image
from tests.fakes import MACHINES, elf_binary

BLOCK = 4096
SB = erofs.SUPERBLOCK_OFFSET
RELEASE = "usr/lib/extension-release.d/extension-release.alloy"
BINARY = "usr/local/bin/alloy"
UNIT = "usr/lib/systemd/system/alloy.service"


def base_tree(root: Path, many: int = 0, variant: str = "") -> Path:
    """What an Alloy sysext holds, small: the ELF binary, its unit, its release file; and
    `many` more files in one directory (a listing over several blocks); `variant`: "owner"
    (the unit owned by 70000, an extended inode), "shared" (an xattr on three files, which
    mkfs.erofs shares)."""
    files = {
        RELEASE: (b"ID=_any\nARCHITECTURE=x86-64\n", 0o644),
        UNIT: (b"[Service]\nExecStart=/usr/local/bin/alloy run\n", 0o644),
        BINARY: (elf_binary(MACHINES["amd64"], size=150_000), 0o755),
    }
    for name, (data, mode) in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)
    for index in range(many):
        path = root / "usr/share/alloy" / f"file-{index:04}-{'x' * (index % 40)}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"%d\n" % index)
        path.chmod(0o644)
    for directory, _, _ in os.walk(root):
        Path(directory).chmod(0o755)
    os.setxattr(root / RELEASE, "user.extension-release.strict", b"false")
    if variant == "owner":
        os.chown(root / UNIT, 70000, 70001)
    if variant == "shared":
        for name in (RELEASE, UNIT, BINARY):
            os.setxattr(root / name, "user.shared", b"one value for three")
    return root


BASES = {
    "lz4hc": ("lz4hc", 0, ""),
    "none": ("none", 0, ""),
    "lz4hc-many": ("lz4hc", 300, ""),
    "none-owner": ("none", 0, "owner"),
    "lz4hc-shared": ("lz4hc", 0, "shared"),
}


def base_images(workdir: Path) -> dict[str, Path]:
    """base name -> the base image, packed once per workdir."""
    images = {}
    for name, (compression, many, variant) in BASES.items():
        image = workdir / "base" / f"alloy-{name}.raw"
        if not image.exists():
            tree = base_tree(workdir / "base" / f"tree-{name}", many, variant)
            image_id = image_uuid("alloy", "1.10.2", "amd64")
            if variant == "owner":  # the project's flags but --all-root: owners kept
                args = [
                    arg for arg in mkfs_erofs_args(compression, image_id) if arg != "--all-root"
                ]
                subprocess.run([MKFS_EROFS, *args, str(image), str(tree)], check=True)
            else:
                pack_erofs(tree, image, compression, image_id)
        images[name] = image
    return images


@dataclass
class Layout:
    """Where the base image's structures are, as its reader found them."""

    meta: int
    nids: dict[str, int]  # path -> nid
    kinds: dict[str, str]
    inodes: dict[str, int]  # path -> byte offset of its inode
    listings: dict[str, tuple[int, int]]  # directory block -> (its offset, its size)
    xattrs: dict[str, tuple[int, int]]  # path -> (offset of its xattr ibody, size)
    maps: dict[str, int]  # compressed file -> offset of its map header
    indexes: dict[str, list[tuple[int, int, int]]]  # file -> [(pack offset, bits, slot)]


def layout_of(image: Path) -> Layout:
    reader = ErofsReader(image)
    nodes = reader.nodes()
    meta = reader._meta
    found = Layout(meta, {}, {}, {}, {}, {}, {}, {})
    for node in nodes:
        inode = reader._inodes[node.inode]
        found.nids[node.path] = node.inode
        found.kinds[node.path] = node.kind
        at = meta + node.inode * erofs.INODE_SLOT
        found.inodes[node.path] = at
        ibody = at + (64 if inode.extended else 32)
        if inode.end > ibody:
            found.xattrs[node.path] = (ibody, inode.end - ibody)
        if node.kind == "directory":
            blocks = -(-inode.size // BLOCK)
            for number in range(blocks):
                size = min(BLOCK, inode.size - number * BLOCK)
                tail = inode.layout == erofs.FLAT_INLINE and number == blocks - 1
                at = inode.end if tail else inode.raw * BLOCK + number * BLOCK
                name = f"{node.path} (block {number})" if number else node.path
                found.listings[name] = (at, size)
        zmap = reader._zmaps.get(node.inode)
        if zmap is not None:
            found.maps[node.path] = -(-inode.end // 8) * 8
            slots = []
            for lcn in range(min(zmap._count, 64)):
                if zmap._compact:
                    position, shift = zmap._compact_position(lcn)
                    pack = 8 if shift == 2 else 32
                    count = 2 if shift == 2 else 16
                    pack_at = position - position % pack
                    bits = (pack - 4) * 8 // count
                    slots.append((pack_at, bits, (position - pack_at) >> shift))
                else:
                    slots.append((zmap._indexes + 8 * lcn, 0, -1))
            found.indexes[node.path] = slots
    return found


Mutation = Callable[[bytearray, Layout, random.Random], str]


def _u16(data: bytearray, at: int, value: int) -> None:
    struct.pack_into("<H", data, at, value & 0xFFFF)


def _dirents(data: bytearray, listing: tuple[int, int]) -> list[int]:
    """Offsets of the dirents of a one-block listing."""
    at, size = listing
    (first,) = struct.unpack_from("<H", data, at + 8)
    count = first // 12 if 12 <= first <= size else 0
    return [at + 12 * index for index in range(count)]


def swap_dirent_targets(data: bytearray, layout: Layout, rng: random.Random) -> str:
    directory = rng.choice(sorted(layout.listings))
    dirents = _dirents(data, layout.listings[directory])
    if len(dirents) < 2:
        return "nothing"
    one, two = rng.sample(dirents, 2)
    a, b = bytes(data[one : one + 8]), bytes(data[two : two + 8])
    data[one : one + 8], data[two : two + 8] = b, a
    if rng.random() < 0.5:  # the types too
        data[one + 10], data[two + 10] = data[two + 10], data[one + 10]
    return f"swap the nids of two entries of /{directory}"


def reorder_dirents(data: bytearray, layout: Layout, rng: random.Random) -> str:
    """Names and targets rewritten in another order (the same bytes in all)."""
    directory = rng.choice(sorted(layout.listings))
    at, size = layout.listings[directory]
    dirents = _dirents(data, (at, size))
    if len(dirents) < 2:
        return "nothing"
    entries = []
    for index, offset in enumerate(dirents):
        nid, name_at, kind = struct.unpack_from("<QHB", data, offset)
        end = (
            struct.unpack_from("<H", data, offset + 12 + 8)[0] if index + 1 < len(dirents) else size
        )
        entries.append((nid, kind, bytes(data[at + name_at : at + end])))
    rng.shuffle(entries)
    names = b""
    for index, (nid, kind, name) in enumerate(entries):
        struct.pack_into(
            "<QHBB", data, at + 12 * index, nid, 12 * len(entries) + len(names), kind, 0
        )
        names += name
    data[at + 12 * len(entries) : at + 12 * len(entries) + len(names)] = names
    return f"reorder the entries of /{directory}"


def retarget_dirent(data: bytearray, layout: Layout, rng: random.Random) -> str:
    directory = rng.choice(sorted(layout.listings))
    dirents = _dirents(data, layout.listings[directory])
    if not dirents:
        return "nothing"
    offset = rng.choice(dirents)
    target = rng.choice(sorted(layout.nids))
    nid = layout.nids[target] + rng.choice([0, 0, 0, 1, 2, -1])
    struct.pack_into("<Q", data, offset, max(nid, 0))
    return f"an entry of /{directory} names the inode of /{target} ({nid})"


def shift_nameoff(data: bytearray, layout: Layout, rng: random.Random) -> str:
    directory = rng.choice(sorted(layout.listings))
    dirents = _dirents(data, layout.listings[directory])
    if not dirents:
        return "nothing"
    offset = rng.choice(dirents)
    (name_at,) = struct.unpack_from("<H", data, offset + 8)
    delta = rng.choice([-2, -1, 1, 2, 12])
    _u16(data, offset + 8, name_at + delta)
    return f"move a name offset of /{directory} by {delta}"


def change_type(data: bytearray, layout: Layout, rng: random.Random) -> str:
    directory = rng.choice(sorted(layout.listings))
    dirents = _dirents(data, layout.listings[directory])
    if not dirents:
        return "nothing"
    offset = rng.choice(dirents)
    kind = rng.choice([1, 2, 7, 0, 8])
    data[offset + 10] = kind
    return f"an entry of /{directory} says type {kind}"


def change_mode(data: bytearray, layout: Layout, rng: random.Random) -> str:
    path = rng.choice(sorted(layout.inodes))
    at = layout.inodes[path]
    (mode,) = struct.unpack_from("<H", data, at + 4)
    choice = rng.choice(["setuid", "setgid", "sticky", "world", "type"])
    if choice == "type":
        kinds = [0o100000, 0o040000, 0o120000, 0o010000]
        new = rng.choice(kinds) | mode & 0o7777
    else:
        new = mode | {"setuid": 0o4000, "setgid": 0o2000, "sticky": 0o1000, "world": 0o777}[choice]
    _u16(data, at + 4, new)
    return f"/{path} gets mode {new:o}"


def change_owner(data: bytearray, layout: Layout, rng: random.Random) -> str:
    path = rng.choice(sorted(layout.inodes))
    at = layout.inodes[path]
    extended = data[at] & 1
    value = rng.choice([1, 1000, 65534, 65535, 70000])
    if extended:
        struct.pack_into("<I", data, at + rng.choice([24, 28]), value)
    else:
        _u16(data, at + rng.choice([24, 26]), value)
    return f"/{path} gets owner or group {value & (0xFFFFFFFF if extended else 0xFFFF)}"


def change_nlink(data: bytearray, layout: Layout, rng: random.Random) -> str:
    path = rng.choice(sorted(layout.inodes))
    at = layout.inodes[path]
    value = rng.choice([0, 1, 2, 7, 65535])
    if data[at] & 1:
        struct.pack_into("<I", data, at + 44, value)
    else:
        _u16(data, at + 6, value)
    return f"/{path} gets {value} links"


def change_size(data: bytearray, layout: Layout, rng: random.Random) -> str:
    path = rng.choice(sorted(layout.inodes))
    at = layout.inodes[path]
    (size,) = struct.unpack_from("<I", data, at + 8)
    new = max(0, size + rng.choice([-4096, -1, 1, 4096, 100_000]))
    struct.pack_into("<I", data, at + 8, new)
    return f"/{path} says {new} bytes"


def change_layout(data: bytearray, layout: Layout, rng: random.Random) -> str:
    path = rng.choice(sorted(layout.inodes))
    at = layout.inodes[path]
    (i_format,) = struct.unpack_from("<H", data, at)
    new_layout = rng.choice([0, 1, 2, 3])
    _u16(data, at, (i_format & ~0xE) | new_layout << 1)
    return f"/{path} gets data layout {new_layout}"


def change_block_address(data: bytearray, layout: Layout, rng: random.Random) -> str:
    path = rng.choice(sorted(layout.inodes))
    at = layout.inodes[path]
    (raw,) = struct.unpack_from("<I", data, at + 16)
    new = (raw + rng.choice([-1, 1, 2])) & 0xFFFFFFFF
    struct.pack_into("<I", data, at + 16, new)
    return f"/{path}'s block address is {new}"


def change_xattr(data: bytearray, layout: Layout, rng: random.Random) -> str:
    if not layout.xattrs:
        return "nothing"
    path = rng.choice(sorted(layout.xattrs))
    at, size = layout.xattrs[path]
    shared = data[at + 4]
    entry = at + 12 + 4 * shared
    choice = rng.choice(["index", "name", "value", "icount", "shared", "filter", "shared-id"])
    if choice == "index" and entry + 4 <= at + size:
        data[entry + 1] = rng.choice([1, 2, 3, 4, 5, 6, 7, 0x81])
        return f"/{path}'s xattr gets name index {data[entry + 1]}"
    if choice == "name" and entry + 5 <= at + size:
        data[entry + 4 + rng.randrange(data[entry])] = rng.choice(b"Xx.\0")
        return f"/{path}'s xattr name changes"
    if choice == "value" and entry + 4 <= at + size:
        name_size, (value_size,) = data[entry], struct.unpack_from("<H", data, entry + 2)
        if value_size:
            data[entry + 4 + name_size] = rng.choice(b"tT\0")
        return f"/{path}'s xattr value changes"
    if choice == "icount":
        (icount,) = struct.unpack_from("<H", data, layout.inodes[path] + 2)
        _u16(data, layout.inodes[path] + 2, icount + rng.choice([-1, 1, 2]))
        return f"/{path}'s xattr count changes"
    if choice == "shared":
        data[at + 4] = shared + rng.choice([1, 2])
        return f"/{path} claims {data[at + 4]} shared xattrs"
    if choice == "filter":
        struct.pack_into("<I", data, at, rng.choice([1, 0xFFFFFFFF]))
        return f"/{path}'s xattr name filter is set"
    if shared:
        struct.pack_into("<I", data, at + 12, rng.choice([0, 1, 3]))
        return f"/{path}'s shared xattr id changes"
    return "nothing"


def change_map(data: bytearray, layout: Layout, rng: random.Random) -> str:
    if not layout.maps:
        return "nothing"
    path = rng.choice(sorted(layout.maps))
    header = layout.maps[path]
    choice = rng.choice(["advise", "clusterbits", "idata", "type", "delta", "pblk"])
    if choice == "advise":
        bit = rng.choice([0x1, 0x2, 0x4, 0x8, 0x10, 0x20])
        (advise,) = struct.unpack_from("<H", data, header + 4)
        _u16(data, header + 4, advise ^ bit)
        return f"/{path}'s map advise bit {bit:#x} flips"
    if choice == "clusterbits":
        data[header + 7] = rng.choice([1, 2, 8])
        return f"/{path}'s cluster bits are {data[header + 7]}"
    if choice == "idata":
        (size,) = struct.unpack_from("<H", data, header + 2)
        _u16(data, header + 2, size + rng.choice([-1, 1, 8]))
        return f"/{path}'s inline tail size changes"
    slots = layout.indexes[path]
    lcn = rng.randrange(len(slots))
    pack_at, bits, slot = slots[lcn]
    if bits == 0:  # a full index: advise (type), clusterofs, blkaddr or delta[0]
        at = pack_at
        if choice == "type":
            _u16(data, at, rng.randrange(4))
        elif choice == "delta":
            _u16(data, at + 4, rng.choice([0, 1, 2, 5, 0x801]))
        else:
            struct.pack_into("<I", data, at + 4, rng.choice([0, 1, 7, 1 << 20]))
        return f"/{path}'s index {lcn} changes its {choice}"
    if choice == "pblk":
        pack_size = 8 if bits == 16 else 32
        (base,) = struct.unpack_from("<I", data, pack_at + pack_size - 4)
        struct.pack_into("<I", data, pack_at + pack_size - 4, max(0, base + rng.choice([-1, 1])))
        return f"/{path}'s index pack of lcluster {lcn} moves its blocks"
    bit = bits * slot
    at = pack_at + bit // 8
    (word,) = struct.unpack_from("<I", data, at)
    shift = bit & 7
    lobits = 12
    value = word >> shift
    kind, lo = (value >> lobits) & 3, value & ((1 << lobits) - 1)
    if choice == "type":
        kind = rng.randrange(4)
    else:
        lo = rng.choice([0, 1, 2, 3, 0x801, 64])
    mask = ((1 << (lobits + 2)) - 1) << shift
    word = (word & ~mask) | ((kind << lobits | lo) << shift)
    struct.pack_into("<I", data, at, word & 0xFFFFFFFF)
    return f"/{path}'s lcluster {lcn} becomes type {kind}, lo {lo}"


def change_superblock(data: bytearray, layout: Layout, rng: random.Random) -> str:
    choice = rng.choice(["compat", "incompat", "root"])
    if choice == "compat":
        bit = rng.choice([0x2, 0x4, 0x8])
        (compat,) = struct.unpack_from("<I", data, SB + 8)
        struct.pack_into("<I", data, SB + 8, compat ^ bit)
        return f"superblock compat bit {bit:#x} flips"
    if choice == "incompat":
        bit = rng.choice([0x1, 0x2, 0x8, 0x10, 0x20, 0x40])
        (incompat,) = struct.unpack_from("<I", data, SB + 80)
        struct.pack_into("<I", data, SB + 80, incompat ^ bit)
        return f"superblock incompat bit {bit:#x} flips"
    target = rng.choice(sorted(layout.nids))
    _u16(data, SB + 14, layout.nids[target])
    return f"the root is /{target}'s inode"


MUTATIONS: list[Mutation] = [
    swap_dirent_targets,
    reorder_dirents,
    retarget_dirent,
    shift_nameoff,
    change_type,
    change_mode,
    change_owner,
    change_nlink,
    change_size,
    change_layout,
    change_block_address,
    change_xattr,
    change_map,
    change_map,
    change_superblock,
]


def mutants(workdir: Path, seed: int, count: int) -> Iterator[tuple[str, Path]]:
    """`count` mutants of the base images (LZ4, uncompressed, LZ4 with a long listing in turn),
    each one to three
    structural changes, reproducible from `seed`; yields (what changed, the image)."""
    workdir.mkdir(parents=True, exist_ok=True)
    bases = base_images(workdir)
    layouts = {name: layout_of(image) for name, image in bases.items()}
    originals = {name: image.read_bytes() for name, image in bases.items()}
    for index in range(count):
        rng = random.Random(f"{seed}-{index}")
        base = list(BASES)[index % len(BASES)]
        data = bytearray(originals[base])
        changes = []
        for _ in range(rng.choice([1, 1, 2, 3])):
            for _attempt in range(8):  # some draws find nothing to change
                change = rng.choice(MUTATIONS)(data, layouts[base], rng)
                if change != "nothing":
                    changes.append(change)
                    break
        fix_checksum(data)
        image = workdir / f"mutant-{seed}-{index:04}.raw"
        image.write_bytes(bytes(data))
        yield f"{base}: " + "; ".join(changes), image


def bombs(workdir: Path) -> Iterator[tuple[str, Path]]:
    """Images built to cost a reader time or memory."""
    workdir.mkdir(parents=True, exist_ok=True)
    yield (
        "100 files of 65,000 lclusters, each NONHEAD looking back one step (26 MB)",
        lookback_chain_image(workdir / "lookback-chains.raw", files=100, lclusters=65_000),
    )
    yield (
        "100 files of 65,000 lclusters, each its own extent (26 MB of indexes)",
        lookback_chain_image(workdir / "heads.raw", files=100, lclusters=65_000, heads=True),
    )
    yield (
        "200 files whose lookback chains are just short enough to follow",
        lookback_chain_image(workdir / "short-chains.raw", files=200, lclusters=120),
    )
