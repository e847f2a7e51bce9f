"""A host provisioned to require signed images, on systemd 257: the Debian 13 root, given the
Ignition config `invoke release --verity-cert --require-signed-images` writes (applied by
tests/e2e/ignition.py), boots in systemd-nspawn with the certificate in /etc/verity.d and
systemd-sysext.service running with the signed-only --image-policy; the plain image it was
given is not merged, while a signed DDI passes the policy (and stops at dm-verity, which
systemd-nspawn has not: the signed merge is the emulated machine's proof). Run with `nox -s e2e`."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from build.keys.veritycert import load_certificate
from build.model.ddi import SIGNED_IMAGE_POLICY
from build.release import butane, publish
from build.release import host as layout
from tests.e2e.conftest import HERE
from tests.e2e.container import Boot, boot
from tests.e2e.fleet import FLEET_MARKS, A, Fleet, image
from tests.e2e.fleet import fleet as fleet  # a fixture, and the ones it takes:
from tests.e2e.fleet import published_server as published_server
from tests.e2e.ignition import apply

pytestmark = FLEET_MARKS


def signed_host_config(fleet: Fleet, cert: Path) -> Path:
    """Step 0's Ignition config again, written as release writes it for a host that requires
    signed images (release itself refuses a certificate beside plain images: this host is
    given one on purpose, to see the policy refuse it)."""
    step = fleet.steps / "0"
    name = image(A)
    info = json.loads((step / f"{name}.buildinfo.json").read_text())
    sha256 = (step / f"{name}.sha256").read_text().split()[0]
    published = publish.Image(
        step / name, A, "amd64", None, sha256, (step / name).stat().st_size, info
    )
    trust = publish.HostTrust(None, load_certificate(cert), require_signed=True)
    transfer = (step / "sysupdate/amd64/alloy.transfer").read_text()
    config = publish.flatcar_config(published, fleet.server.url, transfer, trust, fleet.health_url)
    path = step / "flatcar/alloy-amd64.ign"
    path.write_text(butane.to_ignition(config))
    return path


def boot_provisioned(config: Path, fleet: Fleet, root: Path, tmp_path: Path) -> Boot:
    """Boot `root` provisioned by the Ignition `config`, with check-signed-host.sh as its
    check."""
    seed = tmp_path / "seed"
    apply(config, seed, root, fleet.fetch)
    (seed / "etc/alloy-e2e").mkdir(parents=True)
    shutil.copy(HERE / "check-signed-host.sh", seed / "etc/alloy-e2e/check.sh")
    units = seed / "etc/systemd/system"
    shutil.copy(HERE / "alloy-e2e-check.service", units / "alloy-e2e-check.service")
    (units / "multi-user.target.wants").mkdir(parents=True, exist_ok=True)
    (units / "multi-user.target.wants/alloy-e2e-check.service").symlink_to(
        "/etc/systemd/system/alloy-e2e-check.service"
    )
    return boot(root, seed, tmp_path / "shared", timeout=160)


def make_cert(where: Path) -> tuple[Path, Path]:
    key, cert = where / "verity.key", where / "verity.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "30", "-subj", "/CN=e2e"],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert


def evidence(booted: Boot) -> str:
    """What the host recorded, with what systemd-sysext said at boot and when run again."""
    return (
        booted.report()
        + "\n--- sysext.journal:\n"
        + booted.text("sysext.journal")
        + "\n--- refresh.txt (the unit's command, run again):\n"
        + booted.text("refresh.txt")
    )


def test_a_host_requiring_signed_images_gets_the_certificate_and_the_policy(
    fleet: Fleet, trixie_root: Path, tmp_path: Path, report_time: Callable[[str], None]
) -> None:
    _, cert = make_cert(tmp_path)
    fleet.publish([[A]])
    config = signed_host_config(fleet, cert)
    booted = boot_provisioned(config, fleet, trixie_root, tmp_path)
    report = evidence(booted)
    report_time(f"boot+check+shutdown {booted.seconds:.1f} s")
    results = booted.results
    assert results.get("finished") == "yes", report

    # The certificate, where and as systemd reads it.
    assert results["cert_mode"] == "644", report
    assert booted.text("cert.pem") == load_certificate(cert).pem, report
    # The drop-in replaced the unit's calls: both carry the policy, none the stock call.
    policy = f"--image-policy={SIGNED_IMAGE_POLICY}"
    for key in ("exec_start", "exec_reload"):
        assert f"argv[]=systemd-sysext refresh {policy} " in results[key].replace(
            "/usr/bin/", ""
        ), report
    unit = booted.text("sysext-unit.txt")
    assert f"systemd-sysext.service.d/{layout.SYSEXT_DROPIN}" in unit, report
    assert f"ExecStart=systemd-sysext refresh {policy}" in unit, report
    assert results["analyze_status"] == "0" and not booted.text("analyze.txt").strip(), report
    # The activate script the update runs merges under the same policy.
    merges = [line for line in booted.text("activate").splitlines() if "systemd-sysext ref" in line]
    assert merges and all(policy in line for line in merges if not line.startswith("#")), report
    # A plain image is refused under it: systemd-sysext says so, and no alloy is merged.
    refused = f"{layout.CURRENT_SYMLINK}: Image does not match image policy."
    assert refused in booted.text("refresh.txt").splitlines(), report
    assert results["alloy_binary"] == "absent", report


def test_a_release_of_signed_ddis_provisions_the_certificate_and_the_policy(
    fleet: Fleet, trixie_root: Path, tmp_path: Path, report_time: Callable[[str], None]
) -> None:
    """The real thing end to end, short of dm-verity: `invoke all --format=ddi` signed, `invoke
    release --verity-cert --require-signed-images`, its Ignition config applied as is."""
    key, cert = make_cert(tmp_path)
    build = ("--format=ddi", f"--verity-key={key}", f"--verity-cert={cert}")
    fleet.publish_steps([([(A, build)], (f"--verity-cert={cert}", "--require-signed-images"))])
    booted = boot_provisioned(
        fleet.steps / "0/flatcar/alloy-amd64.ign", fleet, trixie_root, tmp_path
    )
    report = evidence(booted)
    report_time(f"signed DDI: boot+check+shutdown {booted.seconds:.1f} s")
    results = booted.results
    assert results.get("finished") == "yes", report
    assert results["cert_mode"] == "644", report
    assert booted.text("cert.pem") == (fleet.steps / "0/alloy-verity.crt").read_text(), report
    policy = f"--image-policy={SIGNED_IMAGE_POLICY}"
    assert f"argv[]=systemd-sysext refresh {policy} " in results["exec_start"], report
    assert results["analyze_status"] == "0", report
    # The signed DDI passes the policy (the plain image of the test above does not); what stops
    # it here is the next step, setting up dm-verity, which systemd-nspawn has not.
    said = booted.text("refresh.txt")
    command = results["refresh_command"].replace("/usr/bin/", "")
    assert command == f"systemd-sysext refresh {policy}", report
    assert results["refresh_status"] != "0", report
    assert "does not match image policy" not in said, report
    assert "Failed to read metadata for image alloy" in said, report
    assert results["alloy_binary"] == "absent", report
