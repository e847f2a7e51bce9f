"""A fleet fed compressed images (issue 25, invoke release --transport=xz) on systemd 257: a
Debian 13 root provisioned from step 0's Ignition config (which installs the plain image) boots
running A, and its systemd-sysupdate takes B from the .raw.xz feed (the default one, or a
stream's in streams/X.Y/): systemd-pull decompresses it while downloading, SHA256SUMS's line
hashes the compressed file, and the installed image is the plain one that merges.
tests/e2e/test_update.py explains the Fleet."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Release
from tests.e2e import fleet as fleets
from tests.e2e.conftest import StandIn, publish_stand_in
from tests.e2e.fleet import FLEET_MARKS, A, B, Fleet, image, running, runs
from tests.gpgkeys import new_key, throwaway_home
from tests.needs import need

pytestmark = [*FLEET_MARKS, pytest.mark.needs("mkfs.erofs", "xz", "zstd")]
fleet = fleets.fleet  # a fixture, and the one it takes:
published_server = fleets.published_server

# An image worth sending compressed: EROFS without compression.
PLAIN_EROFS = ("--format=erofs", "--compression=none")
# The same for hosts without EROFS (Flatcar LTS): squashfs with every block stored.
PLAIN_SQUASHFS = ("--format=squashfs", "--compression=none")


@pytest.fixture
def signing() -> Iterator[tuple[str, ...]]:
    """invoke release's options to sign with a throwaway key (its agent stopped afterwards)."""
    need("gpg", "gpgconf")
    with throwaway_home("at.") as home:
        yield (f"--sign-key={new_key(home, 'Release')}", f"--gnupg-home={home}")


# EROFS none on the default feed and on A and B's stream (5.5), whose compressed files are in
# its own directory; squashfs none (what hosts without EROFS, Flatcar LTS, are sent).
@pytest.mark.parametrize(
    ("plain", "feed"),
    [(PLAIN_EROFS, ""), (PLAIN_EROFS, "streams/5.5/"), (PLAIN_SQUASHFS, "")],
    ids=["erofs-none", "erofs-none-stream", "squashfs-none"],
)
def test_a_host_updates_from_the_xz_feed_and_installs_the_plain_image(
    fleet: Fleet,
    release: Release,
    stand_in: StandIn,
    trixie_root: Path,
    report_time: Callable[[str], None],
    signing: tuple[str, ...],
    plain: tuple[str, ...],
    feed: str,
) -> None:
    """Signed: sysupdate checks SHA256SUMS.gpg (Verify=yes), whose SHA256SUMS hashes the .xz."""
    publish_stand_in(release, B, stand_in(B))
    on_feed = (f"--stream={feed.split('/')[1]}",) if feed else ()
    # Step 1 lists only the compressed images: a fetch of the plain one would find no update.
    fleet.publish_steps(
        [
            ([(A, plain)], ("--transport=xz", *signing, *on_feed)),
            (
                [(A, plain), (B, plain)],
                ("--transport=xz", "--transport-only", *signing, *on_feed),
            ),
        ]
    )
    config = f"{feed}flatcar/alloy-amd64.ign"
    booted = fleet.boot(trixie_root, ["1"], report_time, config=config)
    report = fleet.report(booted)
    assert running(booted, 0) == runs(A), report
    assert booted.results.get("update_status_1") == "0", report
    assert running(booted, 1) == runs(B), report
    # Installed under the plain name (the target's pattern), as the bytes B's image holds.
    assert booted.results.get("instances_1") == f"{image(A)} {image(B)}", report
    fetched = [line.split()[0] for line in fleet.server.requests]
    assert f"/{feed}{image(B)}.xz" in fetched and f"/{feed}SHA256SUMS.gpg" in fetched, report
    assert f"/{feed}{image(B)}" not in fetched, report
    assert not [path for path in fetched if not path.startswith(f"/{feed}")], report
    assert booted.returncode == 0, report


def test_a_262_host_updates_from_the_zstd_feed(
    fleet: Fleet,
    release: Release,
    stand_in: StandIn,
    testing_root: Path,
    report_time: Callable[[str], None],
) -> None:
    """zstd only on 262: 257's systemd-pull would install the zstd bytes as the image."""
    publish_stand_in(release, B, stand_in(B))
    flags = ("--transport=zstd", "--transport-only")
    fleet.publish_steps(
        [([(A, PLAIN_EROFS)], flags), ([(A, PLAIN_EROFS), (B, PLAIN_EROFS)], flags)]
    )
    booted = fleet.boot(testing_root, ["1"], report_time)
    report = fleet.report(booted)
    assert running(booted, 0) == runs(A), report
    assert booted.results.get("update_status_1") == "0", report
    assert running(booted, 1) == runs(B), report
    assert booted.results.get("instances_1") == f"{image(A)} {image(B)}", report
    assert f"/{image(B)}.zst" in [line.split()[0] for line in fleet.server.requests], report
    assert booted.returncode == 0, report


def test_an_unhealthy_update_from_the_xz_feed_is_rolled_back(
    fleet: Fleet,
    release: Release,
    stand_in: StandIn,
    trixie_root: Path,
    report_time: Callable[[str], None],
) -> None:
    """The health gate and its rollback act on the installed plain image, whatever the feed
    sent: B never answers 200, so A is linked and runs again, and B stays installed."""
    publish_stand_in(release, B, stand_in(B, ready=False))
    flags = ("--transport=xz", "--transport-only")
    fleet.publish_steps(
        [([(A, PLAIN_EROFS)], flags), ([(A, PLAIN_EROFS), (B, PLAIN_EROFS)], flags)]
    )
    booted = fleet.boot(trixie_root, ["1"], report_time)
    report = fleet.report(booted)
    assert running(booted, 0) == runs(A), report
    assert booted.results.get("update_status_1") not in (None, "0"), report
    assert running(booted, 1) == runs(A), report
    assert booted.results["pid_1"] != booted.results["pid_0"], report  # B ran, then A again
    assert booted.results.get("files_1") == f"{image(A)} {image(B)}", report
    assert f"alloy-sysext: rolled back {image(B)} to {image(A)}" in booted.text(
        "sysupdate.journal"
    ), report
    assert f"/{image(B)}.xz" in [line.split()[0] for line in fleet.server.requests], report


def flip_a_byte(sent: Path) -> None:
    data = bytearray(sent.read_bytes())
    data[len(data) // 2] ^= 0xFF  # xz's own check fails while systemd-pull decompresses
    sent.write_bytes(bytes(data))


def compress_otherwise(sent: Path) -> None:
    """Valid xz of the very image, other bytes: only SHA256SUMS's line can tell."""
    plain = subprocess.run(["xz", "-dc", str(sent)], capture_output=True, check=True).stdout
    other = subprocess.run(["xz", "-1", "-c"], input=plain, capture_output=True, check=True)
    assert other.stdout != sent.read_bytes()
    sent.write_bytes(other.stdout)


@pytest.mark.parametrize(
    ("spoil", "said"),
    [
        (flip_a_byte, "Failed to retrieve image file"),
        (compress_otherwise, "file did not check out"),
    ],
)
def test_a_corrupted_compressed_image_is_refused_and_nothing_lands(
    fleet: Fleet,
    release: Release,
    stand_in: StandIn,
    trixie_root: Path,
    report_time: Callable[[str], None],
    spoil: Callable[[Path], None],
    said: str,
) -> None:
    publish_stand_in(release, B, stand_in(B))
    flags = ("--transport=xz", "--transport-only")
    fleet.publish_steps(
        [([(A, PLAIN_EROFS)], flags), ([(A, PLAIN_EROFS), (B, PLAIN_EROFS)], flags)]
    )
    spoil(fleet.steps / "1" / f"{image(B)}.xz")
    booted = fleet.boot(trixie_root, ["1"], report_time)
    report = fleet.report(booted)
    assert running(booted, 0) == runs(A), report
    assert booted.results.get("update_status_1") not in (None, "0"), report
    assert running(booted, 1) == runs(A), report  # still A, nothing new merged
    # Hidden files too: a partial download left under a temporary name would show here.
    assert booted.results.get("files_1") == image(A), report
    assert f"/{image(B)}.xz" in [line.split()[0] for line in fleet.server.requests], report
    assert said in booted.text("sysupdate.journal"), report
