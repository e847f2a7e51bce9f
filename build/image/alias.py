"""The compat name alloy-VERSION.raw: the same bytes as the image of the architecture that owns
it (--compat-arch), with a .sha256 of its own."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from build.config.spec import BuildSpec
from build.image.checksum import read_checksum, sums_line
from build.model.names import checksum_file

if TYPE_CHECKING:
    from build.config.context import StepContext


def not_ours(spec: BuildSpec) -> str | None:
    """Why this build leaves the compat name alone, or None when it owns it."""
    if spec.owns_compat_name:
        return None
    return f"{spec.compat_image.name} belongs to --compat-arch={spec.compat_arch}"


def make(runner: StepContext) -> str:
    spec = runner.spec
    compat = spec.compat_image
    sha256 = read_checksum(runner.current(checksum_file(spec.image)))
    how = link_or_copy(runner, spec.image, compat)
    runner.write_output(checksum_file(compat), sums_line(sha256, compat.name))
    return f"{how} {runner.current(compat)}"


def link_or_copy(runner: StepContext, source: Path, final: Path) -> str:
    """Same content under a second name: a hard link where the filesystem allows it."""
    with runner.output(final) as tmp:
        tmp.unlink()
        try:
            os.link(runner.current(source), tmp)
            how = "linked"
        except OSError:
            shutil.copy2(runner.current(source), tmp)
            how = "copied"
    return how
