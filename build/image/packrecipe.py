"""What the pack step packs with: the format's recipe (the signer of a signed DDI included) and
the parameters it records. Asked on every run to decide "up to date": the packers and the
signing keys' modules are imported only once something must be packed or signed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from build.alloy import NAME
from build.core.errors import BuildError
from build.core.run import require
from build.formats.recipe import Recipe, Signing
from build.formats.table import FORMATS, content_format

if TYPE_CHECKING:
    from build.config.context import StepContext
    from build.config.spec import BuildSpec


def _wraps(spec: BuildSpec) -> bool:
    return bool(FORMATS[spec.format].inner)


def signing(runner: StepContext) -> Signing | None:
    """The build's signer (checked once a run), or None: not a DDI, --no-verity-signature, or
    no key (verify, which never signs; a build without one was refused by
    refuse_unsigned_by_accident() first)."""
    spec = runner.spec
    key, certificate = spec.verity_key, spec.verity_cert
    if not _wraps(spec) or not spec.verity_signature or key is None or certificate is None:
        return None
    from build.image.signer import signer  # openssl's modules, only for a signed DDI

    return runner.once("verity signer", lambda: signer(key, certificate))


def recipe(runner: StepContext) -> Recipe:
    spec = runner.spec
    filesystem = spec.ddi_filesystem if _wraps(spec) else None
    return Recipe(NAME, spec.version, spec.arch, spec.compression, filesystem, signing(runner))


def refuse_unsigned_by_accident(spec: BuildSpec) -> None:
    """--format=ddi signs, or builds unsigned only when asked (--no-verity-signature)."""
    if _wraps(spec) and spec.verity_signature and spec.verity_key is None:
        raise BuildError(
            f"--format={spec.format} needs --verity-key and --verity-cert to sign its root hash, "
            "or --no-verity-signature for an unsigned verity DDI; nothing was written",
            "make a key: openssl req -x509 -newkey rsa:4096 -nodes -keyout verity.key -out "
            "verity.crt -subj /CN=alloy-sysext -days 3650 (README: Signed images)",
        )


def check_tools(runner: StepContext) -> None:
    """Before a download and a staging that could not be packed: the options, the packers,
    and the signer (key, certificate, passphrase)."""
    spec = runner.spec
    refuse_unsigned_by_accident(spec)
    if runner.must_run("pack"):
        require(content_format(spec.format, spec.ddi_filesystem).command)
        if signing(runner) is not None:  # openssl
            require(FORMATS[spec.format].command)


def params(runner: StepContext) -> dict[str, Any]:
    """What shapes the image beside the staged tree: a change rebuilds it. The options by
    their flags, so that the pack step's line names the one that changed; --compression as it
    packs (xz-bcj on arm64 packs as xz: switching between them repacks nothing)."""
    spec = runner.spec
    fmt = FORMATS[spec.format]
    return {
        "--format": fmt.name,
        "--compression": fmt.used_compression(spec.compression, spec.arch),
        **fmt.args(recipe(runner)),
    }
