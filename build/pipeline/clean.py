"""Removing what the build made: only files this tool wrote, as its manifest records them, and
still holding the bytes it wrote; everything else under the tool's names is kept and listed."""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from build.config.spec import parse_output_name, parse_staging_name
from build.model import manifest
from build.model.arch import ARCHES
from build.model.manifest import INFRASTRUCTURE, Manifest
from build.model.names import FLATCAR_DIR, STAGING, SYSUPDATE_DIR
from build.release.publish import release_files


@dataclass
class Cleaned:
    removed: list[Path] = field(default_factory=list)
    kept: list[tuple[Path, str]] = field(default_factory=list)  # (path, why)


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
            self.result.removed.append(path)
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
            self.result.removed.append(directory)


def clean_outputs(
    output_dir: Path, version: str | None, arch: str | None, compat_arch: str
) -> Cleaned:
    """Remove images, checksums, build info, staging and step records for one version/arch or
    all of them, and `invoke release`'s files (which list every image: once one goes they are
    stale); only what the manifest says this tool wrote, with the bytes it wrote."""
    if not output_dir.is_dir():
        return Cleaned()
    # Nothing is followed out of the output directory: refused before anything goes.
    subdirs = [(STAGING,), (SYSUPDATE_DIR,), (FLATCAR_DIR,)]
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
