"""Building a sysext DDI with systemd-repart 255+ itself (build/formats/ddi.py chooses it when
it is on PATH; older ones have no --offline, and 254 salts the tree at random):

    systemd-repart --offline=yes --empty=create --size=auto --seed=SEED --definitions=DIR
        --dry-run=no --pretty=no TARGET

DIR holds the definitions rendered from build/templates/repart/: the data partition as
CopyBlocks= of our image (Verity=data), its hash tree (Verity=hash, Minimize=best, 4 KiB
blocks) and, signed, the signature partition as CopyBlocks= of our JSON. Checked with repart
257 (Debian 13): the same bytes as build/formats/ddi.py's Python assembly, signed (RSA) and
unsigned, for amd64 and arm64, disks of 4 MiB or less and larger (tests/e2e/test_repart.py).
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path

from build.core.errors import BuildError
from build.core.run import run, run_answer, tool_environment
from build.model.ddi import partition_kinds
from build.model.templates import TEMPLATES, render

REPART = "systemd-repart"
MIN_VERSION = 255  # --offline=yes, and the tree's salt from --seed
REPART_TEMPLATES = TEMPLATES / "repart"
# Definition file -> its template: repart takes the partitions in the files' order.
DEFINITIONS = {
    "data": ("10-root.conf", "root.conf"),
    "verity": ("20-root-verity.conf", "root-verity.conf"),
    "signature": ("30-root-verity-sig.conf", "root-verity-sig.conf"),
}
VERSION_SECONDS = 30.0
# repart copies and hashes the image: a minute plus generous time per byte.
REPART_SECONDS = 60.0
REPART_BYTES_PER_SECOND = 10 << 20
# Set (to anything but empty), the DDI is assembled in Python even where repart 255+ is.
WITHOUT_REPART_ENV = "ALLOY_DDI_WITHOUT_REPART"


def _environment(scratch: Path | None = None) -> dict[str, str]:
    """PATH, and nothing else of the caller's (no SYSTEMD_REPART_* option); repart says only
    warnings and errors, so that the end of what it said is why it failed; its temporary files
    (the tree it sizes the hash partition with) go to `scratch`."""
    environment = tool_environment(SYSTEMD_LOG_LEVEL="warning")
    return {**environment, "TMPDIR": str(scratch)} if scratch is not None else environment


def repart_version() -> int | None:
    """systemd-repart's version on PATH (257 for "systemd 257 (257.13-1~deb13u1)"), or None
    when there is none or it does not say."""
    if shutil.which(REPART) is None:
        return None
    said = run_answer([REPART, "--version"], env=_environment(), timeout=VERSION_SECONDS)
    match = re.search(r"^systemd (\d+)", said, re.M)
    return int(match.group(1)) if match else None


def why_not_repart() -> tuple[int | None, str | None]:
    """(systemd-repart's version, None) when it is to build the DDI; else (its version or
    None, why not)."""
    if os.environ.get(WITHOUT_REPART_ENV):
        return None, f"{WITHOUT_REPART_ENV} is set"
    if shutil.which(REPART) is None:
        return None, "no systemd-repart on PATH"
    version = repart_version()
    if version is None:
        return None, "the systemd-repart on PATH does not say which version it is"
    if version < MIN_VERSION:
        reason = "no --offline; 254 salts the tree at random"
        return version, f"systemd-repart {version} is older than {MIN_VERSION} ({reason})"
    return version, None


def _config_path(path: Path, what: str) -> str:
    """`path` as a definition's value: absolute, `%` escaped (repart expands specifiers in
    CopyBlocks=), and refused if a line break or edge space would change the definition."""
    text = str(path.absolute())
    if any(char in text for char in "\n\r") or text != text.strip():
        raise BuildError(
            f"cannot give systemd-repart the {what} {text!r}: its path has a line break or "
            "spaces at an end",
            "build in a directory whose path has neither",
        )
    return text.replace("%", "%%")


def definitions(arch: str, data_image: Path, signature: Path | None) -> dict[str, str]:
    """The definition files (name -> text) of the DDI of `data_image` for `arch` (amd64,
    arm64), with a signature partition copied from `signature` unless it is None."""
    values = {
        "data": {"IMAGE": _config_path(data_image, "data image")},
        "verity": {},
        "signature": {
            "SIGNATURE": "" if signature is None else _config_path(signature, "signature"),
            "SIGNATURE_BYTES": str(16 * 1024),  # repart.c VERITY_SIG_SIZE
        },
    }
    files = {}
    for kind in partition_kinds(arch)[: 2 if signature is None else 3]:
        name, template = DEFINITIONS[kind.role]
        text = (REPART_TEMPLATES / template).read_text(encoding="utf-8")
        # repart's name of the type is the label it gives the partition (model/ddi.py)
        filled = {"TYPE": kind.label, **values[kind.role]}
        files[name] = render(text, filled, f"{template} template")
    return files


def build_with_repart(
    data_image: Path, target: Path, arch: str, seed: uuid.UUID, signature: Path | None
) -> None:
    """Have systemd-repart write the DDI of `data_image` for `arch` at `target` (which must not
    exist), with the --seed `seed` and the signature partition copied from `signature` (None:
    unsigned). Its definitions and temporary files go to a directory beside `target`, which the
    caller removes."""
    scratch = target.parent / f"{target.name}.repart.d"
    scratch.mkdir()
    for name, text in definitions(arch, data_image, signature).items():
        (scratch / name).write_text(text, encoding="utf-8")
    argv = [
        REPART,
        "--offline=yes",
        "--empty=create",
        "--size=auto",
        f"--seed={seed}",
        f"--definitions={scratch}",
        "--dry-run=no",
        "--pretty=no",
        str(target),
    ]
    size = data_image.stat().st_size
    run(
        argv,
        env=_environment(scratch),
        what=f"cannot build the DDI {target.name} with systemd-repart",
        hint=f"set {WITHOUT_REPART_ENV}=1 to assemble the DDI in Python instead (same bytes)",
        timeout=REPART_SECONDS + size / REPART_BYTES_PER_SECOND,
    )
