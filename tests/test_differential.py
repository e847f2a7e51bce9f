"""The differential suite: images mutated by structure, each read by the project's reader and, if
the reader takes it, mounted alone and walked as the kernel shows it (build/verify/kernelview.py).
An image the reader accepts must look the same to both: listing, lookup, attributes, xattrs and
content hashes. A refusal is fine; a difference, or a reader that crashes, fails the test, and every
failure of a run is reported together.

Generators are modules with `mutants(workdir, seed, count) -> Iterator[(description, image)]`
(GENERATORS); the images are made by structure (tables, listings, inode numbers, xattr ids,
fragments, block lists), never as random bytes, which could oops the host's kernel. A fixed seed
and count make `nox -s tests` reproducible; `nox -s differential-deep -- COUNT [SEED]` runs many
more (ALLOY_DIFFERENTIAL_COUNT, ALLOY_DIFFERENTIAL_SEED).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import random
import shutil
import stat
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

from build.core.errors import BuildError
from build.core.report import listing
from build.formats.table import open_image
from build.image.content import IMAGE_BINARY, IMAGE_UNIT
from build.read.image import ErofsImage, ReadImage
from build.verify import kernelview
from tests.fakes import MACHINES, elf_binary
from tests.needs import unavailable
from tests.trees import CAP_SYS_ADMIN, alloy_tree, packed

# The generator modules; a missing one skips outside CI, fails under CI=true.
GENERATORS = ("tests.mutants.squashfs", "tests.mutants.erofs")
SEED = 20  # issue 20
COUNT = {"tests.mutants.squashfs": 300, "tests.mutants.erofs": 300, "stand-in": 30}
MAX_HASH = 64 << 20  # the largest file a mutant's kernel view hashes

pytestmark = pytest.mark.needs(
    "unshare", "mount", "mksquashfs", "mkfs.erofs", root="mounting mutants in a private namespace"
)


@dataclass
class Outcome:
    refused: int = 0  # by the reader: fine
    unmountable: int = 0  # accepted by the reader, refused by the kernel: verify fails them
    same: int = 0  # accepted, and the kernel agrees
    failures: list[str] = field(default_factory=list)  # differences, crashes


def compare(description: str, image: Path, outcome: Outcome) -> None:
    """Read `image` as verify does and, if the reader takes it, hold the kernel's view to it."""
    try:
        read = open_image(image)
    except BuildError:
        outcome.refused += 1
        return
    except Exception:  # a reader must refuse in one line, never crash
        outcome.failures.append(f"{description}: the reader crashed: {_last_line()}")
        return
    fstype = "erofs" if isinstance(read, ErofsImage) else "squashfs"
    sha256 = kernelview.reader_sha256(read, MAX_HASH)
    try:
        for entry in read.entries.values():
            if entry.is_file:
                sha256(entry.path)
    except BuildError:  # verify's kernel view fails on a file its reader cannot read
        outcome.refused += 1
        return
    try:
        view = kernelview.kernel_view(image, fstype, list(read.entries), MAX_HASH)
    except BuildError as error:
        if not error.message.startswith("the kernel refuses to mount"):
            outcome.failures.append(f"{description}: {error.message}")
        outcome.unmountable += 1
        return
    try:
        found = kernelview.differences(read.entries, view, sha256)
    except Exception:
        outcome.failures.append(f"{description}: the reader crashed: {_last_line()}")
        return
    if found:
        outcome.failures.append(f"{description}: {listing(found, most=400)}")
    else:
        outcome.same += 1


def _last_line() -> str:
    return traceback.format_exc().strip().splitlines()[-1]


def settings(name: str) -> tuple[int, int]:
    """(count, seed) for the generator `name`: the test's own, or the deep session's."""
    count = int(os.environ.get("ALLOY_DIFFERENTIAL_COUNT") or COUNT[name])
    seed = int(os.environ.get("ALLOY_DIFFERENTIAL_SEED") or SEED)
    return count, seed


def generator(name: str) -> Callable[[Path, int, int], Iterator[tuple[str, Path]]]:
    if name == "stand-in":
        return stand_in
    try:
        module: ModuleType = importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is not None and name.startswith(error.name):
            unavailable(f"no {name} yet")
        raise
    return module.mutants


@pytest.mark.parametrize("name", [*GENERATORS, "stand-in"])
def test_every_mutant_the_reader_takes_looks_the_same_to_the_kernel(
    tmp_path: Path, name: str
) -> None:
    mutants = generator(name)
    count, seed = settings(name)
    outcome, started = Outcome(), time.monotonic()
    for description, image in mutants(tmp_path, seed, count):
        compare(description, image, outcome)
        image.unlink(missing_ok=True)  # a deep run makes thousands
    seen = outcome.refused + outcome.unmountable + outcome.same + len(outcome.failures)
    print(
        f"{name}: {seen} mutants (seed {seed}) in {time.monotonic() - started:.1f} s: "
        f"{outcome.refused} refused by the reader, {outcome.unmountable} by the kernel, "
        f"{outcome.same} the same to both, {len(outcome.failures)} failed"
    )
    assert seen, f"{name} made no mutants"
    assert not outcome.failures, (
        f"{len(outcome.failures)} of {count} mutants of {name} (seed {seed}) look different to "
        "the kernel than to the reader:\n" + "\n".join(outcome.failures)
    )


# The stand-in generator: valid images of both formats, varied by structure through the trees
# and options mkfs tools take (modes, owners, xattrs, hard links, many entries, sizes around
# block boundaries, sparse files, special files, deep and long names).


def stand_in(workdir: Path, seed: int, count: int) -> Iterator[tuple[str, Path]]:
    rng = random.Random(seed)
    for number in range(count):
        tree = alloy_tree(workdir / f"tree{number}", binary=elf_binary(MACHINES["amd64"]))
        done = [mutation(tree, rng) for mutation in rng.sample(MUTATIONS, rng.randint(1, 4))]
        fmt = rng.choice(("squashfs", "erofs"))
        image, options = workdir / f"mutant{number}.raw", _options(fmt, rng)
        try:
            _pack(fmt, tree, image, options)
        except subprocess.CalledProcessError:
            continue  # a tree the mkfs tool cannot pack: no image to compare
        finally:
            shutil.rmtree(tree)
        yield f"stand-in #{number} ({fmt} {' '.join(options)}: {'; '.join(done)})", image


def _pack(fmt: str, tree: Path, image: Path, options: list[str]) -> None:
    if fmt == "squashfs":
        command = ["mksquashfs", str(tree), str(image), "-noappend", "-no-progress", *options]
    else:
        command = ["mkfs.erofs", "--quiet", *options, str(image), str(tree)]
    env = {"PATH": os.environ["PATH"], "LC_ALL": "C", "SOURCE_DATE_EPOCH": "0"}
    subprocess.run(command, check=True, capture_output=True, env=env)


def _options(fmt: str, rng: random.Random) -> list[str]:
    if fmt == "squashfs":
        return [
            *("-comp", rng.choice(("xz", "zstd", "gzip"))),
            *("-b", str(rng.choice((4096, 8192, 65536, 131072, 1 << 20)))),
            *rng.choice(([], ["-no-fragments"], ["-always-use-fragments"], ["-no-duplicates"])),
        ]
    return [
        "-T0",
        f"-U{_UUID}",
        *rng.choice(([], ["-zlz4hc"], ["-zlz4hc,12"], ["-zlz4"])),
        *rng.choice(([], ["-C65536"], ["-C16384"], ["-C4096"])),
        *rng.choice(([], ["-Enoinline_data"], ["-Eforce-inode-extended"], ["-Eztailpacking"])),
    ]


_UUID = "2f6a2c1e-0b1d-4c55-9a5e-7d1c0f3b2a10"  # mkfs.erofs picks a random one


def _entries(tree: Path) -> list[Path]:
    """The tree's regular files and directories: never a symlink (chmod, chown and setxattr
    would follow it out of the tree), FIFO or device."""
    # os.walk, not rglob: Python 3.10's rglob stats through symlinks (one to a 300-byte name
    # fails with ENAMETOOLONG).
    found = [Path(top) / name for top, dirs, files in os.walk(tree) for name in dirs + files]
    return [
        path
        for path in sorted(found, key=str)
        if stat.S_ISREG(path.lstat().st_mode) or stat.S_ISDIR(path.lstat().st_mode)
    ]


def _entry(tree: Path, rng: random.Random) -> Path:
    return rng.choice(_entries(tree))


def _mode(tree: Path, rng: random.Random) -> str:
    entry = _entry(tree, rng)
    bits = rng.choice((0o4755, 0o2755, 0o1777, 0o700, 0o000, 0o7777, 0o644, 0o555))
    entry.chmod(bits)
    return f"mode {bits:04o} on {entry.relative_to(tree)}"


def _owner(tree: Path, rng: random.Random) -> str:
    entry = _entry(tree, rng)
    uid, gid = rng.choice((0, 1, 999, 1000, 65534, 70000)), rng.choice((0, 5, 1000, 65534))
    os.chown(entry, uid, gid, follow_symlinks=False)
    return f"owner {uid}/{gid} on {entry.relative_to(tree)}"


def _xattrs(tree: Path, rng: random.Random) -> str:
    name = rng.choice(("user.a", "user.extension-release.strict", "trusted.x", "security.selinux"))
    value = rng.randbytes(rng.choice((0, 1, 16, 255, 300)))
    targets = rng.sample(_entries(tree), rng.randint(1, 3))
    for target in targets:
        os.setxattr(target, name, value, follow_symlinks=False)
    if rng.random() < 0.3:
        os.setxattr(tree / IMAGE_BINARY, "security.capability", CAP_SYS_ADMIN)
    return f"xattr {name} ({len(value)} bytes) on {len(targets)} entries"


def _hard_link(tree: Path, rng: random.Random) -> str:
    source = tree / rng.choice((IMAGE_BINARY, IMAGE_UNIT))
    link = tree / "usr/local/bin" / rng.choice(("alloy2", "sh", "a" * 200))
    os.link(source, link)
    return f"hard link {link.relative_to(tree)}"


def _many(tree: Path, rng: random.Random) -> str:
    """Over 8 KiB of listing: mksquashfs writes a directory index, the kernel's lookup uses it."""
    directory = tree / "usr/lib/many"
    directory.mkdir(mode=0o755)
    number = rng.choice((200, 400, 700))
    for index in range(number):
        name = f"{index:04}-" + "n" * rng.randint(1, 60)
        (directory / name).write_bytes(b"x" * rng.randint(0, 10))
    return f"{number} entries in usr/lib/many"


def _sizes(tree: Path, rng: random.Random) -> str:
    directory = tree / "usr/lib/sizes"
    directory.mkdir(mode=0o755)
    sizes = rng.sample((0, 1, 4095, 4096, 4097, 65536, 131073, (1 << 20) + 1), 3)
    for size in sizes:
        (directory / f"f{size}").write_bytes(rng.randbytes(size))
    with (directory / "sparse").open("wb") as sparse:
        sparse.truncate(rng.choice((8192, 3 << 20)))
        sparse.seek(4096)
        sparse.write(b"data")
    (directory / "copy").write_bytes((tree / IMAGE_UNIT).read_bytes())  # a duplicate
    return f"files of {sizes} bytes, a sparse one and a duplicate"


def _special(tree: Path, rng: random.Random) -> str:
    kind = rng.choice(("symlink", "fifo", "char", "block", "socket-less dir"))
    where = tree / "usr/lib/special"
    if kind == "symlink":
        where.symlink_to(rng.choice(("/etc/shadow", "../local/bin/alloy", "x" * 300)))
    elif kind == "fifo":
        os.mkfifo(where)
    elif kind in ("char", "block"):
        kind_bits = stat.S_IFCHR if kind == "char" else stat.S_IFBLK
        os.mknod(where, kind_bits | 0o600, os.makedev(rng.choice((1, 8, 259)), 3))
    else:
        where.mkdir(mode=0o755)
    return f"a {kind} at usr/lib/special"


def _deep(tree: Path, rng: random.Random) -> str:
    depth = rng.choice((8, 20, 30))
    path = tree / "usr" / "/".join(f"d{level}" for level in range(depth))
    path.mkdir(parents=True)
    (path / "deep").write_bytes(b"deep")
    (tree / "usr/lib" / ("n" * 250)).write_bytes(b"long")  # mkfs.erofs 1.5 packs no 255
    return f"a {depth}-deep directory, a 250-byte name"


def _odd_names(tree: Path, rng: random.Random) -> str:
    directory = os.fsencode(tree / "usr/lib")
    names = rng.sample((b"new\nline", b"\xff\xfe", b" space", b"-dash", b"\xc3\xa9t\xc3\xa9"), 2)
    for name in names:
        with open(os.path.join(directory, name), "wb") as file:
            file.write(name)
    return f"names {names!r}"


def _no_xattrs(tree: Path, rng: random.Random) -> str:
    """No xattr at all: the image has no xattr table (squashfs) or no xattr area (EROFS)."""
    for path in _entries(tree):
        for name in os.listxattr(path):
            os.removexattr(path, name)
    return "no xattrs"


MUTATIONS = (
    *(_mode, _owner, _xattrs, _hard_link, _many, _sizes, _special, _deep, _odd_names),
    _no_xattrs,
)


def test_the_stand_in_is_reproducible(tmp_path: Path) -> None:
    """The same seed makes the same images: a failure can be made again from its seed."""
    first = [(d, image.read_bytes()) for d, image in stand_in(tmp_path / "a", 7, 3)]
    second = [(d, image.read_bytes()) for d, image in stand_in(tmp_path / "b", 7, 3)]
    assert [d for d, _ in first] == [d for d, _ in second]
    assert [data for _, data in first] == [data for _, data in second]


def test_the_harness_reports_every_difference_and_crash_together(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The harness can fail: a reader that lies about a mode, or crashes, is caught and named,
    for every mutant, not only the first."""
    real = open_image
    calls = iter(("lie", "crash", "lie", "truth"))

    def reader(image: Path) -> ReadImage:
        how = next(calls)
        if how == "crash":
            raise ValueError("unpack requires a buffer of 4 bytes")
        read = real(image)
        if how == "lie":
            node = read.entries[IMAGE_BINARY]
            read.entries[IMAGE_BINARY] = dataclasses.replace(node, permissions=0o700)
        return read

    monkeypatch.setattr(sys.modules[__name__], "open_image", reader)
    image = packed(alloy_tree(tmp_path / "tree"), tmp_path / "alloy.raw", "squashfs", "xz")
    outcome = Outcome()
    for number in range(4):
        compare(f"mutant {number}", image, outcome)
    assert outcome.failures == [
        f"mutant 0: /{IMAGE_BINARY}: permissions is 0755 to the kernel (lookup and listing), "
        "0700 to the reader",
        "mutant 1: the reader crashed: ValueError: unpack requires a buffer of 4 bytes",
        f"mutant 2: /{IMAGE_BINARY}: permissions is 0755 to the kernel (lookup and listing), "
        "0700 to the reader",
    ]
    assert outcome.same == 1


def test_a_reader_refusal_is_fine(tmp_path: Path) -> None:
    broken = tmp_path / "broken.raw"
    broken.write_bytes(b"hsqs" + bytes(200))
    outcome = Outcome()
    compare("a truncated superblock", broken, outcome)
    assert (outcome.refused, outcome.failures) == (1, [])
