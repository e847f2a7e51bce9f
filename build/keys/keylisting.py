"""What gpg's --with-colons listing says about keys: their fingerprints and keygrips, and whether
a key can sign (read from gpg's own verdicts, never guessed from dates or algorithms).

A key is a primary record ("pub", or "sec" for a secret listing) and its subkeys ("sub"/"ssb"),
each followed by its "fpr" (and "grp" with --with-keygrip). The fields used (1-based, as in
gpg's doc/DETAILS): 2 validity ("r" revoked, "e" expired), 7 expiry (seconds since the epoch,
or ISO 8601), 12 capabilities (lower case: this (sub)key's own; upper case on the primary: what
the whole key can still do, so "S" means a usable signing (sub)key), 15 for a secret key the
token ("#": the secret is not here)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

PRIMARY = ("pub", "sec")
SUBKEY = ("sub", "ssb")
MAX_NAMED = 3  # unusable signing subkeys named in one problem; more are counted


@dataclass
class Record:
    kind: str  # pub, sec, sub or ssb
    validity: str
    expires: str
    capabilities: str
    token: str
    fingerprint: str = ""
    keygrip: str = ""


@dataclass
class Key:
    primary: Record
    subkeys: list[Record] = field(default_factory=list)


def keys(listing: str) -> list[Key]:
    """The keys of a listing, in its order."""
    found: list[Key] = []
    current: Record | None = None
    for line in listing.splitlines():
        fields = line.split(":") + [""] * 15
        kind = fields[0]
        if kind in PRIMARY or kind in SUBKEY:
            current = Record(kind, fields[1], fields[6], fields[11], fields[14])
            if kind in PRIMARY:
                found.append(Key(current))
            elif found:
                found[-1].subkeys.append(current)
            else:
                current = None  # a subkey before any primary: not a key of this listing
        elif kind == "fpr" and current is not None and not current.fingerprint:
            current.fingerprint = fields[9].upper()
        elif kind == "grp" and current is not None and not current.keygrip:
            current.keygrip = fields[9].upper()
    return found


def primary_fingerprints(listing: str, record: str) -> list[str]:
    """The fingerprint of each primary key in gpg --with-colons output: `record` is "sec" for
    secret keys, "pub" for public ones."""
    return [key.primary.fingerprint for key in keys(listing) if key.primary.kind == record]


def keygrips(listing: str) -> list[str]:
    """Every keygrip of a --with-keygrip listing, primary keys' and subkeys'."""
    return [
        record.keygrip
        for key in keys(listing)
        for record in (key.primary, *key.subkeys)
        if record.keygrip
    ]


def signing_problem(key: Key) -> str | None:
    """Why `key` cannot make signatures, in words to follow its fingerprint ("is revoked",
    "expired on 2020-06-01", "has no usable signing (sub)key: ..."), or None if it can."""
    primary = key.primary
    if primary.validity == "r":
        return "is revoked"
    if primary.validity == "e":
        return f"expired on {_date(primary.expires)}"
    signers = [
        record
        for record in (primary, *key.subkeys)
        if "s" in record.capabilities  # lower case: this (sub)key's own capability
    ]
    if "S" in primary.capabilities:  # gpg's verdict: a signing (sub)key is valid
        usable = [record for record in signers if _usable(record)]
        if usable and all(record.token == "#" for record in usable):  # a secret listing's stubs
            return "has no usable signing (sub)key: the secret of its signing (sub)key is not here"
        return None
    if not signers:
        return f"has no usable signing (sub)key (it can only {_can(primary.capabilities)})"
    reasons = [f"{_which(record, primary)} {_state(record)}" for record in signers]
    if len(reasons) > MAX_NAMED:
        reasons = [*reasons[:MAX_NAMED], f"and {len(reasons) - MAX_NAMED} more"]
    return "has no usable signing (sub)key: " + ", ".join(reasons)


def _usable(record: Record) -> bool:
    return record.validity not in ("r", "e", "i", "d", "n")


def _which(record: Record, primary: Record) -> str:
    return "the primary key" if record is primary else f"subkey {record.fingerprint}"


def _state(record: Record) -> str:
    if record.validity == "r":
        return "is revoked"
    if record.validity == "e":
        return f"expired on {_date(record.expires)}"
    return f"is not valid (gpg's validity {record.validity!r})"


def _can(capabilities: str) -> str:
    words = {"c": "certify", "e": "encrypt", "a": "authenticate"}
    named = [words[letter] for letter in sorted(set(capabilities.lower())) if letter in words]
    return " and ".join(named) or "nothing"


def _date(expires: str) -> str:
    """gpg's expiry field as a date (UTC): seconds since the epoch, or ISO 8601 basic format."""
    if expires.isdigit():
        moment = datetime.datetime.fromtimestamp(int(expires), tz=datetime.timezone.utc)
        return moment.date().isoformat()
    if len(expires) >= 8 and expires[:8].isdigit():
        return f"{expires[:4]}-{expires[4:6]}-{expires[6:8]}"
    return "an unknown date"
