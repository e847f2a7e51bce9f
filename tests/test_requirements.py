"""pyproject.toml's ranges and the requirements files' pins name the same packages and agree."""

from __future__ import annotations

import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent


def pins(name: str) -> dict[str, str]:
    """Package -> pinned version of a requirements file, following its -r includes."""
    found: dict[str, str] = {}
    for line in (REPO / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            found |= pins(line[3:].strip())
        elif line:
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", f"{name}: {line} is not a pin"
            found[canonicalize_name(requirement.name)] = specifier.version
    return found


def ranges(*groups: str) -> list[Requirement]:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    listed = [] if groups else pyproject["project"]["dependencies"]
    for group in groups:
        listed += pyproject["dependency-groups"][group]
    return [Requirement(text) for text in listed]


def test_every_range_is_pinned_to_a_version_inside_it() -> None:
    for name, requirements in (
        ("requirements-runtime.txt", ranges()),
        ("requirements.txt", ranges() + ranges("test", "nox")),
        ("requirements-lint.txt", ranges("lint")),
        ("requirements-bench.txt", ranges() + ranges("test", "nox", "bench")),
    ):
        pinned = pins(name)
        for requirement in requirements:
            version = pinned.get(canonicalize_name(requirement.name))
            assert version is not None, f"{name} does not pin {requirement.name}"
            assert requirement.specifier.contains(version), f"{name}: {requirement} vs {version}"


def test_the_lint_pins_are_all_in_the_lint_group() -> None:
    listed = {canonicalize_name(requirement.name) for requirement in ranges("lint")}
    assert set(pins("requirements-lint.txt")) == listed
