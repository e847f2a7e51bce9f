"""The pack step: the staged tree packed into the image in --format (by the format table's
packer for it, build/formats/table.py), and the build info that says what packed it. A DDI
(a wrapping format) is signed here: the signer made from --verity-key and --verity-cert, checked
before anything is downloaded."""

from __future__ import annotations

from typing import TYPE_CHECKING

from build.core.report import human_size
from build.formats.table import FORMATS
from build.image import buildinfo
from build.image.packrecipe import recipe

if TYPE_CHECKING:
    from build.config.context import StepContext


def make(runner: StepContext, trust_keys: tuple[str, ...]) -> str:
    """Pack the staged tree into the image in --format, and write its build info
    (`trust_keys`: the fingerprints of the keys the image carries)."""
    spec = runner.spec
    fmt, packing = FORMATS[spec.format], recipe(runner)
    with runner.output(spec.image) as tmp:
        found = fmt.pack(packing, spec.rootfs, tmp) or {}
    tools = fmt.tool_versions(packing)
    packed = {"format": fmt.name, **fmt.fields(packing), **found}
    buildinfo.write(runner, buildinfo.of_pack(spec, packed, tools, trust_keys))
    size = runner.current(spec.image).stat().st_size
    return (
        f"packed {runner.current(spec.image)}: {human_size(size)} ({fmt.summary(packing, tools)})"
    )
