"""What the verify step is made from: the files it checks and what this machine can check for
real. Asked on every run to decide "up to date", so it stats and reads records only: no reader,
no checker is imported and no tool is run unless the answer may have changed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from build.config.spec import BuildSpec
from build.formats.table import content_format
from build.model.names import checksum_file
from build.model.rule import recorded_params
from build.verify import machine

REAL = "real"  # a check the machine can run, recorded as such


def checksums_of(files: Sequence[Path]) -> list[tuple[Path, Path]]:
    return [(file, checksum_file(file)) for file in files]


def shipped(spec: BuildSpec) -> list[Path]:
    """The names the image is shipped under: its own, and the compat name if it owns it."""
    return [spec.image, *([spec.compat_image] if spec.owns_compat_name else [])]


def sources(spec: BuildSpec) -> tuple[Path, ...]:
    """The shipped files and their .sha256 files."""
    return tuple(path for pair in checksums_of(shipped(spec)) for path in pair)


def params(spec: BuildSpec) -> dict[str, Any]:
    # A check skipped for want of root runs once root is there.
    return {
        "--compression": spec.compression,
        "merge": machine.cannot_merge(spec.arch.systemd) or REAL,
        "kernel view": _kernel_view(spec),
    }


def _kernel_view(spec: BuildSpec) -> str:
    """ "real", or why the kernel's view cannot be checked here. A record that says it ran for
    real stays so while a stat finds the means: trying a private namespace (`unshare -m`, a
    process) is left to the run that was refused one, or has no record."""
    fstype = content_format(spec.format, spec.ddi_filesystem).fstype
    cheap = machine.cannot_mount(fstype, probe=False)
    if cheap is not None:
        return cheap
    recorded = recorded_params(spec.stamp("verify")) or {}
    if recorded.get("kernel view") == REAL:
        return REAL
    return machine.cannot_mount(fstype) or REAL
