"""--trust-keys: the public keys an image tells hosts to trust next, for a key rotation.

The file comes from whoever runs the build, maybe from elsewhere (a colleague's K2.pub): read
only as a regular file of bounded size, parsed by gpg in a throwaway home, refused unless it
holds public keys and nothing secret, each able to sign (not revoked, not expired, with a usable
signing (sub)key: a key hosts trust only to check signatures must be able to make them). What
the image carries is gpg's own binary export of those keys (minimal: no third-party
signatures), never the given bytes."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from build.core.errors import BuildError
from build.core.safeio import read_regular
from build.keys.gpghome import run_gpg, throwaway_home
from build.keys.keylisting import keys, signing_problem

MAX_TRUST_KEYS = 1 << 20  # bytes: a keyring of a few keys is a few KiB
_HINT = (
    "give an OpenPGP public keyring, binary or armored (gpg --export KEY or gpg --armor "
    "--export KEY), of at most 1 MiB; nothing was written"
)

_KEYBOX_CREATED = re.compile(r"gpg: keybox '[^']*' created; ")


@dataclass(frozen=True)
class TrustKeys:
    keyring: bytes  # binary, as hosts' keyrings hold it
    fingerprints: tuple[str, ...]  # primary keys, upper-case hex


def read_trust_keys(path: Path) -> TrustKeys:
    """The public keys in `path`; BuildError (naming it) for anything else."""
    if shutil.which("gpg") is None:
        raise BuildError(
            "--trust-keys needs gpg, which is not on PATH; nothing was written",
            "install GnuPG (apt-get install gnupg), or build without --trust-keys",
        )
    try:
        data = read_regular(path, MAX_TRUST_KEYS, _HINT)
    except FileNotFoundError:
        raise BuildError(f"no --trust-keys file {path}", _HINT) from None
    if not data.strip():
        raise BuildError(f"--trust-keys file {path} is empty", _HINT)
    with throwaway_home() as home:
        given = home / "given"
        given.write_bytes(data)

        def run(*args: str) -> bytes:
            what = f"--trust-keys file {path} is not an OpenPGP public keyring"
            try:
                return run_gpg(home, *args, what=what, hint=_HINT)
            except BuildError as error:  # gpg's words name our scratch copy: name the given file
                words = _KEYBOX_CREATED.sub("", error.message).replace(str(given), str(path))
                raise BuildError(words, _HINT) from None

        shown = run("--with-colons", "--show-keys", str(given)).decode("utf-8", "replace")
        records = [line.split(":")[0] for line in shown.splitlines()]
        if "sec" in records or "ssb" in records:
            raise BuildError(
                f"--trust-keys file {path} holds a secret key; refusing to put it in an image",
                "export only the public key: gpg --export KEY >K2.pub; nothing was written",
            )
        run("--import-options=import-minimal", "--import", str(given))
        listing = run("--with-colons", "--list-keys").decode("utf-8", "replace")
        found = [key for key in keys(listing) if key.primary.kind == "pub"]
        if not found:
            raise BuildError(f"--trust-keys file {path} holds no public key", _HINT)
        for key in found:
            problem = signing_problem(key)
            if problem is not None:
                raise BuildError(
                    f"--trust-keys file {path}: key {key.primary.fingerprint} {problem}",
                    "give only keys that can sign (gpg --list-keys shows an 'S' for them): "
                    "hosts would trust them to check releases; nothing was written",
                )
        fingerprints = [key.primary.fingerprint for key in found]
        keyring = run("--export-options=export-minimal", "--export", *fingerprints)
    return TrustKeys(keyring, tuple(fingerprints))
