"""BuildSpec: the options of a build, parsed, and every file name derived from them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from build import alloy
from build.core.errors import BuildError
from build.core.fileio import TEMP_SUFFIX
from build.model.arch import ARCHES, Arch
from build.model.keysource import VerityKey
from build.model.names import (
    BUILDINFO_SUFFIX,
    CHECKSUM_SUFFIX,
    ROOTFS,
    STAGING,
    SUMS_FILE,
    source_key,
    stamp_file,
)
from build.model.versions import LATEST, VERSION_PATTERN

NAME = alloy.NAME


@dataclass(frozen=True)
class BuildSpec:
    """A build's options, parsed by the option table (build/config/options.py), and every file name
    derived from them."""

    version: str
    arch: Arch
    base_url: str
    output_dir: Path
    cache_dir: Path
    format: str  # a format table entry's name (build/formats/table.py)
    compression: str
    config_path: str
    unit_template: Path | None
    compat_arch: str
    retries: int
    autostart: bool
    allow_http: bool
    api_url: str
    max_binary_size: int  # bytes
    max_download_size: int  # bytes
    stall_timeout: float  # seconds
    download_timeout: float  # seconds, per attempt
    trust_keys: Path | None
    # A DDI's (--format=ddi): the file system it wraps, and its signer (key, PEM or on a
    # PKCS#11 token, and certificate, PEM), or none with verity_signature off.
    ddi_filesystem: str | None = None
    verity_key: VerityKey | None = None
    verity_cert: Path | None = None
    verity_signature: bool = True
    run_as: str = alloy.DEFAULT_RUN_AS  # alloy.RUN_AS: the user alloy.service runs as

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> BuildSpec:
        """From the option table's parsed values (build/config/options.py resolve())."""
        taken = {f.name: values[f.name] for f in fields(cls) if f.name in values}
        if taken["version"] == LATEST:  # the pipeline resolves it first
            raise BuildError(
                "invalid version 'latest' here",
                "use X.Y.Z, X.Y.Z-rc.N or latest, e.g. --version=1.10.2",
            )
        return cls(**{**taken, "arch": ARCHES[taken["arch"]]})

    # The release as published: {base_url}/v{version}/...
    @property
    def member(self) -> str:
        return alloy.asset_member(self.arch.name)

    @property
    def zip_name(self) -> str:
        return alloy.asset_zip(self.arch.name)

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
