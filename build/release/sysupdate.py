"""systemd-sysupdate's view of a release: the transfer file for one architecture, and how its
MatchPattern reads our file names (a port of systemd's pattern_match for the fields we use)."""

from __future__ import annotations

import re

from build.config.spec import NAME
from build.formats.transport import Transport
from build.release import host


def match_pattern(arch: str) -> str:
    """Our versioned image names for `arch`, as sysupdate's MatchPattern: alloy-@v-amd64.raw."""
    return f"{NAME}-@v-{arch}.raw"


def source_pattern(arch: str, transport: Transport | None = None) -> str:
    """The names the transfer fetches: the image's, or its compressed name (--transport)."""
    return match_pattern(arch) + (transport.suffix if transport else "")


def transfer(
    arch: str,
    publish_url: str,
    signed: bool = False,
    min_version: str | None = None,
    transport: Transport | None = None,
) -> str:
    """The transfer file for `arch`: the same text serves as alloy.transfer and alloy.conf.
    `signed`: the release has SHA256SUMS.gpg, so sysupdate verifies it (Verify=yes).
    `min_version`: sysupdate's MinVersion=, a floor no update goes below. `transport`: the
    source fetches the compressed image (systemd-pull decompresses it while downloading); the
    target stays the plain image."""
    verify = host.template("verify-signed" if signed else "verify-unsigned").rstrip("\n")
    if min_version is not None:
        verify += "\n" + host.template("min-version", {"MIN_VERSION": min_version}).rstrip("\n")
    values = {"ARCH": arch, "PUBLISH_URL": publish_url, "VERIFY": verify}
    text = host.template(f"{NAME}.transfer", values)
    plain = f"MatchPattern={match_pattern(arch)}\n"
    assert text.count(plain) == 2, "template and match_pattern disagree"
    if transport is None:
        return text
    source = (
        f"# Sent compressed ({transport.note}).\nMatchPattern={source_pattern(arch, transport)}\n"
    )
    return text.replace(plain, source, 1)  # the [Source] section's comes first


# systemd's version_is_valid(): a file-name part of these characters.
_VERSION_CHARS = re.compile(r"[A-Za-z0-9.,_+-]+")


def pattern_match(pattern: str, name: str) -> str | None:
    """The version `pattern` extracts from `name`, or None when it does not match: systemd's
    pattern_match() (src/sysupdate/sysupdate-pattern.c) for literals and @v, the only field our
    patterns use. Like systemd, a field ends at the *first* occurrence of the literal after it."""
    parts = re.split(r"(@v)", pattern)
    if parts.count("@v") != 1 or "@" in pattern.replace("@v", ""):
        raise ValueError(f"only literal text and one @v are supported: {pattern!r}")
    prefix, _, suffix = parts
    if not name.startswith(prefix):
        return None
    rest = name[len(prefix) :]
    end = rest.find(suffix) if suffix else len(rest)
    if end < 0:
        return None
    version = rest[:end]
    if rest[end + len(suffix) :]:  # the name goes on past the pattern
        return None
    if not _VERSION_CHARS.fullmatch(version) or version in (".", ".."):
        return None
    return version
