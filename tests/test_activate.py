"""The health gate that activates an update on a fleet host (build/templates/host/
alloy-sysupdate-activate, shipped by the Butane config as /opt/alloy-sysext/activate), run with
stub systemctl, systemd-sysext, curl, date and sleep: what it does to the link and the unit for
each outcome, without booting (tests/e2e/test_update.py boots it on systemd 257)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from build.model.ddi import SIGNED_IMAGE_POLICY
from build.release import host as layout
from build.release.publish import DEFAULT_HEALTH_URL, HEALTH_TIMEOUT

OLD, NEW = "alloy-1.0.0-amd64.raw", "alloy-1.1.0-amd64.raw"
GATE = {"HEALTH_URL": DEFAULT_HEALTH_URL, "HEALTH_TIMEOUT": str(HEALTH_TIMEOUT)}
# The host's paths, under a test's directory.
LINK = layout.CURRENT_SYMLINK.lstrip("/")
IMAGES = layout.EXTENSIONS_DIR.lstrip("/")

# The stubs log each call to $STUB/calls. alloy.service is as $STUB/active says; a restart makes
# it what $STUB/starts-as.IMAGE says (default active) for the image the link points at, and curl
# answers $STUB/ready.IMAGE (default 200) when the unit is active, 000 otherwise.
STUBS = {
    "systemctl": r"""#!/bin/sh
echo "systemctl $*" >>"$STUB/calls"
image=$(basename "$(readlink -f "$ALLOY_SYSEXT_LINK")")
case $1 in
is-active)
    state=$(cat "$STUB/active")
    [ "$2" = --quiet ] || echo "$state"
    [ "$state" = active ] ;;
restart)
    cat "$STUB/starts-as.$image" 2>/dev/null >"$STUB/active" || echo active >"$STUB/active" ;;
esac
""",
    "systemd-sysext": '#!/bin/sh\necho "systemd-sysext $*" >>"$STUB/calls"\n',
    "curl": r"""#!/bin/sh
echo "curl $*" >>"$STUB/curl-calls"
image=$(basename "$(readlink -f "$ALLOY_SYSEXT_LINK")")
if [ "$(cat "$STUB/active")" != active ]; then printf 000; exit 7; fi
cat "$STUB/ready.$image" 2>/dev/null || printf 200
""",
    # A clock that moves 7 s a reading, and a sleep that takes no time: the gate's minute passes
    # in a few loops.
    "date": r"""#!/bin/sh
now=$(cat "$STUB/clock" 2>/dev/null || echo 1000)
echo $((now + 7)) >"$STUB/clock"
echo "$now"
""",
    "sleep": "#!/bin/sh\n:\n",
}


@dataclass
class Host:
    tmp: Path

    @property
    def link(self) -> Path:
        return self.tmp / LINK

    @property
    def stub(self) -> Path:
        return self.tmp / "stub"

    def point(self, image: str) -> None:
        self.link.unlink(missing_ok=True)
        self.link.symlink_to(self.tmp / IMAGES / image)

    def set(self, name: str, value: str) -> None:
        (self.stub / name).write_text(value)

    def run(self, step: str) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": f"{self.stub / 'bin'}:{os.environ['PATH']}",
            "STUB": str(self.stub),
            "ALLOY_SYSEXT_LINK": str(self.link),
            "ALLOY_SYSEXT_STATE": str(self.tmp / "run"),
            "ALLOY_SYSEXT_IMAGES": str(self.tmp / IMAGES),
        }
        return subprocess.run(
            ["sh", str(self.tmp / "activate"), step],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def calls(self) -> list[str]:
        path = self.stub / "calls"
        return path.read_text().splitlines() if path.exists() else []

    def target(self) -> str:
        return os.readlink(self.link).rsplit("/", 1)[-1]


@pytest.fixture
def host(tmp_path: Path) -> Host:
    """OLD installed, linked and running; NEW installed beside it."""
    return make_host(tmp_path, require_signed=False)


def make_host(tmp_path: Path, require_signed: bool) -> Host:
    script = layout.activate_script(GATE, require_signed=require_signed)
    (tmp_path / "activate").write_text(script)
    (tmp_path / "stub/bin").mkdir(parents=True)
    for name, text in STUBS.items():
        (tmp_path / "stub/bin" / name).write_text(text)
        (tmp_path / "stub/bin" / name).chmod(0o755)
    (tmp_path / IMAGES).mkdir(parents=True)
    for image in (OLD, NEW):
        (tmp_path / IMAGES / image).write_bytes(b"")
    (tmp_path / LINK).parent.mkdir(parents=True)
    made = Host(tmp_path)
    made.point(OLD)
    made.set("active", "active")
    return made


def update(host: Host, to: str | None) -> subprocess.CompletedProcess[str]:
    """activate before; sysupdate moves the link to `to` (None: nothing new); activate after."""
    before = host.run("before")
    assert before.returncode == 0, before.stderr
    if to:
        host.point(to)
    (host.stub / "calls").unlink(missing_ok=True)
    return host.run("after")


def test_nothing_installed_nothing_done(host: Host) -> None:
    result = update(host, None)
    assert (result.returncode, result.stdout, host.calls()) == (0, "", [])


def test_healthy_update_is_merged_restarted_and_kept(host: Host) -> None:
    result = update(host, NEW)
    assert result.returncode == 0, result.stderr
    assert host.calls()[:2] == ["systemd-sysext refresh", "systemctl restart alloy.service"]
    assert "systemctl restart alloy.service" not in host.calls()[2:]
    assert host.target() == NEW
    assert result.stdout == f"alloy-sysext: alloy.service runs {NEW} and is healthy\n"


def test_update_never_ready_is_rolled_back_with_one_line_saying_why(host: Host) -> None:
    host.set(f"ready.{NEW}", "503")
    result = update(host, NEW)
    assert result.returncode == 1
    assert host.target() == OLD
    restarts = [call for call in host.calls() if call.startswith(("systemd-sysext", "systemctl r"))]
    assert restarts == ["systemd-sysext refresh", "systemctl restart alloy.service"] * 2
    assert result.stdout == (
        f"alloy-sysext: rolled back {NEW} to {OLD}: not healthy after {HEALTH_TIMEOUT} s "
        f"({DEFAULT_HEALTH_URL} answered 503 (not 200))\n"
    )


def test_update_whose_unit_fails_is_rolled_back(host: Host) -> None:
    host.set(f"starts-as.{NEW}", "failed")
    result = update(host, NEW)
    assert result.returncode == 1
    assert host.target() == OLD
    assert result.stdout == (
        f"alloy-sysext: rolled back {NEW} to {OLD}: not healthy after {HEALTH_TIMEOUT} s "
        "(alloy.service is failed)\n"
    )


def test_rollback_says_when_the_old_version_is_not_healthy_either(host: Host) -> None:
    host.set(f"ready.{NEW}", "503")
    host.set(f"ready.{OLD}", "500")
    result = update(host, NEW)
    assert result.returncode == 1
    assert host.target() == OLD
    assert result.stdout.splitlines()[1] == (
        f"alloy-sysext: {OLD} is not healthy after the rollback either "
        f"({DEFAULT_HEALTH_URL} answered 500 (not 200))"
    )


@pytest.mark.parametrize("state", ["inactive", "failed"])
def test_alloy_not_running_before_is_updated_but_not_started_or_gated(
    host: Host, state: str
) -> None:
    host.set("active", state)
    host.set(f"ready.{NEW}", "503")
    result = update(host, NEW)
    assert result.returncode == 0, result.stderr
    assert host.calls() == ["systemd-sysext refresh"]
    assert host.target() == NEW
    assert result.stdout == (
        f"alloy-sysext: installed {NEW}; alloy.service was not running, so it was not started "
        "or checked\n"
    )


def test_no_previous_image_means_no_rollback(host: Host) -> None:
    host.set(f"ready.{NEW}", "503")
    before = host.run("before")
    assert before.returncode == 0
    (host.tmp / IMAGES / OLD).unlink()  # gone, e.g. removed by hand meanwhile
    host.point(NEW)
    result = host.run("after")
    assert result.returncode == 1
    assert host.target() == NEW
    assert "there is no previous image to roll back to" in result.stdout


def test_before_removes_what_neither_runs_nor_is_newest_so_sysupdate_keeps_the_running_one(
    host: Host,
) -> None:
    """OLD runs after two rollbacks (1.1.0 and 1.2.0 installed): sysupdate, at InstancesMax=3,
    would remove OLD, the oldest, to download 1.3.0. Before it runs, 1.1.0 goes instead."""
    (host.tmp / IMAGES / "alloy-1.2.0-amd64.raw").write_bytes(b"")
    (host.tmp / IMAGES / "alloy-1.10.0-amd64.raw").write_bytes(b"")  # 1.10 > 1.2
    result = host.run("before")
    assert result.returncode == 0, result.stderr
    left = sorted(path.name for path in (host.tmp / IMAGES).iterdir())
    assert left == [OLD, "alloy-1.10.0-amd64.raw"]
    assert result.stdout.splitlines() == [
        f"alloy-sysext: removed {name}, older than alloy-1.10.0-amd64.raw, to keep {OLD}, "
        "which runs"
        for name in (NEW, "alloy-1.2.0-amd64.raw")
    ]


def test_before_removes_nothing_with_room_left(host: Host) -> None:
    result = host.run("before")
    assert (result.returncode, result.stdout) == (0, "")
    assert sorted(path.name for path in (host.tmp / IMAGES).iterdir()) == [
        OLD,
        NEW,
    ]


def test_a_host_that_requires_signed_images_merges_and_rolls_back_with_the_policy(
    tmp_path: Path,
) -> None:
    """--require-signed-images: the update's merge and the rollback's both pass the policy
    systemd-sysext.service's drop-in does, so an unsigned update is never merged either."""
    host = make_host(tmp_path, require_signed=True)
    host.set(f"ready.{NEW}", "503")
    result = update(host, NEW)
    assert result.returncode == 1 and host.target() == OLD
    merges = [call for call in host.calls() if call.startswith("systemd-sysext")]
    assert merges == [f"systemd-sysext refresh --image-policy={SIGNED_IMAGE_POLICY}"] * 2
    assert SIGNED_IMAGE_POLICY == "root=signed+absent:usr=signed+absent"


@pytest.mark.parametrize("require_signed", [False, True])
def test_every_systemd_sysext_call_of_the_script_passes_the_policy_when_required(
    require_signed: bool,
) -> None:
    script = layout.activate_script(GATE, require_signed=require_signed)
    calls = [
        line
        for line in script.splitlines()
        if "systemd-sysext " in line and not line.lstrip().startswith(("#", "log "))
    ]
    assert len(calls) == 2  # the update's merge and the rollback's
    for line in calls:
        has_policy = f"systemd-sysext refresh --image-policy={SIGNED_IMAGE_POLICY} " in line
        assert has_policy == require_signed, line
    assert "verity+signed" not in script
