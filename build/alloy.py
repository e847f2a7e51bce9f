"""The one seam for what is Alloy's. The rest of build/ is generic systemd-sysext machinery that
takes these names; it imports nothing from build/.

Packaging another Go agent (one binary per architecture, released on GitHub as a zip holding just
that binary, beside a SHA256SUMS) means a module like this one defining the same names, as
flatcar/sysext-bakery keeps an extension to one `create.sh` made from `_skel.sysext/`:

  NAME                 the extension's name: extension-release.NAME, NAME.service,
                       NAME-VERSION-ARCH.raw, /opt/extensions/NAME, systemd-sysupdate -C NAME
  UPSTREAM_BASE_URL    releases as {base}/vVERSION/ASSET (--base-url)
  UPSTREAM_API_URL     the GitHub repository API that names the newest release (--version=latest)
  RELEASES_PAGE        where a user looks a version up (named when a version is not found)
  DEFAULT_VERSION      the version built when none is given
  asset_member(arch)   the binary in a release zip, for arch amd64 or arm64
  asset_zip(arch)      that zip's file name
  IMAGE_BINARY         where the binary goes in the image, relative to its root
  STATE_DIR            the service's state directory on a host (StateDirectory=)
  DEFAULT_CONFIG_PATH  the config the unit reads (--config-path)
  UNIT_TEMPLATE        the unit (build/templates/image/NAME.service; --unit-template)
  USER                 the user the service runs as by default (--run-as), made by sysusers.d
  RUN_AS               who the service may run as (--run-as): USER or root
  DEFAULT_RUN_AS       who it runs as unless --run-as says otherwise
  ENV_FILE             the settings file the unit reads (EnvironmentFile=), seeded once
  DEFAULT_HEALTH_URL   what an updated service must answer 200 on, within HEALTH_TIMEOUT
  HEALTH_TIMEOUT       seconds, before a host keeps it (--health-url)

Beside it, the templates: build/templates/image/NAME.service, and the host templates named after
NAME in build/templates/host/ (see build/release/host.py).
"""

from __future__ import annotations

from pathlib import Path

NAME = "alloy"  # the extension's name: extension-release.NAME, NAME.service, image file names

# Upstream: GitHub's release layout, {base}/vVERSION/ASSET, and its releases API.
UPSTREAM_BASE_URL = "https://github.com/grafana/alloy/releases/download"
UPSTREAM_API_URL = "https://api.github.com/repos/grafana/alloy"
RELEASES_PAGE = "https://github.com/grafana/alloy/releases"
DEFAULT_VERSION = "1.10.2"

# Paths inside the image, relative to its root, and on the host.
IMAGE_BINARY = f"usr/local/bin/{NAME}"
STATE_DIR = f"/var/lib/{NAME}"  # StateDirectory={NAME}
DEFAULT_CONFIG_PATH = f"/var/mnt/storage/{NAME}/config.{NAME}"
# What an updated alloy must answer 200 on (its default listen address), and how soon, before a
# host keeps it (build/templates/host/alloy-sysupdate-activate).
DEFAULT_HEALTH_URL = "http://127.0.0.1:12345/-/ready"
HEALTH_TIMEOUT = 60  # seconds
UNIT_TEMPLATE = Path(__file__).parent / "templates" / "image" / f"{NAME}.service"
# As Grafana's deb and rpm packages run it: its own user, in groups adm (logs in /var/log) and
# systemd-journal (loki.source.journal); root for collectors that need it (README).
USER = NAME
RUN_AS = (USER, "root")
DEFAULT_RUN_AS = USER
# Upstream's /etc/default/alloy (CONFIG_FILE, CUSTOM_ARGS), seeded once on a host.
ENV_FILE = f"/etc/default/{NAME}"


def asset_member(arch: str) -> str:
    """The one file in a release zip: the binary for `arch` (amd64, arm64)."""
    return f"{NAME}-linux-{arch}"


def asset_zip(arch: str) -> str:
    return f"{asset_member(arch)}.zip"
