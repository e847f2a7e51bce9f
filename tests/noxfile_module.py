"""noxfile.py loaded as a module, for the tests of its sessions' arguments."""

from __future__ import annotations

import functools
import importlib.util
from typing import Any

from tests.conftest import REPO


@functools.cache
def load_noxfile() -> Any:
    """noxfile.py as a module, loaded once: nox warns when its sessions register twice."""
    spec = importlib.util.spec_from_file_location("noxfile_under_test", REPO / "noxfile.py")
    assert spec is not None and spec.loader is not None
    noxfile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(noxfile)
    return noxfile
