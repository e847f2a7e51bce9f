"""The download cache: a directory the tool tags as its own when it makes it (CACHEDIR.TAG, the
Cache Directory Tagging convention, which backup tools honour too), and whose entries clean
removes by the tool's own layout only:

  CACHE/CACHEDIR.TAG                              the tag (stays)
  CACHE/latest-SOURCE.json                        --version=latest's answer (build/fetch/latest.py)
  CACHE/SOURCE/vVERSION/alloy-linux-ARCH.zip      a release's zip and SHA256SUMS
  CACHE/SOURCE/vVERSION/SHA256SUMS
with their lock files (.NAME.lock) and temporaries (.NAME.XXXX.tmp). SOURCE is urls.cache_key of
--base-url (or --api-url), e.g. https_github.com_443__HASH. Older versions named it by host and
path alone (github.com_grafana_alloy_releases_download): builds never read such a folder, and
clean removes it like any other."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

from build import alloy
from build.config.spec import BuildSpec
from build.core.errors import BuildError
from build.core.fileio import OLD_SUFFIX, TEMP_SUFFIX, write_text_atomic
from build.model.arch import ARCHES
from build.model.manifest import regular_sha256
from build.model.names import CACHE_TAG as TAG
from build.model.names import (
    LATEST_PREFIX,
    LOCK_SUFFIX,
    SUMS_FILE,
    default_cache_dir,
    lock_file,
)
from build.model.versions import VERSION_PATTERN

SIGNATURE = "Signature: 8a477f597d28d172789f06886806bc55"
TAG_TEXT = (
    f"{SIGNATURE}\n"
    "# This file is a cache directory tag created by alloy-sysext (its download cache).\n"
    "# For information about cache directory tags, see https://bford.info/cachedir/\n"
)
_RELEASE_FILES = {alloy.asset_zip(arch) for arch in ARCHES} | {SUMS_FILE}
_VERSION_DIR = re.compile(rf"v{VERSION_PATTERN.pattern}")
_SOURCE_DIR = re.compile(r"[A-Za-z0-9.][A-Za-z0-9._-]*")
_TEMP = re.compile(rf"\.(?P<name>.+)\.[^.]+({re.escape(TEMP_SUFFIX)}|{re.escape(OLD_SUFFIX)})")
_LOCK = re.compile(rf"\.(?P<name>.+){re.escape(LOCK_SUFFIX)}")
_LATEST = re.compile(rf"{LATEST_PREFIX}[A-Za-z0-9._-]+\.json")


def make_cache_dir(cache_dir: Path) -> None:
    """Make the cache directory where missing, tagged as this tool's. One that exists is not
    claimed, but for the default cache of an older version of this tool (made before the tag):
    tagged if everything in it is the tool's by name, so clean --cache works on it again."""
    try:
        cache_dir.mkdir(parents=True)
    except FileExistsError:
        adopt_older_default(cache_dir)
        return
    write_text_atomic(cache_dir / TAG, TAG_TEXT)


def adopt_older_default(cache_dir: Path) -> None:
    """Tag the default cache an older version of this tool made (before the tag), if
    everything in it is the tool's by name."""
    older = cache_dir == default_cache_dir() and cache_dir.is_dir() and not is_tagged(cache_dir)
    if older and _only_the_tools_layout(cache_dir):
        write_text_atomic(cache_dir / TAG, TAG_TEXT)


def _only_the_tools_layout(cache_dir: Path) -> bool:
    """Whether every entry of a non-empty `cache_dir` is in the tool's layout, by name and
    type: source folders of version folders of the tool's files, and latest-*.json."""
    top = list(cache_dir.iterdir())
    for entry in top:
        if _is_regular(entry) and _latest(entry.name):
            continue
        if not (_SOURCE_DIR.fullmatch(entry.name) and _is_dir(entry)):
            return False
        for release in entry.iterdir():
            if not (_VERSION_DIR.fullmatch(release.name) and _is_dir(release)):
                return False
            for path in release.iterdir():
                if not (_is_regular(path) and _ours(path.name, _RELEASE_FILES)):
                    return False
    return bool(top)


def is_tagged(cache_dir: Path) -> bool:
    """Whether `cache_dir` holds a CACHEDIR.TAG (a regular file, never a symlink or a FIFO)
    that starts with the convention's signature."""
    try:
        fd = os.open(cache_dir / TAG, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as stream:
        if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
            return False
        return stream.read(len(SIGNATURE)) == SIGNATURE.encode()


def refuse_untagged(cache_dir: Path) -> None:
    if cache_dir.exists() and not is_tagged(cache_dir):
        raise BuildError(
            f"{cache_dir} has no {TAG}, so it is not a download cache this tool made; "
            "nothing was removed",
            "check --cache-dir (and cache_dir in invoke.yaml, INVOKE_CACHE_DIR); a cache an "
            "older alloy-sysext made elsewhere, or that holds other files, has no tag either: "
            "remove that one yourself",
        )


def _ours(name: str, own_names: set[str]) -> bool:
    """One of the tool's files by name, or its lock file or temporary."""
    if name in own_names:
        return True
    match = _LOCK.fullmatch(name) or _TEMP.fullmatch(name)
    return match is not None and match["name"] in own_names


def _is_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except OSError:
        return False


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def _remove_own_files(directory: Path, own_names: set[str], removed: list[Path]) -> list[Path]:
    """Remove the tool's regular files in `directory` (by name); return what else is there."""
    kept = []
    for path in sorted(directory.iterdir()):
        if _is_regular(path) and _ours(path.name, own_names):
            path.unlink()
            removed.append(path)
        else:
            kept.append(path)
    return kept


def _latest(name: str) -> bool:
    """--version=latest's cached answer, or its lock file or temporary."""
    match = _LOCK.fullmatch(name) or _TEMP.fullmatch(name)
    return bool(_LATEST.fullmatch(match["name"] if match else name))


def clean_cache(cache_dir: Path, version: str | None) -> tuple[list[Path], list[Path]]:
    """Remove the tool's entries in a tagged cache (only `version`'s release files, when given),
    never the directory itself nor anything outside the layout; return (removed, kept), kept
    being what else was found inside the tool's version folders."""
    removed: list[Path] = []
    kept: list[Path] = []
    if not cache_dir.exists():
        return removed, kept
    adopt_older_default(cache_dir)
    refuse_untagged(cache_dir)
    for path in sorted(cache_dir.iterdir()):
        if version is None and _latest(path.name) and _is_regular(path):
            path.unlink()
            removed.append(path)
    wanted = f"v{version}" if version else None
    for source in sorted(cache_dir.iterdir()):
        if not (_SOURCE_DIR.fullmatch(source.name) and _is_dir(source)):
            continue
        emptied = False
        for release in sorted(source.iterdir()):
            if not (_VERSION_DIR.fullmatch(release.name) and _is_dir(release)):
                continue
            if wanted is not None and release.name != wanted:
                continue
            left = _remove_own_files(release, _RELEASE_FILES, removed)
            kept += left
            if not left:
                release.rmdir()
                removed.append(release)
                emptied = True
        if emptied and not any(source.iterdir()):
            source.rmdir()
            removed.append(source)
    return removed, kept


def drop_failed_fetch(
    release_dir: Path, locks: list[Path], made: list[Path], sums: Path | None = None
) -> None:
    """After a failed fetch: the version folder and source folder it made (`made`, outermost
    first) go again if nothing but its own empty lock files and the `sums` file it downloaded
    (SHA256SUMS, before the zip failed) is in them. The locks are held while they are removed,
    so a build waiting on one takes it again (fileio.file_lock), and no one is reading the sums."""
    if release_dir not in made or not _is_dir(release_dir):
        return
    with contextlib.ExitStack() as stack:
        # Never waited for: a lock another build holds means the folder is in use.
        held = {lock.name for lock in locks if stack.enter_context(_lock_if_free(lock))}
        entries = list(release_dir.iterdir())
        for path in entries:
            if not (_held_empty_lock(path, held) or _fetched_sums(path, sums, held)):
                return  # something else, a lock in use, or one with bytes in it: not ours
        for path in entries:
            path.unlink()
        release_dir.rmdir()
    for directory in reversed(made[:-1]):
        try:
            directory.rmdir()  # only when empty: another version may have arrived meanwhile
        except OSError:
            return


def _held_empty_lock(path: Path, held: set[str]) -> bool:
    return path.name in held and regular_sha256(path) == _EMPTY_SHA256


def _fetched_sums(path: Path, sums: Path | None, held: set[str]) -> bool:
    """`path` is the SHA256SUMS this fetch brought into a folder it made, its lock held."""
    if sums is None or path.name != sums.name or lock_file(sums).name not in held:
        return False
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


@contextlib.contextmanager
def _lock_if_free(path: Path) -> Iterator[bool]:
    """Lock the existing file `path` if no one holds it (never creating it); yield whether
    that worked."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield os.fstat(fd).st_ino == _inode(path)
    finally:
        os.close(fd)


def _inode(path: Path) -> int | None:
    try:
        return path.lstat().st_ino
    except OSError:
        return None


_EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def fetch_locks(cached_zip: Path, cached_sums: Path) -> list[Path]:
    """The lock files a fetch takes, in the order it takes them."""
    return [lock_file(cached_zip), lock_file(cached_sums)]


@contextlib.contextmanager
def fetching(spec: BuildSpec) -> Iterator[None]:
    """Around a fetch: the cache directory made (tagged); what a failed fetch made goes
    again, so no empty version folder with lock files is left."""
    make_cache_dir(spec.cache_dir)
    made = [d for d in (spec.cached_release.parent, spec.cached_release) if not d.exists()]
    try:
        yield
    except BaseException:
        locks = fetch_locks(spec.cached_zip, spec.cached_sums)
        drop_failed_fetch(spec.cached_release, locks, made, spec.cached_sums)
        raise
