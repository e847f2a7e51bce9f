"""The host layout (build/release/host.py) is written once: the host templates take every path
from it instead of repeating one, and it is the sysext-bakery's layout hosts already have."""

from __future__ import annotations

import re

import pytest

from build.core.errors import BuildError
from build.image.content import IMAGE_TRUST_KEYS
from build.release import host

TEMPLATES = sorted(path.name for path in host.HOST_TEMPLATES.iterdir())
# The placeholders a template takes beside the layout, as its writer passes them.
OWN = {"ARCH", "PUBLISH_URL", "VERIFY", "HEALTH_URL", "HEALTH_TIMEOUT", "TIMEOUT_START"}
OWN |= {"CONFIG_PATH", "SYSEXT_REFRESH", "MIN_VERSION"}
LAYOUT_PATHS = [
    host.EXTENSIONS_DIR,
    host.CURRENT_SYMLINK,
    host.TRANSFER_DIR,
    f"{host.NOOP_DIR}/",
    host.ACTIVATE_SCRIPT,
    host.ACTIVATE_STATE,
    host.HOST_RELEASE_KEY,
    host.NEXT_KEYS_DIR,
    host.PLACEHOLDER_CONFIG,
    host.VERITY_CERT,
    " ".join(host.SYSUPDATE_KEYRINGS),
    " ".join(host.VENDOR_KEYRINGS),
]


def test_the_layout_is_the_sysext_bakerys() -> None:
    # What Flatcar hosts provisioned by an earlier release already have: never moved by accident.
    assert host.EXTENSIONS_DIR == "/opt/extensions/alloy"
    assert host.CURRENT_SYMLINK == "/etc/extensions/alloy.raw"
    assert host.TRANSFER_DIR == "/etc/sysupdate.alloy.d"
    assert host.NOOP_TRANSFERS == ("/etc/sysupdate.d/noop.transfer", "/etc/sysupdate.d/noop.conf")
    assert host.ACTIVATE_SCRIPT == "/opt/alloy-sysext/activate"
    assert host.HOST_RELEASE_KEY == "/etc/alloy-sysext/release-key.gpg"
    assert host.PLACEHOLDER_CONFIG == "/etc/alloy-sysext/config.alloy.placeholder"
    # The keys an image carries are where the keyring unit looks for them.
    assert "/" + IMAGE_TRUST_KEYS == host.NEXT_KEYS_DIR + "next.gpg"


@pytest.mark.parametrize("name", TEMPLATES)
def test_no_host_template_repeats_a_layout_path(name: str) -> None:
    text = (host.HOST_TEMPLATES / name).read_text(encoding="utf-8")
    repeated = [path for path in LAYOUT_PATHS if path in text]
    assert not repeated, f"{name} names {repeated}: use the layout's @PLACEHOLDER@"


@pytest.mark.parametrize("name", TEMPLATES)
def test_every_host_template_renders_with_the_layout(name: str) -> None:
    text = (host.HOST_TEMPLATES / name).read_text(encoding="utf-8")
    used = set(re.findall(r"@([A-Z_]+)@", text))
    assert used <= set(host.LAYOUT) | OWN, name
    rendered = host.template(name, {own: "x" for own in OWN})
    assert not re.search(r"@[A-Z_]+@", rendered), name


def test_an_unknown_placeholder_is_refused_naming_the_template() -> None:
    with pytest.raises(BuildError) as refused:
        host.template("alloy.transfer")  # without its own values
    assert refused.value.message.startswith("alloy.transfer template uses unknown placeholder @")
