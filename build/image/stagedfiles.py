"""The files a staged tree holds beside the binary (the rendered unit, extension-release, the
trust keys), and the parameters that record them: what the stage step's up-to-date decision
needs, on every run, without the zip reader and the ELF checks that staging itself takes."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from build import alloy
from build.image import content, render

if TYPE_CHECKING:
    from build.config.context import StepContext
    from build.keys.trustkeys import TrustKeys


def trust_keys(runner: StepContext) -> TrustKeys | None:
    """--trust-keys, read once: before any download (refused early), then put in the image and
    named in its build info."""
    path = runner.spec.trust_keys
    if not path:
        return None
    from build.keys.trustkeys import read_trust_keys  # gpg's modules, only with --trust-keys

    return runner.once("trust_keys", lambda: read_trust_keys(path))


def trust_fingerprints(runner: StepContext) -> tuple[str, ...]:
    keys = trust_keys(runner)
    return keys.fingerprints if keys is not None else ()


def texts(runner: StepContext) -> dict[str, str | bytes]:
    """The files rendered into the image (path in the image -> content), rendered once."""

    def render_all() -> dict[str, str | bytes]:
        spec = runner.spec
        template_path = render.unit_template_path(spec)
        template = render.read_template(template_path)
        renderers: dict[content.ImageFile, Callable[[], str | bytes]] = {
            content.UNIT: lambda: render.unit(spec, template, str(template_path)),
            content.EXTENSION_RELEASE: lambda: render.extension_release(spec),
            content.AUTOSTART: render.autostart_dropin,
            content.TRUST_KEYS: lambda: _keyring(runner),
            content.SYSUSERS: lambda: render.verbatim("sysusers.conf"),
            content.TMPFILES: lambda: render.verbatim("tmpfiles.conf"),
            content.USER_UNIT: lambda: render.verbatim(f"{alloy.NAME}-user.service"),
            content.ENV_FACTORY: lambda: render.env_file(spec.config_path),
            content.RESTART_UNIT: lambda: render.verbatim(Path(content.RESTART_UNIT.path).name),
        }
        held = content.held(spec.autostart, spec.trust_keys is not None, spec.run_as)
        return {file.path: renderers[file]() for file in held if file is not content.BINARY}

    return runner.once("texts", render_all)


def _keyring(runner: StepContext) -> bytes:
    keys = trust_keys(runner)
    assert keys is not None, "held() puts the keys in only with --trust-keys"
    return keys.keyring


def params(runner: StepContext, zip_sha256: str) -> dict[str, Any]:
    """Contents, not times: a re-download of the same zip or a checkout that touches the
    templates changes nothing in the tree."""
    spec = runner.spec
    return {
        "version": spec.version,
        "arch": spec.arch.name,
        "zip": zip_sha256,
        "files": {path: _sha256(text) for path, text in texts(runner).items()},
    }


def _sha256(text: str | bytes) -> str:
    return hashlib.sha256(text if isinstance(text, bytes) else text.encode()).hexdigest()
