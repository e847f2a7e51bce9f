"""What a test run makes once for all its processes (pytest-xdist's workers): the prebuilt
images, the throwaway gpg keys. The first process to ask makes it, under a file lock, in the
run's own directory (the basetemp every worker's basetemp is a folder of: xdist's documented
pattern); the others wait for it and read its record. What must outlive the worker that made
it, a gpg home and its agent, is removed when the whole run ends (pytest_sessionfinish of the
process that ran the workers), not by the first worker to finish.

A pytest plugin too (pyproject.toml loads it with -p tests.shared): it holds that hook."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from filelock import FileLock

from tests.gpgkeys import Keys, UnusableKeys, new_home, remove_home

GPG_HOMES = "gpg-homes"  # the record of the gpg homes end_of_run removes, one a line


_in_a_worker = False  # set by pytest_configure: whether this process is an xdist worker


def pytest_configure(config: pytest.Config) -> None:
    # xdist gives a worker `workerinput`; PYTEST_XDIST_WORKER is no proof, as a pytest run by
    # a test inherits it.
    global _in_a_worker
    _in_a_worker = hasattr(config, "workerinput")


def run_dir(factory: pytest.TempPathFactory) -> Path:
    """The directory of this run that every process of it sees."""
    base = factory.getbasetemp()
    return base.parent if _in_a_worker else base


def once(
    factory: pytest.TempPathFactory, name: str, make: Callable[[Path], dict[str, Any]]
) -> dict[str, Any]:
    """The record (JSON) `make(directory)` returned, in the first process of the run to ask
    for `name`; `directory` is the run's NAME folder, made empty for it. A `make` that raises
    (a skip included) records nothing: the next to ask tries again."""
    root = run_dir(factory)
    record = root / f"{name}.json"
    with FileLock(root / f"{name}.lock"):
        if record.exists():
            return json.loads(record.read_text())
        directory = root / name
        if directory.exists():  # a process that died making it left this
            shutil.rmtree(directory)
        directory.mkdir()
        made = make(directory)
        partial = root / f".{name}.json.tmp"
        partial.write_text(json.dumps(made))
        partial.replace(record)
        return made


def remove_at_end_of_run(factory: pytest.TempPathFactory, home: Path) -> None:
    """Have end_of_run stop `home`'s gpg daemons and remove it."""
    root = run_dir(factory)
    with FileLock(root / f"{GPG_HOMES}.lock"), (root / GPG_HOMES).open("a") as homes:
        homes.write(f"{home}\n")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The run is over when the process that ran the workers finishes (or the only process)."""
    if not hasattr(session.config, "workerinput"):
        end_of_run(session.config._tmp_path_factory)  # type: ignore[attr-defined]


def end_of_run(factory: pytest.TempPathFactory) -> None:
    """Every gpg home recorded in this run: its daemons stopped (gpg-agent, keyboxd), its files
    removed."""
    homes = run_dir(factory) / GPG_HOMES
    if not homes.exists():
        return
    for line in homes.read_text().splitlines():
        remove_home(Path(line))
    homes.unlink()


SharedKeys = TypeVar("SharedKeys", Keys, UnusableKeys)


def shared_keys(
    factory: pytest.TempPathFactory,
    name: str,
    make: Callable[[Path], SharedKeys],
    kind: type[SharedKeys],
    prefix: str,
) -> SharedKeys:
    """Keys `make` makes in a new home (named `prefix`... under /tmp), once for the whole run:
    every xdist worker signs with the same home and its one agent, which end with the run."""

    def made(_: Path) -> dict[str, str]:
        home = new_home(prefix)
        remove_at_end_of_run(factory, home)
        return {field: str(value) for field, value in dataclasses.asdict(make(home)).items()}

    record = once(factory, name, made)
    return kind(**{**record, "home": Path(record["home"])})
