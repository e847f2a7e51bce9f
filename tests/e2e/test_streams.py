"""Version streams and a floor on systemd 257 (a Debian 13 root, as tests/e2e/test_update.py
boots it) and 262 (Debian testing): a host provisioned from the 1.19 stream's Ignition config,
offered 1.19.1, 1.19.2 and 1.20.0, installs 1.19.2 and never 1.20.0; a host on the default feed
installs 1.20.0, and a floor (--min-version) it is given refuses a version below it. Run with
`nox -s e2e`."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Release
from tests.e2e import fleet as fleets
from tests.e2e.conftest import StandIn, publish_stand_in
from tests.e2e.fleet import FLEET_MARKS, Fleet, image, running, runs

pytestmark = FLEET_MARKS
fleet = fleets.fleet  # a fixture, and the one it takes:
published_server = fleets.published_server

OLD, LINE, NEXT = "1.19.1", "1.19.2", "1.20.0"
STREAM = "streams/1.19/"


@pytest.fixture(params=["257", "262"])
def sysupdate_root(request: pytest.FixtureRequest) -> Path:
    """The root of each systemd with sysupdate we test: Debian 13's 257, testing's 262."""
    return request.getfixturevalue("trixie_root" if request.param == "257" else "testing_root")


def publish_versions(release: Release, stand_in: StandIn) -> None:
    for version in (OLD, LINE, NEXT):
        publish_stand_in(release, version, stand_in(version))


def test_a_host_on_a_stream_takes_its_line_and_never_the_next(
    fleet: Fleet,
    release: Release,
    stand_in: StandIn,
    sysupdate_root: Path,
    report_time: Callable[[str], None],
) -> None:
    publish_versions(release, stand_in)
    on_stream = ("--stream=1.19",)
    fleet.publish_steps(
        [([(OLD, ())], on_stream), ([(OLD, ()), (LINE, ()), (NEXT, ())], on_stream)]
    )
    # Step 1 publishes the default feed too: 1.20.0 is on the server, beside the stream.
    output = fleet.tmp_path / "output"
    result = fleet.invoke(
        "release",
        f"--output-dir={output}",
        f"--publish-url={fleet.server.url}",
        f"--health-url={fleet.health_url}",
    )
    assert result.returncode == 0, result.stderr
    shutil.copytree(
        output, fleet.steps / "1", dirs_exist_ok=True, ignore=shutil.ignore_patterns(".staging")
    )
    assert image(NEXT) in (fleet.steps / "1/SHA256SUMS").read_text()
    booted = fleet.boot(
        sysupdate_root, ["1"], report_time, config=f"{STREAM}flatcar/alloy-amd64.ign"
    )
    report = fleet.report(booted)
    assert running(booted, 0) == runs(OLD), report
    assert booted.results.get("update_status_1") == "0", report
    assert running(booted, 1) == runs(LINE), report
    assert booted.results.get("instances_1") == f"{image(OLD)} {image(LINE)}", report
    # It asked the stream only, and never for 1.20.0.
    assert f"/{STREAM}SHA256SUMS 200" in fleet.server.requests, report
    assert f"/{STREAM}{image(LINE)} 200" in fleet.server.requests, report
    assert not [r for r in fleet.server.requests if image(NEXT) in r], report
    assert not [r for r in fleet.server.requests if not r.startswith(f"/{STREAM}")], report
    assert booted.returncode == 0, report


def test_a_host_on_the_default_feed_takes_the_newest_but_nothing_below_its_floor(
    fleet: Fleet,
    release: Release,
    stand_in: StandIn,
    sysupdate_root: Path,
    report_time: Callable[[str], None],
) -> None:
    """Provisioned on 1.19.1 without a floor. Its admin then puts in place step 2's transfers
    (--min-version=1.20.0) while the server still offers step 1 (1.19.1, 1.19.2): 1.19.2, newer
    than what runs but below the floor, is refused, and 1.19.1 keeps running. Step 2 offers
    1.20.0: installed, and 1.19.1 is still there (below the floor: never removed by it)."""
    publish_versions(release, stand_in)
    fleet.publish_steps(
        [
            ([(OLD, ())], ()),
            ([(OLD, ()), (LINE, ())], ()),
            ([(OLD, ()), (LINE, ()), (NEXT, ())], (f"--min-version={NEXT}",)),
        ]
    )
    assert f"MinVersion={NEXT}\n" in (fleet.steps / "2/sysupdate/amd64/alloy.transfer").read_text()
    booted = fleet.boot(sysupdate_root, ["1 transfers=2", "2"], report_time)
    report = fleet.report(booted)
    assert running(booted, 0) == runs(OLD), report
    # Below the floor: 1.19.2 is never fetched, and what runs stays.
    assert booted.results.get("update_status_1") == "0", report
    assert running(booted, 1) == runs(OLD), report
    assert booted.results["pid_1"] == booted.results["pid_0"], report
    assert booted.results.get("instances_1") == image(OLD), report
    assert not [r for r in fleet.server.requests if image(LINE) in r], report
    # The newest, at the floor: installed and running; 1.19.1 kept for a rollback.
    assert booted.results.get("update_status_2") == "0", report
    assert running(booted, 2) == runs(NEXT), report
    assert booted.results.get("instances_2") == f"{image(OLD)} {image(NEXT)}", report
    assert booted.returncode == 0, report
