"""build.core.run: the one way the build runs a tool, and the one line a failed tool ends in."""

from __future__ import annotations

import pytest

from build.core.errors import BuildError
from build.core.run import run, run_bytes


def test_a_failing_tool_is_one_line_with_its_last_words_and_the_command() -> None:
    with pytest.raises(BuildError) as raised:
        run(["sh", "-c", "echo first >&2; echo; echo last words >&2; exit 3"])
    assert raised.value.message == "sh failed: sh says: first; last words"
    assert (
        raised.value.hint
        == "the command was: sh -c 'echo first >&2; echo; echo last words >&2; exit 3'"
    )


def test_what_and_hint_replace_the_defaults() -> None:
    with pytest.raises(BuildError) as raised:
        run(["sh", "-c", "exit 4"], what="could not do it", hint="do this")
    assert str(raised.value) == "could not do it: sh says: no message, exit code 4; do this"


def test_stdin_and_bytes_out() -> None:
    assert run_bytes(["cat"], stdin=b"\x00\xffdata") == b"\x00\xffdata"
    assert run(["cat"]) == ""  # no stdin given: the tool reads an empty one, never ours


def test_a_tool_that_does_not_answer_is_stopped() -> None:
    with pytest.raises(BuildError) as raised:
        run(["sleep", "60"], timeout=0.2)
    assert raised.value.message == "sleep failed: sleep did not answer in 0.2 s"


def test_a_missing_tool_names_its_package() -> None:
    with pytest.raises(BuildError) as raised:
        run(["mksquashfs-not-here", "-version"])
    assert raised.value.message == "mksquashfs-not-here not found on PATH"
