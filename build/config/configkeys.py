"""Refuse settings no one reads: a key in invoke.yaml (or the -f file) or an INVOKE_* variable
that is no option, e.g. `architecture: arm64`, which Invoke would keep silently while amd64 is
built. ~/.invoke.yaml and /etc/invoke.yaml are left alone: every Invoke project on the machine
reads them, and keys of the others belong there."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from typing import Any

from build.config.options import OPTIONS
from build.core.errors import BuildError, shown

ENV_PREFIX = "INVOKE_"
# Read by Invoke's program itself, not through its configuration.
INVOKE_PROGRAM_VARIABLES = ("INVOKE_DEBUG", "INVOKE_RUNTIME_CONFIG")
# The configuration files of this project that Invoke loaded: (layer, path attribute).
_PROJECT_LAYERS = (("_project", "_project_path"), ("_runtime", "_runtime_path"))


def closest_option(key: str) -> str | None:
    """The option name nearest to `key`: written with dashes or capitals, a near spelling, or
    an option's name that begins it or that it begins (architecture -> arch)."""
    names = [option.name for option in OPTIONS]
    plain = key.strip().lstrip("-").replace("-", "_").lower()
    if plain in names:
        return plain
    near = difflib.get_close_matches(plain, names, n=1, cutoff=0.6)
    if near:
        return near[0]
    starts = [name for name in names if len(name) >= 3 and plain.startswith(name)]
    starts += [name for name in names if len(plain) >= 3 and name.startswith(plain)]
    return max(starts, key=len) if starts else None


def _advice(instead: str | None) -> str:
    """What to write instead (the nearest option as written there), if anything."""
    if instead is None:
        return "remove it; invoke --help TASK lists the options"
    return f"did you mean {instead}? (invoke --help TASK lists the options)"


def _quoted(name: str | None) -> str | None:
    return None if name is None else repr(name)


def refuse_unknown_file_keys(data: Mapping[str, Any], known: Iterable[str], where: str) -> None:
    """Every top-level key of the configuration file `where` must be an option or one of
    Invoke's own sections (`known`)."""
    allowed = set(known)
    tasks = {task for option in OPTIONS for task in option.tasks}
    for key in data:
        if key in tasks:  # `all: {arch: arm64}`: there are no sections per task
            raise BuildError(
                f"section {shown(str(key))} in {where}: options are not set per task",
                "write them at the top level of the file (e.g. arch: arm64), where every task "
                "that takes them reads them",
            )
        if key not in allowed:
            raise BuildError(
                f"unknown key {shown(str(key))} in {where}: no option of this tool has that name",
                _advice(_quoted(closest_option(str(key)))),
            )


def refuse_unknown_variables(environ: Mapping[str, str], known: Iterable[str]) -> None:
    """Every INVOKE_<NAME> variable must name an option (INVOKE_ARCH) or a setting of Invoke's
    own (INVOKE_RUN_ECHO: a key under one of `known`'s sections)."""
    names = {name.upper() for name in known}
    sections = tuple(f"{name.upper()}_" for name in known)
    for variable in sorted(environ):
        if not variable.startswith(ENV_PREFIX) or variable in INVOKE_PROGRAM_VARIABLES:
            continue
        rest = variable[len(ENV_PREFIX) :]
        if rest in names or rest.startswith(sections):
            continue
        near = closest_option(rest)
        raise BuildError(
            f"unknown variable {shown(variable)} in the environment: no option of this tool has "
            "that name",
            _advice(None if near is None else ENV_PREFIX + near.upper()),
        )


def refuse_unknown_settings(config: Any, environ: Mapping[str, str] | None = None) -> None:
    """Check an Invoke Config: its project file (invoke.yaml beside tasks.py), its -f file and
    the environment, against the options (the collection's keys) and Invoke's own sections."""
    options = set(getattr(config, "_collection", None) or {})
    invoke_own = set(getattr(config, "_defaults", None) or {})
    for layer, path_attr in _PROJECT_LAYERS:
        data = getattr(config, layer, None) or {}
        where = getattr(config, path_attr, None) or "the Invoke configuration"
        refuse_unknown_file_keys(data, options | invoke_own, str(where))
    refuse_unknown_variables(os.environ if environ is None else environ, options | invoke_own)
