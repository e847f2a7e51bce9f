"""What a finished CLI run must look like: a success, or one clear error line; and what a
refusing call raises: one BuildError line."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from build.core.errors import BuildError


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """The run succeeded, without a traceback."""
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result


def error_line(result: subprocess.CompletedProcess, *fragments: str, exit_code: int = 1) -> str:
    """The run failed (with `exit_code`: 1 but after a signal) with one `error: ` line on stderr,
    no traceback, naming the problem with every one of `fragments`; return that line."""
    where = f"\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == exit_code, f"exit code {result.returncode}, not {exit_code}{where}"
    assert "Traceback" not in result.stderr, where
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected exactly one stderr line{where}"
    line = lines[0]
    assert line.startswith("error: ") and line.removeprefix("error: ").strip(), where
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in the error line{where}"
    return line


def refused(call: Callable[[], object], *fragments: str) -> str:
    """`call()` raised one BuildError whose message is one line naming every one of
    `fragments`; return that message."""
    with pytest.raises(BuildError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message
