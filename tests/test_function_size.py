"""No function in build/ runs over 60 lines (issue 21): a longer one is split into named parts."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAX_LINES = 60


def long_functions(root: Path, package: str = "build") -> dict[str, int]:
    """ "PATH:NAME" -> lines, of every function or method under root/package longer than
    MAX_LINES, counted from its `def` to its last line (nested functions count on their own
    and inside their parent)."""
    found: dict[str, int] = {}
    for path in sorted((root / package).rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), relative)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_LINES:
                    found[f"{relative}:{node.name}"] = lines
    return found


def test_no_function_in_build_is_over_60_lines() -> None:
    too_long = long_functions(REPO)
    assert not too_long, f"split these into named parts (lines): {too_long}"


def test_a_61_line_method_is_found_and_a_60_line_function_is_not(tmp_path: Path) -> None:
    def function(indent: str, name: str, lines: int) -> str:
        body = "".join(f"{indent}    x{n} = {n}\n" for n in range(lines - 1))
        return f"{indent}def {name}():\n{body}"

    module = tmp_path / "build" / "sub" / "long.py"
    module.parent.mkdir(parents=True)
    fits, method = function("", "fits", MAX_LINES), function("    ", "long", MAX_LINES + 1)
    module.write_text(f"{fits}\n\nclass C:\n{method}")
    assert long_functions(tmp_path) == {"build/sub/long.py:long": MAX_LINES + 1}
