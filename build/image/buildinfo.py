"""The build info beside each image (OUTPUT/alloy-VERSION-ARCH.raw.buildinfo.json): what packed
it, with which options, and what verify found; invoke release publishes only images it says
verify passed on, with that sha256."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from build.config import options
from build.core.errors import BuildError
from build.core.safeio import read_regular
from build.formats.table import DEFAULT_FILESYSTEM, FORMATS, UNRECORDED_FORMAT, recorded_format
from build.model.names import buildinfo_file

if TYPE_CHECKING:
    from build.config.context import StepContext
    from build.config.spec import BuildSpec
    from build.model.check import Check

# What a build info says until verify passed on the image (invoke release refuses it).
NOT_VERIFIED = {"result": "not run", "why": "built without verify (a single step or --no-verify)"}
# The fields that hold an option's value, read back through that option's own parser (in the
# option table's order: compression's parser reads format).
OPTION_FIELDS = (
    "version",
    "arch",
    "format",
    "ddi_filesystem",
    "compression",
    "config_path",
    "autostart",
    "run_as",
)
# A field's value as old build infos lack it (and those of other formats than a DDI); images
# built before --run-as ran alloy as root.
OPTION_DEFAULTS = {
    "format": UNRECORDED_FORMAT.name,
    "ddi_filesystem": DEFAULT_FILESYSTEM,
    "run_as": "root",
}
# A DDI's build info (build/formats/ddipack.py fields(), pack()): its root hash, whether it is
# signed, and by which certificate (sha256 of its DER), each lowercase hex.
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
# What wrote a DDI (build/formats/ddi.py Assembled.assembler); absent in older build infos.
_ASSEMBLER = re.compile(r"python|systemd-repart \d{3,4}")
# trust_keys: the primary key fingerprints gpg listed (build/keys/trustkeys.py), upper-case hex.
_FINGERPRINT = re.compile(r"[0-9A-F]{40}|[0-9A-F]{64}")
MAX_TOOL_VERSION = 200  # characters of a tool's version ("mksquashfs version 4.5.1 ...")
MAX_BUILDINFO = 1 << 20  # bytes; a build writes about 1 KiB
REBUILD = "rebuild with invoke all --force"


def of_pack(
    spec: BuildSpec,
    packed: dict[str, Any],
    tools: dict[str, str | None],
    trust_keys: Sequence[str],
) -> dict[str, Any]:
    """The record the pack step writes: the options (`packed`: compression, block_size,
    mksquashfs_args) and tools that made the image."""
    return {
        "image": spec.image.name,
        "version": spec.version,
        "arch": spec.arch.name,
        **packed,
        "autostart": spec.autostart,
        "run_as": spec.run_as,
        "config_path": spec.config_path,
        # Primary key fingerprints of --trust-keys: the keys hosts trust next.
        "trust_keys": list(trust_keys),
        **tools,
        "verify": NOT_VERIFIED,
    }


def verified(checks: list[Check], sha256: str) -> dict[str, Any]:
    """A passed verify of the image with this sha256, and the checks it could not make (never
    counted as passed)."""
    skipped = [f"{check.name}: {check.detail}" for check in checks if check.status == "skip"]
    return {"result": "passed", "sha256": sha256, "skipped": skipped}


def write(runner: StepContext, info: dict[str, Any]) -> None:
    runner.write_output(buildinfo_file(runner.spec.image), json.dumps(info, indent=2) + "\n")


def read(runner: StepContext) -> dict[str, Any]:
    """The newest build info of the image (pending, or in place)."""
    return load(runner.current(buildinfo_file(runner.spec.image)))


def load(current: Path, hint: str = REBUILD) -> dict[str, Any]:
    """The build info at `current`, a JSON object (its fields unchecked: parse_fields), read
    as any file someone else may have put there: a regular file of at most MAX_BUILDINFO bytes,
    nested no deeper than the parser's recursion allows. BuildError naming it, with `hint`."""
    try:
        info = json.loads(read_regular(current, MAX_BUILDINFO, hint).decode("utf-8"))
    except (OSError, ValueError) as error:
        raise BuildError(f"cannot read {current}: {error}", hint) from None
    except RecursionError:
        raise BuildError(f"cannot read {current}: nested too deeply", hint) from None
    if not isinstance(info, dict):
        raise BuildError(f"cannot read {current}: not a JSON object", hint)
    return info


def record_verify(runner: StepContext, result: dict[str, Any]) -> None:
    """The verify result in the image's build info, which invoke release reads."""
    write(runner, {**read(runner), "verify": result})


def options_differ(info: dict[str, Any], spec: BuildSpec, compression: str) -> list[str]:
    """The options (as flags) the image was built with where they differ from `spec`'s, for
    those its checks depend on (`compression`: what --compression packs for spec.arch)."""
    differ = []
    if recorded_format(info) != spec.format:
        differ.append(f"--format={recorded_format(info)}")
    if info.get("compression") != compression:
        differ.append(f"--compression={info.get('compression')}")
    if _filesystem(info) != _wrapped_filesystem(spec):
        differ.append(f"--ddi-filesystem={_filesystem(info)}")
    if bool(info.get("autostart")) != spec.autostart:
        differ.append("--autostart" if info.get("autostart") else "no --autostart")
    if spec.trust_keys is not None and not info.get("trust_keys"):  # none given: as built
        differ.append("no --trust-keys")
    run_as = info.get("run_as", OPTION_DEFAULTS["run_as"])
    if run_as != spec.run_as:
        differ.append(f"--run-as={run_as}")
    return differ


# The options an image's checks depend on, as its build info records them; what verify checks
# an image against unless the command line says otherwise (build/pipeline/verifybuilt.py).
CHECKED_OPTIONS = (
    "format",
    "ddi_filesystem",
    "compression",
    "autostart",
    "config_path",
    "run_as",
    "trust_keys",
)


def _filesystem(info: Mapping[str, Any]) -> str | None:
    """The file system a DDI's build info says it wraps; None for another format."""
    fmt = FORMATS.get(str(recorded_format(info)))
    if fmt is None or not fmt.inner:
        return None
    return str(info.get("ddi_filesystem", DEFAULT_FILESYSTEM))


def _wrapped_filesystem(spec: BuildSpec) -> str | None:
    return spec.ddi_filesystem if FORMATS[spec.format].inner else None


def built_options(info: Mapping[str, Any]) -> dict[str, Any]:
    """CHECKED_OPTIONS as `info` (parsed by parse_fields) records them: the fingerprints for
    trust_keys, sorted."""
    return {
        **{name: info[name] for name in CHECKED_OPTIONS if name != "ddi_filesystem"},
        "ddi_filesystem": _filesystem(info),
        "trust_keys": sorted(info["trust_keys"]),
    }


def asked_options(spec: BuildSpec, fingerprints: Sequence[str]) -> dict[str, Any]:
    """CHECKED_OPTIONS as `spec` asks for them, comparable with built_options: the compression
    that packs as spec's does (xz-bcj on arm64 is xz); `fingerprints`: those of --trust-keys."""
    compression = FORMATS[spec.format].used_compression(spec.compression, spec.arch)
    return {
        "format": spec.format,
        "ddi_filesystem": _wrapped_filesystem(spec),
        "compression": compression,
        "autostart": spec.autostart,
        "config_path": spec.config_path,
        "trust_keys": sorted(fingerprints),
        "run_as": spec.run_as,
    }


def as_flag(name: str, value: Any) -> str:
    """An option of CHECKED_OPTIONS with its value, as the flag that gives it."""
    if name == "autostart":
        return "--autostart" if value else "--no-autostart"
    if name == "trust_keys":
        return "--trust-keys (keys " + ", ".join(value) + ")" if value else "no --trust-keys"
    if value is None:  # --ddi-filesystem of another format than a DDI: none
        return ""
    return f"--{name.replace('_', '-')}={value}"


def as_built(spec: BuildSpec, info: Mapping[str, Any]) -> BuildSpec:
    """`spec` with the options the image was built with (`info`, parsed by parse_fields); its
    compression kept where it packs as the recorded one does. --trust-keys stays as given:
    verify takes whether the image holds keys from the build info."""
    built = built_options(info)
    asked = asked_options(spec, ())
    compression = spec.compression
    if (asked["format"], asked["compression"]) != (built["format"], built["compression"]):
        compression = built["compression"]
    return dataclasses.replace(
        spec,
        format=built["format"],
        ddi_filesystem=built["ddi_filesystem"] or spec.ddi_filesystem,
        compression=compression,
        autostart=built["autostart"],
        config_path=built["config_path"],
        run_as=built["run_as"],
        verity_signature=bool(info.get("verity_signed", spec.verity_signature)),
    )


def parse_fields(path: Path, info: dict[str, Any], tools: Sequence[str]) -> dict[str, Any]:
    """`info`, read from `path`, with each field that came from an option parsed by that
    option's parser (build/config/options.py), as if given again; trust_keys a list of fingerprints,
    `tools` (the tools that packed it) versions or null, verify's skipped checks a list of
    text. BuildError naming `path` and the field, with the parser's words, for any other."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for option in options.OPTIONS:  # table order
        name = option.name
        if name not in OPTION_FIELDS:
            continue
        sources[name] = f"{name} in {path}"
        raw = info.get(name, OPTION_DEFAULTS.get(name))
        try:
            if raw is None:
                raise BuildError("missing")
            values[name] = option.parse(raw, options.Given(option, sources[name], values, sources))
        except BuildError as error:
            raise _bad(path, name, error.message) from None
    keys = info.get("trust_keys", [])  # none: built before --trust-keys existed
    if not isinstance(keys, list) or not all(
        isinstance(key, str) and _FINGERPRINT.fullmatch(key) for key in keys
    ):
        raise _bad(path, "trust_keys", "not a list of key fingerprints")
    for tool in tools:
        version = info.get(tool)
        if version is not None and not _is_text(version, MAX_TOOL_VERSION):
            raise _bad(path, tool, "not the version of a tool")
    if _filesystem(info) is not None:
        _check_ddi_fields(path, info)
    verified = info.get("verify")
    skipped = verified.get("skipped", []) if isinstance(verified, dict) else []
    if not isinstance(skipped, list) or not all(_is_text(line, 1000) for line in skipped):
        raise _bad(path, "verify", "its skipped checks are not a list of lines")
    return {**info, **values, "trust_keys": keys}


def _check_ddi_fields(path: Path, info: Mapping[str, Any]) -> None:
    """A DDI's root hash, signed flag, certificate fingerprint and what wrote it, as a build
    writes them."""
    if not (isinstance(info.get("root_hash"), str) and _HEX_SHA256.fullmatch(info["root_hash"])):
        raise _bad(path, "root_hash", "not a sha256 root hash in lowercase hex")
    signed = info.get("verity_signed")
    if not isinstance(signed, bool):
        raise _bad(path, "verity_signed", "not true or false")
    fingerprint = info.get("verity_certificate_fingerprint")
    if signed and not (isinstance(fingerprint, str) and _HEX_SHA256.fullmatch(fingerprint)):
        raise _bad(path, "verity_certificate_fingerprint", "not a sha256 in lowercase hex")
    if not signed and fingerprint is not None:
        raise _bad(path, "verity_certificate_fingerprint", "set for an unsigned DDI")
    assembler = info.get("ddi_assembler")
    if assembler is not None and not (
        isinstance(assembler, str) and _ASSEMBLER.fullmatch(assembler)
    ):
        raise _bad(path, "ddi_assembler", "not python or systemd-repart and its version")


def _is_text(value: object, most: int) -> bool:
    return isinstance(value, str) and len(value) <= most and value.isprintable()


def _bad(path: Path, field: str, why: str) -> BuildError:
    return BuildError(
        f"{path} has a bad {field}: {why}",
        "it is not what a build writes: rebuild the image with invoke all --force; "
        "nothing was written",
    )
