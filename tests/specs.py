"""BuildSpecs made the way tasks.py makes them: raw option values, as if given on the command
line, parsed by the option table (options.resolve), then made a BuildSpec."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from build.config.options import resolve
from build.config.spec import BuildSpec
from build.pipeline.steps import spec_for


def spec_of(options: Mapping[str, Any]) -> BuildSpec:
    """A pinned version's BuildSpec ("latest" is refused: use latest_spec_of)."""
    return BuildSpec.from_values(resolve("all", options))


def latest_spec_of(options: Mapping[str, Any]) -> BuildSpec:
    """As `invoke all` makes it: --version=latest asked of --api-url first."""
    return spec_for(resolve("all", options))
