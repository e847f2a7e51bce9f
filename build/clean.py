"""Removing what the build made: only files named as this tool names them."""

from __future__ import annotations

import shutil
from pathlib import Path

from .spec import parse_output_name, parse_staging_name


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _wanted(found: tuple[str, str | None], version: str | None, arch: str | None) -> bool:
    found_version, found_arch = found
    return version in (None, found_version) and arch in (None, found_arch)


def clean_outputs(
    output_dir: Path, version: str | None, arch: str | None, compat_arch: str
) -> list[Path]:
    """Remove images, checksums, temporaries and staging, for one version/arch or all of them."""
    removed: list[Path] = []
    if not output_dir.is_dir():
        return removed
    for path in sorted(output_dir.iterdir()):
        found = parse_output_name(path.name)
        if found is not None and found[1] is None:
            found = (found[0], compat_arch)  # the compat name belongs to --compat-arch
        if found is not None and _wanted(found, version, arch):
            _remove(path)
            removed.append(path)
    staging = output_dir / ".staging"
    if staging.is_dir():
        for path in sorted(staging.iterdir()):
            found_staging = parse_staging_name(path.name)
            if found_staging is not None and _wanted(found_staging, version, arch):
                _remove(path)
                removed.append(path)
        if not any(staging.iterdir()):
            staging.rmdir()
    if not any(output_dir.iterdir()):
        output_dir.rmdir()
    return removed


def clean_cache(cache_dir: Path, version: str | None) -> Path | None:
    target = cache_dir / f"v{version}" if version else cache_dir
    if not target.exists():
        return None
    shutil.rmtree(target)
    return target
