"""Apply an Ignition config's files, links and units to a root directory: what Ignition does on a
Flatcar host's first boot, for the boot test's Debian root, where Ignition itself cannot run.

Only what alloy-sysext's configs use (build/release/butane.py): files with inline (data:, plain or
base64, as the release key is) or downloaded
(http) contents and a sha256, `overwrite: false`, symlinks, units with contents, drop-ins and
`enabled`. Downloads come from `fetch` (the test's published directory), checked like Ignition
checks them."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

UNIT_DIR = "etc/systemd/system"
UNIT_SEARCH = (UNIT_DIR, "usr/lib/systemd/system", "lib/systemd/system")


def _under(root: Path, path: str) -> Path:
    assert path.startswith("/") and ".." not in path.split("/"), path
    return root / path.lstrip("/")


def _contents(node: dict[str, Any], fetch: Callable[[str], bytes]) -> bytes:
    source = node["contents"]["source"]
    if source.startswith("data:"):  # RFC 2397: data:[MEDIATYPE][;base64],DATA
        header, _, payload = source[len("data:") :].partition(",")
        data = urllib.parse.unquote_to_bytes(payload)
        if header.endswith(";base64"):
            data = base64.b64decode(data, validate=True)
    else:
        data = fetch(source)
    wanted = node["contents"].get("verification", {}).get("hash")
    if wanted:
        assert wanted == "sha256-" + hashlib.sha256(data).hexdigest(), f"{source}: sha256"
    return data


def _wanted_by(unit: str, roots: tuple[Path, ...]) -> list[str]:
    """The targets of the unit's [Install] WantedBy=, from the first root that has the unit.
    Ignition enables a unit with a preset line, and `systemctl preset` (measured on 262) skips
    a name that is an alias (a symlink to another unit's file: systemd-sysupdate.timer on 258+)
    and one no unit file has (systemd-sysupdate-update.timer on 257): neither is enabled."""
    for root in roots:
        for directory in UNIT_SEARCH:
            path = root / directory / unit
            if path.is_symlink() and Path(os.readlink(path)).name != unit:
                return []
            if path.is_file():
                text = path.read_text()
                return [
                    t for line in re.findall(r"^WantedBy=(.*)$", text, re.M) for t in line.split()
                ]
    return []


def apply(config: Path, seed: Path, base_root: Path, fetch: Callable[[str], bytes]) -> None:
    """Write what `config` provisions into `seed` (laid over `base_root` at boot)."""
    ignition = json.loads(config.read_text())
    storage = ignition.get("storage", {})
    for node in storage.get("files", []):
        target = _under(seed, node["path"])
        if node.get("overwrite") is False and (
            target.exists() or _under(base_root, node["path"]).exists()
        ):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(_contents(node, fetch))
        target.chmod(node.get("mode", 0o644))
    for node in storage.get("links", []):
        assert node.get("hard") is False, node
        link = _under(seed, node["path"])
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(node["target"])
    for node in ignition.get("systemd", {}).get("units", []):
        units = seed / UNIT_DIR
        name = node["name"]
        if "contents" in node:
            units.mkdir(parents=True, exist_ok=True)
            (units / name).write_text(node["contents"])
        for dropin in node.get("dropins", []):
            (units / f"{name}.d").mkdir(parents=True, exist_ok=True)
            (units / f"{name}.d" / dropin["name"]).write_text(dropin["contents"])
        if node.get("enabled"):
            for wanted_by in _wanted_by(name, (seed, base_root)):
                wants = units / f"{wanted_by}.wants"
                wants.mkdir(parents=True, exist_ok=True)
                (wants / name).unlink(missing_ok=True)
                vendor = f"/usr/lib/systemd/system/{name}"
                (wants / name).symlink_to(f"/{UNIT_DIR}/{name}" if "contents" in node else vendor)
