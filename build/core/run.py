"""The one way to run an external command: looked up on PATH, its output captured, any failure
told in one line the same way, and never outliving the build."""

from __future__ import annotations

import ctypes
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from build.core.errors import BuildError
from build.core.tools import package as package_of

_MAX_WORDS = 300  # characters of a failed tool's stderr in its error line
# How often a watched command's watcher is called while it runs, in seconds.
WATCH_EVERY = 1.0

# Called with a running command's pid every WATCH_EVERY seconds (run_bytes's `watch`).
Watch = Callable[[int], None]

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# Looked up before any fork: dlopen() in a forked child could wait on a lock forever.
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def dies_with_this_process() -> Callable[[], None]:
    """A preexec_fn that has the kernel SIGKILL the child when this process dies, even by
    SIGKILL, which runs no clean-up of ours (a killed build must not leave mksquashfs writing
    on). A process group would not do it, and would keep Ctrl-C from reaching the child.

    preexec_fn is unsafe in a process with threads; the build runs its commands from its one
    (main) thread, and the death signal follows the thread that forked, which is that one."""
    parent = os.getpid()

    def set_death_signal() -> None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the prctl: nobody would kill us
            os.kill(os.getpid(), signal.SIGKILL)

    return set_death_signal


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        package = package_of(tool)
        raise BuildError(
            f"{tool} not found on PATH",
            f"install the package {package} (e.g. apt-get install {package})",
        )
    return path


def run(argv: Sequence[str], **how: Any) -> str:
    """Run `argv`, return its stdout as text; see run_bytes for `how`."""
    return run_bytes(argv, **how).decode("utf-8", "replace")


def run_bytes(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    what: str | None = None,
    hint: str | None = None,
    timeout: float | None = None,
    watch: Watch | None = None,
) -> bytes:
    """Run `argv` (given `stdin`, else none), return its stdout. Any failure is one BuildError,
    "WHAT: TOOL says: ITS LAST WORDS", `what` saying what could not be done (by default, that
    the tool failed) and `hint` what to do (by default, the command line that failed).
    `watch`, if given, is called with the command's pid while it runs (its progress)."""
    what = what or f"{argv[0]} failed"
    hint = hint or f"the command was: {shlex.join(argv)}"
    result = _completed(argv, env, stdin, what, hint, timeout, watch)
    if result.returncode != 0:
        words = last_words(result.stderr) or f"no message, exit code {result.returncode}"
        raise BuildError(f"{what}: {argv[0]} says: {words}", hint)
    return result.stdout


def tool_environment(**extra: str) -> dict[str, str]:
    """The environment a command whose output must not depend on the caller's gets: PATH,
    LC_ALL=C and `extra`, nothing else (no XZ_OPT, SOURCE_DATE_EPOCH, SYSTEMD_REPART_*...)."""
    return {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C", **extra}


def run_into(
    argv: Sequence[str],
    target: Path,
    *,
    env: Mapping[str, str] | None = None,
    what: str | None = None,
    hint: str | None = None,
) -> None:
    """Run `argv` with its stdout written to the file `target` (made or emptied; a temporary
    the caller renames): for output too large to hold in memory, e.g. a compressed image.
    Failures as run_bytes tells them."""
    what = what or f"{argv[0]} failed"
    hint = hint or f"the command was: {shlex.join(argv)}"
    with target.open("wb") as stdout:
        result = _completed(argv, env, None, what, hint, None, stdout=stdout)
    if result.returncode != 0:
        words = last_words(result.stderr) or f"no message, exit code {result.returncode}"
        raise BuildError(f"{what}: {argv[0]} says: {words}", hint)


def run_outcome(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run `argv` as run_bytes does and return its exit code, stdout and stderr whatever they
    are: for a caller that tells a tool's failures apart by what the tool said."""
    hint = f"the command was: {shlex.join(argv)}"
    return _completed(argv, env, stdin, f"{argv[0]} failed", hint, timeout)


def run_answer(argv: Sequence[str], *, env: Mapping[str, str] | None, timeout: float) -> str:
    """What `argv` prints, stdout then stderr, whatever its exit code: for a question some
    versions of a tool answer with an error (mkfs.erofs 1.4 and 1.5 print their version, then
    refuse --version)."""
    hint = f"the command was: {shlex.join(argv)}"
    result = _completed(argv, env, None, f"{shlex.join(argv)} failed", hint, timeout)
    return (result.stdout + result.stderr).decode("utf-8", "replace")


def _completed(
    argv: Sequence[str],
    env: Mapping[str, str] | None,
    stdin: bytes | None,
    what: str,
    hint: str,
    timeout: float | None,
    watch: Watch | None = None,
    stdout: Any = None,
) -> subprocess.CompletedProcess[bytes]:
    """`stdout`: a file its output goes to, else captured."""
    name = argv[0]
    try:
        if watch is not None:
            return _watched([require(name), *argv[1:]], env, stdin, timeout, watch)
        return subprocess.run(
            [require(name), *argv[1:]],
            env=env,
            input=stdin,
            stdin=subprocess.DEVNULL if stdin is None else None,
            stdout=subprocess.PIPE if stdout is None else stdout,
            stderr=subprocess.PIPE,
            timeout=timeout,
            preexec_fn=dies_with_this_process(),
        )
    except subprocess.TimeoutExpired:
        raise BuildError(f"{what}: {name} did not answer in {timeout:g} s", hint) from None
    except OSError as error:
        raise BuildError(f"{what}: cannot run {name}: {error.strerror}", hint) from None


def _watched(
    argv: Sequence[str],
    env: Mapping[str, str] | None,
    stdin: bytes | None,
    timeout: float | None,
    watch: Watch,
) -> subprocess.CompletedProcess[bytes]:
    """subprocess.run's work, calling `watch` between waits (from this thread: the death
    signal of dies_with_this_process follows the thread that forked)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=dies_with_this_process(),
    ) as process:
        try:
            stdout, stderr = _communicate(process, stdin, deadline, watch)
        except BaseException:  # a timeout, Ctrl-C, a failing watch: the command goes too
            process.kill()
            raise
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


def _communicate(
    process: subprocess.Popen[bytes], stdin: bytes | None, deadline: float | None, watch: Watch
) -> tuple[bytes, bytes]:
    given = stdin
    while True:
        wait = WATCH_EVERY if deadline is None else min(WATCH_EVERY, deadline - time.monotonic())
        try:
            # Asked again after a timeout, communicate() goes on where it was: input once.
            return process.communicate(given, timeout=max(wait, 0))
        except subprocess.TimeoutExpired:
            if deadline is not None and time.monotonic() >= deadline:
                raise
        given = None
        watch(process.pid)


def last_words(output: bytes) -> str:
    """The end of what a tool said, its lines joined: short enough for one error line."""
    lines = (line.strip() for line in output.decode("utf-8", "replace").splitlines())
    return "; ".join(line for line in lines if line)[-_MAX_WORDS:]
