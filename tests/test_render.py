"""build.image.render: the systemd unit and extension-release rendered into the image."""

from __future__ import annotations

import configparser
import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from build.config.spec import BuildSpec
from build.core.errors import BuildError
from build.image import content, render
from tests.specs import spec_of

DEFAULT_EXEC_START = (
    "ExecStart=/usr/local/bin/alloy run $CUSTOM_ARGS --storage.path=/var/lib/alloy/data "
    "${CONFIG_FILE}"
)
REQUIRED_LINES = [
    DEFAULT_EXEC_START,
    # The config path the image was built for, unless /etc/default/alloy names another: the
    # default comes first, the file after it overrides it.
    "Environment=CONFIG_FILE=/var/mnt/storage/alloy/config.alloy",
    "ExecCondition=test -e ${CONFIG_FILE}",
    "StateDirectory=alloy",
    "WorkingDirectory=/var/lib/alloy",
    "NoNewPrivileges=true",
    "ProtectSystem=strict",
    "ProtectHome=true",
    "PrivateTmp=true",
    "Restart=on-failure",
    "RestartSec=10s",
    "After=network-online.target",
    "Wants=network-online.target",
    "WantedBy=multi-user.target",
    "EnvironmentFile=-/etc/default/alloy",
    "Environment=HOSTNAME=%H",
]


def make_spec(tmp_path: Path, **options: Any) -> BuildSpec:
    return spec_of({"cache_dir": str(tmp_path / "cache"), **options})


def default_unit(spec: BuildSpec) -> str:
    path = render.unit_template_path(spec)
    return render.unit(spec, render.read_template(path), str(path))


def parse_unit(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(text)
    return parser


@pytest.fixture
def unit_text(tmp_path: Path) -> str:
    return default_unit(make_spec(tmp_path))


@pytest.mark.parametrize("line", REQUIRED_LINES)
def test_default_unit_has_required_line(unit_text: str, line: str) -> None:
    assert line in unit_text.splitlines()


def test_default_unit_sections(unit_text: str) -> None:
    unit = parse_unit(unit_text)
    assert unit.sections() == ["Unit", "Service", "Install"]
    assert unit["Unit"]["Wants"] == "network-online.target"
    service = unit["Service"]
    assert service["ExecStart"] == DEFAULT_EXEC_START.removeprefix("ExecStart=")
    assert service["StateDirectory"] == "alloy"
    assert service["WorkingDirectory"] == "/var/lib/alloy"
    assert service["EnvironmentFile"] == "-/etc/default/alloy"
    assert service["Restart"] == "on-failure"
    assert service["RestartSec"] == "10s"
    for key, value in [
        ("NoNewPrivileges", "true"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "true"),
        ("PrivateTmp", "true"),
    ]:
        assert service[key] == value, key
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_exec_reload_sends_sighup(unit_text: str) -> None:
    service = parse_unit(unit_text)["Service"]
    reload = service["ExecReload"]
    assert "SIGHUP" in reload or "-HUP" in reload
    # It must signal the service's own main process, not something else.
    assert "$MAINPID" in reload or ("%n" in reload and "--kill-who=main" in reload)


def test_unit_lines_sit_in_their_sections(unit_text: str) -> None:
    """Line by line, without configparser: which section each required key is under."""
    section: str | None = None
    where: dict[str, str | None] = {}
    for line in unit_text.splitlines():
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif "=" in line and not line.startswith("#"):
            where.setdefault(line.split("=", 1)[0], section)
    assert where["After"] == where["Wants"] == "Unit"
    for key in ["ExecStart", "ExecReload", "StateDirectory", "Restart", "ProtectSystem"]:
        assert where[key] == "Service", key
    assert where["WantedBy"] == "Install"


def test_no_placeholder_left_in_default_unit(unit_text: str) -> None:
    assert not re.search(r"@[A-Z_]+@", unit_text)
    assert "1.10.2" in unit_text  # @VERSION@ went somewhere


def test_version_is_rendered(tmp_path: Path) -> None:
    assert "Grafana Alloy 1.11.0-rc.1" in default_unit(make_spec(tmp_path, version="1.11.0-rc.1"))


def test_config_path_changes_exec_start(tmp_path: Path) -> None:
    text = default_unit(make_spec(tmp_path, config_path="/etc/alloy/config.alloy"))
    assert "Environment=CONFIG_FILE=/etc/alloy/config.alloy" in text.splitlines()
    assert "/var/mnt/storage" not in text


def test_custom_template_renders_placeholders(tmp_path: Path) -> None:
    template = tmp_path / "my.service"
    template.write_text(
        "[Service]\n"
        "ExecStart=@BINARY@ run @CONFIG_PATH@\n"
        "WorkingDirectory=@STATE_DIR@\n"
        "# version @VERSION@\n"
        "Environment=FOO=${BAR} $BAZ\n"
    )
    # A unit of the user's own, as root: no @RUN_AS_…@ placeholders needed (test_run_as.py).
    spec = make_spec(
        tmp_path, unit_template=str(template), config_path="/etc/a.alloy", run_as="root"
    )
    assert render.unit_template_path(spec) == template
    assert default_unit(spec) == (
        "[Service]\n"
        "ExecStart=/usr/local/bin/alloy run /etc/a.alloy\n"
        "WorkingDirectory=/var/lib/alloy\n"
        "# version 1.10.2\n"
        "Environment=FOO=${BAR} $BAZ\n"
    )


def test_unknown_placeholder_is_named(tmp_path: Path) -> None:
    template = tmp_path / "my.service"
    template.write_text("[Service]\nExecStart=@BINARY@ --flag=@NOPE@\n")
    spec = make_spec(tmp_path, unit_template=str(template), run_as="root")
    with pytest.raises(BuildError) as caught:
        default_unit(spec)
    text = str(caught.value)
    assert "@NOPE@" in text
    assert str(template) in text
    assert "@CONFIG_PATH@" in text  # the hint lists the known ones


def test_render_unknown_placeholder_direct() -> None:
    with pytest.raises(BuildError, match="src uses unknown placeholder @X_Y@"):
        render.render("a @A@ b @X_Y@", {"A": "1"}, "src")


def test_render_substitutes_once() -> None:
    # A value that looks like a placeholder is not expanded again.
    assert render.render("@A@ @B@", {"A": "@B@", "B": "b"}, "src") == "@B@ b"


def test_missing_template_is_a_build_error(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"cannot read unit template .*nothing\.service"):
        render.read_template(tmp_path / "nothing.service")


def test_non_utf8_template_is_a_build_error(tmp_path: Path) -> None:
    template = tmp_path / "latin1.service"
    template.write_bytes(b"[Unit]\nDescription=caf\xe9\n")
    with pytest.raises(BuildError, match="not UTF-8 text"):
        render.read_template(template)


@pytest.mark.parametrize(("arch", "systemd"), [("amd64", "x86-64"), ("arm64", "arm64")])
def test_extension_release(tmp_path: Path, arch: str, systemd: str) -> None:
    text = render.extension_release(make_spec(tmp_path, arch=arch))
    lines = text.splitlines()
    assert "ID=_any" in lines
    assert f"ARCHITECTURE={systemd}" in lines
    assert [line for line in lines if line.startswith("ARCHITECTURE=")] == [
        f"ARCHITECTURE={systemd}"
    ]
    assert not re.search(r"ARCHITECTURE=(amd64|aarch64)\b", text)
    assert "@" not in text


@pytest.mark.parametrize(("autostart", "run_as"), [(False, "alloy"), (True, "root")])
def test_extension_release_restarts_alloy_only_through_its_own_unit(
    tmp_path: Path, autostart: bool, run_as: str
) -> None:
    """systemd 262 restarts the units EXTENSION_RESTART_UNITS= names after a merge or refresh.
    Naming alloy.service would start a stopped alloy and hang the boot (systemd-sysext.service,
    before sysinit.target, waits for alloy's start job, which waits for sysinit.target):
    measured on 262 with and without --autostart. So it names a unit of the image without
    default dependencies that try-restarts alloy without waiting (README "systemd 262")."""
    spec = dataclasses.replace(make_spec(tmp_path), autostart=autostart, run_as=run_as)
    lines = render.extension_release(spec).splitlines()
    assert "EXTENSION_RELOAD_MANAGER=1" in lines
    named = [line for line in lines if "_UNITS=" in line]
    assert named == ["EXTENSION_RESTART_UNITS=alloy-sysext-restart.service"]
    held = {file.path for file in content.held(autostart, False, run_as)}
    assert content.RESTART_UNIT.path in held
    assert content.RESTART_UNIT.path.endswith("/alloy-sysext-restart.service")
    unit = render.verbatim("alloy-sysext-restart.service")
    body = [line for line in unit.splitlines() if line and not line.startswith("#")]
    assert body == [
        "[Unit]",
        "Description=Restart Grafana Alloy, if it runs, on a new merged image",
        "DefaultDependencies=no",
        "[Service]",
        "Type=oneshot",
        "ExecStart=systemctl --no-block try-restart alloy.service",
    ]
