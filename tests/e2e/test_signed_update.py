"""Signed fleet updates on a booted host (issue 13): the release is signed (`invoke release
--sign-key`), the host provisioned from its Ignition config trusts the key through
alloy-import-pubring.service, and systemd-sysupdate with Verify=yes takes only what the key
signed. On Debian 13 (systemd 257, which reads /etc/systemd/import-pubring.gpg) and Debian testing
(forky, systemd 258 and newer, which read import-pubring.pgp first, as Flatcar Beta/Alpha's 260
does). Run with `nox -s e2e`; tests/e2e/test_update.py explains the Fleet."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Release
from tests.e2e.conftest import StandIn, publish_stand_in
from tests.e2e.fleet import (  # noqa: F401 (fleet, published_server: fixtures)
    FLEET_MARKS,
    A,
    B,
    Fleet,
    fleet,
    image,
    published_server,
    running,
    runs,
)
from tests.gpgkeys import gpg, new_key, throwaway_home
from tests.needs import need

pytestmark = [*FLEET_MARKS, pytest.mark.needs("gpg", "gpgconf")]

# The first systemd that reads /etc/systemd/import-pubring.pgp before import-pubring.gpg.
PGP_KEYRING_SINCE = 258


@dataclasses.dataclass(frozen=True)
class Keys:
    home: Path
    release: str  # fingerprint of the key releases are signed with
    stranger: str  # of a key no host trusts


@pytest.fixture(scope="module")
def keys() -> Iterator[Keys]:
    """Throwaway keys in a short GNUPGHOME under /tmp (gpg-agent's socket path is short), whose
    agent is stopped afterwards."""
    need("gpg", "gpgconf")
    with throwaway_home("ag.") as home:
        yield Keys(home, new_key(home, "Release"), new_key(home, "Stranger"))


@pytest.fixture
def signed_fleet(request: pytest.FixtureRequest, keys: Keys) -> Fleet:
    """test_update's fleet, releasing signed with the release key."""
    return dataclasses.replace(
        request.getfixturevalue("fleet"),
        release_options=(f"--sign-key={keys.release}", f"--gnupg-home={keys.home}"),
    )


@dataclasses.dataclass(frozen=True)
class Host:
    root: Path
    least_systemd: int  # what the root must run for the test to mean what it says


# Debian 13 (systemd 257, the .gpg keyring) and Debian testing (258+, the .pgp keyring first).
HOSTS = {"trixie": 257, "testing": PGP_KEYRING_SINCE}


@pytest.fixture(params=list(HOSTS))
def host(request: pytest.FixtureRequest) -> Host:
    return Host(request.getfixturevalue(f"{request.param}_root"), HOSTS[request.param])


def systemd_major(booted_version: str) -> int:
    """257 from `systemctl --version`'s first line, "systemd 257 (257.9-1~deb13u1)"."""
    found = re.match(r"systemd (\d+)", booted_version)
    assert found, booted_version
    return int(found[1])


def test_signed_update_is_verified_linked_merged_and_restarted(
    signed_fleet: Fleet,
    release: Release,
    stand_in: StandIn,
    host: Host,
    report_time: Callable[[str], None],
) -> None:
    publish_stand_in(release, B, stand_in(B))
    signed_fleet.publish([[A], [A, B]])
    assert "Verify=yes" in (signed_fleet.steps / "1/sysupdate/amd64/alloy.transfer").read_text()
    booted = signed_fleet.boot(host.root, ["1"], report_time)
    report = signed_fleet.report(booted)
    assert systemd_major(booted.results.get("systemd", "")) >= host.least_systemd, report
    assert running(booted, 0) == runs(A), report
    assert booted.results.get("update_status_1") == "0", report
    assert running(booted, 1) == runs(B), report
    assert booted.results["pid_1"] != booted.results["pid_0"], report
    assert booted.results.get("merged_1", "").split() == ["alloy"], report
    assert booted.results.get("files_1") == f"{image(A)} {image(B)}", report  # A kept
    # Verified: sysupdate fetched the signature, and the keyring the unit wrote trusted it.
    assert "/SHA256SUMS.gpg 200" in signed_fleet.server.requests, report
    assert booted.results.get("keyrings") == "import-pubring.gpg import-pubring.pgp", report
    assert booted.returncode == 0, report


def test_signed_update_on_258_and_newer_trusts_the_key_over_an_older_pgp_keyring(
    signed_fleet: Fleet,
    release: Release,
    stand_in: StandIn,
    keys: Keys,
    testing_root: Path,
    report_time: Callable[[str], None],
) -> None:
    """systemd 258+ reads /etc/systemd/import-pubring.pgp alone when it exists (never with the
    .gpg beside it): a host whose admin put one there, without the release key, still takes the
    signed update, because alloy-import-pubring.service writes the .pgp too."""
    publish_stand_in(release, B, stand_in(B))
    signed_fleet.publish([[A], [A, B]])
    admins = subprocess.run(
        ["gpg", "--batch", f"--homedir={keys.home}", "--export", keys.stranger],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    assert admins
    booted = signed_fleet.boot(
        testing_root, ["1"], report_time, {"/etc/systemd/import-pubring.pgp": admins}
    )
    report = signed_fleet.report(booted)
    assert systemd_major(booted.results.get("systemd", "")) >= PGP_KEYRING_SINCE, report
    assert booted.results.get("update_status_1") == "0", report
    assert running(booted, 1) == runs(B), report
    assert booted.results.get("files_1") == f"{image(A)} {image(B)}", report
    assert booted.returncode == 0, report


def _tamper(step: Path, how: str, keys: Keys) -> None:
    sums = step / "SHA256SUMS"
    if how == "tampered":  # an attacker's image as B, and B's line in SHA256SUMS made to fit
        attackers = (step / image(A)).read_bytes() + b"\0" * 4096
        (step / image(B)).write_bytes(attackers)
        text = sums.read_text()
        line = next(line for line in text.splitlines() if line.endswith(image(B)))
        forged = hashlib.sha256(attackers).hexdigest() + line[64:]
        sums.write_text(text.replace(line, forged))
    elif how == "stranger":  # the same SHA256SUMS, signed by a key the host does not trust
        (step / "SHA256SUMS.gpg").unlink()
        gpg(keys.home, f"--local-user={keys.stranger}", "--output",
             str(step / "SHA256SUMS.gpg"), "--detach-sign", str(sums))  # fmt: skip
    elif how == "unsigned":  # no signature at all, while the transfer says Verify=yes
        (step / "SHA256SUMS.gpg").unlink()


ATTACKS = ("tampered", "stranger", "unsigned")
# What systemd-pull says of each, in the update's journal.
REFUSALS = {
    "tampered": "BAD signature",
    "stranger": "No public key",
    "unsigned": "Failed to retrieve signature file",
}


def test_unverified_release_lands_nothing_and_a_keeps_running(
    signed_fleet: Fleet,
    release: Release,
    stand_in: StandIn,
    keys: Keys,
    host: Host,
    report_time: Callable[[str], None],
) -> None:
    """Steps 1-3 serve B with SHA256SUMS tampered after signing, signed by a stranger, and
    unsigned: each update fails and leaves A alone. Step 4 serves B as signed, which installs:
    the refusals were the signature's, not a broken release."""
    publish_stand_in(release, B, stand_in(B))
    signed_fleet.publish([[A], [A, B]])
    steps = signed_fleet.steps
    shutil.move(steps / "1", steps / str(len(ATTACKS) + 1))
    for number, how in enumerate(ATTACKS, 1):
        shutil.copytree(steps / str(len(ATTACKS) + 1), steps / str(number))
        _tamper(steps / str(number), how, keys)
    booted = signed_fleet.boot(host.root, ["1", "2", "3", "4"], report_time)
    report = signed_fleet.report(booted)
    assert systemd_major(booted.results.get("systemd", "")) >= host.least_systemd, report
    assert running(booted, 0) == runs(A), report
    for number, how in enumerate(ATTACKS, 1):
        assert booted.results.get(f"update_status_{number}") != "0", f"{how}\n{report}"
        assert running(booted, number) == runs(A), f"{how}\n{report}"
        assert booted.results[f"pid_{number}"] == booted.results["pid_0"], f"{how}\n{report}"
        # Nothing new, not even a partial download, in /opt/extensions/alloy/.
        assert booted.results.get(f"files_{number}") == image(A), f"{how}\n{report}"
    journal = booted.text("sysupdate.journal")
    for how, why in REFUSALS.items():
        assert why in journal, f"{how}: no {why!r} in the journal\n{report}"
    # B's image was downloaded once: by step 4, after the signature verified.
    assert signed_fleet.server.requests.count(f"/{image(B)} 200") == 1, report
    assert booted.results.get("update_status_4") == "0", report
    assert running(booted, 4) == runs(B), report
    assert booted.results.get("files_4") == f"{image(A)} {image(B)}", report
    assert booted.returncode == 0, report
