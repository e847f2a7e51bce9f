"""A host's provisioning, held once as data and written two ways: a Butane config (YAML,
`variant: flatcar`, `version: 1.0.0`) and the Ignition config (JSON, spec 3.3.0) that Butane
turns it into. Both come from the same `Provisioning`, so they cannot disagree.

What Butane changes on the way to Ignition, and so all these two writers differ in:
- the header: `variant: flatcar` + `version: 1.0.0` becomes `ignition: {version: 3.3.0}`;
- `contents: {inline: TEXT}` becomes `contents: {source: "data:,PERCENT-ENCODED-TEXT"}`;
- `mode: 0644` (YAML octal) is the same number as Ignition's `mode: 420`.
Binary contents are a base64 `data:` URL in both, as Butane passes a `source` through.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

BUTANE_VARIANT = "flatcar"
BUTANE_VERSION = "1.0.0"
IGNITION_VERSION = "3.3.0"  # what Butane's flatcar 1.0.0 translates to


@dataclass(frozen=True)
class File:
    path: str
    mode: int
    inline: str | None = None  # the text itself
    data: bytes | None = None  # or bytes, carried inline as a base64 data: URL (both configs)
    source: str | None = None  # or a URL to download, with its sha256
    sha256: str | None = None
    overwrite: bool | None = None  # False: never replace an existing file


@dataclass(frozen=True)
class Link:
    path: str
    target: str


@dataclass(frozen=True)
class Dropin:
    name: str
    contents: str


@dataclass(frozen=True)
class Unit:
    name: str
    enabled: bool | None = None
    contents: str | None = None
    dropins: tuple[Dropin, ...] = ()


@dataclass(frozen=True)
class Provisioning:
    files: tuple[File, ...] = ()
    links: tuple[Link, ...] = ()
    units: tuple[Unit, ...] = ()


class _Mode(int):
    """A file mode: octal in YAML (0644), a plain number in JSON (420)."""


def _tree(config: Provisioning, ignition: bool) -> dict[str, Any]:
    def contents(file: File) -> dict[str, Any]:
        if file.inline is not None:
            if ignition:
                return {"source": "data:," + urllib.parse.quote(file.inline, safe="")}
            return {"inline": file.inline}
        if file.data is not None:
            return {"source": "data:;base64," + base64.b64encode(file.data).decode("ascii")}
        found: dict[str, Any] = {"source": file.source}
        if file.sha256:
            found["verification"] = {"hash": f"sha256-{file.sha256}"}
        return found

    def file_node(file: File) -> dict[str, Any]:
        node: dict[str, Any] = {"path": file.path, "mode": _Mode(file.mode)}
        if file.overwrite is not None:
            node["overwrite"] = file.overwrite
        node["contents"] = contents(file)
        return node

    def unit_node(unit: Unit) -> dict[str, Any]:
        node: dict[str, Any] = {"name": unit.name}
        if unit.enabled is not None:
            node["enabled"] = unit.enabled
        if unit.contents is not None:
            node["contents"] = unit.contents
        if unit.dropins:
            node["dropins"] = [{"name": d.name, "contents": d.contents} for d in unit.dropins]
        return node

    header: dict[str, Any] = (
        {"ignition": {"version": IGNITION_VERSION}}
        if ignition
        else {"variant": BUTANE_VARIANT, "version": BUTANE_VERSION}
    )
    storage: dict[str, Any] = {}
    if config.files:
        storage["files"] = [file_node(file) for file in config.files]
    if config.links:
        storage["links"] = [
            {"path": link.path, "target": link.target, "hard": False} for link in config.links
        ]
    tree = {**header}
    if storage:
        tree["storage"] = storage
    if config.units:
        tree["systemd"] = {"units": [unit_node(unit) for unit in config.units]}
    return tree


def to_ignition(config: Provisioning) -> str:
    return json.dumps(_tree(config, ignition=True), indent=2) + "\n"


def to_butane(config: Provisioning, comment: str = "") -> str:
    lines = [f"# {line}".rstrip() for line in comment.splitlines()]
    lines += _yaml(_tree(config, ignition=False), 0)
    return "\n".join(lines) + "\n"


# A YAML writer for this fixed shape (mappings, lists of mappings, strings, numbers, booleans):
# multi-line text as literal blocks, everything else that is not plainly a word double-quoted
# (JSON's escapes are YAML's), so no value can be read back as another type.
_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./@+-]*")
_YAML_WORDS = {"y", "n", "yes", "no", "true", "false", "on", "off", "null"}


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, _Mode):
        return f"0{value:o}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        if _PLAIN.fullmatch(value) and value.lower() not in _YAML_WORDS:
            return value
        return json.dumps(value)
    raise TypeError(f"no YAML for {type(value).__name__}")


def _block(text: str) -> bool:
    """Whether `text` reads back exactly as a `|` literal block."""
    return (
        "\n" in text
        and text.endswith("\n")
        and not text.endswith("\n\n")
        and not text[:1].isspace()
        and all(ch.isprintable() or ch == "\n" for ch in text)
    )


def _yaml(node: Any, indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, (dict, list)):
                lines.append(f"{pad}{key}:")
                lines += _yaml(value, indent + 2)
            elif isinstance(value, str) and _block(value):
                lines.append(f"{pad}{key}: |")
                lines += [f"{pad}  {line}" if line else "" for line in value.split("\n")[:-1]]
            else:
                lines.append(f"{pad}{key}: {_scalar(value)}")
    elif isinstance(node, list):
        for item in node:
            item_lines = _yaml(item, indent + 2)
            item_lines[0] = f"{pad}- {item_lines[0][indent + 2 :]}"
            lines += item_lines
    else:
        raise TypeError(f"no YAML block for {type(node).__name__}")
    return lines
