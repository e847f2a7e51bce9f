"""What this tool wrote in an output directory, so that clean removes that and nothing else.

The manifest, OUTPUT/.staging/manifest.json, maps each file the tool wrote (path relative to the
output directory) to its sha256, and each directory it created to that directory's identity
(device, inode). A file is the tool's to remove only while its bytes are still the ones written;
a directory only while it is the very one the tool made, and empty.

Nothing here follows a symlink out of the output directory: the tool's own subdirectories
(.staging, sysupdate, flatcar and those below them) are refused in one line when they are
anything but real directories. The output directory itself may be a symlink."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from build.core.errors import BuildError
from build.core.fileio import file_lock, write_text_atomic
from build.core.report import say
from build.model.names import MANIFEST, MANIFEST_LOCK, OUTPUT_LOCK, STAGING

INFRASTRUCTURE = (MANIFEST, MANIFEST_LOCK, OUTPUT_LOCK)  # in .staging, kept while it is used
FORMAT = 1
_CHUNK = 1 << 20

# sha256 already known for a file identity (device, inode, size, mtime): the pipeline hashes
# every image for its .sha256, so recording it need not read 400 MB once more; the stage step
# hashes the binary as it unpacks it (remember()), so recording the staged tree need not either.
_known: dict[tuple[int, int, int, int], str] = {}


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def remember(st: os.stat_result, sha256: str) -> None:
    """The sha256 of the bytes just written to the regular file `st` (its fstat after the last
    write): regular_sha256 gives it for that file until its size or mtime changes."""
    _known[_identity(st)] = sha256


# index.json and the like: an image entry is under 2 KiB; a file this large is no longer ours.
MAX_OWNED_READ = 16 << 20


def regular_sha256(path: Path) -> str | None:
    """sha256 of `path` if it is a regular file, read without following a symlink and without
    blocking on a FIFO or a device; None for anything else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None  # a symlink (ELOOP), a socket, gone, unreadable
    with os.fdopen(fd, "rb") as stream:
        st = os.fstat(stream.fileno())
        if not stat.S_ISREG(st.st_mode):
            return None
        known = _known.get(_identity(st))
        if known is not None:
            return known
        digest = hashlib.sha256()
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
        _known[_identity(st)] = digest.hexdigest()
        return digest.hexdigest()


def _refuse_link(path: Path, output_dir: Path) -> None:
    raise BuildError(
        f"{path} is a symbolic link, and this tool never follows one out of {output_dir}; "
        "nothing was changed",
        f"remove the link (rm {path}) or use another --output-dir",
    )


def own_subdir(output_dir: Path, *parts: str) -> Path:
    """OUTPUT/parts..., refused in one line where any level is a symlink or not a directory.
    Levels that do not exist yet are fine: the caller makes them (with make_dirs)."""
    path = output_dir
    for part in parts:
        path = path / part
        try:
            st = path.lstat()
        except FileNotFoundError:
            return output_dir.joinpath(*parts)
        if stat.S_ISLNK(st.st_mode):
            _refuse_link(path, output_dir)
        if not stat.S_ISDIR(st.st_mode):
            raise BuildError(
                f"{path} is not a directory, and this tool keeps its own files there; "
                "nothing was changed",
                "move it away or use another --output-dir",
            )
    return path


def refuse_links(output_dir: Path, *subdirs: tuple[str, ...]) -> None:
    """own_subdir for each of `subdirs` (each a tuple of parts)."""
    for parts in subdirs:
        own_subdir(output_dir, *parts)


@dataclass
class Manifest:
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256
    dirs: dict[str, list[int]] = field(default_factory=dict)  # relative path -> [dev, ino]

    def owns_file(self, output_dir: Path, relative: str) -> bool:
        recorded = self.files.get(relative)
        return recorded is not None and regular_sha256(output_dir / relative) == recorded

    def remove_if_owned(self, output_dir: Path, path: Path, step: str, why: str) -> None:
        """Remove `path` where it is the tool's, unchanged ("removed PATH (WHY)"); keep and
        name it otherwise."""
        if self.owns_file(output_dir, relative(output_dir, path)):
            path.unlink()
            say(step, f"removed {path} ({why})")
        else:
            say(step, f"kept {path}: this tool did not write it, or it changed since")

    def read_owned(self, output_dir: Path, relative: str) -> bytes | None:
        """The bytes of a small file the tool wrote, unchanged since: read once, without
        following a symlink, at most MAX_OWNED_READ bytes, and hashed as read (a check and a
        second read could see two files); None for anything else."""
        recorded = self.files.get(relative)
        if recorded is None:
            return None
        try:
            fd = os.open(
                output_dir / relative, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            )
        except OSError:
            return None
        with os.fdopen(fd, "rb") as stream:
            if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
                return None
            data = stream.read(MAX_OWNED_READ + 1)
        if len(data) > MAX_OWNED_READ or hashlib.sha256(data).hexdigest() != recorded:
            return None
        return data

    def owns_dir(self, output_dir: Path, relative: str) -> bool:
        recorded = self.dirs.get(relative)
        try:
            st = (output_dir / relative).lstat() if relative != "." else output_dir.stat()
        except OSError:
            return False
        return stat.S_ISDIR(st.st_mode) and recorded == [st.st_dev, st.st_ino]


def manifest_path(output_dir: Path) -> Path:
    return output_dir / STAGING / MANIFEST


def load(output_dir: Path) -> Manifest:
    """The manifest, or an empty one where there is none (outputs of older versions of this
    tool) or it cannot be read: then clean keeps everything."""
    path = manifest_path(output_dir)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as stream:
            if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
                return Manifest()
            data = json.loads(stream.read(64 << 20))
    except (OSError, ValueError):
        return Manifest()
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return Manifest()
    files = data.get("files")
    dirs = data.get("dirs")
    return Manifest(
        files={k: v for k, v in (files or {}).items() if isinstance(v, str)}
        if isinstance(files, dict)
        else {},
        dirs={k: v for k, v in (dirs or {}).items() if isinstance(v, list)}
        if isinstance(dirs, dict)
        else {},
    )


def save(output_dir: Path, manifest: Manifest) -> None:
    data = {"format": FORMAT, "files": manifest.files, "dirs": manifest.dirs}
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    write_text_atomic(manifest_path(output_dir), text)


@contextlib.contextmanager
def editing(output_dir: Path) -> Iterator[Manifest]:
    """The manifest, saved after the block if it changed, under the manifest's own lock."""
    make_dirs(output_dir, STAGING)
    with file_lock(output_dir / STAGING / MANIFEST_LOCK):
        manifest = load(output_dir)
        before = (dict(manifest.files), dict(manifest.dirs))
        yield manifest
        if (manifest.files, manifest.dirs) != before:
            save(output_dir, manifest)


def relative(output_dir: Path, path: Path) -> str:
    return os.path.relpath(path, output_dir)


def make_dirs(output_dir: Path, *parts: str) -> Path:
    """Make OUTPUT/parts... where missing, recording each directory made (the output directory
    itself too) as the tool's; refuse a symlink at any level."""
    path = own_subdir(output_dir, *parts)
    made: dict[str, list[int]] = {}
    if not output_dir.exists():
        output_dir.mkdir(parents=True, exist_ok=True)
        st = output_dir.stat()
        made["."] = [st.st_dev, st.st_ino]
    level = output_dir
    for part in parts:
        level = level / part
        try:
            level.mkdir()
        except FileExistsError:
            own_subdir(output_dir, *Path(relative(output_dir, level)).parts)
            continue
        st = level.lstat()
        made[relative(output_dir, level)] = [st.st_dev, st.st_ino]
    if made:
        with editing(output_dir) as manifest:
            manifest.dirs.update(made)
    return path


def record(output_dir: Path, paths: Iterable[Path]) -> None:
    """Record files just written in the output directory, with the sha256 of their bytes."""
    found = {}
    for path in paths:
        sha256 = regular_sha256(path)
        if sha256 is not None:
            found[relative(output_dir, path)] = sha256
    if found:
        with editing(output_dir) as manifest:
            manifest.files.update(found)


def record_tree(output_dir: Path, root: Path) -> None:
    """Record a tree the tool made (a staged rootfs): its directories and its files."""
    files: dict[str, str] = {}
    dirs: dict[str, list[int]] = {}
    for directory, _, names in os.walk(root):  # symlinks to directories are not followed
        st = os.lstat(directory)
        dirs[relative(output_dir, Path(directory))] = [st.st_dev, st.st_ino]
        for name in names:
            sha256 = regular_sha256(Path(directory) / name)
            if sha256 is not None:
                files[relative(output_dir, Path(directory) / name)] = sha256
    with editing(output_dir) as manifest:
        manifest.files.update(files)
        manifest.dirs.update(dirs)


def moved(output_dir: Path, moves: Iterable[tuple[Path, Path]]) -> None:
    """Files renamed within the output directory keep their recorded sha256 (pending outputs
    taking their final names); a file not recorded is hashed now."""
    pairs = [(relative(output_dir, a), relative(output_dir, b)) for a, b in moves]
    if not pairs:
        return
    with editing(output_dir) as manifest:
        for source, final in pairs:
            sha256 = manifest.files.pop(source, None) or regular_sha256(output_dir / final)
            if sha256 is not None:
                manifest.files[final] = sha256


@contextlib.contextmanager
def output_dir_lock(output_dir: Path, shared: bool = False) -> Iterator[None]:
    """The whole output directory's lock, OUTPUT/.staging/output.lock: builds take it shared;
    clean, release and sums exclusive, so clean never removes what a running build or release
    uses, and two releases (or sums) never interleave their files."""
    make_dirs(output_dir, STAGING)
    # A build (shared) waits only for the tasks that hold it alone.
    holder = "invoke clean, release or sums" if shared else "another build or release"
    lock = output_dir / STAGING / OUTPUT_LOCK
    with file_lock(lock, shared=shared, waiting_for=f"{holder} in {output_dir}"):
        yield


def refuse_foreign(output_dir: Path, paths: Iterable[Path]) -> None:
    """Before replacing `paths`: each must be absent or a file this tool wrote and nobody
    changed since (the manifest says so); else one line naming it, and nothing is written."""
    recorded = load(output_dir)
    for path in paths:
        if not os.path.lexists(path):
            continue
        if not recorded.owns_file(output_dir, relative(output_dir, path)):
            raise BuildError(
                f"refusing to replace {path}: this tool did not write it, or it changed since",
                "move it away (or release into another --output-dir); nothing was written",
            )
