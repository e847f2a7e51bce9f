"""Inputs read from configuration stay what they claim to be (issue 12): a unit template is a
small text file, never a kernel file, a device or a FIFO."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Invoke

TEMPLATE = Path(__file__).resolve().parent.parent / "build/templates/image/alloy.service"
SECRET = "ghp_notarealtoken_but_a_secret"


def refused(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("error: refusing unit template") and all(f in line for f in fragments)
    assert "at most 64 KiB of UTF-8 text with a [Service] section" in line
    return line


def nothing_built(tmp_path: Path) -> None:
    output = tmp_path / "output"
    found = [p for p in output.rglob("*") if p.is_file() and p.suffix in (".raw", ".service")]
    assert found == []
    for path in output.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("/proc/self/environ", "under /proc: not a file a user wrote"),
        ("/dev/zero", "it is /dev/zero, under /dev"),
        ("/sys/kernel/mm/transparent_hugepage/enabled", "under /sys"),
    ],
)
def test_kernel_files_and_devices_are_refused(
    invoke: Invoke, tmp_path: Path, template: str, fragment: str
) -> None:
    result = invoke("stage", f"--unit-template={template}", env={"GITHUB_TOKEN": SECRET})
    refused(result, fragment)
    nothing_built(tmp_path)


def test_a_link_to_a_kernel_file_is_refused(invoke: Invoke, tmp_path: Path) -> None:
    link = tmp_path / "alloy.service"
    link.symlink_to("/proc/self/environ")
    result = invoke("stage", f"--unit-template={link}", env={"GITHUB_TOKEN": SECRET})
    refused(result, "under /proc")
    nothing_built(tmp_path)


def test_a_fifo_is_refused_without_hanging(invoke: Invoke, tmp_path: Path) -> None:
    fifo = tmp_path / "alloy.service"
    os.mkfifo(fifo)
    refused(invoke("stage", f"--unit-template={fifo}"), "not a regular file")
    nothing_built(tmp_path)


def test_a_directory_is_refused(invoke: Invoke, tmp_path: Path) -> None:
    refused(invoke("stage", f"--unit-template={tmp_path}"), "not a regular file")


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (TEMPLATE.read_bytes() + b"#" * (64 << 10), "larger than 64 KiB"),
        (b"[Service]\nExecStart=/x \xff\xfe\n", "not UTF-8 text"),
        (b"[Service]\nExecStart=/x\0\n", "NUL bytes"),
        (b"[Unit]\nDescription=no service\n", "no [Service] section"),
        (b"", "no [Service] section"),
    ],
)
def test_files_that_are_no_unit_are_refused(
    invoke: Invoke, tmp_path: Path, content: bytes, fragment: str
) -> None:
    template = tmp_path / "alloy.service"
    template.write_bytes(content)
    refused(invoke("stage", f"--unit-template={template}"), fragment)
    nothing_built(tmp_path)


def test_a_unit_of_64_kib_is_taken(invoke: Invoke, tmp_path: Path) -> None:
    text = TEMPLATE.read_text()
    template = tmp_path / "alloy.service"
    template.write_text(text + "#" * ((64 << 10) - len(text.encode())))
    result = invoke("stage", f"--unit-template={template}")
    assert result.returncode == 0, result.stderr


def test_a_config_path_of_thousands_of_characters_is_refused_up_front(
    invoke: Invoke, tmp_path: Path
) -> None:
    path = "/etc/" + "a" * 5000 + "/config.alloy"
    result = invoke("pack", f"--config-path={path}")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        f"error: config path of {len(path)} characters is too long; use at most 1024: it goes "
        "into the unit's ExecStart= line"
    ]
    assert result.stdout == ""  # before any download
    assert not (tmp_path / "output").exists()
