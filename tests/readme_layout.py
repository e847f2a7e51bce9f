"""README.md's layout section, drawn from the tree so that it cannot drift: every package of
build/ in its layer, lowest first, with the role its __init__.py docstring states which
names its modules; then the rest of the repository.

    python -m tests.readme_layout          # print the section
    python -m tests.readme_layout --write  # put it into README.md, between its two markers

tests/test_readme.py fails, naming the second command, when README.md differs from what it
prints: a module added, moved or removed, a docstring changed. It fails too, saying what to do,
when a package of build/ is missing from LAYERS or has no docstring.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from build.core.fileio import write_text_atomic
from tests.layers import LAYERS as BUILD_LAYERS

REPO = Path(__file__).resolve().parent.parent
COMMAND = "python -m tests.readme_layout --write"
BEGIN = f"<!-- layout: written by `{COMMAND}`; edit the docstrings, not this -->"
END = "<!-- layout end -->"

# Where each part of the repository sits: a module of build/ imports only from its own package or
# from a lower layer (tests/test_layout.py checks it). Its role is the first paragraph of its
# docstring (the package's __init__.py for a folder), except where a place holds no Python.
LAYERS: tuple[tuple[str, str], ...] = (
    *(
        (str(layer), f"build/{package}.py" if package == "alloy" else f"build/{package}/")
        for layer, package in BUILD_LAYERS
    ),
    ("data", "build/templates/"),
    ("top", "tasks.py"),
    ("top", "noxfile.py"),
    ("top", "benchmarks/"),
    ("top", "tests/"),
    ("top", "tests/e2e/"),
)
NOT_PYTHON = {
    "build/templates/": "no Python: the files rendered into an image, a release or a DDI's "
    "systemd-repart definitions, with `@NAME@` placeholders (build/model/templates.py); "
    "`--unit-template` replaces the unit",
}


@dataclass(frozen=True)
class Place:
    layer: str
    where: str  # relative to the repository; a folder ends in /
    role: str
    contents: tuple[str, ...]  # a package's modules, a data folder's entries


def docstring(path: Path) -> str:
    if not path.is_file():
        return ""
    return ast.get_docstring(ast.parse(path.read_text(), str(path))) or ""


def first_paragraph(text: str) -> str:
    return " ".join(text.strip().split("\n\n", 1)[0].split())


def source_of(repo: Path, where: str) -> Path:
    """The file whose docstring states a place's role."""
    return repo / where / "__init__.py" if where.endswith("/") else repo / where


def contents(repo: Path, where: str) -> tuple[str, ...]:
    """A package's modules; a data folder's entries (a folder with a trailing /)."""
    path = repo / where
    if not where.startswith("build/") or not path.is_dir():
        return ()  # tests/ and benchmarks/ hold too many to read in a table
    if where in NOT_PYTHON:
        return tuple(sorted(p.name + "/" * p.is_dir() for p in path.iterdir()))
    return tuple(sorted(p.stem for p in path.glob("*.py") if p.name != "__init__.py"))


def places(repo: Path = REPO) -> list[Place]:
    return [
        Place(
            layer,
            where,
            NOT_PYTHON.get(where) or first_paragraph(docstring(source_of(repo, where))),
            contents(repo, where),
        )
        for layer, where in LAYERS
    ]


def packages(repo: Path = REPO) -> list[str]:
    """Every folder of build/ holding Python, or templates, named as LAYERS names it."""
    return sorted(
        f"build/{p.name}/"
        for p in (repo / "build").iterdir()
        if p.is_dir() and ((p / "__init__.py").exists() or f"build/{p.name}/" in NOT_PYTHON)
    )


def problems(repo: Path = REPO) -> list[str]:
    """What keeps the section from saying what each place holds: a package missing from LAYERS,
    a place of LAYERS missing from the tree, a place without a docstring."""
    placed = [where for _, where in LAYERS]
    found = [
        f"{where} is not in tests/readme_layout.py's LAYERS: add it in its layer"
        for where in packages(repo)
        if where not in placed
    ]
    found += [
        f"{where} is in tests/readme_layout.py's LAYERS but not in the tree: remove it"
        for where in placed
        if not (repo / where).exists()
    ]
    found += [
        f"{source_of(repo, place.where).relative_to(repo)} has no docstring: say in a paragraph "
        "what it holds, naming its modules"
        for place in places(repo)
        if (repo / place.where).exists() and not place.role
    ]
    return found


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def section(repo: Path = REPO) -> str:
    """The markdown between BEGIN and END: a table, one row per place, lowest layer first."""
    rows = ["| layer | where | modules | what it holds |", "|---:|---|---|---|"]
    for place in places(repo):
        names = ", ".join(f"`{name}`" for name in place.contents)
        rows.append(f"| {place.layer} | `{place.where}` | {names} | {cell(place.role)} |")
    return "\n".join(rows)


def current(readme: str) -> str | None:
    """README's section as it stands, or None without both markers."""
    match = re.search(rf"{re.escape(BEGIN)}\n(.*?){re.escape(END)}", readme, re.S)
    return match.group(1).rstrip("\n") if match else None


def rewrite(readme: str, repo: Path = REPO) -> str:
    """README with its section replaced by what the tree gives; nothing else changes."""
    if current(readme) is None:
        raise ValueError(f"README.md has no section from {BEGIN} to {END}")
    start = readme.index(BEGIN) + len(BEGIN)
    return readme[:start] + "\n" + section(repo) + "\n" + readme[readme.index(END, start) :]


def main(argv: list[str], repo: Path = REPO) -> int:
    if argv not in ([], ["--write"]):
        print(f"usage: {COMMAND.removesuffix(' --write')} [--write]", file=sys.stderr)
        return 2
    found = problems(repo)
    for problem in found:
        print(problem, file=sys.stderr)
    if not argv:
        print(section(repo))
        return 1 if found else 0
    readme = repo / "README.md"
    try:
        write_text_atomic(readme, rewrite(readme.read_text(), repo))
    except ValueError as error:
        print(f"{error}: put the two markers back where the layout goes", file=sys.stderr)
        return 1
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
