"""The build info beside each image (OUTPUT/alloy-VERSION-ARCH.raw.buildinfo.json): what packed
it, with which options, and what verify found; invoke release publishes only images it says
verify passed on, with that sha256."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import BuildError
from .names import buildinfo_file

if TYPE_CHECKING:
    from .runner import Runner
    from .spec import BuildSpec
    from .verify import Check

# What a build info says until verify passed on the image (invoke release refuses it).
NOT_VERIFIED = {"result": "not run", "why": "built without verify (a single step or --no-verify)"}


def of_pack(
    spec: BuildSpec,
    packed: dict[str, Any],
    tools: dict[str, str | None],
    trust_keys: Sequence[str],
) -> dict[str, Any]:
    """The record the pack step writes: the options (`packed`: compression, block_size,
    mksquashfs_args) and tools that made the image."""
    return {
        "image": spec.image.name,
        "version": spec.version,
        "arch": spec.arch.name,
        **packed,
        "autostart": spec.autostart,
        "config_path": spec.config_path,
        # Primary key fingerprints of --trust-keys: the keys hosts trust next.
        "trust_keys": list(trust_keys),
        **tools,
        "verify": NOT_VERIFIED,
    }


def verified(checks: list[Check], sha256: str) -> dict[str, Any]:
    """A passed verify of the image with this sha256, and the checks it could not make (never
    counted as passed)."""
    skipped = [f"{check.name}: {check.detail}" for check in checks if check.status == "skip"]
    return {"result": "passed", "sha256": sha256, "skipped": skipped}


def write(runner: Runner, info: dict[str, Any]) -> None:
    runner.write_output(buildinfo_file(runner.spec.image), json.dumps(info, indent=2) + "\n")


def read(runner: Runner) -> dict[str, Any]:
    """The newest build info of the image (pending, or in place)."""
    current = runner.current(buildinfo_file(runner.spec.image))
    try:
        info = json.loads(current.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise BuildError(
            f"cannot read {current}: {error}", "rebuild with invoke all --force"
        ) from None
    if not isinstance(info, dict):
        raise BuildError(
            f"cannot read {current}: not a JSON object", "rebuild with invoke all --force"
        )
    return info


def record_verify(runner: Runner, result: dict[str, Any]) -> None:
    """The verify result in the image's build info, which invoke release reads."""
    write(runner, {**read(runner), "verify": result})


def options_differ(info: dict[str, Any], spec: BuildSpec, compression: str) -> list[str]:
    """The options (as flags) the image was built with where they differ from `spec`'s, for
    those its checks depend on (`compression`: what --compression packs for spec.arch)."""
    differ = []
    if info.get("format", "squashfs") != spec.format:
        differ.append(f"--format={info.get('format', 'squashfs')}")
    if info.get("compression") != compression:
        differ.append(f"--compression={info.get('compression')}")
    if bool(info.get("autostart")) != spec.autostart:
        differ.append("--autostart" if info.get("autostart") else "no --autostart")
    if bool(info.get("trust_keys")) != (spec.trust_keys is not None):
        differ.append("--trust-keys" if info.get("trust_keys") else "no --trust-keys")
    return differ
