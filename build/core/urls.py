"""URLs the tool fetches from, or hands to hosts: one reading of each, and one check.

A URL comes from an option (--base-url, --api-url, --publish-url, --update-url: the command
line, invoke.yaml or INVOKE_*) or from a server's answer (a redirect's Location, the releases
API's Link: rel=next). Each goes through `check`, which takes only http(s)://HOST[:PORT]/PATH
[?QUERY] in printable ASCII and refuses what two parsers can read differently, because the check
reads a URL with urllib.parse while requests connects by urllib3's reading:
- a backslash: urllib3 ends the host there, urlsplit does not, so http://HOST\\@127.0.0.1/
  looks like this machine and connects to HOST;
- userinfo (USER@, USER:PASS@), percent signs, white space and control characters in the host
  (urlsplit drops tabs and newlines; urllib3 decodes %31 to 1);
- an IPv4 address in any spelling but dotted decimal (127.1, 0x7f.0.0.1, 0177.0.0.1, 2130706433):
  resolvers, proxies and URL parsers read them differently. A host whose last label is a number
  is an address, as the WHATWG URL standard has it;
- a fragment (#...), never sent to a server.
At a request, urllib3's reading (its scheme, host, port and no userinfo) must match this one too.

This machine (where plain http needs no --allow-http) is decided on the host read so:
`localhost` in any case, 127.0.0.0/8, ::1. `localhost.`, with its trailing dot, is a name DNS
answers for, not /etc/hosts, so it is not this machine."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from build.core.errors import BuildError, shown

DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_URL = 8192  # characters: no download URL, GitHub's signed redirects included, is longer
_HINT = "write it as http(s)://HOST[:PORT]/PATH, HOST a DNS name, [IPv6] or IPv4 as in 127.0.0.1"
_PRINTABLE = re.compile(r"[\x21-\x7e]*")  # ASCII, no space, no control character
_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?")
_IPV6 = re.compile(r"\[[0-9a-f:.]+\]")
_AUTHORITY = re.compile(r"(?P<host>\[[^\]]*\]|[^:\[\]]+)(?::(?P<port>[0-9]{1,5}))?")
_NUMBER_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_DOTTED_QUAD = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


@dataclass(frozen=True)
class Target:
    """What a checked URL asks for: every part that chooses the bytes served."""

    scheme: str  # http or https
    host: str  # lower case; an IPv6 address in brackets
    port: int  # as written, else the scheme's
    explicit_port: int | None  # as written
    path: str  # with ?QUERY when there is one

    @property
    def normalized(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.path}"

    @property
    def is_loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str | None) -> bool:
    """Whether `host`, as `check` read it, is this machine: localhost (any case, no trailing
    dot), 127.0.0.0/8 written as four decimal numbers, ::1 (in brackets or not)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    if _DOTTED_QUAD.fullmatch(host):
        return ipaddress.IPv4Address(host).is_loopback
    try:
        return ipaddress.IPv6Address(host.removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:
        return False


class _Refused(Exception):
    """Why a URL is refused (the rest of the line is check's)."""


def refuse(url: str, source: str, reason: str, hint: str = _HINT) -> BuildError:
    """The one line that refuses a URL: which, from where, why."""
    return BuildError(f"refusing the URL {shown(url, 120)} (from {source}): {reason}", hint)


def check(url: str, source: str, *, client: bool = True) -> Target:
    """Read `url` as described above, or refuse it naming `source` (an option as it was given,
    "the redirect from URL", ...). `client`: also compare urllib3's reading, which requests
    connects by (False only where urllib3 is not loaded yet: option parsing, which every
    request checks again)."""
    try:
        target = _read(url)
        if client:
            _same_for_the_client(url, target)
    except _Refused as why:
        raise refuse(url, source, str(why)) from None
    return target


def _read(url: str) -> Target:
    if len(url) > MAX_URL:
        raise _Refused(f"longer than {MAX_URL} characters")
    if not _PRINTABLE.fullmatch(url):
        raise _Refused("it holds white space, a control character or non-ASCII text")
    if "\\" in url:
        raise _Refused("it holds a backslash, which parsers read differently")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise _Refused("it is no URL") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise _Refused("not an http:// or https:// URL")
    if "#" in url:
        raise _Refused("it holds a fragment (#), which no server sees")
    if "@" in parts.netloc:
        raise _Refused("it names a user (USER@HOST), which this tool never sends")
    authority = _AUTHORITY.fullmatch(parts.netloc.lower())
    if authority is None:
        raise _Refused("its host and port are not HOST or HOST:PORT")
    host, port = authority["host"], authority["port"]
    if port is not None and not 0 < int(port) < 65536:
        raise _Refused("its port is not a number from 1 to 65535")
    _check_host(host)
    explicit = int(port) if port is not None else None
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return Target(
        parts.scheme, host, explicit or DEFAULT_PORTS[parts.scheme], explicit, path or "/"
    )


def _check_host(host: str) -> None:
    if _IPV6.fullmatch(host):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise _Refused("its host is not an IPv6 address") from None
        return
    if not _NAME.fullmatch(host):
        raise _Refused("its host is not a DNS name, a dotted IPv4 address or [IPv6]")
    last = host.removesuffix(".").rsplit(".", 1)[-1]
    if _NUMBER_LABEL.fullmatch(last) and not _DOTTED_QUAD.fullmatch(host):
        raise _Refused(
            "its host is an IPv4 address not written as four decimal numbers (like 127.0.0.1), "
            "which resolvers and parsers read differently"
        )


def _same_for_the_client(url: str, target: Target) -> None:
    """urllib3's reading of `url` (requests connects by it) must be `target`'s."""
    from urllib3.exceptions import LocationParseError
    from urllib3.util import parse_url

    try:
        theirs = parse_url(url)
    except LocationParseError:
        raise _Refused("the HTTP client cannot read it") from None
    seen = (theirs.scheme, (theirs.host or "").lower(), theirs.port, theirs.auth)
    if seen != (target.scheme, target.host, target.explicit_port, None):
        raise _Refused(
            "the HTTP client reads its scheme, host or port otherwise "
            f"({theirs.scheme}://{theirs.host}:{theirs.port})"
        )


def cache_key(url: str) -> str:
    """The download cache's folder for what `url` serves: readable (scheme, host, port) and,
    after two underscores, a hash of the normalized URL, e.g. https_github.com_443__3f2a...
    (32 hex digits). Every part that chooses the bytes is in the hash; the host is only for
    people, so it is cut short and anything but [a-z0-9.-] becomes '-'. The older layout's
    folder names (host and path, scheme left out) never held two underscores in a row."""
    target = check(url, "the download cache's key", client=False)
    digest = hashlib.sha256(target.normalized.encode()).hexdigest()[:32]
    host = re.sub(r"[^a-z0-9.-]", "-", target.host.strip("[]"))[:64]
    return f"{target.scheme}_{host}_{target.port}__{digest}"
