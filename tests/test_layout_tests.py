"""The tests' own shape (issue 21): what several test modules share lives in helper modules
(tests/*.py not named test_*), never imported from another test module, which pytest runs
rather than a library."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def is_test_module(dotted: str) -> bool:
    return dotted.rsplit(".", 1)[-1].startswith("test_")


def imported_test_modules(source: str, package: str) -> list[str]:
    """The test modules (`package`-relative imports resolved) that `source` imports, in any of
    the ways Python allows, inside functions too."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if is_test_module(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            if is_test_module(base):
                found.append(base)
            found += [f"{base}.{a.name}" for a in node.names if is_test_module(a.name)]
    return found


def modules_importing_test_modules(root: Path = TESTS) -> dict[str, list[str]]:
    """Every module under `root` (the tests package) that imports a test module: what it
    imports."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        package = ".".join(parts[:-1])
        imported = imported_test_modules(path.read_text(), package)
        if imported:
            found[str(path.relative_to(root.parent))] = imported
    return found


def test_no_test_module_imports_another() -> None:
    assert modules_importing_test_modules() == {}, (
        "move what they share into a helper module (tests/NAME.py, not test_*)"
    )


@pytest.mark.parametrize(
    ("source", "package", "imported"),
    [
        ("import tests.test_verify", "tests", ["tests.test_verify"]),
        ("from tests.test_verify import repack", "tests", ["tests.test_verify"]),
        ("from tests import test_verify, fakes", "tests", ["tests.test_verify"]),
        ("from .test_verify import repack", "tests", ["tests.test_verify"]),
        ("from . import test_update", "tests.e2e", ["tests.e2e.test_update"]),
        ("from ..test_publish import snapshot", "tests.e2e", ["tests.test_publish"]),
        ("def f():\n    from tests.e2e.test_update import A", "tests", ["tests.e2e.test_update"]),
        ("from tests.verifying import repack\nimport tests.fakes", "tests", []),
    ],
)
def test_every_way_of_importing_a_test_module_is_found(
    source: str, package: str, imported: list[str]
) -> None:
    assert imported_test_modules(source, package) == imported
