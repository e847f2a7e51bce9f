"""StepContext: what a step's function is given to make its targets. build/pipeline/runner.py's
Runner is one; the steps (build/image, build/verify) know only this, never the runner."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol, TypeVar

from build.config.spec import BuildSpec

T = TypeVar("T")


class StepContext(Protocol):
    @property
    def spec(self) -> BuildSpec:
        """The build's options and every file name derived from them."""
        ...

    @property
    def deferred(self) -> bool:
        """True while outputs wait in a pending directory until every step passed (invoke all,
        verifying): what is in place is not yet this build's."""
        ...

    def current(self, final: Path) -> Path:
        """Where the newest version of the output `final` is: pending, or in place."""
        ...

    def output(self, final: Path) -> AbstractContextManager[Path]:
        """A temporary path for the output `final`, given its name when the block succeeds."""
        ...

    def write_output(self, final: Path, text: str) -> None: ...

    def once(self, key: str, compute: Callable[[], T]) -> T:
        """`compute()`, called once per run: what two steps must see alike."""
        ...

    def must_run(self, name: str) -> bool:
        """Whether the step `name` is out of date (or forced) for this build."""
        ...
