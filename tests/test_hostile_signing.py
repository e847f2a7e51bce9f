"""Signing as a careful reviewer would attack it.

A signed release must leave nothing running and nothing unlocked: no gpg-agent (or keyboxd,
dirmngr) it started outlives it, no process keeps ALLOY_SIGN_PASSPHRASE in its environment,
no agent keeps the key unlocked, and an agent the user already ran is left as it was.

A key that cannot sign (revoked, expired, no usable signing subkey) is refused as --sign-key
and as --trust-keys (hosts would trust it to check releases) in one line naming its
fingerprint and what is wrong, with nothing written."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from build.keys.signing import PASSPHRASE_ENV
from tests.conftest import INVOKE_CLI, VERSION, Invoke, Prebuilt, copy_output
from tests.gpgkeys import (
    EXPIRED_ON,
    PASSPHRASE,
    Keys,
    UnusableKeys,
    fingerprints,
    gpg,
    make_unusable_keys,
    new_key,
    throwaway_home,
)
from tests.needs import need
from tests.release_files import PUBLISH_URL, snapshot
from tests.results import error_line, ok
from tests.shared import shared_keys

pytestmark = pytest.mark.needs("gpg", "gpgv", "gpgconf", "gpg-connect-agent")


@pytest.fixture
def output(prebuilt: Prebuilt, tmp_path: Path) -> Path:
    """An amd64 output directory, released unsigned once (so refusals can show it unchanged)."""
    return copy_output(prebuilt(("--arch=amd64",)), tmp_path)


@pytest.fixture
def protected() -> Iterator[tuple[Path, str, str]]:
    """A home of its own with one key under a passphrase no other test uses, and no agent
    running for it: (home, fingerprint, passphrase)."""
    passphrase = f"{PASSPHRASE} {uuid.uuid4().hex}"
    with throwaway_home("ah.") as home:
        fingerprint = new_key(home, "Protected", passphrase)
        stop_agent(home)
        yield home, fingerprint, passphrase


def stop_agent(home: Path) -> None:
    """gpgconf asks the agent to end, and may return before it has."""
    subprocess.run(["gpgconf", f"--homedir={home}", "--kill", "all"], check=True)
    deadline = time.monotonic() + 10
    while processes_naming(str(home)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not processes_naming(str(home)), "the test's own agent did not stop"


def processes_naming(*needles: str) -> dict[int, str]:
    """Every process (but this one) whose command line or environment holds one of `needles`:
    a daemon started for a home names it in its command line, or inherited it in its
    environment (INVOKE_GNUPG_HOME); a passphrase would show in an environment."""
    wanted = [needle.encode() for needle in needles]
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile
            continue
        if any(needle in cmdline or needle in environ for needle in wanted):
            found[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace")
    return found


def signed_release(invoke: Invoke, home: Path, fingerprint: str, passphrase: str):
    env = {"INVOKE_GNUPG_HOME": str(home), PASSPHRASE_ENV: passphrase}
    return invoke("release", f"--publish-url={PUBLISH_URL}", f"--sign-key={fingerprint}", env=env)


def signs_without_a_passphrase(home: Path, fingerprint: str, tmp_path: Path) -> bool:
    """Whether gpg, refused any pinentry, can still sign: only if an agent has the key
    unlocked."""
    data = tmp_path / "probe"
    data.write_text("probe\n")
    result = subprocess.run(
        [
            "gpg",
            "--batch",
            "--no-tty",
            f"--homedir={home}",
            "--pinentry-mode=error",
            f"--local-user={fingerprint}",
            "--output=-",
            "--sign",
            str(data),
        ],
        capture_output=True,
        timeout=60,
    )
    return result.returncode == 0


def agent_pid(home: Path) -> int:
    """The pid of the agent serving `home`, starting one if none runs (as a user would)."""
    result = subprocess.run(
        ["gpg-connect-agent", f"--homedir={home}", "GETINFO pid", "/bye"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    [line] = [line for line in result.stdout.splitlines() if line.startswith("D ")]
    return int(line.removeprefix("D "))


def leftovers(
    home: Path, fingerprint: str, passphrase: str, tmp_path: Path, users: frozenset[int]
) -> list[str]:
    """What a signed release left behind, each finding named (all of them, not the first);
    `users` are the processes the user (the test) ran for the home before."""
    found = []
    daemons = processes_naming(str(home))
    if started := {pid: cmdline for pid, cmdline in daemons.items() if pid not in users}:
        found.append(f"gpg daemons the release started still run: {started}")
    if keepers := processes_naming(passphrase):
        found.append(f"processes keep the passphrase in their environment: {keepers}")
    if signs_without_a_passphrase(home, fingerprint, tmp_path):
        found.append("an agent keeps the key unlocked: gpg signs with no passphrase")
    return found


def test_a_signed_release_leaves_no_daemon_and_no_passphrase(
    invoke: Invoke, output: Path, protected: tuple[Path, str, str], tmp_path: Path
) -> None:
    home, fingerprint, passphrase = protected
    ok(signed_release(invoke, home, fingerprint, passphrase))
    assert (output / "SHA256SUMS.gpg").is_file()
    assert leftovers(home, fingerprint, passphrase, tmp_path, frozenset()) == []


def test_an_agent_the_user_runs_is_left_alone_and_learns_nothing(
    invoke: Invoke, output: Path, protected: tuple[Path, str, str], tmp_path: Path
) -> None:
    home, fingerprint, passphrase = protected
    pid = agent_pid(home)
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    ok(signed_release(invoke, home, fingerprint, passphrase))
    assert (output / "SHA256SUMS.gpg").is_file()
    found = []
    alive = Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/cmdline").read_bytes() == cmdline
    if not alive:
        found.append("the user's agent was stopped")
    elif agent_pid(home) != pid:
        found.append("the user's agent no longer serves its home")
    found += leftovers(home, fingerprint, passphrase, tmp_path, frozenset({pid}))
    assert found == []


# A gpg that, asked to sign, has an agent started for its home and then hangs: the test
# interrupts the release there, while the agent runs.
HANGING_GPG = """#!/bin/sh
case " $* " in *" --detach-sign "*)
  for arg; do case $arg in --homedir=*) home=${arg#--homedir=};; esac; done
  gpg-connect-agent --homedir "$home" /bye >/dev/null 2>&1
  : >"$SIGNING_MARKER"
  exec sleep 60;;
esac
exec "$REAL_GPG" "$@"
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_release_interrupted_while_signing_leaves_no_daemon(
    cli_env: dict[str, str],
    output: Path,
    protected: tuple[Path, str, str],
    tmp_path: Path,
    signum: int,
) -> None:
    home, fingerprint, passphrase = protected
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "gpg").write_text(HANGING_GPG)
    (tools / "gpg").chmod(0o755)
    marker = tmp_path / "signing"
    env = {
        **cli_env,
        "PATH": f"{tools}:{os.environ['PATH']}",
        "REAL_GPG": shutil.which("gpg") or "gpg",
        "SIGNING_MARKER": str(marker),
        "INVOKE_GNUPG_HOME": str(home),
        PASSPHRASE_ENV: passphrase,
    }
    args = ["release", f"--publish-url={PUBLISH_URL}", f"--sign-key={fingerprint}"]
    process = subprocess.Popen(
        [*INVOKE_CLI, *args],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the release never came to sign"
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=30)
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    error_line(result, "interrupted by", exit_code=128 + signum)
    assert not (output / "SHA256SUMS.gpg").exists()
    assert processes_naming(str(home)) == {}, "a process the release started still runs"
    assert processes_naming(passphrase) == {}, "a process keeps the passphrase"


@pytest.fixture(scope="session")
def unusable(tmp_path_factory: pytest.TempPathFactory) -> UnusableKeys:
    """Keys that cannot sign, made once a run for every worker (tests only read them)."""
    need("gpg", "gpgconf")
    return shared_keys(tmp_path_factory, "unusable-keys", make_unusable_keys, UnusableKeys, "au.")


def signing_subkey(keys: UnusableKeys, primary: str) -> str:
    return fingerprints(keys.home, primary)[1]


# Which key, and what the one line says is wrong with it (beyond its fingerprint).
UNUSABLE = {
    "revoked": lambda keys: (keys.revoked, "is revoked"),
    "expired": lambda keys: (keys.expired, f"expired on {EXPIRED_ON}"),
    "subkey revoked": lambda keys: (
        keys.subkey_revoked,
        f"has no usable signing (sub)key: subkey {signing_subkey(keys, keys.subkey_revoked)} "
        "is revoked",
    ),
    "subkey expired": lambda keys: (
        keys.subkey_expired,
        f"has no usable signing (sub)key: subkey {signing_subkey(keys, keys.subkey_expired)} "
        f"expired on {EXPIRED_ON}",
    ),
    "encrypt only": lambda keys: (
        keys.encrypt_only,
        "has no usable signing (sub)key (it can only certify and encrypt)",
    ),
}
SECRET_ELSEWHERE = "has no usable signing (sub)key: the secret of its signing (sub)key is not here"


@pytest.mark.parametrize("kind", [*UNUSABLE, "secret elsewhere"])
def test_a_sign_key_that_cannot_sign_is_refused_naming_it(
    invoke: Invoke, output: Path, unusable: UnusableKeys, kind: str
) -> None:
    if kind == "secret elsewhere":
        fingerprint, words = unusable.secret_elsewhere, SECRET_ELSEWHERE
    else:
        fingerprint, words = UNUSABLE[kind](unusable)
    ok(invoke("release", f"--publish-url={PUBLISH_URL}"))  # unsigned, already there
    before = snapshot(output)
    env = {"INVOKE_GNUPG_HOME": str(unusable.home)}
    for task in ("release", "sums"):
        args = [f"--publish-url={PUBLISH_URL}"] if task == "release" else []
        result = invoke(task, *args, f"--sign-key={fingerprint}", env=env)
        line = error_line(result, f"key {fingerprint} {words}", "nothing was written")
        assert len(line) < 400, line
        assert snapshot(output) == before, task
    assert not (output / "SHA256SUMS.gpg").exists()


def public_keys(keys: UnusableKeys, path: Path, *fingerprints: str) -> Path:
    path.write_bytes(gpg(keys.home, "--export", *fingerprints).stdout)
    return path


@pytest.mark.parametrize("kind", list(UNUSABLE))
def test_trust_keys_that_cannot_sign_are_refused_naming_them(
    invoke: Invoke, unusable: UnusableKeys, tmp_path: Path, kind: str
) -> None:
    fingerprint, words = UNUSABLE[kind](unusable)
    keyring = public_keys(unusable, tmp_path / "K2.pub", fingerprint)
    line = error_line(invoke("all", f"--trust-keys={keyring}"), str(keyring))
    assert f"key {fingerprint} {words}" in line and "nothing was written" in line, line
    assert not (tmp_path / "output").exists()


def test_one_bad_key_among_good_ones_is_refused(
    invoke: Invoke, keys: Keys, unusable: UnusableKeys, tmp_path: Path
) -> None:
    keyring = public_keys(unusable, tmp_path / "K2.pub", unusable.revoked)
    keyring.write_bytes(gpg(keys.home, "--export", keys.next).stdout + keyring.read_bytes())
    line = error_line(invoke("all", f"--trust-keys={keyring}"))
    assert f"key {unusable.revoked} is revoked" in line and keys.next not in line, line
    assert not (tmp_path / "output").exists()


def test_a_key_whose_signing_secret_is_elsewhere_is_a_fine_trust_key(
    invoke: Invoke, unusable: UnusableKeys, tmp_path: Path
) -> None:
    """Hosts need only the public key: an offline signing secret is no reason to refuse."""
    keyring = public_keys(unusable, tmp_path / "K2.pub", unusable.secret_elsewhere)
    ok(invoke("all", f"--trust-keys={keyring}", "--arch=amd64"))
    info = (tmp_path / "output" / f"alloy-{VERSION}-amd64.raw.buildinfo.json").read_text()
    assert unusable.secret_elsewhere in info
