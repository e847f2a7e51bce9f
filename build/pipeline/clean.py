"""Removing what the build made: only files this tool wrote, as its manifest records them, and
still holding the bytes it wrote; everything else under the tool's names is kept and listed."""

from __future__ import annotations

import contextlib
import os
import stat
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from build.config.spec import parse_output_name, parse_staging_name
from build.core.fileio import OLD_SUFFIX, TEMP_SUFFIX
from build.model import manifest
from build.model.arch import ARCHES
from build.model.manifest import INFRASTRUCTURE, Manifest
from build.model.names import (
    BUILDINFO_SUFFIX,
    CHECKSUM_SUFFIX,
    FLATCAR_DIR,
    INDEX,
    LATEST_PREFIX,
    LOCK_SUFFIX,
    PUBLIC_KEY_ARMORED,
    PUBLIC_KEY_FILE,
    ROOTFS,
    SIGNATURE_FILE,
    STAGING,
    STAMP_SUFFIX,
    STREAMS_DIR,
    SUMS_FILE,
    SYSUPDATE_DIR,
    VERITY_CERT_FILE,
)
from build.release.publish import release_files

# What clean says it removed, in this order: (kind, one, many).
_KINDS = (
    ("image", "image", "images"),
    ("checksum", "checksum", "checksums"),
    ("buildinfo", "build info file", "build info files"),
    ("signature", "signature", "signatures"),
    ("key", "public key", "public keys"),
    ("certificate", "certificate", "certificates"),
    ("fleet", "fleet file", "fleet files"),  # SHA256SUMS, index.json, sysupdate/, flatcar/
    ("staged", "staged file", "staged files"),
    ("record", "step record", "step records"),
    ("zip", "downloaded zip", "downloaded zips"),
    ("sums", "SHA256SUMS list", "SHA256SUMS lists"),
    ("latest", "--version=latest answer", "--version=latest answers"),
    ("lock", "lock file", "lock files"),
    ("temporary", "temporary file", "temporary files"),
    ("other", "other file", "other files"),
    ("directory", "directory", "directories"),
)


@dataclass
class Cleaned:
    removed: list[Path] = field(default_factory=list)
    kept: list[tuple[Path, str]] = field(default_factory=list)  # (path, why)
    kinds: Counter[str] = field(default_factory=Counter)  # what was removed: kind -> count

    def add(self, path: Path, kind: str) -> None:
        self.removed.append(path)
        self.kinds[kind] += 1


def removed_line(kinds: Counter[str], where: str) -> str:
    """clean's line for what went from `where`: "removed from output: 2 images, 2 checksums,
    …", each kind counted, or that there was nothing to remove."""
    said = [
        f"{kinds[kind]} {one if kinds[kind] == 1 else many}"
        for kind, one, many in _KINDS
        if kinds[kind]
    ]
    if not said:
        return f"nothing to remove in {where}"
    return f"removed from {where}: {', '.join(said)}"


def output_kind(relative: Path) -> str:
    """What a file clean removes from the output directory is, by its path there."""
    name = relative.name
    if name.endswith((TEMP_SUFFIX, OLD_SUFFIX)):
        return "temporary"
    if name.endswith(LOCK_SUFFIX):
        return "lock"
    if relative.parts[0] == STAGING:
        if ROOTFS in relative.parts:
            return "staged"
        return "record" if name.endswith(STAMP_SUFFIX) else "other"
    # A stream's feed (its linked images too: not counted again as images) is the fleet's.
    if relative.parts[0] in (SYSUPDATE_DIR, FLATCAR_DIR, STREAMS_DIR) or name in (SUMS_FILE, INDEX):
        return "fleet"
    by_name = {
        SIGNATURE_FILE: "signature",
        PUBLIC_KEY_FILE: "key",
        PUBLIC_KEY_ARMORED: "key",
        VERITY_CERT_FILE: "certificate",
    }
    if name in by_name:
        return by_name[name]
    for suffix, kind in ((CHECKSUM_SUFFIX, "checksum"), (BUILDINFO_SUFFIX, "buildinfo")):
        if name.endswith(suffix):
            return kind
    # Anything else the manifest records (written by another version of this tool) is not
    # counted as what it is not.
    return "image" if name.endswith(".raw") else "other"


def cache_kinds(removed: Iterable[Path], cache_dir: Path) -> Counter[str]:
    """What clean --cache removed (build/fetch/cache.py clean_cache), counted by kind: its
    folders are the paths directly in the cache or in a source folder with no suffix."""
    kinds: Counter[str] = Counter()
    for path in removed:
        name = path.name
        if name.endswith((TEMP_SUFFIX, OLD_SUFFIX)):
            kinds["temporary"] += 1
        elif name.endswith(LOCK_SUFFIX):
            kinds["lock"] += 1
        elif name.startswith(LATEST_PREFIX) and path.parent == cache_dir:
            kinds["latest"] += 1
        elif name == SUMS_FILE:
            kinds["sums"] += 1
        elif name.endswith(".zip"):
            kinds["zip"] += 1
        else:  # a version folder (vX.Y.Z) or a source folder, emptied
            kinds["directory"] += 1
    return kinds


def _wanted(found: tuple[str, str], version: str | None, arch: str | None) -> bool:
    found_version, found_arch = found
    return version in (None, found_version) and arch in (None, found_arch)


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except FileNotFoundError:
        return None


class _Cleaner:
    def __init__(self, output_dir: Path, owned: Manifest) -> None:
        self.output_dir = output_dir
        self.owned = owned
        self.result = Cleaned()

    def _relative(self, path: Path) -> str:
        return manifest.relative(self.output_dir, path)

    def file(self, path: Path) -> None:
        relative = self._relative(path)
        if self.owned.owns_file(self.output_dir, relative):
            path.unlink()
            self.result.add(path, output_kind(Path(relative)))
        elif relative not in self.owned.files:
            self.result.kept.append((path, "not written by this tool"))
        else:
            st = _lstat(path)
            if st is not None and not stat.S_ISREG(st.st_mode):
                self.result.kept.append((path, "not a file this tool wrote"))
            else:
                self.result.kept.append((path, "changed since this tool wrote it"))

    def entry(self, path: Path) -> None:
        """A file, or a directory with everything in it, never following a symlink."""
        st = _lstat(path)
        if st is None:
            return
        if stat.S_ISDIR(st.st_mode):
            self.tree(path)
        else:
            self.file(path)

    def tree(self, directory: Path) -> None:
        for path in sorted(directory.iterdir()):
            self.entry(path)
        self.directory(directory)

    def directory(self, directory: Path) -> None:
        """Removed if the tool made it and it is empty now; kept, and said so, if not ours."""
        if not self.owned.owns_dir(self.output_dir, self._relative(directory)):
            if not any(directory.iterdir()):
                self.result.kept.append((directory, "a directory this tool did not make"))
            return
        if not any(directory.iterdir()):
            directory.rmdir()
            self.result.add(directory, "directory")


def clean_outputs(
    output_dir: Path, version: str | None, arch: str | None, compat_arch: str
) -> Cleaned:
    """Remove images, checksums, build info, staging and step records for one version/arch or
    all of them, and `invoke release`'s files (which list every image: once one goes they are
    stale); only what the manifest says this tool wrote, with the bytes it wrote."""
    if not output_dir.is_dir():
        return Cleaned()
    # Nothing is followed out of the output directory: refused before anything goes.
    subdirs = [(STAGING,), (SYSUPDATE_DIR,), (FLATCAR_DIR,), (STREAMS_DIR,)]
    manifest.refuse_links(output_dir, *subdirs, *((SYSUPDATE_DIR, a) for a in ARCHES))
    # Without a manifest (none written yet, or outputs of an older version of this tool) there
    # is nothing clean may remove: then it writes nothing either, not even a lock file.
    recorded = manifest.manifest_path(output_dir).is_file()
    locked = manifest.output_dir_lock(output_dir) if recorded else contextlib.nullcontext()
    with locked:
        cleaner = _Cleaner(output_dir, manifest.load(output_dir))
        _clean(cleaner, output_dir, version, arch, compat_arch)
        if recorded:
            _forget(output_dir, cleaner)
    return cleaner.result


def _clean(
    cleaner: _Cleaner, output_dir: Path, version: str | None, arch: str | None, compat_arch: str
) -> None:
    staging = output_dir / STAGING
    candidates = [(path, parse_output_name(path.name)) for path in sorted(output_dir.iterdir())]
    if staging.is_dir():
        candidates += [(path, parse_staging_name(path.name)) for path in sorted(staging.iterdir())]
    for path, found in candidates:
        if found is None:
            continue
        found_version, found_arch = found
        # The compat name, and its record, belong to --compat-arch.
        if _wanted((found_version, found_arch or compat_arch), version, arch):
            cleaner.entry(path)
    if cleaner.result.removed or (version is None and arch is None):
        for path in release_files(output_dir):
            cleaner.file(path)
        arch_dirs = [output_dir / SYSUPDATE_DIR / name for name in ARCHES]
        for directory in (*arch_dirs, output_dir / SYSUPDATE_DIR, output_dir / FLATCAR_DIR):
            if directory.is_dir():
                cleaner.directory(directory)
        # Every stream's feed too: it lists images of the directory (never a link followed).
        if (output_dir / STREAMS_DIR).is_dir():
            cleaner.tree(output_dir / STREAMS_DIR)


def _forget(output_dir: Path, cleaner: _Cleaner) -> None:
    """Drop the manifest's entries for files gone; once it records none, the manifest and the
    locks go too, then .staging and the output directory if the tool made them and they are
    empty."""
    owned = cleaner.owned
    with manifest.editing(output_dir) as recorded:
        for relative in list(recorded.files):
            if _lstat(output_dir / relative) is None:
                del recorded.files[relative]
        for relative in list(recorded.dirs):
            if relative not in (".", STAGING) and _lstat(output_dir / relative) is None:
                del recorded.dirs[relative]
        remaining = dict(recorded.files)
    staging = output_dir / STAGING
    if remaining or {path.name for path in staging.iterdir()} - set(INFRASTRUCTURE):
        return
    if not owned.owns_dir(output_dir, STAGING):
        return
    for name in INFRASTRUCTURE:  # held (the output lock): a build waiting on it takes it anew
        (staging / name).unlink(missing_ok=True)
    staging.rmdir()
    if owned.owns_dir(output_dir, ".") and not any(output_dir.iterdir()):
        output_dir.rmdir()
