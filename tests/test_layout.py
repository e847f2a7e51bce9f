"""The shape of build/, drawn from its imports (each module a node; imports at module level,
inside functions and under `if TYPE_CHECKING:` alike): no cycle, nothing imported from a higher
layer (tests/layers.py), every package's role in its __init__.py, no folder of more than
MAX_MODULES modules."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.layers import LAYER_OF, MAX_MODULES

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"

Graph = Mapping[str, set[str]]


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path) -> dict[str, Path]:
    """Every module of the `build` package under `root`, by dotted name."""
    return {module_name(path, root): path for path in sorted((root / "build").rglob("*.py"))}


def _absolute(node: ast.ImportFrom, name: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = name.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imported(name: str, path: Path, known: Mapping[str, Path]) -> Iterator[str]:
    """The modules of `known` that `name` imports, wherever the import statement stands."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, name, path.name == "__init__.py")
            # `from build.x import y`: y is a module (an edge to it) or a name of build.x.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        else:
            continue
        yield from (target for target in targets if target in known and target != name)


def import_graph(root: Path) -> dict[str, set[str]]:
    known = modules(root)
    return {name: set(imported(name, path, known)) for name, path in known.items()}


def find_cycle(graph: Graph) -> list[str] | None:
    """One cycle of `graph` as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def package_of(name: str) -> str | None:
    """The package under build/ a module belongs to (build.core.errors: core), or None for the
    build package itself."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else None


def upward(graph: Graph) -> list[str]:
    """Every import of a package from one of the same or a higher layer, as "a -> b"."""
    found = []
    for source, targets in sorted(graph.items()):
        for target in sorted(targets):
            low, high = package_of(target), package_of(source)
            if low is None or high is None or low == high:
                continue
            if LAYER_OF[low] >= LAYER_OF[high]:
                found.append(
                    f"{source} (layer {LAYER_OF[high]}) -> {target} (layer {LAYER_OF[low]})"
                )
    return found


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph(ROOT))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or ())


def test_nothing_imports_from_a_higher_layer() -> None:
    assert upward(import_graph(ROOT)) == []


def test_every_package_is_in_a_layer() -> None:
    packages = {package for name in modules(ROOT) if (package := package_of(name)) is not None}
    assert sorted(packages - set(LAYER_OF)) == []


def test_every_package_states_its_role() -> None:
    missing = [
        str(init.relative_to(ROOT))
        for init in sorted(BUILD.rglob("__init__.py"))
        if not (ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or "").strip()
    ]
    assert missing == []


def test_no_folder_holds_too_many_modules() -> None:
    crowded = {
        str(folder.relative_to(ROOT)): count
        for folder in [BUILD, *sorted(p for p in BUILD.rglob("*") if p.is_dir())]
        if (count := len([p for p in folder.glob("*.py") if p.name != "__init__.py"])) > MAX_MODULES
    }
    assert crowded == {}


# The checks themselves, on small trees: each must be able to fail.


def _tree(tmp_path: Path, files: Mapping[str, str]) -> Path:
    for relative, text in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path


def test_graph_sees_imports_in_functions_and_type_checking(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "build/__init__.py": '"""b"""\n',
            "build/core/__init__.py": '"""c"""\n',
            "build/core/a.py": "def f():\n    from build.config import spec\n",
            "build/core/b.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                "    from build.config.spec import X\n"
            ),
            "build/core/c.py": "import build.core.a\nfrom . import b\nfrom build.config import x\n",
            "build/config/__init__.py": "x = 1\n",
            "build/config/spec.py": "X = 1\n",
        },
    )
    graph = import_graph(root)
    assert graph["build.core.a"] == {"build.config.spec"}
    assert graph["build.core.b"] == {"build.config.spec"}
    assert graph["build.core.c"] == {"build.core.a", "build.core.b", "build.config"}


def test_a_cycle_is_found_and_named(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "build/__init__.py": "",
            "build/config/__init__.py": "",
            "build/config/options.py": "def f():\n    from build.config import spec\n",
            "build/config/spec.py": "from build.config.options import f\n",
        },
    )
    assert find_cycle(import_graph(root)) == [
        "build.config.options",
        "build.config.spec",
        "build.config.options",
    ]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize(
    ("source", "target", "up"),
    [
        ("build.config.options", "build.fetch.latest", True),  # 5 -> 6
        ("build.keys.signing", "build.fetch.http", True),  # 6 -> 6, another package
        ("build.fetch.latest", "build.config.spec", False),
        ("build.config.options", "build.config.spec", False),  # its own package
        ("build.image.buildinfo", "build.alloy", False),
    ],
)
def test_an_upward_import_is_found(source: str, target: str, up: bool) -> None:
    found = upward({source: {target}})
    assert bool(found) is up, found
