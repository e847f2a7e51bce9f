"""BuildSpec: every option of a build, validated, and every file name derived from them."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .arch import ARCHES, Arch, parse_arch
from .errors import BuildError
from .names import (
    BUILDINFO_SUFFIX,
    CHECKSUM_SUFFIX,
    ROOTFS,
    STAGING,
    SUMS_FILE,
    TEMP_SUFFIX,
    source_key,
    stamp_file,
)
from .pack import COMPRESSORS

NAME = "alloy"

# Paths inside the image, relative to its root.
IMAGE_BINARY = f"usr/local/bin/{NAME}"
IMAGE_UNIT = f"usr/lib/systemd/system/{NAME}.service"
IMAGE_EXTENSION_RELEASE = f"usr/lib/extension-release.d/extension-release.{NAME}"
IMAGE_AUTOSTART = f"usr/lib/systemd/system/multi-user.target.d/10-{NAME}.conf"  # --autostart
# --trust-keys: the keys hosts trust next (their alloy-import-pubring.service adds them).
IMAGE_TRUST_KEYS = f"usr/lib/{NAME}-sysext/release-keys.d/next.gpg"
# Alloy's data directory on the host: StateDirectory={NAME} puts it under /var/lib/{NAME}.
STATE_DIR = f"/var/lib/{NAME}"

# Defaults of every option. tasks.py hands these to Invoke's config, so each one can also be set
# in invoke.yaml or as INVOKE_<OPTION> in the environment; a command-line flag wins over both.
DEFAULTS: dict[str, Any] = {
    "version": "1.10.2",
    "arch": "amd64",
    "base_url": "https://github.com/grafana/alloy/releases/download",
    # Asked only for --version=latest (build/latest.py): GET {api_url}/releases.
    "api_url": "https://api.github.com/repos/grafana/alloy",
    "output_dir": "output",
    "cache_dir": None,  # None: $XDG_CACHE_HOME/alloy-sysext
    "compression": "xz",
    "config_path": "/var/mnt/storage/alloy/config.alloy",
    "unit_template": None,  # None: build/templates/alloy.service
    "compat_arch": "amd64",
    "retries": "3",  # a string: Invoke would cast INVOKE_RETRIES=abc to int before we can say why
    "autostart": False,  # ship the Upholds= drop-in that starts alloy once the image is merged
    # Plain http:// to another host than this machine (loopback is always allowed): refused
    # unless this is set. TLS certificates are verified whatever it says.
    "allow_http": False,
    # MiB: a zip member that unpacks to more is refused (Alloy's binary is under 1 GiB). A
    # string, like retries.
    "max_binary_size": "4096",
    # Downloads: MiB a release zip may take; seconds in which an attempt must receive at least
    # 1 KiB (a sliding window), and seconds one attempt may take in all. Strings, like retries.
    "max_download_size": "2048",
    "stall_timeout": "60",
    "download_timeout": "3600",
    # A public keyring the image carries as the keys hosts trust next (a key rotation).
    "trust_keys": None,
}

COMPRESSIONS = tuple(COMPRESSORS)  # xz, xz-bcj, zstd
# ASCII digits only (\d takes any script's), and few of them: a version is no place for 5000.
_PART = "[0-9]{1,9}"
VERSION_PATTERN = re.compile(rf"{_PART}\.{_PART}\.{_PART}(-rc\.{_PART})?")
MAX_RETRIES = 10  # each wait between tries is capped too (build/http.py)
MAX_CONFIG_PATH = 1024  # characters: systemd reads unit lines of a few KiB at most
_UNIT_PATH_SAFE = re.compile(r"/[A-Za-z0-9._/+@:-]*")


def flag_value(value: Any, name: str) -> bool:
    """A yes/no option, from a flag (bool) or invoke.yaml / INVOKE_* (bool or text)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise BuildError(f"invalid {name} value {value!r}", "use true or false")


# Whole seconds or with up to 3 decimals: no exponent, no inf or nan, no other script's digits.
_SECONDS = re.compile(r"[0-9]{1,9}(\.[0-9]{1,3})?")


def _bounded(value: Any, pattern: re.Pattern[str], low: float, high: float) -> float | None:
    """`value` as a number within [low, high] if it is written as `pattern` says, else None."""
    text = str(value).strip()
    if not pattern.fullmatch(text):
        return None
    number = float(text)
    return number if low <= number <= high else None


_MIB = re.compile(r"[0-9]{1,9}")
MAX_DOWNLOAD_MIB = 1 << 20  # 1 TiB: more is no release zip
MAX_STALL_TIMEOUT = 86400.0
MAX_DOWNLOAD_TIMEOUT = 7 * 86400.0


def _shown(value: str, most: int = 40) -> str:
    """`value` quoted for an error line, cut short when a hostile one is long."""
    return repr(value) if len(value) <= most else f"{value[:most]!r}... ({len(value)} characters)"


def directory_option(value: Any, option: str) -> Path:
    """A directory from a flag, invoke.yaml or INVOKE_*: never empty, which would mean the
    current directory (a checkout, a home) to every step that writes or removes files."""
    text = str(value)
    if not text.strip():
        env = "INVOKE_" + option.removeprefix("--").replace("-", "_").upper()
        raise BuildError(
            f"empty {option} (from the flag, invoke.yaml or {env})",
            f"give a directory, e.g. {option}=DIR, or leave the option out for the default",
        )
    return Path(text)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "alloy-sysext"


@dataclass(frozen=True)
class BuildSpec:
    version: str
    arch: Arch
    base_url: str
    output_dir: Path
    cache_dir: Path
    compression: str
    config_path: str
    unit_template: Path | None
    compat_arch: str
    retries: int
    autostart: bool = False
    allow_http: bool = False
    api_url: str = DEFAULTS["api_url"]
    max_binary_size: int = int(DEFAULTS["max_binary_size"]) << 20  # bytes
    max_download_size: int = int(DEFAULTS["max_download_size"]) << 20  # bytes
    stall_timeout: float = float(DEFAULTS["stall_timeout"])  # seconds
    download_timeout: float = float(DEFAULTS["download_timeout"])  # seconds, per attempt
    trust_keys: Path | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> BuildSpec:
        """Validate raw option values (from flags, invoke.yaml or the environment)."""
        opts = {**DEFAULTS, **{k: v for k, v in options.items() if v is not None}}
        version = str(opts["version"])
        if version.startswith("v") and VERSION_PATTERN.fullmatch(version[1:]):
            version = version[1:]
        if not VERSION_PATTERN.fullmatch(version):
            raise BuildError(
                f"invalid version {_shown(version)}",
                "use X.Y.Z, X.Y.Z-rc.N or latest, e.g. --version=1.10.2",
            )
        compression = str(opts["compression"])
        if compression not in COMPRESSIONS:
            raise BuildError(
                f"unknown compression {compression!r}",
                f"use --compression with one of: {', '.join(COMPRESSIONS)}",
            )
        base_url = str(opts["base_url"]).rstrip("/")
        if not re.match(r"https?://[^/]", base_url):
            raise BuildError(f"invalid base URL {base_url!r}", "use --base-url=https://HOST/PATH")
        api_url = str(opts["api_url"]).rstrip("/")
        if not re.match(r"https?://[^/]", api_url):
            raise BuildError(f"invalid API URL {api_url!r}", "use --api-url=https://HOST/PATH")
        config_path = str(opts["config_path"])
        if len(config_path) > MAX_CONFIG_PATH:
            raise BuildError(
                f"config path of {len(config_path)} characters is too long",
                f"use at most {MAX_CONFIG_PATH}: it goes into the unit's ExecStart= line",
            )
        # Absolute and already normal: /../../etc/shadow names another file than it seems to.
        normal = os.path.normpath(config_path) == config_path and not config_path.startswith("//")
        if not _UNIT_PATH_SAFE.fullmatch(config_path) or not normal:
            raise BuildError(
                f"invalid config path {config_path!r}",
                "use a normal absolute path (no . or .. parts, no //) without spaces, quotes or "
                "$, e.g. "
                "--config-path=/etc/alloy/config.alloy",
            )
        compat_arch = str(opts["compat_arch"])
        if compat_arch not in ARCHES:
            raise BuildError(
                f"unknown compat architecture {compat_arch!r}",
                f"use --compat-arch with one of: {', '.join(ARCHES)}",
            )
        try:
            retries = int(opts["retries"])
        except (TypeError, ValueError):
            retries = -1
        if not 0 <= retries <= MAX_RETRIES:
            raise BuildError(
                f"invalid retries {opts['retries']!r}",
                f"use a whole number from 0 to {MAX_RETRIES}",
            )
        try:
            max_binary_mib = int(opts["max_binary_size"])
        except (TypeError, ValueError):
            max_binary_mib = 0
        if max_binary_mib < 1:
            raise BuildError(
                f"invalid max binary size {opts['max_binary_size']!r}",
                "use a whole number of MiB >= 1, e.g. --max-binary-size=4096",
            )
        max_download_mib = _bounded(opts["max_download_size"], _MIB, 1, MAX_DOWNLOAD_MIB)
        if max_download_mib is None:
            raise BuildError(
                f"invalid max download size {_shown(str(opts['max_download_size']))}",
                f"use a whole number of MiB from 1 to {MAX_DOWNLOAD_MIB}, "
                "e.g. --max-download-size=2048",
            )
        stall_timeout = _bounded(opts["stall_timeout"], _SECONDS, 0.001, MAX_STALL_TIMEOUT)
        if stall_timeout is None:
            raise BuildError(
                f"invalid stall timeout {_shown(str(opts['stall_timeout']))}",
                f"use a number of seconds above 0, at most {MAX_STALL_TIMEOUT:g}, "
                "e.g. --stall-timeout=60",
            )
        download_timeout = _bounded(opts["download_timeout"], _SECONDS, 0.001, MAX_DOWNLOAD_TIMEOUT)
        if download_timeout is None:
            raise BuildError(
                f"invalid download timeout {_shown(str(opts['download_timeout']))}",
                f"use a number of seconds above 0, at most {MAX_DOWNLOAD_TIMEOUT:g}, "
                "e.g. --download-timeout=3600",
            )
        template = opts["unit_template"]
        cache_dir = opts["cache_dir"]
        trust_keys = opts["trust_keys"]
        if trust_keys is not None and not str(trust_keys).strip():
            raise BuildError(
                "empty --trust-keys (from the flag, invoke.yaml or INVOKE_TRUST_KEYS)",
                "give a public keyring file, e.g. --trust-keys=K2.pub, or leave the option out",
            )
        return cls(
            version=version,
            arch=parse_arch(str(opts["arch"])),
            base_url=base_url,
            output_dir=directory_option(opts["output_dir"], "--output-dir"),
            cache_dir=(
                directory_option(cache_dir, "--cache-dir")
                if cache_dir is not None
                else default_cache_dir()
            ),
            compression=compression,
            config_path=config_path,
            unit_template=Path(str(template)) if template else None,
            compat_arch=compat_arch,
            retries=retries,
            autostart=flag_value(opts["autostart"], "autostart"),
            allow_http=flag_value(opts["allow_http"], "allow_http"),
            api_url=api_url,
            max_binary_size=max_binary_mib << 20,
            max_download_size=int(max_download_mib) << 20,
            stall_timeout=stall_timeout,
            download_timeout=download_timeout,
            trust_keys=Path(str(trust_keys)) if trust_keys is not None else None,
        )

    # The release as published: {base_url}/v{version}/...
    @property
    def member(self) -> str:
        return f"{NAME}-linux-{self.arch.name}"

    @property
    def zip_name(self) -> str:
        return f"{self.member}.zip"

    @property
    def zip_url(self) -> str:
        return f"{self.base_url}/v{self.version}/{self.zip_name}"

    @property
    def sums_url(self) -> str:
        return f"{self.base_url}/v{self.version}/{SUMS_FILE}"

    # The download cache, shared by every build of the same version from the same source: a
    # mirror or an artifact store may hold other files under the same version.
    @property
    def cached_release(self) -> Path:
        return self.cache_dir / source_key(self.base_url) / f"v{self.version}"

    @property
    def cached_zip(self) -> Path:
        return self.cached_release / self.zip_name

    @property
    def cached_sums(self) -> Path:
        return self.cached_release / SUMS_FILE

    # Staging and step records, one directory per (version, arch).
    @property
    def work_dir(self) -> Path:
        return self.output_dir / STAGING / f"{NAME}-{self.version}-{self.arch.name}"

    @property
    def rootfs(self) -> Path:
        return self.work_dir / ROOTFS

    def stamp(self, step: str) -> Path:
        return stamp_file(self.work_dir, step)

    # Outputs.
    @property
    def image(self) -> Path:
        return self.output_dir / f"{NAME}-{self.version}-{self.arch.name}.raw"

    @property
    def owns_compat_name(self) -> bool:
        return self.arch.name == self.compat_arch

    @property
    def compat_image(self) -> Path:
        return self.output_dir / f"{NAME}-{self.version}.raw"

    @property
    def compat_stamp(self) -> Path:
        """Kept per version, not per architecture: it records which image holds the name."""
        return stamp_file(self.output_dir / STAGING / f"{NAME}-{self.version}", "alias")


_OUTPUT_NAME = re.compile(
    rf"\.?{NAME}-(?P<version>{VERSION_PATTERN.pattern})(?:-(?P<arch>{'|'.join(ARCHES)}))?"
    rf"\.raw(?:{re.escape(CHECKSUM_SUFFIX)}|{re.escape(BUILDINFO_SUFFIX)})?"
    rf"(?:\.[^.]+{re.escape(TEMP_SUFFIX)})?"
)
_STAGING_NAME = re.compile(
    rf"{NAME}-(?P<version>{VERSION_PATTERN.pattern})(?:-(?P<arch>{'|'.join(ARCHES)}))?"
)


def parse_output_name(name: str) -> tuple[str, str | None] | None:
    """(version, arch or None for the compat name) of a file this tool writes to an output
    directory (images, checksums, their temporary names), or None for anything else."""
    match = _OUTPUT_NAME.fullmatch(name)
    return (match["version"], match["arch"]) if match else None


def parse_staging_name(name: str) -> tuple[str, str | None] | None:
    """(version, arch or None for the compat name's record) of a directory in .staging/."""
    match = _STAGING_NAME.fullmatch(name)
    return (match["version"], match["arch"]) if match else None
