"""The command line around Invoke's parser: a mistyped task or flag names the closest match."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from typing import Any

from invoke.exceptions import ParseError
from invoke.parser.parser import ParseMachine

from build.core.report import cut

_UNKNOWN = re.compile(r"No idea what (?P<token>'.*'|\".*\") is!")


def closest(token: str, machine: Any) -> str | None:
    """The task or flag (of the task being parsed) nearest to `token`, if one is near."""
    candidates = list(machine.contexts)
    if machine.context is not None:
        candidates += [*machine.context.flags, *machine.context.inverse_flags]
    found = difflib.get_close_matches(token, candidates, n=1, cutoff=0.6)
    return found[0] if found else None


def other_tasks_flag(token: str, machine: Any, owners: Mapping[str, str]) -> str | None:
    """ "'--sign-key' is a flag of invoke release, not of invoke all" where `token` is a flag of
    other tasks (`owners`: flag -> its tasks, as said) than the one being parsed."""
    flag = token.split("=", 1)[0]
    where = owners.get(flag)
    if where is None or machine.context is None:
        return None
    return f"{flag!r} is a flag of {where}, not of invoke {machine.context.name}."


def suggest_close_matches(owners: Callable[[], Mapping[str, str]] = dict) -> None:
    """Make Invoke's "No idea what 'al' is!" end with "Did you mean 'all'?" (once per process),
    or, for a flag of other tasks (`owners()`: flag -> its tasks, asked only on such an error,
    not at every start), name those tasks instead."""
    if getattr(ParseMachine.error, "suggests", False):
        return
    plain = ParseMachine.error

    def error(self: Any, msg: str) -> None:
        match = _UNKNOWN.fullmatch(msg)
        if match:
            token = match["token"][1:-1]
            near = closest(token, self)
            elsewhere = other_tasks_flag(token, self, owners())
            if elsewhere:
                hint = elsewhere
            else:
                hint = f"Did you mean {near!r}?" if near else "See invoke --list for the tasks."
            more = "invoke --help TASK lists a task's flags"
            raise ParseError(f"{cut(msg, 200)} {hint} ({more})", self.context)
        plain(self, cut(msg))  # a line, however long the argument that was given

    # Invoke has no hook for its parse errors: its parser's method is replaced, and marked.
    error.suggests = True  # type: ignore[attr-defined]  # a mark on the function
    ParseMachine.error = error  # type: ignore[method-assign]  # Invoke's, replaced on purpose
