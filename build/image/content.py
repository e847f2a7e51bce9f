"""What an image holds, written once: each file's path, mode and the option that puts it there.

Stage (build/image/stage.py) writes exactly these files, and the directories on their way with
DIR_MODE; verify (build/verify/checks.py) expects exactly these, with these modes, and fails any
other entry. Paths are relative to the image root."""

from __future__ import annotations

import stat
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from build import alloy

NAME = alloy.NAME
DIR_MODE = 0o755  # overlayfs gives a merged directory the top layer's mode: never narrower
RELEASE_DIR = "usr/lib/extension-release.d/"
# Lets systemd (252+) merge the image under a file name other than `alloy.raw`.
STRICT_XATTR = "user.extension-release.strict"


class When(Enum):
    """The build option that puts a file into the image."""

    ALWAYS = "always"
    AUTOSTART = "--autostart"
    TRUST_KEYS = "--trust-keys"
    RUN_AS_USER = f"--run-as={alloy.USER}"
    # In every image built since the file was added; one built before (by an earlier release,
    # still in a feed) lacks it, and verify --image and release's re-check take it so.
    SINCE_RESTART_UNITS = "every build since EXTENSION_RESTART_UNITS="


@dataclass(frozen=True)
class ImageFile:
    path: str
    mode: int
    when: When
    xattrs: tuple[tuple[str, bytes], ...] = ()  # (name, value): the only ones it may carry

    @property
    def listed_mode(self) -> str:
        """The mode as `ls -l` and the readers list it: -rw-r--r--."""
        return stat.filemode(stat.S_IFREG | self.mode)


BINARY = ImageFile(alloy.IMAGE_BINARY, 0o755, When.ALWAYS)
UNIT = ImageFile(f"usr/lib/systemd/system/{NAME}.service", 0o644, When.ALWAYS)
EXTENSION_RELEASE = ImageFile(
    f"{RELEASE_DIR}extension-release.{NAME}",
    0o644,
    When.ALWAYS,
    xattrs=((STRICT_XATTR, b"false"),),
)
AUTOSTART = ImageFile(
    f"usr/lib/systemd/system/multi-user.target.d/10-{NAME}.conf", 0o644, When.AUTOSTART
)
# The keys hosts trust next (their alloy-import-pubring.service adds them).
TRUST_KEYS = ImageFile(f"usr/lib/{NAME}-sysext/release-keys.d/next.gpg", 0o644, When.TRUST_KEYS)

# --run-as=alloy: the user (sysusers.d), the unit that makes it before alloy starts, and
# /etc/default/alloy, seeded from the factory copy by a tmpfiles.d C line (never overwritten).
SYSUSERS = ImageFile(f"usr/lib/sysusers.d/{NAME}.conf", 0o644, When.RUN_AS_USER)
TMPFILES = ImageFile(f"usr/lib/tmpfiles.d/{NAME}.conf", 0o644, When.RUN_AS_USER)
USER_UNIT = ImageFile(f"usr/lib/systemd/system/{NAME}-user.service", 0o644, When.RUN_AS_USER)
ENV_FACTORY = ImageFile(f"usr/share/factory{alloy.ENV_FILE}", 0o644, When.RUN_AS_USER)
# The unit extension-release's EXTENSION_RESTART_UNITS= names (systemd 262+): it restarts alloy
# if it runs (build/templates/image/alloy-sysext-restart.service says why not alloy.service).
RESTART_UNIT = ImageFile(
    f"usr/lib/systemd/system/{NAME}-sysext-restart.service", 0o644, When.SINCE_RESTART_UNITS
)

FILES = (
    BINARY,
    UNIT,
    EXTENSION_RELEASE,
    AUTOSTART,
    TRUST_KEYS,
    SYSUSERS,
    TMPFILES,
    USER_UNIT,
    ENV_FACTORY,
    RESTART_UNIT,
)
BY_PATH = {file.path: file for file in FILES}

IMAGE_BINARY = BINARY.path
IMAGE_UNIT = UNIT.path
IMAGE_EXTENSION_RELEASE = EXTENSION_RELEASE.path
IMAGE_AUTOSTART = AUTOSTART.path
IMAGE_TRUST_KEYS = TRUST_KEYS.path
DIR_LISTED_MODE = stat.filemode(stat.S_IFDIR | DIR_MODE)


def held(
    autostart: bool, trust_keys: bool, run_as: str, built_now: bool = True
) -> tuple[ImageFile, ...]:
    """The files an image built with (or without) --autostart and --trust-keys, and with
    --run-as, holds; `built_now` False: only those an image built by an earlier release
    surely holds too."""
    given = {
        When.ALWAYS: True,
        When.SINCE_RESTART_UNITS: built_now,
        When.AUTOSTART: autostart,
        When.TRUST_KEYS: trust_keys,
        When.RUN_AS_USER: run_as == alloy.USER,
    }
    return tuple(file for file in FILES if given[file.when])


def optional() -> tuple[ImageFile, ...]:
    """The files an option puts there: an image from elsewhere may hold them or not."""
    return tuple(file for file in FILES if file.when is not When.ALWAYS)


def parents(path: str) -> list[str]:
    """The directories on the way to `path`, the root ("") first."""
    parts = path.split("/")
    return ["/".join(parts[:depth]) for depth in range(len(parts))]


def directories(paths: Iterable[str]) -> set[str]:
    return {parent for path in paths for parent in parents(path)}
