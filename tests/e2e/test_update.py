"""Fleet updates on systemd 257, and where a test says so 262: a Debian 13 (or testing) root
provisioned with the Ignition config `invoke release` writes (its files, links and units, applied
by tests/e2e/ignition.py) boots in systemd-nspawn running version A, and starting sysupdate's
update unit inside it, as the timer would, takes what the host publishes next.

The container shares the host's network: the published directory is served on the host's
127.0.0.1, and alloy listens on a free port of it (CUSTOM_ARGS in /etc/default/alloy). Each test
publishes a sequence of directories (step 0 provisions the host; step N is served for the Nth
update) and check-update.sh records what every update left. Run with `nox -s e2e`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Release
from tests.e2e import fleet as fleets
from tests.e2e.conftest import StandIn, publish_stand_in
from tests.e2e.fleet import (
    FLEET_MARKS,
    LINK_DIR,
    A,
    B,
    C,
    D,
    Fleet,
    image,
    running,
    runs,
    version_line,
)

pytestmark = FLEET_MARKS
fleet = fleets.fleet  # a fixture, and the one it takes:
published_server = fleets.published_server


def test_update_downloads_links_merges_and_restarts_alloy_on_the_newer_version(
    fleet: Fleet,
    release: Release,
    stand_in: StandIn,
    trixie_root: Path,
    report_time: Callable[[str], None],
) -> None:
    publish_stand_in(release, B, stand_in(B))
    fleet.publish([[A], [A, B]])
    booted = fleet.boot(trixie_root, ["1"], report_time)
    report = fleet.report(booted)
    assert running(booted, 0) == runs(A), report
    assert booted.results.get("update_status_1") == "0", report
    assert running(booted, 1) == runs(B), report
    assert booted.results["pid_1"] != booted.results["pid_0"], report  # restarted on B
    # As its own user before and after; the host's /etc/default/alloy kept through the update.
    assert [booted.results.get(f"user_{step}") for step in (0, 1)] == ["alloy"] * 2, report
    custom = f'CUSTOM_ARGS="--server.http.listen-addr=127.0.0.1:{fleet.alloy_port}"\n'
    assert booted.text("etc-default-alloy") == custom, report
    assert booted.results.get("merged_1", "").split() == ["alloy"], report
    # A is kept, for a rollback.
    assert booted.results.get("instances_1") == f"{image(A)} {image(B)}", report
    assert booted.returncode == 0, report


def test_an_update_from_a_root_image_runs_the_new_one_as_alloy_with_the_old_config(
    fleet: Fleet,
    release: Release,
    stand_in: StandIn,
    trixie_root: Path,
    report_time: Callable[[str], None],
) -> None:
    """A fleet set up by an earlier release ran alloy as root, its placeholder config root's
    alone: the first update to an image of the alloy user passes its health gate (the unit
    gives the config to group alloy, systemd the state directory to the user), no rollback."""
    publish_stand_in(release, B, stand_in(B))
    as_root = (A, ("--run-as=root",))
    fleet.publish_steps([([as_root], ()), ([as_root, (B, ())], ())])
    booted = fleet.boot(trixie_root, ["1"], report_time)
    report = fleet.report(booted)
    assert running(booted, 0) == runs(A) and booted.results.get("user_0") == "root", report
    assert booted.results.get("update_status_1") == "0", report
    assert running(booted, 1) == runs(B) and booted.results.get("user_1") == "alloy", report
    assert "rolled back" not in booted.text("sysupdate.journal"), report
    assert "(CONFIG_FILE) given to group alloy, read-only" in booted.text("alloy.journal"), report


@dataclass(frozen=True)
class UpdateUnit:
    """What a root calls sysupdate's update unit and timer, and the second update's steps."""

    service: str
    timer: str
    second_run: str  # "1": the next timer run; "1 cleanup": and then sysupdate's cleanup


# systemd 257 (Debian 13); 262 (Debian testing): the stock unit runs `update --component-all
# --cleanup=yes` after our drop-in, and the old names are aliases of these.
UPDATE_UNITS = {
    "trixie": UpdateUnit("systemd-sysupdate.service", "systemd-sysupdate.timer", "1"),
    "testing": UpdateUnit(
        "systemd-sysupdate-update.service", "systemd-sysupdate-update.timer", "1 cleanup"
    ),
}


@pytest.fixture(params=list(UPDATE_UNITS))
def update_host(request: pytest.FixtureRequest) -> tuple[Path, UpdateUnit]:
    return request.getfixturevalue(f"{request.param}_root"), UPDATE_UNITS[request.param]


def test_update_that_is_not_healthy_is_rolled_back_and_not_installed_again(
    fleet: Fleet,
    release: Release,
    stand_in: StandIn,
    update_host: tuple[Path, UpdateUnit],
    report_time: Callable[[str], None],
) -> None:
    """A -> B (never ready: rolled back) -> the next timer run (B is skipped, already installed;
    on 262 the stock unit's own `update --component-all --cleanup=yes` runs, as our drop-in
    succeeded, and then sysupdate's cleanup once more) -> C (healthy: installed, and A, the
    version that ran, is still there). On 257 and 262 alike, started by the unit's own name
    (what its timer starts), with our drop-in applied once."""
    root, unit = update_host
    publish_stand_in(release, B, stand_in(B, ready=False))
    publish_stand_in(release, C, stand_in(C))
    fleet.publish([[A], [A, B], [A, B, C]])
    booted = fleet.boot(root, ["1", unit.second_run, "2"], report_time)
    report = fleet.report(booted)
    assert booted.results.get("sysupdate_unit") == unit.service, report
    assert booted.results.get("sysupdate_timer") == f"{unit.timer} enabled", report
    assert booted.results.get("sysupdate_activate") == "before after", report  # once
    dropins = booted.results.get("sysupdate_dropins", "").split()
    assert [Path(path).name for path in dropins] == ["alloy.conf", "zz-e2e-in-container.conf"], (
        report
    )
    assert running(booted, 0) == runs(A), report
    # B never answered 200: the link is back on A, and A runs again.
    assert booted.results.get("update_status_1") != "0", report
    assert running(booted, 1) == runs(A), report
    assert booted.results["pid_1"] != booted.results["pid_0"], report  # B ran, then A again
    assert booted.results.get("merged_1", "").split() == ["alloy"], report
    assert booted.results.get("instances_1") == f"{image(A)} {image(B)}", report
    rolled_back = [
        line for line in booted.text("sysupdate.journal").splitlines() if "rolled back" in line
    ]
    assert rolled_back == [
        f"alloy-sysext: rolled back {image(B)} to {image(A)}: not healthy after 60 s "
        f"({fleet.health_url} answered 503 (not 200))"
    ], report
    # The next run finds B installed: nothing is downloaded, nothing changes. On 262 neither
    # the stock unit's --cleanup=yes nor a cleanup after it removes A (running, the rollback
    # target) or B (left installed by the rollback), or moves the link, though sysupdate
    # recorded B as its own.
    assert booted.results.get("update_status_2") == "0", report
    assert running(booted, 2) == runs(A), report
    assert booted.results["pid_2"] == booted.results["pid_1"], report
    assert booted.results.get("files_2") == f"{image(A)} {image(B)}", report
    if "cleanup" in unit.second_run:
        assert booted.results.get("cleanup_status_2") == "0", report
        assert booted.results.get("recorded_2"), report  # cleanup had records to go by
    assert fleet.server.requests.count(f"/{image(B)} 200") == 1, report
    # C is installed, runs, and A (what ran) and B are kept.
    assert booted.results.get("update_status_3") == "0", report
    assert running(booted, 3) == runs(C), report
    assert booted.results.get("instances_3") == f"{image(A)} {image(B)} {image(C)}", report
    assert booted.returncode == 0, report


def test_update_of_a_stopped_alloy_is_installed_but_not_started_or_gated(
    fleet: Fleet,
    release: Release,
    stand_in: StandIn,
    update_host: tuple[Path, UpdateUnit],
    report_time: Callable[[str], None],
) -> None:
    """On 257 and 262 alike: the unit the images name for 262's systemd-sysext to restart
    only try-restarts alloy (it never starts a stopped one), and the stock unit's own update
    after our drop-in starts nothing."""
    root, _ = update_host
    publish_stand_in(release, B, stand_in(B, ready=False))
    fleet.publish([[A], [A, B]])
    booted = fleet.boot(root, ["1 stopped"], report_time)
    report = fleet.report(booted)
    assert booted.results.get("update_status_1") == "0", report
    assert booted.results.get("link_1") == f"{LINK_DIR}/{image(B)}", report
    assert booted.results.get("active_1") == "inactive/dead", report
    assert booted.results.get("version_1") == version_line(B), report  # merged
    assert (
        f"alloy-sysext: installed {image(B)}; alloy.service was not running, so it was not "
        "started or checked" in booted.text("sysupdate.journal")
    ), report


def test_running_version_is_kept_through_two_rollbacks(
    fleet: Fleet,
    release: Release,
    stand_in: StandIn,
    trixie_root: Path,
    report_time: Callable[[str], None],
) -> None:
    """A -> B (rolled back) -> C (rolled back) -> D: A, the oldest instance, runs all along, and
    D's download must not remove it (B, neither running nor newest, goes instead)."""
    publish_stand_in(release, B, stand_in(B, ready=False))
    publish_stand_in(release, C, stand_in(C, ready=False))
    publish_stand_in(release, D, stand_in(D))
    fleet.publish([[A], [A, B], [A, B, C], [A, B, C, D]])
    booted = fleet.boot(trixie_root, ["1", "2", "3"], report_time)
    report = fleet.report(booted)
    assert running(booted, 1) == runs(A), report
    assert running(booted, 2) == runs(A), report
    assert booted.results.get("instances_2") == f"{image(A)} {image(B)} {image(C)}", report
    assert booted.results.get("update_status_3") == "0", report
    assert running(booted, 3) == runs(D), report
    assert booted.results.get("instances_3") == f"{image(A)} {image(C)} {image(D)}", report
    assert booted.returncode == 0, report


def test_a_plain_refresh_restarts_a_running_alloy_on_262_only_and_our_update_ends_the_same(
    fleet: Fleet,
    release: Release,
    stand_in: StandIn,
    update_host: tuple[Path, UpdateUnit],
    report_time: Callable[[str], None],
) -> None:
    """The images name alloy-sysext-restart.service in EXTENSION_RESTART_UNITS=. On 262 a plain
    `systemd-sysext refresh` onto a newer image (put in place by `systemd-sysupdate -C alloy
    update`, without our drop-in) runs it, and it try-restarts alloy: a running one runs the
    new version in a new process, a stopped one stays stopped. 257 ignores the field: the old
    process runs on. Through our update unit both end the same: the new version runs, gated
    (on 262 the image's unit and the activate script both restart alloy; the gate sees the new
    one). The boot merged the image with the field: it did not hang."""
    root, unit = update_host
    on_262 = unit.service == "systemd-sysupdate-update.service"
    for version in (B, C, D):
        publish_stand_in(release, version, stand_in(version))
    fleet.publish([[A], [A, B], [A, B, C], [A, B, C, D]])
    booted = fleet.boot(root, ["1 refresh", "2", "3 refresh-stopped"], report_time)
    report = fleet.report(booted)
    assert running(booted, 0) == runs(A), report
    assert booted.results.get("running_version_0") == version_line(A), report
    # At boot 262 ran the restart unit once (alloy was not running yet: nothing to restart).
    assert booted.results.get("restart_unit_runs_0") == ("1" if on_262 else "0"), report
    assert booted.results.get("starts_0") == "1", report

    # 1: a plain refresh onto B with alloy running.
    assert booted.results.get("update_status_1") == "0", report
    assert booted.results.get("refresh_status_1") == "0", report
    assert booted.results.get("version_1") == version_line(B), report  # B is merged
    if on_262:
        assert running(booted, 1) == runs(B), report
        assert booted.results["pid_1"] != booted.results["pid_0"], report
        assert booted.results.get("running_version_1") == version_line(B), report
        assert booted.results.get("restart_unit_runs_1") == "2", report
        assert booted.results.get("starts_1") == "2", report
    else:
        assert booted.results["pid_1"] == booted.results["pid_0"], report
        assert booted.results.get("running_version_1") == version_line(A), report
        assert booted.results.get("restart_unit_runs_1") == "0", report
        assert booted.results.get("starts_1") == "1", report

    # 2: our update unit onto C: the same end state on both, gated on C.
    assert booted.results.get("update_status_2") == "0", report
    assert running(booted, 2) == runs(C), report
    assert booted.results.get("running_version_2") == version_line(C), report
    assert f"alloy-sysext: alloy.service runs {image(C)} and is healthy" in booted.text(
        "sysupdate.journal"
    ), report
    starts = int(booted.results["starts_2"]) - int(booted.results["starts_1"])
    assert starts in ((1, 2) if on_262 else (1,)), report  # the two restarts may merge
    print(f"alloy starts in the update to C: {starts}")

    # 3: a plain refresh onto D with alloy stopped: it stays stopped, D is merged.
    assert booted.results.get("refresh_status_3") == "0", report
    assert booted.results.get("active_3") == "inactive/dead", report
    assert booted.results.get("version_3") == version_line(D), report
    assert booted.results.get("starts_3") == booted.results.get("starts_2"), report
    assert booted.returncode == 0, report
