"""Every option of every task, declared once: its flags, default, parser, help and tasks.

tasks.py builds each task's flags from this table. A value comes from the command line, else from
the configuration (invoke.yaml, INVOKE_<NAME> in the environment), else from the default; each is
parsed and checked by the same parser. A yes/no option has --X and --no-X, so the command line can
switch it either way over the configuration.

Adding an option: one `Option(...)` entry below, plus the code that uses its value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from invoke.parser import Argument

from build import alloy
from build.core import urls
from build.core.errors import BuildError, shown
from build.core.report import say
from build.formats import transport
from build.formats.table import (
    DDI_FILESYSTEMS,
    DEFAULT_FILESYSTEM,
    DEFAULT_FORMAT,
    FORMATS,
    content_format,
    expectable_compressions,
)
from build.model.arch import ARCH_NAMES, ARCHES
from build.model.keysource import VerityKey, is_token_uri, token_key
from build.model.names import CHECKOUT, OUTPUT_DIR, default_cache_dir, default_output_dir
from build.model.versions import LATEST, MINOR_PATTERN, RELEASE_PATTERN, VERSION_PATTERN

BUILD_TASKS = ("fetch", "stage", "pack", "checksum", "alias", "verify", "all")
MAX_RETRIES = 10  # each wait between tries is capped too (build/fetch/http.py)
MAX_CONFIG_PATH = 1024  # characters: systemd reads unit lines of a few KiB at most
MAX_DOWNLOAD_MIB = 1 << 20  # 1 TiB: more is no release zip
MAX_STALL_TIMEOUT = 86400.0
MAX_DOWNLOAD_TIMEOUT = 7 * 86400.0


@dataclass(frozen=True)
class Given:
    """A raw value being parsed: where it came from, and the options parsed before it."""

    option: Option
    source: str  # "--arch", "arch in invoke.yaml", "INVOKE_ARCH", "the default"
    values: Mapping[str, Any]
    sources: Mapping[str, str]  # where each of `values` came from


Parser = Callable[[Any, Given], Any]


@dataclass(frozen=True)
class Computed:
    """A default worked out from the options parsed before it (table order)."""

    make: Callable[[Mapping[str, Any]], Any]
    text: str  # for --help


_OPTION_DEFAULT = object()


@dataclass(frozen=True)
class Variant:
    """How one task takes an option unlike the others."""

    help: str | None = None
    short: str | None = None
    configurable: bool = True  # False: only the command line sets it for this task
    default: Any = _OPTION_DEFAULT  # left out: the option's own


@dataclass(frozen=True)
class Option:
    name: str  # as in Python and invoke.yaml; the flag is --name-with-dashes
    help: str
    tasks: tuple[str, ...]
    parse: Parser
    default: Any = None  # a raw value (parsed like a given one), a Computed, or None: unset
    short: str | None = None  # pinned: Invoke would hand them out in signature order
    switch: bool = False  # yes/no: --name and --no-name, no value
    required: str | None = None  # the advice when it is missing (or empty): it must be given
    variants: Mapping[str, Variant] = field(default_factory=dict)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "INVOKE_" + self.name.upper()

    def variant(self, task: str) -> Variant:
        return self.variants.get(task, Variant())

    def default_for(self, task: str) -> Any:
        default = self.variant(task).default
        return self.default if default is _OPTION_DEFAULT else default

    def help_for(self, task: str) -> str:
        text = self.variant(task).help or self.help
        default = self.default_for(task)
        if self.switch:
            return f"{text} (default {'on' if default else 'off'})"
        if isinstance(default, Computed):
            return f"{text} (default {default.text})"
        return text if default is None else f"{text} (default {default})"


# Parsers: (raw value, where it came from) -> the value, or BuildError naming the option.


def text(raw: Any, given: Given) -> str:
    return str(raw)


def switch(raw: Any, given: Given) -> bool:
    """A yes/no option, from a flag (bool) or invoke.yaml / INVOKE_* (bool or text)."""
    if isinstance(raw, bool):
        return raw
    word = str(raw).strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off", ""):
        return False
    raise BuildError(f"invalid {given.option.name} value {raw!r}", "use true or false")


def version(raw: Any, given: Given) -> str:
    value = str(raw)
    if value == LATEST:
        return value  # resolved by the pipeline (build/pipeline/steps.py), which asks --api-url
    if value.startswith("v") and VERSION_PATTERN.fullmatch(value[1:]):
        say("version", f"{value} taken as {value[1:]} (versions are written without the v)")
        value = value[1:]
    if not VERSION_PATTERN.fullmatch(value):
        raise BuildError(
            f"invalid version {shown(value)}",
            "use X.Y.Z, X.Y.Z-rc.N or latest, e.g. --version=1.10.2",
        )
    return value


def one_of(choices: Mapping[str, Any] | tuple[str, ...], what: str) -> Parser:
    def parse(raw: Any, given: Given) -> str:
        value = str(raw)
        if value not in choices:
            raise BuildError(
                f"unknown {what} {value!r}",
                f"use {given.option.flag} with one of: {', '.join(choices)}",
            )
        return value

    return parse


def architecture(raw: Any, given: Given) -> str:
    """amd64 or arm64, also as systemd names them (x86-64, arm64) and as uname -m does (x86_64,
    aarch64): our name, which every output name keeps."""
    value = str(raw)
    if value not in ARCH_NAMES:
        others = ", ".join(name for name in ARCH_NAMES if name not in ARCHES)
        raise BuildError(
            f"unknown architecture {value!r}",
            f"use {given.option.flag} with one of: {', '.join(ARCHES)} (or {others})",
        )
    return ARCH_NAMES[value]


def compression(raw: Any, given: Given) -> str:
    """A compression the chosen --format packs with (the format table's choices for it; for a
    DDI, its --ddi-filesystem's); a mismatch names where each came from."""
    value = str(raw)
    image_format = given.values["format"]
    fits = content_format(image_format, given.values.get("ddi_filesystem")).compressions
    if value in fits:
        return value
    if FORMATS[image_format].inner:
        filesystem = given.values.get("ddi_filesystem")
        if value in FORMATS[image_format].compressions:
            raise BuildError(
                f"compression {value!r} (from {given.source}) does not fit --ddi-filesystem "
                f"{filesystem!r} (from {given.sources.get('ddi_filesystem', 'the default')})",
                f"with --format={image_format} --ddi-filesystem={filesystem} use --compression "
                f"with one of: {', '.join(fits)}",
            )
    if any(value in fmt.compressions for fmt in FORMATS.values()):
        raise BuildError(
            f"compression {value!r} (from {given.source}) does not fit format {image_format!r} "
            f"(from {given.sources['format']})",
            f"with --format={image_format} use --compression with one of: {', '.join(fits)}",
        )
    raise BuildError(
        f"unknown compression {value!r}",
        f"use {given.option.flag} with one of: {', '.join(fits)}",
    )


def only_with_a_wrapping_format(parse: Parser) -> Parser:
    """An option of a wrapping format (--format=ddi) only: given on the command line with
    another format, refused (invoke.yaml may set it for the DDI builds, and other builds
    ignore it there)."""

    def checked(raw: Any, given: Given) -> Any:
        image_format = given.values["format"]
        if given.source == given.option.flag and not FORMATS[image_format].inner:
            wrapping = ", ".join(name for name, fmt in FORMATS.items() if fmt.inner)
            raise BuildError(
                f"{given.option.flag} is for --format={wrapping}, not --format={image_format} "
                f"(from {given.sources['format']}); nothing was written",
                f"leave {given.option.flag} out, or build --format={wrapping}",
            )
        return parse(raw, given)

    return checked


def verity_signature(raw: Any, given: Given) -> bool:
    """Whether a DDI's root hash is signed; with --verity-key, --verity-cert must be given, and
    --no-verity-signature must not be with a --verity-key on the command line (one in
    invoke.yaml is left unused by it)."""
    signed = switch(raw, given)
    key, sources = given.values.get("verity_key"), given.sources
    if key is None or not FORMATS[given.values["format"]].inner:
        return signed
    if not signed and sources["verity_key"] == "--verity-key":
        raise BuildError(
            f"--verity-key (from {sources['verity_key']}) and --no-verity-signature "
            f"(from {given.source}) together; nothing was written",
            "give --verity-key and --verity-cert for a signed DDI, or --no-verity-signature "
            "alone for an unsigned one",
        )
    if not signed:  # the command line's --no-verity-signature over a configured key
        return signed
    if given.values.get("verity_cert") is None:
        raise BuildError(
            f"--verity-key (from {sources['verity_key']}) without --verity-cert; nothing was "
            "written",
            "give the key's certificate too: --verity-cert=CRT (PEM), which hosts check the "
            "signature against",
        )
    return signed


def expected_compression(raw: Any, given: Given) -> str:
    """A compression an image of --expect-format (of any format, where it is not given) may
    name: as unsquashfs -s or the EROFS superblock names it, or a --compression choice."""
    value = str(raw)
    pinned = given.values.get("expect_format")
    formats = [FORMATS[pinned]] if pinned else list(FORMATS.values())
    fits = list(dict.fromkeys(c for fmt in formats for c in expectable_compressions(fmt)))
    if value not in fits:
        of = f" for --expect-format={pinned}" if pinned else ""
        raise BuildError(
            f"unknown compression {value!r}{of}",
            f"use {given.option.flag} with one of: {', '.join(fits)}",
        )
    return value


def url(what: str) -> Parser:
    def parse(raw: Any, given: Given) -> str:
        value = str(raw).rstrip("/")
        if not re.match(r"https?://[^/]", value):
            raise BuildError(
                f"invalid {what} {value!r}", f"use {given.option.flag}=https://HOST/PATH"
            )
        # urllib3's reading is compared at each request: importing it here would slow every task.
        urls.check(value, given.source, client=False)
        if "?" in value:  # the tool adds paths after it: /vX.Y.Z/ASSET, /releases?per_page=
            raise urls.refuse(
                value,
                given.source,
                "it holds a query (?), and this tool adds paths after it",
                f"use {given.option.flag}=https://HOST/PATH",
            )
        return value

    return parse


# Plain URLs only: no %, which systemd reads as a specifier, no spaces, quotes, ? or #.
_SERVED_URL = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]+)?(/[A-Za-z0-9._~/+=,@-]*)?")


def served_url(raw: Any, given: Given) -> str:
    """--publish-url, --update-url: the directory URL hosts fetch the release from, ending in /
    (empty: not given). Plain http:// to another host than this machine only with --allow-http:
    hosts would fetch root-run images over it."""
    value = str(raw)
    if not value:
        return value  # --update-url: the publish URL's; --publish-url: said to be required
    if not _SERVED_URL.fullmatch(value):
        raise BuildError(
            f"invalid publish URL {value!r}",
            "give the http(s) URL of the directory the files will be served from, without "
            "%, spaces, quotes, ? or #, e.g. --publish-url=https://example.com/alloy/",
        )
    flag = given.option.flag
    target = urls.check(value, flag, client=False)  # never fetched here: hosts fetch it
    if target.scheme == "http" and not given.values["allow_http"] and not target.is_loopback:
        raise BuildError(
            f"refusing plain http:// {flag} {value}: hosts would fetch images they run as root "
            "unencrypted",
            "use an https:// URL, or allow plain http with --allow-http (INVOKE_ALLOW_HTTP=true)",
        )
    return value.rstrip("/") + "/"


def stream(raw: Any, given: Given) -> str:
    """--stream: a minor line X.Y (1.19), never a full version or a pattern."""
    value = str(raw)
    if not MINOR_PATTERN.fullmatch(value):
        raise BuildError(
            f"invalid stream {shown(value)}",
            f"give a minor line X.Y, e.g. {given.option.flag}=1.19 (it offers 1.19.0, 1.19.1...)",
        )
    return value


def release_version(raw: Any, given: Given) -> str:
    """--min-version: a release X.Y.Z (a release candidate is never published)."""
    value = str(raw)
    if not RELEASE_PATTERN.fullmatch(value):
        raise BuildError(
            f"invalid {given.option.name} {shown(value)}",
            f"give a release version X.Y.Z, e.g. {given.option.flag}=1.19.2",
        )
    return value


def health_url(raw: Any, given: Given) -> str:
    """The URL an updated alloy must answer 200 on (run on the host itself: any http(s) URL)."""
    value = str(raw)
    if not _SERVED_URL.fullmatch(value):
        raise BuildError(
            f"invalid health URL {value!r}",
            "give the http(s) URL alloy answers 200 on once healthy, without %, spaces, quotes, "
            f"? or #, e.g. --health-url={alloy.DEFAULT_HEALTH_URL}",
        )
    return value


def directory(raw: Any, given: Given) -> Path:
    """Never empty, which would mean the current directory (a checkout, a home) to every step
    that writes or removes files; and a directory where something exists."""
    value = str(raw)
    flag = given.option.flag
    if not value.strip():
        raise BuildError(
            f"empty {flag} (from the flag, invoke.yaml or {given.option.env})",
            f"give a directory, e.g. {flag}=DIR, or leave the option out for the default",
        )
    path = Path(value)
    if os.path.lexists(path) and not path.is_dir():
        raise BuildError(
            f"{flag} {path} is not a directory (from {given.source})",
            f"give a directory, e.g. {flag}=DIR",
        )
    return path


_UNIT_PATH_SAFE = re.compile(r"/[A-Za-z0-9._/+@:-]*")


def output_directory(raw: Any, given: Given) -> Path:
    """A directory (as `directory`). Invoke finds tasks.py from a subdirectory of the checkout
    too: there the default is the checkout's output/, and a relative path from the checkout's
    invoke.yaml is the checkout's wherever the run is (as the file means it); both are said.
    Any other relative path (a flag's, INVOKE_OUTPUT_DIR's) stays where the user stands, said
    when that is a subdirectory of the checkout: the images are not in the checkout's."""
    here = Path.cwd()
    value = str(raw)
    relative = bool(value.strip()) and not Path(value).is_absolute()
    from_project = given.source == _project_source(given.option.name)
    if relative and from_project and here != CHECKOUT:
        raw = CHECKOUT / value
    path = directory(raw, given)
    if given.source == "the default":
        if str(path) != OUTPUT_DIR:  # default_output_dir: the checkout's, from below it
            say(
                "output",
                f"{path}: the checkout's, from this subdirectory too (--output-dir moves it)",
            )
    elif not relative or here == CHECKOUT:
        pass
    elif from_project:
        say("output", f"{path}: the checkout's, as its invoke.yaml says, from {here} too")
    elif here.is_relative_to(CHECKOUT):
        say(
            "output",
            f"{here / path}: in this subdirectory, as {given.source} says (not the checkout's)",
        )
    return path


def config_path(raw: Any, given: Given) -> str:
    value = str(raw)
    if len(value) > MAX_CONFIG_PATH:
        raise BuildError(
            f"config path of {len(value)} characters is too long",
            f"use at most {MAX_CONFIG_PATH}: it goes into the unit's ExecStart= line",
        )
    # Absolute and already normal: /../../etc/shadow names another file than it seems to.
    normal = os.path.normpath(value) == value and not value.startswith("//")
    if not _UNIT_PATH_SAFE.fullmatch(value) or not normal:
        raise BuildError(
            f"invalid config path {value!r}",
            "use a normal absolute path (no . or .. parts, no //) without spaces, quotes or $, "
            "e.g. --config-path=/etc/alloy/config.alloy",
        )
    return value


def file_path(raw: Any, given: Given) -> Path:
    value = str(raw)
    if not value.strip():
        raise BuildError(
            f"empty {given.option.flag} (from the flag, invoke.yaml or {given.option.env})",
            f"give a file, e.g. {given.option.flag}=FILE, or leave the option out",
        )
    return Path(value)


def key_source(raw: Any, given: Given) -> VerityKey:
    """A private key: a PEM file, or a key on a PKCS#11 token (an RFC 7512 pkcs11: URI)."""
    value = str(raw)
    if is_token_uri(value.strip()):
        return token_key(value.strip(), given.option.flag)
    return file_path(raw, given)


def retries(raw: Any, given: Given) -> int:
    try:
        count = int(raw)
    except (TypeError, ValueError):
        count = -1
    if not 0 <= count <= MAX_RETRIES:
        raise BuildError(f"invalid retries {raw!r}", f"use a whole number from 0 to {MAX_RETRIES}")
    return count


def bounded(pattern: str, low: float, high: float, what: str, unit: str, shift: int = 0) -> Parser:
    """A number written as `pattern` within [low, high]; in bytes for MiB (shift=20)."""
    compiled = re.compile(pattern)

    def parse(raw: Any, given: Given) -> Any:
        value = str(raw).strip()
        number = float(value) if compiled.fullmatch(value) else None
        if number is None or not low <= number <= high:
            example = f"{given.option.flag}={given.option.default}"
            raise BuildError(
                f"invalid {what} {shown(str(raw))}",
                f"use {unit} from {low:g} to {high:g}, e.g. {example}",
            )
        return int(number) << shift if shift else number

    return parse


_MIB = "[0-9]{1,9}"
# Whole seconds or with up to 3 decimals: no exponent, no inf or nan, no other script's digits.
_SECONDS = r"[0-9]{1,9}(\.[0-9]{1,3})?"

_BUILD = BUILD_TASKS
MAX_BINARY_MIB = 4096  # --max-binary-size's default


def _mib_option(name: str, help: str, default: int) -> Option:
    what = name.replace("_", " ")
    parse = bounded(_MIB, 1, MAX_DOWNLOAD_MIB, what, "a whole number of MiB", shift=20)
    return Option(name, help, _BUILD, parse, default=str(default))


def _seconds_option(name: str, help: str, default: int, most: float) -> Option:
    parse = bounded(_SECONDS, 0.001, most, name.replace("_", " "), "a number of seconds")
    return Option(name, help, _BUILD, parse, default=str(default))


def _clean_scope(what: str) -> Variant:
    """clean's --version and --arch narrow what it removes, from the command line only: a
    configured version says what to build, not that clean may keep the others."""
    return Variant(f"only this {what} (default: every {what})", configurable=False, default=None)


def _verify_scope(what: str) -> Variant:
    """verify checks every image built; its --version and --arch, given on the command line,
    narrow that (build/pipeline/verifybuilt.py)."""
    return Variant(f"only the image of this {what} (default: every image built)", default=None)


OPTIONS: tuple[Option, ...] = (
    Option(
        "version",
        "Alloy release to build, X.Y.Z or X.Y.Z-rc.N, or latest: the highest stable release, "
        "asked of --api-url",
        (*_BUILD, "clean"),
        version,
        default=alloy.DEFAULT_VERSION,
        short="v",
        variants={"clean": _clean_scope("version"), "verify": _verify_scope("version")},
    ),
    Option(
        "arch",
        "amd64 or arm64 (also x86-64, x86_64, aarch64: the images keep amd64/arm64 in their names)",
        (*_BUILD, "clean"),
        architecture,
        default="amd64",
        short="a",
        variants={"clean": _clean_scope("architecture"), "verify": _verify_scope("architecture")},
    ),
    Option(
        "base_url",
        "where releases live, GitHub's layout: {base-url}/vX.Y.Z/ASSET",
        _BUILD,
        url("base URL"),
        default=alloy.UPSTREAM_BASE_URL,
        short="b",
    ),
    Option(
        "api_url",
        "GitHub's releases API of Alloy, asked only for --version=latest (with GITHUB_TOKEN "
        "when set)",
        (*_BUILD, "clean"),
        url("API URL"),
        default=alloy.UPSTREAM_API_URL,
    ),
    Option(
        "output_dir",
        "where images go",
        (*_BUILD, "clean", "sums", "release"),
        output_directory,
        default=Computed(
            lambda values: str(default_output_dir()),
            f"{OUTPUT_DIR}/ of the checkout, from any directory in it; elsewhere {OUTPUT_DIR}/ "
            "here",
        ),
        short="o",
    ),
    Option(
        "cache_dir",
        "download cache",
        (*_BUILD, "clean"),
        directory,
        default=Computed(
            lambda values: str(default_cache_dir()),
            "$XDG_CACHE_HOME/alloy-sysext, ~/.cache/alloy-sysext",
        ),
        short="c",
    ),
    Option(
        "format",
        "the image's file system: "
        + " or ".join(f"{fmt.name} ({fmt.help})" for fmt in FORMATS.values()),
        _BUILD,
        one_of(tuple(FORMATS), "format"),
        default=DEFAULT_FORMAT.name,
    ),
    # A DDI (--format=ddi) wraps an image of another format: compression is that format's.
    Option(
        "ddi_filesystem",
        "with --format=ddi: the data partition's file system: "
        + " or ".join(f"{fmt.name} ({fmt.help})" for fmt in DDI_FILESYSTEMS.values()),
        _BUILD,
        only_with_a_wrapping_format(one_of(tuple(DDI_FILESYSTEMS), "DDI file system")),
        default=DEFAULT_FILESYSTEM,
    ),
    Option(
        "compression",
        ". ".join(f"{fmt.name}: {fmt.compression_help}" for fmt in FORMATS.values()),
        _BUILD,
        compression,
        default=Computed(
            lambda values: (
                content_format(values["format"], values.get("ddi_filesystem")).default_compression
            ),
            ", ".join(
                f"{fmt.default_compression} for {fmt.name}"
                for fmt in FORMATS.values()
                if not fmt.inner
            )
            + "; for a DDI its --ddi-filesystem's",
        ),
        short="m",
    ),
    # A signed dm-verity DDI (--format=ddi): its data partition's file system and its signer.
    Option(
        "verity_key",
        "with --format=ddi: sign the image's dm-verity root hash with this PEM private key, or "
        "the key a pkcs11: URI names on a token (its passphrase or PIN, if any, from "
        "$ALLOY_VERITY_KEY_PASSPHRASE or the URI's pin-source, never the command line)",
        _BUILD,
        only_with_a_wrapping_format(key_source),
    ),
    Option(
        "verity_cert",
        "the PEM X.509 certificate of --verity-key: a DDI's signature names it, verify checks "
        "a DDI's signature against it, release ships it to hosts (/etc/verity.d)",
        (*_BUILD, "release"),
        file_path,
    ),
    Option(
        "verity_signature",
        "with --format=ddi: sign the root hash (--no-verity-signature builds an unsigned "
        "verity DDI, which hosts that require signed images refuse)",
        _BUILD,
        verity_signature,
        default=True,
        switch=True,
    ),
    Option(
        "config_path",
        "Alloy config the unit runs",
        _BUILD,
        config_path,
        default=alloy.DEFAULT_CONFIG_PATH,
        short="n",
    ),
    Option(
        "unit_template",
        "your own alloy.service template, with @BINARY@, @CONFIG_PATH@, @STATE_DIR@, "
        "@VERSION@, @RUN_AS_UNIT@, @RUN_AS_SERVICE@ placeholders",
        _BUILD,
        file_path,
        default=Computed(
            lambda values: None,
            str(alloy.UNIT_TEMPLATE.relative_to(Path(alloy.__file__).parent.parent)),
        ),
        short="u",
    ),
    Option(
        "compat_arch",
        "the architecture that owns the compat name alloy-VERSION.raw",
        (*_BUILD, "clean"),
        one_of(ARCHES, "compat architecture"),
        default="amd64",
        short="p",
        variants={"clean": Variant(short="m")},  # -m: clean had it before the table
    ),
    Option(
        "run_as",
        "the user alloy.service runs as: alloy (its own, in groups adm and systemd-journal, "
        "made by the image's sysusers.d entry) or root (for cAdvisor, eBPF, root-only logs)",
        _BUILD,
        one_of(alloy.RUN_AS, "user to run as"),
        default=alloy.DEFAULT_RUN_AS,
    ),
    Option("retries", "retries of a failed download", _BUILD, retries, default="3", short="r"),
    Option(
        "autostart",
        "start alloy whenever the image is merged (Upholds= on multi-user.target), once its "
        "config exists",
        _BUILD,
        switch,
        default=False,
        short="t",
        switch=True,
    ),
    Option(
        "allow_http",
        "allow plain http:// for --base-url, --api-url and their redirects to another host "
        "than this machine (off: refused; TLS is always verified)",
        (*_BUILD, "release"),
        switch,
        default=False,
        switch=True,
        variants={
            "release": Variant(
                "allow a plain http:// --publish-url or --update-url to another host than this "
                "machine (off: refused; hosts would fetch root-run images unencrypted)",
            )
        },
    ),
    _mib_option(
        "max_binary_size",
        "refuse a zip member that unpacks to more MiB than this (a zip bomb)",
        MAX_BINARY_MIB,
    ),
    _mib_option(
        "max_download_size",
        "refuse a release zip larger than this many MiB, by its Content-Length or while streaming",
        2048,
    ),
    _seconds_option(
        "stall_timeout",
        "seconds in which a download must receive at least 1 KiB, or the attempt is abandoned "
        "as stalled and retried",
        60,
        MAX_STALL_TIMEOUT,
    ),
    _seconds_option(
        "download_timeout",
        "seconds one download attempt may take in all, then it is abandoned and retried",
        3600,
        MAX_DOWNLOAD_TIMEOUT,
    ),
    Option(
        "trust_keys",
        "put this OpenPGP public keyring (binary or armored) in the image as the keys hosts "
        "trust next, for a key rotation: hosts add them to sysupdate's keyring once the image "
        "is merged",
        _BUILD,
        file_path,
        default=Computed(lambda values: None, "none"),
    ),
    Option(
        "force",
        "rebuild even if up to date",
        _BUILD,
        switch,
        default=False,
        short="f",
        switch=True,
    ),
    Option(
        "image",
        "check this image file instead (from anywhere, packed with any compression and block "
        "size a host mounts, which the superblock line names)",
        ("verify",),
        file_path,
        short="i",
        variants={"verify": Variant(configurable=False)},
    ),
    # verify --image takes any image a host mounts; these pin it (never from invoke.yaml: a
    # build's own image is held to the options it was built with).
    Option(
        "expect_format",
        "with --image: fail unless the image is of this format ("
        + ", ".join(FORMATS)
        + "; default: either)",
        ("verify",),
        one_of(tuple(FORMATS), "format"),
        variants={"verify": Variant(configurable=False)},
    ),
    Option(
        "expect_compression",
        "with --image: fail unless the image is compressed so ("
        + "; ".join(
            f"{fmt.name}: {', '.join(expectable_compressions(fmt))}" for fmt in FORMATS.values()
        )
        + "; default: any a host mounts)",
        ("verify",),
        expected_compression,
        variants={"verify": Variant(configurable=False)},
    ),
    Option(
        "verify",
        "run the verify step (--no-verify skips it)",
        ("all",),
        switch,
        default=True,
        short="e",
        switch=True,
    ),
    Option(
        "cache",
        "also empty the download cache (with --version: only that version's)",
        ("clean",),
        switch,
        default=False,
        short="h",
        switch=True,
    ),
    Option(
        "publish_url",
        "required: the http(s) URL of the directory the files will be served from, e.g. "
        "https://example.com/alloy/",
        ("release",),
        served_url,
        short="p",
        required="give the URL the files will be published at, "
        "e.g. invoke release --publish-url=https://example.com/alloy/",
    ),
    Option(
        "update_url",
        "where hosts' systemd-sysupdate looks for newer images (default: the publish URL), "
        "e.g. https://github.com/OWNER/REPO/releases/latest/download/",
        ("release",),
        served_url,
        short="u",
    ),
    Option(
        "stream",
        "publish the feed of one minor line X.Y (e.g. 1.19) in streams/X.Y/ of the output "
        "directory: its images (linked, full versions in their names), SHA256SUMS (signed with "
        "--sign-key), transfers and Butane config, whose hosts take 1.19.Z updates and never "
        "1.20; hosts fetch it from --publish-url (and --update-url) + streams/X.Y/, so publish "
        "the whole output directory there (default: the latest feed, every version, at the "
        "URLs themselves)",
        ("sums", "release"),
        stream,
        variants={
            "sums": Variant(
                help="rewrite the SHA256SUMS of the feed invoke release --stream=X.Y wrote in "
                "streams/X.Y/ (signed again with --sign-key), over that line's images in the "
                "output directory, linked in as release links them (default: the output "
                "directory's own SHA256SUMS)"
            )
        },
    ),
    Option(
        "min_version",
        "a floor: the transfers say MinVersion=X.Y.Z, so hosts install no version below it; "
        "a host already below it keeps running its version (never removed or downgraded) and "
        "installs the newest version at or above it on its next update; the health gate's "
        "rollback may still go back below it, to the version that ran before an update, which "
        "is kept installed (default: none)",
        ("release",),
        release_version,
    ),
    Option(
        "sign_key",
        "sign SHA256SUMS with this gpg key (id or fingerprint): writes SHA256SUMS.gpg and the "
        "public key, and hosts verify it (Verify=yes); a passphrase comes from "
        "$ALLOY_SIGN_PASSPHRASE (default: unsigned)",
        ("sums", "release"),
        text,
    ),
    Option(
        "gnupg_home",
        "the gpg home directory that holds --sign-key (default: gpg's, $GNUPGHOME or ~/.gnupg)",
        ("sums", "release"),
        directory,
    ),
    Option(
        "transport",
        "also publish each image compressed for the wire, alloy-V-ARCH.raw.xz (or .zst): "
        "SHA256SUMS lists it, the transfers fetch it and hosts install the plain image; only "
        "for images with an uncompressed filesystem (--format=erofs --compression=none, or "
        "DDIs of it; squashfs --compression=none for hosts without EROFS); "
        + ", ".join(f"{t.name} needs systemd {t.systemd}+" for t in transport.TRANSPORTS.values())
        + " on hosts",
        ("release",),
        one_of(transport.CHOICES, "transport"),
        default=transport.NONE,
    ),
    Option(
        "transport_only",
        "with --transport: SHA256SUMS lists only the compressed images, so hosts whose "
        "transfers fetch plain .raw images find no update (the Butane config still installs "
        "the plain image once)",
        ("release",),
        switch,
        default=False,
        switch=True,
    ),
    Option(
        "require_signed_images",
        "hosts merge only extensions whose dm-verity root hash is signed by a certificate in "
        "/etc/verity.d (every extension on the host, not only alloy): needs --verity-cert",
        ("release",),
        switch,
        default=False,
        switch=True,
    ),
    Option(
        "health_url",
        f"the URL an updated alloy must answer 200 on within {alloy.HEALTH_TIMEOUT} s, or the "
        "host rolls it back (Alloy's default listen address)",
        ("release",),
        health_url,
        default=alloy.DEFAULT_HEALTH_URL,
        short="h",
    ),
)

BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}


def options_of(task: str) -> list[Option]:
    return [option for option in OPTIONS if task in option.tasks]


def flag_owners() -> dict[str, str]:
    """Every flag (--name, and --no-name for yes/no options) -> the tasks that take it, as said:
    a flag given to a task that lacks it is answered with them, never with a near flag of this
    task, which may have another role (--sign-key is not --trust-keys)."""
    owners: dict[str, str] = {}
    for option in OPTIONS:
        steps = [task for task in option.tasks if task in BUILD_TASKS]
        said = (
            ["invoke all (and its steps)"]
            if len(steps) == len(BUILD_TASKS)
            else [f"invoke {task}" for task in steps]
        )
        said += [f"invoke {task}" for task in option.tasks if task not in BUILD_TASKS]
        owners[option.flag] = " or ".join(said)
        if option.switch:
            owners["--no-" + option.flag[2:]] = owners[option.flag]
    return owners


def arguments(task: str) -> list[Argument]:
    """The task's flags, for Invoke: every option's --name (and -x), and --no-name for yes/no
    options. Every default is None here: "not given", so the configuration can fill it in."""
    made = []
    for option in options_of(task):
        dashed = option.name.replace("_", "-")
        short = option.variant(task).short or option.short
        made.append(
            Argument(
                names=(dashed, short) if short else (dashed,),
                kind=bool if option.switch else str,
                help=option.help_for(task),
                attr_name=option.name if option.name != dashed else None,
            )
        )
        if option.switch:
            made.append(
                Argument(
                    names=(f"no-{dashed}",),
                    kind=bool,
                    help=f"turn --{dashed} off, whatever invoke.yaml or {option.env} says",
                    attr_name=f"no_{option.name}",
                )
            )
    return made


def config_keys() -> dict[str, None]:
    """Every option as a configuration key, unset: Invoke then reads INVOKE_<NAME> as text, and
    the option's own parser says what is wrong with it."""
    return {option.name: None for option in OPTIONS}


def on_command_line(flags: Mapping[str, Any]) -> frozenset[str]:
    """The options given on the command line (`flags`, as Invoke passes them), by name: a
    switch's --name or --no-name counts, a configured or default value does not."""
    given = set()
    for name, value in flags.items():
        switched_off = name.startswith("no_") and name[3:] in BY_NAME
        option = BY_NAME.get(name[3:] if switched_off else name)
        if option is not None and value is not None and (value or not option.switch):
            given.add(option.name)
    return frozenset(given)


def _config_source(config: Any, name: str) -> str:
    """Which configuration layer set `name`, for error lines (Invoke keeps one dict per layer)."""
    if name in (getattr(config, "_env", None) or {}):
        return f"INVOKE_{name.upper()}"
    if name in (getattr(config, "_runtime", None) or {}):
        return f"{name} in the -f file"
    if name in (getattr(config, "_project", None) or {}):
        return _project_source(name)
    if name in (getattr(config, "_user", None) or {}):
        return f"{name} in ~/.invoke.yaml"
    return f"{name} in invoke.yaml or INVOKE_{name.upper()}"


def _project_source(name: str) -> str:
    """The source of an option set in the checkout's invoke.yaml (Invoke's project file)."""
    return f"{name} in invoke.yaml"


def resolve(task: str, flags: Mapping[str, Any], config: Any = None) -> dict[str, Any]:
    """The task's options, parsed: from `flags` (the command line; None: not given), else
    `config` (invoke.yaml, INVOKE_*), else the defaults, in table order."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for option in options_of(task):
        raw, sources[option.name] = _pick(task, option, flags, config, values)
        if raw is None:
            values[option.name] = None
            continue
        values[option.name] = option.parse(
            raw, Given(option, sources[option.name], values, sources)
        )
    for option in options_of(task):  # once every value is parsed: a bad one is said first
        if option.required is not None and not values[option.name]:
            raise BuildError(f"{option.flag} is required", option.required)
    return values


def _pick(
    task: str, option: Option, flags: Mapping[str, Any], config: Any, values: Mapping[str, Any]
) -> tuple[Any, str]:
    given = flags.get(option.name)
    if option.switch:
        off = flags.get(f"no_{option.name}")
        if given and off:
            raise BuildError(
                f"{option.flag} and --no-{option.flag[2:]} together", "give one of them"
            )
        given = False if off else (True if given else None)
    if given is not None:
        return given, option.flag
    if option.variant(task).configurable and config is not None:
        configured = config.get(option.name)
        if configured is not None:
            return configured, _config_source(config, option.name)
    default = option.default_for(task)
    if isinstance(default, Computed):
        default = default.make(values)
    return default, "the default"
