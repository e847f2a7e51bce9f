"""build/alloy.py is the one seam for Alloy specifics: its docstring lists exactly the names it
defines (the interface a module for another agent fills in), and build/ uses every one of them,
so no copy of them lives elsewhere and none is dead."""

from __future__ import annotations

import re
from pathlib import Path

from build import alloy

BUILD = Path(__file__).resolve().parent.parent / "build"
PUBLIC = {
    name
    for name, value in vars(alloy).items()
    if not name.startswith("_") and name not in ("annotations", "Path") and value is not None
}


def test_the_docstring_lists_exactly_what_the_module_defines() -> None:
    listed = set(re.findall(r"^  ([A-Za-z_]+)(?:\(arch\))? ", alloy.__doc__ or "", re.M))
    assert listed == PUBLIC


def test_build_uses_every_name() -> None:
    sources = "\n".join(
        path.read_text(encoding="utf-8")
        for path in BUILD.rglob("*.py")
        if path != BUILD / "alloy.py"
    )
    imported = set(re.findall(r"from build\.alloy import ([A-Za-z_, ]+)", sources))
    imported_names = {name.strip() for group in imported for name in group.split(",")}
    unused = [
        name
        for name in sorted(PUBLIC)
        if f"alloy.{name}" not in sources and name not in imported_names
    ]
    assert not unused, f"unused in build/: {unused}"
