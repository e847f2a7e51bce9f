"""A throwaway GnuPG home for a task's gpg calls, whose daemons end with it.

gpg starts daemons on demand (gpg-agent for any secret key operation, a listing of secret keys
and an import included; keyboxd and dirmngr in some setups). They detach, so they would outlive
the task, keep the environment of the gpg that started them and, for gpg-agent, the unlocked
key (its passphrase cache). So no gpg call of ours runs against the user's home or talks to an
agent the user runs: each runs in a fresh home under /tmp (short, for gpg-agent's socket path),
empty or holding copies of the user's public keyring and of the secret key files of the one key
it needs, with an environment that lacks ALLOY_SIGN_PASSPHRASE (the passphrase goes to gpg on a
pipe only). When done, every daemon started for that home is stopped (gpgconf --kill all, then
whatever /proc still shows naming the home is killed) and the home is removed."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from build.core.errors import BuildError
from build.core.run import run_bytes
from build.keys.keylisting import keygrips

GPG_TIMEOUT = 120  # seconds a gpg call may take: a stuck gpg-agent must not hang us
PASSPHRASE_ENV = "ALLOY_SIGN_PASSPHRASE"
STOP_WAIT = 5.0  # seconds a daemon gets to end after gpgconf --kill before SIGKILL
# What makes a home's public keyring: keybox, legacy keyring, trust database, and keyboxd's.
PUBLIC_FILES = ("pubring.kbx", "pubring.gpg", "trustdb.gpg")
KEYBOXD_DIR = "public-keys.d"
SECRET_DIR = "private-keys-v1.d"


def gpg_env() -> dict[str, str]:
    """Ours, without the passphrase: a daemon gpg starts keeps its environment."""
    return {name: value for name, value in os.environ.items() if name != PASSPHRASE_ENV}


def run_gpg(home: Path, *args: str, what: str, hint: str, stdin: bytes | None = None) -> bytes:
    """gpg `args` in `home` (batch mode, no options file); see run.run_bytes."""
    command = ["gpg", "--batch", "--no-tty", "--no-options", f"--homedir={home}", *args]
    return run_bytes(command, env=gpg_env(), stdin=stdin, what=what, hint=hint, timeout=GPG_TIMEOUT)


def default_home() -> Path:
    """The home gpg itself would use: $GNUPGHOME, else ~/.gnupg."""
    return Path(os.environ.get("GNUPGHOME") or Path.home() / ".gnupg")


@contextlib.contextmanager
def throwaway_home() -> Iterator[Path]:
    """A new empty home; its daemons stopped and its files removed afterwards."""
    home = Path(
        tempfile.mkdtemp(prefix="alloy-gpg.", dir="/tmp" if Path("/tmp").is_dir() else None)
    )
    try:
        yield home
    finally:
        stop_daemons(home)
        shutil.rmtree(home, ignore_errors=True)


def copy_key(source: Path, home: Path, key: str, *, what: str, hint: str) -> None:
    """Copy into `home` the public keyring of `source` and the secret key files of the keys
    that `key` names there (read by keygrip from the public listing: no agent involved)."""
    for name in PUBLIC_FILES:
        _copy_file(source / name, home / name)
    keyboxd = source / KEYBOXD_DIR
    if keyboxd.is_dir() and _uses_keyboxd(source):
        (home / KEYBOXD_DIR).mkdir(mode=0o700)
        for path in keyboxd.iterdir():
            _copy_file(path, home / KEYBOXD_DIR / path.name)
        (home / "common.conf").write_text("use-keyboxd\n")
    listing = run_gpg(
        home, "--with-colons", "--with-keygrip", "--list-keys", "--", key, what=what, hint=hint
    ).decode("utf-8", "replace")
    secrets = home / SECRET_DIR
    secrets.mkdir(mode=0o700)
    for grip in keygrips(listing):
        _copy_file(source / SECRET_DIR / f"{grip}.key", secrets / f"{grip}.key")


def _uses_keyboxd(source: Path) -> bool:
    try:
        lines = (source / "common.conf").read_text(errors="replace").splitlines()
    except OSError:
        return False
    return any(line.strip() == "use-keyboxd" for line in lines)


def _copy_file(source: Path, target: Path) -> None:
    """`source`'s bytes to `target` (mode 0600), if it is a regular file (a socket or lock is
    not copied)."""
    if not source.is_file():
        return
    try:
        data = source.read_bytes()
    except OSError as error:
        raise BuildError(
            f"cannot read {source}: {error.strerror}",
            "check the gpg home directory (--gnupg-home) is readable; nothing was written",
        ) from None
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)


def stop_daemons(home: Path) -> None:
    """End every process started for `home`: gpgconf asks them to, then any still running
    (its command line names the home, which nobody else knows) is signalled."""
    if shutil.which("gpgconf") is not None:
        with contextlib.suppress(BuildError):
            run_bytes(
                ["gpgconf", f"--homedir={home}", "--kill", "all"],
                env=gpg_env(),
                timeout=GPG_TIMEOUT,
            )
    deadline = time.monotonic() + STOP_WAIT
    while pids := daemons_of(home):
        late = time.monotonic() > deadline
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL if late else signal.SIGTERM)
        if late:
            return
        time.sleep(0.05)


def daemons_of(home: Path) -> list[int]:
    """The processes whose command line names `home` (gpg-agent --homedir HOME --daemon, ...)."""
    names = {os.fsencode(home), os.fsencode(f"--homedir={home}")}
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # gone, or not ours to read
            continue
        if names.intersection(argv):
            found.append(int(entry.name))
    return found
