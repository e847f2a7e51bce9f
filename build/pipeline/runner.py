"""Runs a table of steps (build/pipeline/steps.py's): each at most once, after the step it needs,
and only when out of date (build/model/rule.py); deferred, the outputs take their final names only
once every step passed. Nothing here knows a step by name: what differs between steps is a field of
its table entry."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from build.config.spec import BuildSpec
from build.core.errors import BuildError
from build.core.fileio import atomic_path, file_lock, fsync_dir, sweep_temps
from build.core.report import say
from build.core.signals import raise_if_interrupted
from build.model import manifest
from build.model.names import CELL_LOCK, PENDING, STAGING, step_lock
from build.model.rule import FIRST_BUILD, Step, forget, plain_reason, record, why_out_of_date

T = TypeVar("T")


def _nothing(_: Any) -> tuple[Path, ...]:
    return ()


@dataclass(frozen=True)
class Entry:
    """One step of the table: what it makes (`makes`), from what (`sources`, `params`), after
    which step (`needs`), and the function that makes it (`make`, which returns what it did)."""

    name: str
    needs: str | None
    makes: Callable[[BuildSpec], tuple[Path, ...]]
    make: Callable[[Runner], str]
    sources: Callable[[Runner], tuple[Path, ...]] = _nothing
    # With a stamp, the parameters it records: a change makes the step out of date.
    params: Callable[[Runner], Mapping[str, Any]] | None = None
    stamp: Callable[[BuildSpec], Path] | None = None
    # Targets other builds make too, each under a lock of its own taken by `make` (the cached
    # SHA256SUMS, one per release): checked like the others, never swept as a killed run's.
    shares: Callable[[BuildSpec], tuple[Path, ...]] = _nothing
    # A lock of its own outside the output directory (the download cache's, shared by every
    # output directory): the step then takes no output directory lock. None: a lock per step
    # and cell beside its record in .staging.
    lock: Callable[[BuildSpec], Path] | None = None
    # With `all` (verifying), what it makes waits in the pending directory and takes its final
    # name only once every step passed.
    deferrable: bool = False
    # Left out by `all --no-verify`.
    optional: bool = False
    # Run before its needs: to refuse early (before a download) what would fail it later.
    before: Callable[[Runner], object] | None = None
    # Why it has nothing to make for this build (said, then the step counts as done).
    skip: Callable[[BuildSpec], str | None] | None = None
    # Around the step's run: undoes what a failed run left (the fetch's empty cache folders).
    guard: Callable[[BuildSpec], contextlib.AbstractContextManager[None]] | None = None
    # Asked for by itself, the step checks what is built: it runs every time, without its
    # needs, and refuses in one line, with this advice, when one of its sources is missing.
    alone: str | None = None


class Runner:
    """Runs the steps of `table` for one BuildSpec, each at most once, each after the one it
    needs.

    Deferred (all(), verifying), the outputs go to a pending directory in .staging
    first and replace the earlier ones only once every step passed on them (commit()); until
    then the step records stay as they were, so a failed verify leaves every earlier output as
    it was."""

    def __init__(
        self,
        table: Sequence[Entry],
        spec: BuildSpec,
        force: Collection[str] = (),
    ):
        self.table = {entry.name: entry for entry in table}
        unknown = set(force) - set(self.table)
        if unknown:
            raise ValueError(f"unknown steps: {unknown}")
        self.spec = spec
        self.force = set(force)
        self.done: set[str] = set()
        self.deferred = False  # all() turns it on, verifying
        self.pending: dict[Path, Path] = {}  # final name -> the file waiting to take it
        self.unrecorded: list[Step] = []  # steps made into pending files: recorded at commit
        self._cell_lock: contextlib.ExitStack | None = None
        self._output_lock = contextlib.ExitStack()
        self._new_locks: list[Path] = []  # lock files made in .staging, recorded with outputs
        self._output_locked = False
        self._once: dict[str, Any] = {}
        self._deferring = False  # a deferrable step is making its targets, deferred

    def once(self, key: str, compute: Callable[[], T]) -> T:
        """`compute()`, called once per run: what two steps must see alike (an input file)."""
        if key not in self._once:
            self._once[key] = compute()
        return cast(T, self._once[key])

    @property
    def pending_dir(self) -> Path:
        return self.spec.work_dir / PENDING

    def current(self, final: Path) -> Path:
        """Where the newest version of the output `final` is: pending, or in place."""
        return self.pending.get(final, final)

    @contextlib.contextmanager
    def output(self, final: Path) -> Iterator[Path]:
        """A temporary path for the output `final`, renamed into place when the block succeeds,
        or, while a deferrable step runs deferred, to a pending file that takes the final name
        at commit()."""
        if not self._deferring:
            with atomic_path(final) as tmp:
                yield tmp
            self._record(final)
            return
        self._own_dirs(self.pending_dir)
        target = self.pending_dir / final.name
        with atomic_path(target) as tmp:
            yield tmp
        self._record(target)
        self.pending[final] = target

    def write_output(self, final: Path, text: str) -> None:
        with self.output(final) as tmp:
            tmp.write_text(text, encoding="utf-8")

    def _own_dirs(self, directory: Path) -> None:
        """Make `directory` (in the output directory) and its parents, recorded as the tool's."""
        output_dir = self.spec.output_dir
        manifest.make_dirs(output_dir, *directory.relative_to(output_dir).parts)

    def _record(self, *paths: Path) -> None:
        """Files the tool wrote in the output directory, for clean; with the lock files taken
        since the last record (not recorded at once: a full disk must fail the step's own
        write, which names the file that matters)."""
        manifest.record(self.spec.output_dir, [*self._new_locks, *paths])
        self._new_locks.clear()

    # The steps.

    def rule(self, entry: Entry) -> Step:
        """What the step makes from what, for this build."""
        spec = self.spec
        return Step(
            entry.name,
            targets=(*entry.makes(spec), *entry.shares(spec)),
            sources=entry.sources(self),
            params=entry.params(self) if entry.params is not None else {},
            stamp=entry.stamp(spec) if entry.stamp is not None else None,
            lock=entry.lock(spec) if entry.lock is not None else None,
        )

    def must_run(self, name: str) -> bool:
        return name in self.force or self._why(self.rule(self.table[name])) is not None

    def ask(self, name: str) -> None:
        """The step asked for on the command line: an `alone` one checks what is built, every
        time; any other runs after its needs, when out of date."""
        entry = self.table[name]
        if entry.alone is None:
            self.run(name)
            return
        step = self.rule(entry)
        missing = next((source for source in step.sources if not source.exists()), None)
        if missing is not None:
            raise BuildError(f"nothing to {name}: {missing} is missing", entry.alone)
        stale = self._stale_output_step(entry)
        if stale is not None:
            raise BuildError(f"nothing to {name} yet: {stale}", entry.alone)
        self._run(entry, step, self._why(step) or "up to date, checked again as asked")

    def _stale_output_step(self, entry: Entry) -> str | None:
        """The earliest step before `entry` whose outputs are out of date (a single `invoke pack`
        leaves the .sha256 behind), among those that make the build's outputs: what an `alone`
        step checks would not be what a build makes."""
        stale = None
        needed = entry.needs
        while needed is not None and self.table[needed].deferrable:
            before = self.table[needed]
            if before.skip is None or before.skip(self.spec) is None:
                # By times alone: other options are verify's own line to say (build info), and
                # staging that is gone (a copied output directory) leaves the outputs as built.
                rule = self.rule(before)
                present = tuple(source for source in rule.sources if source.exists())
                why = why_out_of_date(dataclasses.replace(rule, sources=present, stamp=None))
                if why is not None:
                    stale = f"{before.name} is out of date ({why})"
            needed = before.needs
        return stale

    def run(self, name: str) -> None:
        if name in self.done:
            return
        entry = self.table[name]
        if entry.before is not None:
            entry.before(self)
        if entry.needs is not None:
            self.run(entry.needs)
        skipped = entry.skip(self.spec) if entry.skip is not None else None
        if skipped is not None:
            say(name, f"skipped: {skipped}")
            self.done.add(name)
            return
        guard = entry.guard(self.spec) if entry.guard is not None else contextlib.nullcontext()
        with guard:
            step = self.rule(entry)
            if name in self.force:
                self._run(entry, step, "--force")
            else:
                reason = self._why(step)
                if reason is None:
                    self._say_up_to_date(step)
                else:
                    self._run(entry, step, reason, recheck=True)
        self.done.add(name)

    def all(self, verify: bool = True) -> None:
        """Every step (but the optional ones without `verify`); verifying, deferred: the
        outputs take their final names once every step passed on them."""
        # Last first: each step's `before` runs ahead of the steps it needs (a missing tool is
        # refused before a download).
        wanted = [
            entry.name for entry in reversed(self.table.values()) if verify or not entry.optional
        ]
        if not verify:
            for name in wanted:
                self.run(name)
            return
        self.deferred = True
        try:
            for name in wanted:
                self.run(name)
            self.commit()
        finally:
            self.release_cell()

    def _why(self, step: Step) -> str | None:
        """Why the step must run, in the words of its line, or None when it is up to date."""
        reason = plain_reason(step)
        if reason == FIRST_BUILD:
            return reason
        rebuilt = next((source for source in step.sources if source in self.pending), None)
        if rebuilt is not None:
            return f"{rebuilt.name} was rebuilt"
        return reason

    def _say_up_to_date(self, step: Step) -> None:
        """Says "STEP TARGET: up to date", naming its first target outside .staging (the user's
        file), or none: a step record or the staged tree is the tool's business."""
        staging = self.spec.output_dir / STAGING
        shown = next((path for path in step.targets if not path.is_relative_to(staging)), None)
        say(step.name, f"{shown}: up to date" if shown is not None else "up to date")

    def _final_names(self, outcome: str) -> str:
        """`outcome` naming each output by its final name, not by the pending file that takes
        it at commit(): the user looks for the file there."""
        for final, pending in self.pending.items():
            outcome = outcome.replace(str(pending), str(final))
        return outcome

    def _lock(self, step: Step) -> Path:
        """The step's own lock (the fetch's, shared across output directories), else one per
        step and cell beside its record in .staging (the alias's: per version)."""
        if step.lock is not None:
            return step.lock
        return step_lock(step.stamp or self.spec.stamp(step.name))

    def _holder(self, entry: Entry | None, lock: Path) -> str:
        """Who holds a lock the build waits on, for its "waiting for …" line."""
        if entry is not None and entry.lock is not None:  # shared by every output directory
            return f"another build's {entry.name} in {lock.parent}"
        return f"another build in {self.spec.output_dir}"

    def _run(self, entry: Entry, step: Step, reason: str, recheck: bool = False) -> None:
        """Make the step's targets, under its lock. Only a step that must run takes its lock: an
        unchanged run touches no file. Two builds of the same cell then make each target once;
        the second waits, then (`recheck`) finds it up to date."""
        lock = self._lock(step)
        if entry.lock is None:  # in the output directory
            self._hold_output_lock()
            self._own_dirs(lock.parent)
        deferred = self.deferred and entry.deferrable
        if deferred:
            self._hold_cell_lock()
        with file_lock(lock, waiting_for=self._holder(entry, lock)):
            if entry.lock is None:
                self._new_locks.append(lock)
            if recheck:  # another build may have made the targets while we waited
                again = self._why(step)
                if again is None:
                    self._say_up_to_date(step)
                    return
                reason = again
            started = time.monotonic()
            # Leftovers of a killed run (under the lock, so no other build's files in use);
            # shared targets have locks of their own, taken by the step.
            shared = entry.shares(self.spec)
            for path in (*step.targets, *([step.stamp] if step.stamp else [])):
                if path not in shared:
                    sweep_temps(path)
            raise_if_interrupted()
            if deferred:
                self._deferring = True
                try:
                    outcome = entry.make(self)
                finally:
                    self._deferring = False
                raise_if_interrupted()
                self.unrecorded.append(step)
            else:
                forget(step)
                outcome = entry.make(self)
                raise_if_interrupted()  # not recorded: the next run makes it again
                self._record_step(step)
            elapsed = time.monotonic() - started
            say(step.name, f"{self._final_names(outcome)} ({elapsed:.1f} s; {reason})")

    def _record_step(self, step: Step) -> None:
        record(step)
        if step.stamp is not None:
            self._record(step.stamp)

    # Locks and the deferred install.

    def _hold_output_lock(self) -> None:
        """The output directory's lock, shared with other builds (clean, release and sums wait
        for all of them), and the cell's directory: taken once a step must write there."""
        if self._output_locked:
            return
        spec = self.spec
        self._output_lock.enter_context(manifest.output_dir_lock(spec.output_dir, shared=True))
        self._output_locked = True
        self._own_dirs(spec.work_dir)

    def _hold_cell_lock(self) -> None:
        """Deferred: one lock over the cell's outputs from the first pending file to commit(),
        so a concurrent build of the same cell neither shares the pending directory nor
        replaces the outputs meanwhile. Taken only once something must be made."""
        if self._cell_lock is not None:
            return
        stack = contextlib.ExitStack()
        self._own_dirs(self.spec.work_dir)
        cell_lock = self.spec.work_dir / CELL_LOCK
        stack.enter_context(file_lock(cell_lock, waiting_for=self._holder(None, cell_lock)))
        self._new_locks.append(cell_lock)
        self._cell_lock = stack
        shutil.rmtree(self.pending_dir, ignore_errors=True)  # a killed run's, under the lock

    def commit(self) -> None:
        """Give the pending files their final names, then record their steps."""
        for step in self.unrecorded:
            forget(step)  # a crash from here on means "rebuild", never a mismatched record
        for final, pending in self.pending.items():
            os.replace(pending, final)
        if self.pending:
            fsync_dir(self.spec.output_dir)
            moves = [(pending, final) for final, pending in self.pending.items()]
            manifest.moved(self.spec.output_dir, moves)
        for step in self.unrecorded:
            self._record_step(step)
        if self.pending:
            names = ", ".join(final.name for final in self.pending)
            say("install", f"verified, now in {self.spec.output_dir}: {names}")
        self.pending.clear()
        self.unrecorded.clear()

    def release_cell(self) -> None:
        """Drop what was not committed, and the cell's lock."""
        if self._cell_lock is not None:
            shutil.rmtree(self.pending_dir, ignore_errors=True)
            self._cell_lock.close()
            self._cell_lock = None
        self.pending.clear()
        self.unrecorded.clear()

    def close(self) -> None:
        self._output_lock.close()
        self._output_locked = False
