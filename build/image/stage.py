"""Lay out the image tree: the one binary from the zip, the unit and the extension metadata."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from build.config.spec import BuildSpec
from build.core.errors import BuildError, doing
from build.core.fileio import atomic_dir, sweep_temps
from build.fetch import zipmember
from build.image import content
from build.image.content import DIR_MODE
from build.image.elf import HEADER_SIZE, check_elf_header
from build.image.stagedfiles import texts
from build.model import manifest

if TYPE_CHECKING:
    from build.config.context import StepContext


# The zip matched the release's SHA256SUMS: whatever is wrong with it is wrong at the source.
ASSET_HINT = (
    "the release asset is broken or was tampered with (it matches SHA256SUMS: a new download "
    "will not help); check that release, or the mirror given as --base-url"
)


def extract_binary(zip_path: Path, spec: BuildSpec, dest: Path) -> None:
    """Write only the member `alloy-linux-ARCH` to `dest`, refusing anything but the right ELF
    in a zip where nothing else could be taken for it."""
    what = f"{spec.member} in {spec.zip_name}"
    reading = doing("reading the release zip", zip_path)
    try:
        with reading, zip_path.open("rb") as raw, zipmember.open_archive(zip_path) as archive:
            info = zipmember.select(archive, raw, spec.member)
            if info is None:
                raise BuildError(
                    f"{spec.zip_name} from {spec.zip_url} has no {spec.member}",
                    f"it holds: {zipmember.listed(archive.namelist()) or 'nothing'}; "
                    "check --arch and --base-url",
                )
            limit = spec.max_binary_size  # a zip bomb must not fill the disk
            if info.file_size > limit:
                raise _too_big(what, limit)
            chunks = zipmember.read_chunks(archive.open(info), zip_path)
            with doing("unpacking the binary", dest), dest.open("wb") as out:
                sha256 = _copy(chunks, out, spec, what)
                out.flush()
                written = os.fstat(out.fileno())
            # The manifest's record of the staged tree takes this sha256 for the file while it
            # is the one just written (same inode, size and mtime), instead of reading it again.
            manifest.remember(written, sha256)
    except zipmember.ZipProblem as problem:
        raise BuildError(f"{spec.zip_name} from {spec.zip_url} {problem}", ASSET_HINT) from None
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError):
        # What select() did not foresee, from zipfile.open(): its words hold reprs.
        raise BuildError(
            f"{spec.zip_name} from {spec.zip_url} has an entry for {spec.member} that cannot "
            "be read",
            ASSET_HINT,
        ) from None


def _copy(chunks: Iterator[bytes], out: BinaryIO, spec: BuildSpec, what: str) -> str:
    """Check the ELF header before a byte is written, and the size as the bytes come; the
    sha256 of the bytes written, hashed as they pass."""
    head = b""
    for chunk in chunks:  # a chunk may be shorter than the header: join until it is not
        head += chunk
        if len(head) >= HEADER_SIZE:
            break
    check_elf_header(head[:HEADER_SIZE], spec.arch, what)
    written = 0
    digest = hashlib.sha256()
    for chunk in itertools.chain([head], chunks):
        written += len(chunk)
        if written > spec.max_binary_size:  # the header's size can lie
            raise _too_big(what, spec.max_binary_size)
        digest.update(chunk)
        out.write(chunk)
    return digest.hexdigest()


def _too_big(what: str, limit: int) -> BuildError:
    return BuildError(
        f"{what} unpacks to more than {limit >> 20} MiB (--max-binary-size)",
        "the release asset is broken, or raise --max-binary-size",
    )


def _make_dirs(root: Path, relative: str) -> None:
    path = root
    for part in Path(relative).parts:
        path = path / part
        path.mkdir(exist_ok=True)
        os.chmod(path, DIR_MODE)


def _write(path: Path, text: str | bytes, mode: int) -> None:
    with doing("staging the image tree", path):
        if isinstance(text, bytes):  # a keyring (--trust-keys)
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)


def _set_xattr(path: Path, name: str, value: bytes) -> None:
    try:
        os.setxattr(path, name, value)
    except OSError as error:
        if error.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            raise BuildError(
                f"cannot set the {name} xattr under {path.parent}: the filesystem "
                "does not support user xattrs (tmpfs before Linux 6.6?)",
                "use an --output-dir on a disk filesystem such as ext4 or xfs",
            ) from None
        raise


def _strip_foreign_xattrs(root: Path, keep: dict[Path, set[str]]) -> None:
    """A stray xattr (default ACLs, a desktop's tags) would change the image's bytes."""
    for directory, _, files in os.walk(root):
        for path in [Path(directory), *(Path(directory) / name for name in files)]:
            for name in os.listxattr(path, follow_symlinks=False):
                if name not in keep.get(path, set()):
                    # Some cannot go (security.selinux where the policy forbids it).
                    with contextlib.suppress(OSError):
                        os.removexattr(path, name, follow_symlinks=False)


def stage(spec: BuildSpec, zip_path: Path, tree: Path, texts: dict[str, str | bytes]) -> None:
    """Lay out the image: the binary from the zip, then `texts` (path in the image -> content),
    each with its mode and xattrs from the content table (build/image/content.py)."""
    os.chmod(tree, DIR_MODE)  # the image root takes this directory's mode
    for relative in (content.BINARY.path, *texts):
        _make_dirs(tree, str(Path(relative).parent))
    binary = tree / content.BINARY.path
    extract_binary(zip_path, spec, binary)
    os.chmod(binary, content.BINARY.mode)
    for relative, text in texts.items():
        _write(tree / relative, text, content.BY_PATH[relative].mode)
    keep: dict[Path, set[str]] = {}
    for file in (content.BY_PATH[relative] for relative in texts):
        for name, value in file.xattrs:
            _set_xattr(tree / file.path, name, value)
            keep.setdefault(tree / file.path, set()).add(name)
    _strip_foreign_xattrs(tree, keep)


def make(runner: StepContext, zip_path: Path) -> str:
    """The stage step: the image tree from the verified zip `zip_path`, swapped in whole."""
    spec = runner.spec
    sweep_temps(spec.rootfs)  # a killed run's half-staged trees (under the stage lock)
    with atomic_dir(spec.rootfs) as tree:
        stage(spec, zip_path, tree, texts(runner))
    # The binary's sha256 is the one extract_binary took as it wrote it: only the texts are read.
    manifest.record_tree(spec.output_dir, spec.rootfs)
    return f"staged the files of {spec.image.name}"
