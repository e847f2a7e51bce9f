"""Where the verity signing key is: a PEM file, or a PKCS#11 token (a smartcard, an HSM,
SoftHSM) named by an RFC 7512 URI, as systemd-repart's --private-key takes it with
--private-key-source=engine:pkcs11 (`pkcs11:token=alloy;object=verity;type=private`).

A token's PIN comes from the URI's `pin-source` (a file) or from $ALLOY_VERITY_KEY_PASSPHRASE,
never from the URI's `pin-value`: the URI is on the command lines of invoke and openssl, which
any user of the machine can read in /proc, and in invoke.yaml and shell histories."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from build.core.errors import BuildError

PKCS11_SCHEME = "pkcs11:"
# RFC 7512: path attributes are separated by ';', query attributes (pin-source, pin-value,
# module-name, module-path) follow a '?' and are separated by '&'.
_PATH_SEPARATOR, _QUERY_SEPARATOR = ";", "&"
_PIN_IN_URI = "pin-value"
# Printable ASCII but the space: RFC 7512 percent-encodes everything else.
_URI_CHARACTERS = re.compile(r"[!-~]*")


@dataclass(frozen=True)
class TokenKey:
    """A private key on a PKCS#11 token, named by an RFC 7512 URI that holds no PIN."""

    uri: str

    def __str__(self) -> str:
        return self.uri

    @property
    def pin_from_uri(self) -> bool:
        """Whether the URI says where the PIN is (pin-source)."""
        return "pin-source" in _attribute_names(self.uri)


# The verity key (--verity-key): a PEM file, or a key on a token.
VerityKey = Path | TokenKey


def _attribute_names(uri: str) -> list[str]:
    path, _, query = uri[len(PKCS11_SCHEME) :].partition("?")
    attributes = path.split(_PATH_SEPARATOR) + query.split(_QUERY_SEPARATOR)
    return [unquote(attribute.partition("=")[0]).strip().lower() for attribute in attributes]


def is_token_uri(text: str) -> bool:
    return text[: len(PKCS11_SCHEME)].lower() == PKCS11_SCHEME


def token_key(text: str, flag: str) -> TokenKey:
    """The key `text` (a pkcs11: URI, given as `flag`) names; one BuildError for a URI that
    holds its PIN (never repeated in the message) or characters RFC 7512 percent-encodes."""
    if _PIN_IN_URI in _attribute_names(text):
        raise BuildError(
            f"the PKCS#11 URI of {flag} holds its PIN ({_PIN_IN_URI}=), which the command lines "
            "of invoke and openssl would show to every user of the machine; nothing was written",
            "drop pin-value from the URI and give the PIN in $ALLOY_VERITY_KEY_PASSPHRASE, or "
            "in a file named by the URI's pin-source (...?pin-source=file:/path/to/pin)",
        )
    if not _URI_CHARACTERS.fullmatch(text):
        raise BuildError(
            f"the PKCS#11 URI of {flag} has a space or a character that is not printable ASCII; "
            "nothing was written",
            "percent-encode it as RFC 7512 asks: a space is %20",
        )
    return TokenKey(PKCS11_SCHEME + text[len(PKCS11_SCHEME) :])
