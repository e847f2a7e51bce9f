"""The build matrix: which versions and architectures `nox -s build-matrix` builds.

Declared here, once; CI reads it back through `nox --list --json`. For one run, override it with
ALLOY_VERSIONS and ALLOY_ARCHS (comma-separated), e.g. ALLOY_VERSIONS=1.10.2 ALLOY_ARCHS=arm64.
A version may be "latest": its cells (build-matrix(latest-amd64), ...) run `invoke all
--version=latest`, which resolves it when it builds (build/fetch/latest.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from build.core.errors import BuildError
from build.model.arch import ARCHES
from build.model.versions import LATEST, VERSION_PATTERN, minor_key, minor_of

# 1.10.2: the version this project has pinned from the start; 1.17.1: the newest release we
# could verify (2026-06-25). Add a version here when you want CI to build and publish it.
# Not "latest": CI's builds and releases would then change with GitHub's answer, not with a commit
# (and hang on its API's rate limit); use ALLOY_VERSIONS=latest for a run that wants it.
VERSIONS: tuple[str, ...] = ("1.10.2", "1.17.1")
ARCHS: tuple[str, ...] = tuple(ARCHES)


@dataclass(frozen=True)
class Cell:
    version: str
    arch: str

    @property
    def id(self) -> str:
        return f"{self.version}-{self.arch}"


def _listed(environ: Mapping[str, str], variable: str, default: tuple[str, ...]) -> list[str]:
    raw = environ.get(variable, "")
    if not raw.strip():
        return list(default)
    values = [value.strip() for value in raw.split(",") if value.strip()]
    return list(dict.fromkeys(values))  # keep the order given, drop repeats


def cells(environ: Mapping[str, str]) -> list[Cell]:
    """Every (version, arch) to build: the declared matrix, or the environment's override."""
    versions = _listed(environ, "ALLOY_VERSIONS", VERSIONS)
    archs = _listed(environ, "ALLOY_ARCHS", ARCHS)
    for version in versions:
        if version != LATEST and not VERSION_PATTERN.fullmatch(version):
            raise BuildError(
                f"ALLOY_VERSIONS holds {version!r}, not a version",
                f"use comma-separated X.Y.Z, X.Y.Z-rc.N or {LATEST}, "
                "e.g. ALLOY_VERSIONS=1.10.2,1.17.1",
            )
    for arch in archs:
        if arch not in ARCHES:
            raise BuildError(
                f"ALLOY_ARCHS holds {arch!r}, not an architecture",
                f"use comma-separated values from: {', '.join(ARCHES)}",
            )
    return [Cell(version, arch) for version in versions for arch in archs]


def streams(matrix: list[Cell]) -> list[str]:
    """The minor lines X.Y of the matrix's releases, in version order: the streams `nox -s
    release` publishes beside the default feed (never a candidate's, which release refuses, nor
    "latest"'s, whose line is known only once it is built)."""
    released = {cell.version for cell in matrix if cell.version != LATEST}
    lines = {minor_of(version) for version in released if "-rc." not in version}
    return sorted(lines, key=minor_key)
