"""The pack step: the staged tree packed into the image in --format (by the format table's
packer for it, build/formats/table.py), and the build info that says what packed it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from build.alloy import NAME
from build.core.report import human_size
from build.core.run import require
from build.formats.recipe import Recipe
from build.formats.table import FORMATS
from build.image import buildinfo

if TYPE_CHECKING:
    from build.config.context import StepContext
    from build.config.spec import BuildSpec


def recipe(spec: BuildSpec) -> Recipe:
    return Recipe(NAME, spec.version, spec.arch, spec.compression)


def check_tools(runner: StepContext) -> None:
    """Before a download and a staging that could not be packed."""
    if runner.must_run("pack"):
        require(FORMATS[runner.spec.format].command)


def params(spec: BuildSpec) -> dict[str, Any]:
    """What shapes the image beside the staged tree: a change rebuilds it. The options by
    their flags, so that the pack step's line names the one that changed; --compression as it
    packs (xz-bcj on arm64 packs as xz: switching between them repacks nothing)."""
    fmt = FORMATS[spec.format]
    return {
        "--format": fmt.name,
        "--compression": fmt.used_compression(spec.compression, spec.arch),
        **fmt.args(recipe(spec)),
    }


def make(runner: StepContext, trust_keys: tuple[str, ...]) -> str:
    """Pack the staged tree into the image in --format, and write its build info
    (`trust_keys`: the fingerprints of the keys the image carries)."""
    spec = runner.spec
    fmt, packing = FORMATS[spec.format], recipe(spec)
    with runner.output(spec.image) as tmp:
        fmt.pack(packing, spec.rootfs, tmp)
    tools = fmt.tool_versions()
    packed = {"format": fmt.name, **fmt.fields(packing)}
    buildinfo.write(runner, buildinfo.of_pack(spec, packed, tools, trust_keys))
    size = runner.current(spec.image).stat().st_size
    return (
        f"packed {runner.current(spec.image)}: {human_size(size)} ({fmt.summary(packing, tools)})"
    )
