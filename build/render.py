"""Files rendered into the image, from templates in build/templates/ with @NAME@ placeholders.

@NAME@ rather than $NAME or {name}: unit files use $VAR and ${VAR} themselves."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from .errors import BuildError
from .spec import IMAGE_BINARY, STATE_DIR, BuildSpec

TEMPLATES = Path(__file__).parent / "templates"
_PLACEHOLDER = re.compile(r"@([A-Z_]+)@")


def render(template: str, values: Mapping[str, str], source: str) -> str:
    def value(match: re.Match[str]) -> str:
        try:
            return values[match.group(1)]
        except KeyError:
            known = ", ".join(f"@{name}@" for name in values)
            raise BuildError(
                f"{source} uses unknown placeholder {match.group(0)}", f"known: {known}"
            ) from None

    return _PLACEHOLDER.sub(value, template)


def unit_template_path(spec: BuildSpec) -> Path:
    return spec.unit_template or TEMPLATES / "alloy.service"


def read_template(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or "not UTF-8 text"
        raise BuildError(
            f"cannot read unit template {path}: {reason}", "check --unit-template"
        ) from None


def unit(spec: BuildSpec, template: str, source: str) -> str:
    values = {
        "VERSION": spec.version,
        "BINARY": "/" + IMAGE_BINARY,
        "CONFIG_PATH": spec.config_path,
        "STATE_DIR": STATE_DIR,
    }
    return render(template, values, source)


def autostart_dropin() -> str:
    return (TEMPLATES / "autostart.conf").read_text(encoding="utf-8")


def extension_release(spec: BuildSpec) -> str:
    template = (TEMPLATES / "extension-release").read_text(encoding="utf-8")
    return render(template, {"ARCHITECTURE": spec.arch.systemd}, "extension-release template")
