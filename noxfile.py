"""Sessions for alloy-sysext: a bare `nox` runs lint and tests; `nox -s build-matrix` builds every
image of the matrix declared in build/matrix.py. `nox --list` explains each session."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from build.errors import BuildError  # noqa: E402
from build.matrix import cells  # noqa: E402

PYTHONS = ["3.10", "3.11"]  # 3.10: Ubuntu 22.04's, in the container

try:
    MATRIX = cells(os.environ)
except BuildError as error:
    sys.exit(f"noxfile.py: error: {error}")


@nox.session(python=PYTHONS, tags=["test"])
def tests(session: nox.Session) -> None:
    """Run the test suite (pytest; arguments after -- go to pytest)."""
    session.install("-r", "requirements.txt")
    session.run("pytest", *session.posargs)


@nox.session(tags=["lint"])
def lint(session: nox.Session) -> None:
    """Lint: ruff on the code, hadolint on the Dockerfile, actionlint + shellcheck on workflows."""
    session.install("-r", "requirements-lint.txt")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("hadolint", "Dockerfile")
    session.run("actionlint")


@nox.session(name="build-matrix", python=False, default=False, allow_parallel=True, tags=["build"])
@nox.parametrize(
    ("version", "arch"),
    [nox.param(c.version, c.arch, id=c.id, tags=[c.arch, c.version]) for c in MATRIX],
)
def build_matrix(session: nox.Session, version: str, arch: str) -> None:
    """Build one image of the matrix with `invoke all` (arguments after -- go to invoke).

    Runs in nox's own environment: cells share it, the download cache and output/."""
    if importlib.util.find_spec("invoke") is None:
        session.error(
            f"invoke is not installed for {sys.executable}: "
            "install nox and the requirements together (pip install -r requirements.txt)"
        )
    session.run(
        sys.executable,
        "-m",
        "invoke",
        "all",
        f"--version={version}",
        f"--arch={arch}",
        *session.posargs,
        external=True,
    )
