"""invoke verify without --image: every image built in the output directory (or those --version
and --arch name), each checked against the options its build info records. Only an option given
on the command line that the image was not built with is refused; invoke.yaml, INVOKE_* and
the defaults say what to build next, not what an image already built must be."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from build.alloy import DEFAULT_VERSION, NAME
from build.config import options
from build.config.spec import BuildSpec, parse_output_name
from build.core.errors import BuildError
from build.core.report import listing, say
from build.formats.table import format_named, recorded_format
from build.image import buildinfo
from build.image.checksum import read_checksum
from build.keys.trustkeys import read_trust_keys
from build.model.arch import ARCHES
from build.model.names import buildinfo_file, checksum_file
from build.model.versions import version_key
from build.pipeline.steps import resolved_version, run_steps, spec_for


def built_images(output_dir: Path, version: str | None, arch: str | None) -> list[tuple[str, str]]:
    """(version, arch) of each image alloy-VERSION-ARCH.raw in `output_dir`, of `version` and
    `arch` where given; oldest version first, then in ARCHES' order."""
    found = []
    if output_dir.is_dir():
        for path in output_dir.iterdir():
            parsed = parse_output_name(path.name)
            if parsed is None or parsed[1] is None or not path.is_file():
                continue
            if path.name == f"{NAME}-{parsed[0]}-{parsed[1]}.raw":
                found.append((parsed[0], parsed[1]))
    wanted = [cell for cell in found if version in (None, cell[0]) and arch in (None, cell[1])]
    return sorted(wanted, key=lambda cell: (version_key(cell[0]), list(ARCHES).index(cell[1])))


def refuse_expect_without_image(values: Mapping[str, Any]) -> None:
    """--expect-format and --expect-compression pin an image from elsewhere (verify --image):
    BuildError for either without it (`values`: the option table's, for verify)."""
    for option in options.options_of("verify"):
        if option.name.startswith("expect_") and values[option.name] is not None:
            raise BuildError(
                f"{option.flag} is for verify --image: a build's own image is held to the "
                "options it was built with",
                f"give --image=PATH with it, or leave {option.flag} out",
            )


def verify_built(values: Mapping[str, Any], given: Collection[str]) -> None:
    """Verify the built images that `values` (the option table's, for verify) select: those
    of --version and --arch when given on the command line (`given`), else every one."""
    version = resolved_version(values) if "version" in given else None
    arch = values["arch"] if "arch" in given else None
    output_dir = values["output_dir"]
    if version is not None and arch is not None:
        cells = [(version, arch)]  # missing: the verify step names the file
    else:
        cells = built_images(output_dir, version, arch)
    if not cells:
        raise _nothing_built(values, given, version, arch)
    # Every image's options first: a contradicting flag is refused before anything is checked.
    checked = [_as_built(_spec(values, given, v, a), given) for v, a in cells]
    failed: list[BuildError] = []
    for spec, built in checked:
        if built:
            say("verify", f"{spec.image.name}, as built: {built}")
        try:
            run_steps(spec, "verify", force=values["force"])
        except BuildError as error:
            if len(checked) == 1:
                raise
            failed.append(error)
    if len(checked) > 1:
        names = listing((spec.image.name for spec, _ in checked), ", ")
        say("verify", f"checked {len(checked)} images in {output_dir}: {names}")
    if failed:
        more = f" (and {len(failed) - 1} more of {len(checked)} failed)" if failed[1:] else ""
        raise BuildError(failed[0].message + more, failed[0].hint)


def _spec(values: Mapping[str, Any], given: Collection[str], version: str, arch: str) -> BuildSpec:
    """The image's BuildSpec; --compat-arch, unless given, the architecture whose image the
    compat name holds (invoke all --compat-arch=arm64 made it arm64's)."""
    spec = spec_for({**values, "version": version, "arch": arch})
    if "compat_arch" in given:
        return spec
    owner = _compat_owner(spec)
    return dataclasses.replace(spec, compat_arch=owner) if owner else spec


def _compat_owner(spec: BuildSpec) -> str | None:
    """The architecture of the image the compat name holds, by their .sha256 files, or None."""

    def recorded(image: Path) -> str | None:
        try:
            return read_checksum(checksum_file(image))
        except (BuildError, OSError):
            return None

    held = recorded(spec.compat_image)
    if held is None:
        return None
    images = {arch: dataclasses.replace(spec, arch=ARCHES[arch]).image for arch in ARCHES}
    return next((arch for arch, image in images.items() if recorded(image) == held), None)


def _nothing_built(
    values: Mapping[str, Any], given: Collection[str], version: str | None, arch: str | None
) -> BuildError:
    which = " ".join(
        [*([f"of version {version}"] if version else []), *([f"for {arch}"] if arch else [])]
    )
    command = ["invoke all", f"--version={version or values['version'] or DEFAULT_VERSION}"]
    command += [f"--arch={arch}"] if arch else []
    command += [f"--output-dir={values['output_dir']}"] if "output_dir" in given else []
    return BuildError(
        f"nothing to verify: no image {which + ' ' if which else ''}in {values['output_dir']}",
        f"build one first: {' '.join(command)} (or check an image from elsewhere: "
        "invoke verify --image=FILE)",
    )


def _as_built(spec: BuildSpec, given: Collection[str]) -> tuple[BuildSpec, str]:
    """`spec` with the options its image was built with, and those options as flags; BuildError
    naming each option given on the command line that the image was not built with. Without a
    build info: `spec` as it is, and the verify step says what is missing."""
    path = buildinfo_file(spec.image)
    if not path.is_file():
        return spec, ""
    info = buildinfo.load(path)
    fmt = format_named(recorded_format(info))
    info = buildinfo.parse_fields(path, info, fmt.tools if fmt is not None else ())
    built = buildinfo.built_options(info)
    keys: tuple[str, ...] = ()
    if spec.trust_keys is not None and "trust_keys" in given:
        keys = read_trust_keys(spec.trust_keys).fingerprints
    asked = buildinfo.asked_options(spec, keys)
    differ = [name for name in buildinfo.CHECKED_OPTIONS if name in given]
    differ = [name for name in differ if asked[name] != built[name]]
    if differ:
        raise _contradicted(spec, differ, built, asked)
    flags = (buildinfo.as_flag(name, built[name]) for name in buildinfo.CHECKED_OPTIONS)
    shown = " ".join(flag for flag in flags if flag)
    return buildinfo.as_built(spec, info), shown


def _contradicted(
    spec: BuildSpec, differ: list[str], built: Mapping[str, Any], asked: Mapping[str, Any]
) -> BuildError:
    def given_flag(name: str) -> str:
        if name == "trust_keys":  # the file given, not the keys gpg found in it
            return f"--trust-keys={spec.trust_keys}"
        return buildinfo.as_flag(name, asked[name])

    was = ", ".join(buildinfo.as_flag(name, built[name]) for name in differ)
    not_as_given = ", ".join(
        given_flag(name) + (f" (keys {', '.join(asked[name])})" if name == "trust_keys" else "")
        for name in differ
    )
    rebuild = ["invoke all", f"--version={spec.version}", f"--arch={spec.arch.name}"]
    several = len(differ) > 1
    return BuildError(
        f"{spec.image} was built with {was}, not {not_as_given} as given; nothing was checked "
        "or written",
        f"leave {'those options' if several else 'that option'} out to check it as it was "
        f"built, or rebuild it with {'them' if several else 'it'}: "
        + " ".join([*rebuild, *(given_flag(name) for name in differ)]),
    )
