"""Where a release puts things on a host, written once: the paths and unit names the Butane/Ignition
config writes (build/release/publish.py), the host templates (build/templates/host/) are rendered
with, and the tests look for.

The layout is Flatcar's sysext-bakery's: versioned images side by side in EXTENSIONS_DIR, one link
in /etc/extensions that systemd-sysext merges, moved by systemd-sysupdate -C NAME."""

from __future__ import annotations

import posixpath
from pathlib import Path

from build import alloy
from build.image import content
from build.image.render import TEMPLATES, render
from build.model.ddi import SIGNED_IMAGE_POLICY

NAME = alloy.NAME
HOST_TEMPLATES = TEMPLATES / "host"

# The images, and the link systemd-sysext merges (it follows the newest installed version).
EXTENSIONS_DIR = f"/opt/extensions/{NAME}"
CURRENT_SYMLINK = f"/etc/extensions/{NAME}.raw"

# systemd-sysupdate: our component's transfers, and a no-op one in the default directory, under
# the name systemd 257+ reads (.transfer) and the one 256 and older read (.conf).
COMPONENT = NAME  # systemd-sysupdate -C alloy reads /etc/sysupdate.alloy.d/
TRANSFER_DIR = f"/etc/sysupdate.{COMPONENT}.d"
TRANSFER_NAMES = (f"{NAME}.transfer", f"{NAME}.conf")  # systemd 257+, and 256 and older
NOOP_DIR = "/etc/sysupdate.d"
NOOP_TRANSFERS = (f"{NOOP_DIR}/noop.transfer", f"{NOOP_DIR}/noop.conf")
SYSUPDATE_DROPIN = f"{NAME}.conf"  # in each of SYSUPDATE_SERVICES' .d/ directories
# sysupdate's own update unit and timer: systemd 257 and older name them systemd-sysupdate.*;
# 258+ name them systemd-sysupdate-update.* and keep the old names as aliases (symlinks). Our
# drop-in goes under both names with one file name: systemd reads an alias's drop-in directory
# too and takes a file name once (the unit's own name wins), so it applies exactly once, on
# either version, however the unit is started (measured on 262). Both timers are enabled: an
# Ignition preset line naming the alias is skipped by `systemctl preset` on 262 (measured),
# and one naming a unit a host lacks is ignored.
SYSUPDATE_SERVICES = ("systemd-sysupdate.service", "systemd-sysupdate-update.service")
SYSUPDATE_TIMERS = ("systemd-sysupdate.timer", "systemd-sysupdate-update.timer")
# Run by the drop-in around an update: merge, restart, health gate, rollback; its state.
ACTIVATE_SCRIPT = f"/opt/{NAME}-sysext/activate"
ACTIVATE_STATE = f"/run/{NAME}-sysext"

# A signed release's key, where an image carries the keys to trust next (--trust-keys), and the
# keyrings systemd-pull reads: ours in /etc (written by PUBRING_UNIT), the vendor's in /usr.
HOST_RELEASE_KEY = f"/etc/{NAME}-sysext/release-key.gpg"
NEXT_KEYS_DIR = "/" + posixpath.dirname(content.IMAGE_TRUST_KEYS) + "/"
SYSUPDATE_KEYRINGS = ("/etc/systemd/import-pubring.gpg", "/etc/systemd/import-pubring.pgp")
VENDOR_KEYRINGS = ("/usr/lib/systemd/import-pubring.pgp", "/usr/lib/systemd/import-pubring.gpg")

# dm-verity signatures: the certificate systemd checks a signed image's root hash against (it
# reads only *.crt in /etc/verity.d), and the systemd-sysext.service drop-in that makes every
# merge require such a signature (--require-signed-images).
VERITY_CERT = f"/etc/verity.d/{NAME}-sysext.crt"
SYSEXT_DROPIN = f"{NAME}-image-policy.conf"  # in systemd-sysext.service.d/
SYSEXT_DROPIN_TEMPLATE = f"systemd-sysext-{NAME}.conf"

# Alloy's config: a placeholder, copied to the config's path only where no config exists yet.
PLACEHOLDER_CONFIG = f"/etc/{NAME}-sysext/config.{NAME}.placeholder"

# The units a release adds.
FIRST_BOOT_UNIT = f"{NAME}-first-boot.service"
PLACEHOLDER_UNIT = f"{NAME}-config-placeholder.service"
PUBRING_UNIT = f"{NAME}-import-pubring.service"

# Host templates (build/templates/host/) named after the extension, beside the units above.
ACTIVATE_TEMPLATE = f"{NAME}-sysupdate-activate"
CONFIG_TEMPLATE = f"config.{NAME}"
SYSUPDATE_DROPIN_TEMPLATE = f"systemd-sysupdate-{NAME}.conf"

# The placeholders every host template may use, beside its own.
LAYOUT = {
    "EXTENSIONS_DIR": EXTENSIONS_DIR,
    "CURRENT_SYMLINK": CURRENT_SYMLINK,
    "TRANSFER_DIR": TRANSFER_DIR,
    "NOOP_DIR": NOOP_DIR,
    "ACTIVATE": ACTIVATE_SCRIPT,
    "ACTIVATE_STATE": ACTIVATE_STATE,
    "RELEASE_KEY": HOST_RELEASE_KEY,
    "NEXT_KEYS": NEXT_KEYS_DIR,
    "SYSUPDATE_KEYRINGS": " ".join(SYSUPDATE_KEYRINGS),
    "VENDOR_KEYRINGS": " ".join(VENDOR_KEYRINGS),
    "PLACEHOLDER": PLACEHOLDER_CONFIG,
    "VERITY_CERT": VERITY_CERT,
    "SYSUSERS": "/" + content.SYSUSERS.path,  # an image built with --run-as=alloy has it
}


def sysext_refresh(require_signed: bool) -> str:
    """The `systemd-sysext refresh` every host asset runs (the drop-in for systemd-sysext.service,
    the activate script's merge and its rollback's): with the signed-only image policy on a host
    that requires signed images, so the policy holds on updates too, not only at boot; as
    systemd ships it otherwise (systemd before 254 knows no --image-policy)."""
    policy = f" --image-policy={SIGNED_IMAGE_POLICY}" if require_signed else ""
    return f"systemd-sysext refresh{policy}"


def sysext_values(require_signed: bool) -> dict[str, str]:
    """The placeholders of the templates that call systemd-sysext."""
    return {"SYSEXT_REFRESH": sysext_refresh(require_signed)}


def template(name: str, values: dict[str, str] | None = None) -> str:
    """The host template `name` (build/templates/host/), rendered with the layout and `values`."""
    text = (HOST_TEMPLATES / name).read_text(encoding="utf-8")
    return render(text, {**LAYOUT, **(values or {})}, f"{name} template")


def template_path(name: str) -> Path:
    return HOST_TEMPLATES / name


def activate_script(gate: dict[str, str], require_signed: bool) -> str:
    """The activate script the systemd-sysupdate drop-in runs; `gate`: its health URL and
    timeout; both its merges with the signed-only policy where `require_signed`."""
    return template(ACTIVATE_TEMPLATE, {**gate, **sysext_values(require_signed)})


def sysext_dropin() -> str:
    """The systemd-sysext.service drop-in of a host that merges signed extensions only."""
    return template(SYSEXT_DROPIN_TEMPLATE, sysext_values(require_signed=True))
