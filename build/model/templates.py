"""The files the build renders (build/templates/: into an image, a release, a DDI's repart
definitions) and the one way their @NAME@ placeholders are filled.

@NAME@ rather than $NAME or {name}: unit files use $VAR and ${VAR} themselves."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from build.core.errors import BuildError

TEMPLATES = Path(__file__).parent.parent / "templates"
_PLACEHOLDER = re.compile(r"@([A-Z_]+)@")


def render(template: str, values: Mapping[str, str], source: str) -> str:
    """`template` with each @NAME@ replaced by values[NAME]; an unknown one is a BuildError
    naming `source`."""

    def value(match: re.Match[str]) -> str:
        try:
            return values[match.group(1)]
        except KeyError:
            known = ", ".join(f"@{name}@" for name in values)
            raise BuildError(
                f"{source} uses unknown placeholder {match.group(0)}", f"known: {known}"
            ) from None

    return _PLACEHOLDER.sub(value, template)
