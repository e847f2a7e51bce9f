"""Files rendered into the image, from templates in build/templates/image/ with @NAME@
placeholders (build/model/templates.py fills them, for release's and the DDI's templates too)."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from build import alloy
from build.config.spec import BuildSpec
from build.core.errors import BuildError
from build.image.content import IMAGE_BINARY, RESTART_UNIT
from build.model.templates import TEMPLATES, render

IMAGE_TEMPLATES = TEMPLATES / "image"  # what goes into the image


def unit_template_path(spec: BuildSpec) -> Path:
    return spec.unit_template or alloy.UNIT_TEMPLATE


# A unit template is a small text file a user wrote: never a device, a FIFO or a kernel file
# (/proc/self/environ would put the build's secrets into the image; /dev/zero never ends).
MAX_TEMPLATE = 64 << 10
_NOT_FILES = ("/proc", "/sys", "/dev")
_SERVICE_SECTION = re.compile(r"^\[Service\][ \t]*$", re.M)


def read_template(path: Path) -> str:
    def refuse(reason: str) -> BuildError:
        return BuildError(
            f"refusing unit template {path}: {reason}",
            f"give --unit-template a unit file of at most {MAX_TEMPLATE >> 10} KiB of UTF-8 text "
            "with a [Service] section",
        )

    real = os.path.realpath(path)
    for root in _NOT_FILES:
        if real == root or real.startswith(root + "/"):
            raise refuse(f"it is {real}, under {root}: not a file a user wrote")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as error:
        raise BuildError(
            f"cannot read unit template {path}: {error.strerror}", "check --unit-template"
        ) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise refuse("it is not a regular file")
        data = _read_at_most(fd, MAX_TEMPLATE + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_TEMPLATE:
        raise refuse(f"it is larger than {MAX_TEMPLATE >> 10} KiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise refuse("it is not UTF-8 text") from None
    if "\0" in text:
        raise refuse("it holds NUL bytes")
    if not _SERVICE_SECTION.search(text):
        raise refuse("it has no [Service] section")
    return text


def _read_at_most(fd: int, size: int) -> bytes:
    chunks, left = [], size
    while left > 0 and (chunk := os.read(fd, min(left, 1 << 16))):
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# What a template must hold for --run-as=alloy: without them the unit runs as root beside the
# image's user files, and the build info says alloy.
RUN_AS_PLACEHOLDERS = ("@RUN_AS_UNIT@", "@RUN_AS_SERVICE@")


def unit(spec: BuildSpec, template: str, source: str) -> str:
    missing = [name for name in RUN_AS_PLACEHOLDERS if name not in template]
    if spec.run_as == alloy.USER and missing:
        raise BuildError(
            f"{source} has no {' or '.join(missing)}: with --run-as={alloy.USER} alloy would run "
            "as root (a unit template from before --run-as?)",
            "add @RUN_AS_UNIT@ to its [Unit] and @RUN_AS_SERVICE@ to its [Service] section, as "
            "build/templates/image/alloy.service does, or build with --run-as=root",
        )
    values = {
        "VERSION": spec.version,
        "BINARY": "/" + IMAGE_BINARY,
        "CONFIG_PATH": spec.config_path,
        "STATE_DIR": alloy.STATE_DIR,
        # What --run-as puts in [Unit] and [Service] (build/templates/image/run-as/).
        "RUN_AS_UNIT": verbatim(f"run-as/{spec.run_as}.unit"),
        "RUN_AS_SERVICE": verbatim(f"run-as/{spec.run_as}.service"),
    }
    return render(template, values, source)


def verbatim(name: str) -> str:
    """The image template `name`, as it is (placeholders, if any, left for render())."""
    return (IMAGE_TEMPLATES / name).read_text(encoding="utf-8")


def env_file(config_path: str) -> str:
    """/etc/default/alloy as a host is first given it (from the image's factory copy, or the
    Ignition config): upstream's variables, with the config path the unit was built for."""
    return render(verbatim("default"), {"CONFIG_PATH": config_path}, "/etc/default template")


def autostart_dropin() -> str:
    return verbatim("autostart.conf")


def extension_release(spec: BuildSpec) -> str:
    template = verbatim("extension-release")
    values = {
        "ARCHITECTURE": spec.arch.systemd,
        # Never alloy.service: systemd 262 would start a stopped alloy and hang the boot.
        "RESTART_UNIT": Path(RESTART_UNIT.path).name,
    }
    return render(template, values, "extension-release template")
