"""Rate limits: the one rule for when an answer says "too many requests, come back later", and
when that is, for the releases API and downloads alike. A server's numbers are read as what an
attacker may send: any length, any time."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

MAX_HINT = 100 * 366 * 86400  # seconds: a server's "come back then" is capped at ~100 years


@dataclass(frozen=True)
class RateLimit:
    """A rate-limited answer: a retry a second later would be refused too. `at`: the Unix time it
    lifts and `wait`: the seconds until then, when the answer says."""

    status: int
    at: float | None = None
    wait: float | None = None
    resets: str | None = None  # "it resets at 12:34:56 UTC, in 30 s"

    def __str__(self) -> str:
        return f"rate limited (HTTP {self.status})" + (f", {self.resets}" if self.resets else "")


def rate_limit(status: int, headers: Mapping[str, str]) -> RateLimit | None:
    """The rate limit an answer reports, GitHub's way: a 403 or 429 with X-RateLimit-Remaining: 0
    or a Retry-After, or a 429 with X-RateLimit-Reset; None for any other answer (a 403 that says
    neither is a refusal, not a limit)."""
    limited = status in (403, 429) and (
        headers.get("X-RateLimit-Remaining") == "0" or "Retry-After" in headers
    )
    if not limited and not (status == 429 and "X-RateLimit-Reset" in headers):
        return None
    now = time.time()
    at = _lifts_at(headers, now)
    if at is None:
        return RateLimit(status)
    # Capped again: at - now may round to a hair above MAX_HINT.
    return RateLimit(status, at, min(max(0.0, at - now), MAX_HINT), _resets(at, now))


def _lifts_at(headers: Mapping[str, str], now: float) -> float | None:
    """Retry-After (seconds, or an HTTP date), else X-RateLimit-Reset (a Unix time), as a Unix
    time no more than MAX_HINT seconds from now; None if the answer says neither."""
    retry_after = headers.get("Retry-After", "").strip()
    at: float | None = None
    seconds = _seconds(retry_after)
    if seconds is not None:
        at = now + seconds
    elif retry_after and len(retry_after) < 100:
        with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
            at = parsedate_to_datetime(retry_after).timestamp()
    if at is None:
        reset = _seconds(headers.get("X-RateLimit-Reset", "").strip())
        at = float(reset) if reset is not None else None
    return None if at is None else min(at, now + MAX_HINT)


_SECONDS = re.compile(r"[0-9]+")


def _seconds(text: str) -> int | None:
    """A whole number of seconds in ASCII digits, capped at MAX_HINT; None for anything else.
    Thousands of digits must not reach int() (Python refuses to convert them)."""
    if not _SECONDS.fullmatch(text):
        return None
    digits = text.lstrip("0") or "0"
    return MAX_HINT if len(digits) > len(str(MAX_HINT)) else min(int(digits), MAX_HINT)


def _resets(at: float, now: float) -> str:
    """ "it resets at 12:34:56 UTC, in 30 s" (or "in 5 min", or a date more than a day away)."""
    wait = max(0, int(at - now))
    if wait >= 86400:
        return f"it resets at {clock(at, now)}, in {wait // 86400} days"
    if wait < 60:
        return f"it resets at {clock(at, now)}, in {wait} s"
    return f"it resets at {clock(at, now)}, in {(wait + 59) // 60} min"


def clock(at: float, now: float | None = None) -> str:
    """12:34:56 UTC, with the date in front when it is not within a day from now."""
    now = time.time() if now is None else now
    try:
        moment = time.gmtime(at)
    except (OverflowError, OSError, ValueError):
        return "a time too far off to say"
    if abs(at - now) < 86400:
        return time.strftime("%H:%M:%S UTC", moment)
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", moment)
