"""--run-as (issue 24): alloy runs as its own user `alloy` by default, made by the image's own
sysusers.d entry before it starts; --run-as=root keeps the root unit and adds no file. verify
allows the user's files exactly with --run-as=alloy."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from build.config.spec import BuildSpec
from build.image import buildinfo, render
from build.verify import checks
from tests import verifying
from tests.conftest import VERSION, Invoke
from tests.image import RUN_AS_ROOT_LISTING, extract, listing
from tests.results import error_line, ok
from tests.runs import leftovers
from tests.specs import spec_of
from tests.verifying import repack

tree = verifying.tree  # the built image unpacked (a fixture)

IMAGE = f"alloy-{VERSION}-amd64.raw"
USER_FILES = (
    "usr/lib/sysusers.d/alloy.conf",
    "usr/lib/tmpfiles.d/alloy.conf",
    "usr/lib/systemd/system/alloy-user.service",
    "usr/share/factory/etc/default/alloy",
)
# What real collectors need left on, in either mode (issue 24).
NEVER = ("ProtectProc=invisible", "PrivateNetwork=", "PrivateUsers=", "DynamicUser=")


def unit_of(tmp_path: Path, **options: str) -> list[str]:
    spec: BuildSpec = spec_of({"cache_dir": str(tmp_path / "cache"), **options})
    path = render.unit_template_path(spec)
    return render.unit(spec, render.read_template(path), str(path)).splitlines()


def test_the_default_unit_runs_as_alloy_after_alloy_user_service(tmp_path: Path) -> None:
    unit = unit_of(tmp_path)
    for line in (
        "User=alloy",
        "Group=alloy",
        # Not only sysusers' m lines: they write nothing for a group that is not in /etc/group
        # (Flatcar keeps adm and systemd-journal in /usr/share/baselayout/group).
        "SupplementaryGroups=adm systemd-journal",
        "Requires=alloy-user.service",
        "After=alloy-user.service",
        "StateDirectory=alloy",
        "StateDirectoryMode=0770",
        "CapabilityBoundingSet=",
        # systemctl kill is refused to an unprivileged user: the reload runs as root.
        "ExecReload=+systemctl kill --kill-who=main --signal=SIGHUP %n",
    ):
        assert line in unit, line
    assert unit.index("Requires=alloy-user.service") < unit.index("[Service]")
    # The default config path first, /etc/default/alloy after it: the file overrides it.
    assert unit.index("Environment=CONFIG_FILE=/var/mnt/storage/alloy/config.alloy") < (
        unit.index("EnvironmentFile=-/etc/default/alloy")
    )
    assert not [line for line in unit if line.startswith(NEVER)]


def test_run_as_root_has_no_user_and_needs_no_alloy_user_service(tmp_path: Path) -> None:
    unit = unit_of(tmp_path, run_as="root")
    assert not [line for line in unit if re.match(r"(User|Group|Requires)=", line)]
    assert "alloy-user.service" not in "\n".join(unit)
    for line in ("NoNewPrivileges=true", "ProtectSystem=strict", "ProtectHome=true"):
        assert line in unit, line
    assert not [line for line in unit if line.startswith(NEVER)]


def test_an_unknown_user_is_one_line_and_nothing_is_written(invoke: Invoke, tmp_path: Path) -> None:
    error_line(
        invoke("all", "--run-as=nobody"),
        "unknown user to run as 'nobody'",
        "use --run-as with one of: alloy, root",
    )
    assert not (tmp_path / "output").exists()
    assert leftovers(tmp_path) == []


# A unit template as the release before --run-as documented it: no @RUN_AS_…@ placeholders.
OLD_TEMPLATE = (
    "[Unit]\nDescription=Grafana Alloy\n\n[Service]\n"
    "ExecStart=@BINARY@ run --storage.path=@STATE_DIR@/data @CONFIG_PATH@\n"
)


@pytest.mark.parametrize("kept", ["", "@RUN_AS_UNIT@\n", "@RUN_AS_SERVICE@\n"])
def test_a_template_without_the_run_as_placeholders_is_refused_for_alloy(
    invoke: Invoke, tmp_path: Path, kept: str
) -> None:
    """Rendered, it would run alloy as root beside the image's user files, with a build info
    saying run_as alloy: one line naming the template, nothing built; --run-as=root takes it."""
    template = tmp_path / "my.service"
    template.write_text(OLD_TEMPLATE + kept)
    error_line(
        invoke("all", f"--unit-template={template}"),
        f"{template} has no @RUN_AS_",
        "with --run-as=alloy alloy would run as root",
        "or build with --run-as=root",
    )
    assert not list((tmp_path / "output").glob("*.raw"))
    assert leftovers(tmp_path) == []
    ok(invoke("all", f"--unit-template={template}", "--run-as=root"))
    assert listing(tmp_path / "output" / IMAGE) == RUN_AS_ROOT_LISTING


def test_run_as_root_repacks_without_the_user_files_and_records_it(
    invoke: Invoke, tmp_path: Path
) -> None:
    ok(invoke("all"))
    image = tmp_path / "output" / IMAGE
    assert set(USER_FILES) <= set(listing(image))
    result = ok(invoke("all", "--run-as=root"))
    stage = outcome(result, "stage")
    assert "files changed" in stage and "removed" in stage, stage
    assert listing(image) == RUN_AS_ROOT_LISTING
    info = json.loads(image.with_name(IMAGE + ".buildinfo.json").read_text())
    assert info["run_as"] == "root" and info["verify"]["result"] == "passed"
    unit = (extract(image, tmp_path / "root") / "usr/lib/systemd/system/alloy.service").read_text()
    assert "\nUser=" not in unit
    assert outcome(ok(invoke("all", "--run-as=root")), "pack").endswith("up to date")


def outcome(result: subprocess.CompletedProcess, step: str) -> str:
    return next(line for line in result.stdout.splitlines() if line.startswith(f"{step} "))


def entries(image: Path, run_as: str) -> str:
    expect = checks.Expectations(
        compression=None,
        names=[image.name],
        checksums=[],
        required=checks.required_files(autostart=False, trust_keys=False, run_as=run_as),
    )
    [row] = [check for check in checks.static_checks(image, expect) if check.name == "entries"]
    return f"{row.status} {row.detail}"


@pytest.mark.needs("mksquashfs", "unsquashfs")
def test_verify_allows_the_user_files_only_with_run_as_alloy(tree: Path, tmp_path: Path) -> None:
    image = repack(tree, tmp_path / "alloy" / "alloy.raw")
    assert entries(image, "alloy").startswith("ok ")
    refused = entries(image, "root")
    # Their 4 files and 6 directories, the first 3 named.
    assert refused.startswith("FAIL /usr/share is an extra directory, not part of an Alloy")
    assert refused.endswith("… and 7 more"), refused


@pytest.mark.needs("mksquashfs", "unsquashfs")
@pytest.mark.parametrize("missing", USER_FILES)
def test_verify_refuses_an_alloy_image_missing_one(
    tree: Path, tmp_path: Path, missing: str
) -> None:
    (tree / missing).unlink()
    image = repack(tree, tmp_path / "short" / "alloy.raw")
    assert entries(image, "alloy") == f"FAIL /{missing} is missing"


@pytest.mark.needs("mksquashfs", "unsquashfs")
def test_verify_refuses_another_file_beside_them(tree: Path, tmp_path: Path) -> None:
    other = tree / "usr/lib/sysusers.d/other.conf"
    shutil.copy(tree / USER_FILES[0], other)
    image = repack(tree, tmp_path / "extra" / "alloy.raw")
    found = entries(image, "alloy")
    assert found.startswith("FAIL ") and "/usr/lib/sysusers.d/other.conf is an extra file" in found


def test_an_old_build_info_ran_as_root(tmp_path: Path) -> None:
    """Images built before --run-as ran alloy as root: their build info says so when read."""
    info = {
        "version": VERSION,
        "arch": "amd64",
        "compression": "xz",
        "config_path": "/var/mnt/storage/alloy/config.alloy",
        "autostart": False,
    }
    parsed = buildinfo.parse_fields(tmp_path / "x.buildinfo.json", info, ())
    assert parsed["run_as"] == "root"
    spec = spec_of({"cache_dir": str(tmp_path / "cache")})
    assert buildinfo.options_differ(info, spec, "xz") == ["--run-as=root"]
