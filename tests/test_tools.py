"""One table (build/core/tools.py) says which Debian package brings each external tool: the
build's missing-tool error, the tests' skips and the boot test session all read it."""

from __future__ import annotations

import ast
from pathlib import Path

from build.core.tools import PACKAGES, package, packages
from tests.noxfile_module import load_noxfile

REPO = Path(__file__).resolve().parent.parent


def _python_files() -> list[Path]:
    names = load_noxfile().checkout_files(REPO)
    return [REPO / name for name in names if name.endswith(".py") and (REPO / name).exists()]


def _strings(nodes: list[ast.expr | None]) -> list[str]:
    return [n.value for n in nodes if isinstance(n, ast.Constant) and isinstance(n.value, str)]


# Also the names of compressions (squashfs's, the transports'): a table keyed by them is no map
# of tools.
COMPRESSORS = {"xz", "zstd"}


def test_no_other_module_maps_tools_to_packages() -> None:
    tools = PACKAGES.keys() - COMPRESSORS
    copies = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Dict) and len(set(_strings(node.keys)) & tools) > 1:
                copies.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert [copy.split(":")[0] for copy in copies] == ["build/core/tools.py"], copies


def test_every_tool_a_test_or_session_checks_for_has_its_package() -> None:
    """The tools named to need() and @pytest.mark.needs(), and noxfile.py's E2E_TOOLS."""
    named: dict[str, str] = {}
    for path in [*(REPO / "tests").rglob("*.py"), REPO / "noxfile.py"]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            called = isinstance(node, ast.Call) and (
                getattr(node.func, "attr", None) or getattr(node.func, "id", None)
            )
            if isinstance(node, ast.Call) and called in ("needs", "need"):
                tools = _strings(list(node.args))
            elif isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "E2E_TOOLS":
                tools = _strings(list(getattr(node.value, "elts", [])))
            else:
                continue
            named |= {tool: f"{path.relative_to(REPO)}:{node.lineno}" for tool in tools}
    assert len(named) > 10  # the scan finds them
    unlisted = {tool: where for tool, where in named.items() if tool not in PACKAGES}
    assert not unlisted, f"add these tools to build/core/tools.py: {unlisted}"


def test_packages_are_named_once_in_the_order_asked() -> None:
    assert package("mksquashfs") == "squashfs-tools"
    assert package("no-such-tool") == "no-such-tool"
    assert packages(["unsquashfs", "gcc", "mksquashfs", "cpio"]) == (
        "squashfs-tools gcc libc6-dev cpio"
    )
