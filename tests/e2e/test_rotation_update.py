"""Key rotation on a booted host (issue 13): a host provisioned trusting K1 refuses a release
signed only by K2; takes B, signed by K1, whose image carries K2 (`invoke all --trust-keys`);
and then takes C, signed only by K2. On Debian 13 (systemd 257). Run with `nox -s e2e`;
tests/e2e/test_update.py explains the Fleet."""

from __future__ import annotations

import base64
import dataclasses
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Release
from tests.e2e.conftest import StandIn, publish_stand_in
from tests.e2e.fleet import (  # noqa: F401 (fleet, published_server: fixtures)
    FLEET_MARKS,
    A,
    B,
    C,
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


@dataclasses.dataclass(frozen=True)
class Keys:
    home: Path
    k1: str  # the key hosts are provisioned with
    k2: str  # the key rotated to


@pytest.fixture(scope="module")
def keys() -> Iterator[Keys]:
    """Throwaway keys in a short GNUPGHOME under /tmp, whose agent is stopped afterwards."""
    need("gpg", "gpgconf")
    with throwaway_home("ar.") as home:
        yield Keys(home, new_key(home, "K1"), new_key(home, "K2"))


@dataclasses.dataclass
class RotationFleet(Fleet):
    """A Fleet whose steps are built and signed each its own way."""

    def fetch(self, url: str) -> bytes:
        # The release key is inline in the Ignition config, as a base64 data URL.
        if url.startswith("data:"):
            header, _, payload = url.removeprefix("data:").partition(",")
            data = urllib.parse.unquote_to_bytes(payload)
            return base64.b64decode(data, validate=True) if header.endswith(";base64") else data
        return super().fetch(url)

    def publish_signed(self, steps: list[tuple[list[tuple[str, tuple[str, ...]]], str]]) -> None:
        """Step N: each (version, build flags) built once, then released signed with a key."""
        self.publish_steps(
            [(versions, (f"--sign-key={key}",)) for versions, key in steps],
            env={"INVOKE_GNUPG_HOME": str(self.keys_home)},
        )

    keys_home: Path = Path()


@pytest.fixture
def rotation(request: pytest.FixtureRequest, keys: Keys) -> RotationFleet:
    """test_update's fleet, releasing each step signed with its own key."""
    base = request.getfixturevalue("fleet")
    fields = {field.name: getattr(base, field.name) for field in dataclasses.fields(base)}
    return RotationFleet(**{**fields, "keys_home": keys.home})


def test_host_trusting_k1_takes_k1_release_carrying_k2_then_k2_only_release(
    rotation: RotationFleet,
    release: Release,
    stand_in: StandIn,
    keys: Keys,
    trixie_root: Path,
    report_time: Callable[[str], None],
) -> None:
    k2_public = rotation.tmp_path / "K2.pub"
    k2_public.write_bytes(gpg(keys.home, "--export", keys.k2).stdout)
    carries_k2 = (f"--trust-keys={k2_public}",)
    publish_stand_in(release, B, stand_in(B))
    publish_stand_in(release, C, stand_in(C))
    rotation.publish_signed(
        [
            ([(A, ())], keys.k1),  # provisions the host: it trusts K1
            ([(A, ()), (B, carries_k2)], keys.k2),  # too early: the host has no K2 yet
            ([(A, ()), (B, carries_k2)], keys.k1),  # B carries K2
            ([(A, ()), (B, carries_k2), (C, carries_k2)], keys.k2),  # K2 only
        ]
    )
    booted = rotation.boot(trixie_root, ["1", "2", "3"], report_time)
    report = rotation.report(booted)
    assert running(booted, 0) == runs(A), report
    assert booted.results.get("update_status_1") != "0", report
    assert running(booted, 1) == runs(A), report
    assert booted.results.get("instances_1") == image(A), report
    assert booted.results.get("update_status_2") == "0", report
    assert running(booted, 2) == runs(B), report
    assert booted.results.get("update_status_3") == "0", report
    assert running(booted, 3) == runs(C), report
    assert "No public key" in booted.text("sysupdate.journal"), report
    assert booted.returncode == 0, report
