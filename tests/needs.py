"""One way for a test to need a tool or root: a local run skips with the reason; under CI=true
the test fails instead, naming what is missing, so a green CI means the feature was tested.

    @pytest.mark.needs("mksquashfs", root="mounting a tmpfs")   # on a test or a module
    need("ignition-validate")                                   # inside a test or fixture

A pytest plugin too (pyproject.toml loads it with -p tests.needs): it handles the marker, and
`--quick` (nox -s quick, README's quick test command): the tests that need root or the network are
left out, whoever runs it: skipped as left out, with the reason, which CI=true does not turn into
a failure (skipped, not deselected: pytest-xdist would not count deselected tests); any other test
that cannot run still skips with its reason, or fails under CI=true.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

from build.core.tools import packages

# Where a test's tool can be had without installing it, beside its package.
ALSO = {"systemd-sysupdate": " (or tests/fetch-sysupdate.sh)"}


QUICK_HELP = (
    "leave out (skip) the tests that need root or the network (systemd-sysupdate from "
    "Debian's backports), whoever runs them, even under CI=true"
)
QUICK_SKIP = "left out of the quick run (nox -s quick): "


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def unavailable(reason: str) -> NoReturn:
    """Skip with `reason` locally; under CI=true fail with it."""
    if in_ci():
        pytest.fail(f"CI=true, and this test cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def missing_tools(*tools: str) -> list[str]:
    return [tool for tool in tools if shutil.which(tool) is None]


def need(*tools: str, root: str | None = None) -> None:
    """Every tool on PATH and, when `root` (what needs it) is given, root."""
    if root is not None and os.geteuid() != 0:
        unavailable(f"needs root ({root})")
    absent = missing_tools(*tools)
    if absent:
        also = "".join(ALSO.get(tool, "") for tool in absent)
        unavailable(f"missing {', '.join(absent)} (apt-get install {packages(absent)}{also})")


def left_out_of_quick(item: pytest.Item) -> str | None:
    """Why a quick run leaves `item` out (root, the network), or None when it runs it."""
    for mark in item.iter_markers("needs"):
        if mark.kwargs.get("root") is not None:
            return f"needs root ({mark.kwargs['root']})"
    if item.get_closest_marker("root") is not None:
        return "needs root"
    if "needs_sysupdate" in getattr(item, "fixturenames", ()):
        return "needs systemd-sysupdate, which tests/fetch-sysupdate.sh downloads"
    return None


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--quick", action="store_true", help=QUICK_HELP)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "needs(*tools, root=WHY): skip without the tools or root, fail under CI=true "
        "(tests/needs.py)",
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.config.getoption("quick"):
        reason = left_out_of_quick(item)
        if reason is not None:
            pytest.skip(QUICK_SKIP + reason)
    for mark in item.iter_markers("needs"):
        need(*mark.args, **mark.kwargs)
