"""What a version is: X.Y.Z or X.Y.Z-rc.N, or the word that asks for the newest (LATEST)."""

from __future__ import annotations

import re

LATEST = "latest"  # --version=latest: resolved by the pipeline (build/pipeline/steps.py)
# ASCII digits only (\d takes any script's), and few of them: a version is no place for 5000.
_PART = "[0-9]{1,9}"
VERSION_PATTERN = re.compile(rf"{_PART}\.{_PART}\.{_PART}(-rc\.{_PART})?")
RELEASE_PATTERN = re.compile(rf"{_PART}\.{_PART}\.{_PART}")  # no release candidate
MINOR_PATTERN = re.compile(rf"{_PART}\.{_PART}")  # a minor line: 1.19 holds 1.19.0, 1.19.1...


def minor_of(version: str) -> str:
    """The minor line X.Y of version X.Y.Z (or X.Y.Z-rc.N)."""
    return ".".join(version.split(".")[:2])


def minor_key(line: str) -> tuple[int, ...]:
    """The sort key of a minor line X.Y (a stream): as its X.Y.0."""
    return version_key(line + ".0")


def version_key(version: str) -> tuple[int, ...]:
    """A sort key of a version (VERSION_PATTERN): X.Y.Z-rc.N before X.Y.Z, both after every
    X.Y.(Z-1)."""
    release, _, rc = version.partition("-rc.")
    return (*(int(part) for part in release.split(".")), int(rc) if rc else 1 << 31)
