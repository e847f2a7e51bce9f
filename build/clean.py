"""Removing what the build made: only files named as this tool names them."""

from __future__ import annotations

import shutil
from pathlib import Path

from .publish import release_files, remove_empty_release_dirs
from .spec import parse_output_name, parse_staging_name


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _wanted(found: tuple[str, str], version: str | None, arch: str | None) -> bool:
    found_version, found_arch = found
    return version in (None, found_version) and arch in (None, found_arch)


def clean_outputs(
    output_dir: Path, version: str | None, arch: str | None, compat_arch: str
) -> list[Path]:
    """Remove images, checksums, temporaries and staging, for one version/arch or all of them,
    and `invoke release`'s files, which list every image: once one is gone they are stale."""
    removed: list[Path] = []
    if not output_dir.is_dir():
        return removed
    staging = output_dir / ".staging"
    candidates = [(path, parse_output_name(path.name)) for path in sorted(output_dir.iterdir())]
    if staging.is_dir():
        candidates += [(path, parse_staging_name(path.name)) for path in sorted(staging.iterdir())]
    for path, found in candidates:
        if found is None:
            continue
        found_version, found_arch = found
        # The compat name, and its record, belong to --compat-arch.
        if _wanted((found_version, found_arch or compat_arch), version, arch):
            _remove(path)
            removed.append(path)
    if removed or (version is None and arch is None):
        for path in release_files(output_dir):
            path.unlink()
            removed.append(path)
        remove_empty_release_dirs(output_dir)
    if staging.is_dir() and not any(staging.iterdir()):
        staging.rmdir()
    if not any(output_dir.iterdir()):
        output_dir.rmdir()
    return removed


def clean_cache(cache_dir: Path, version: str | None) -> list[Path]:
    """Empty the download cache, or drop one version from every source in it."""
    targets = sorted(cache_dir.glob(f"*/v{version}")) if version else [cache_dir]
    targets = [target for target in targets if target.exists()]
    for target in targets:
        shutil.rmtree(target)
    return targets
