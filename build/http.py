"""Downloads: streamed in chunks, hashed while streaming, retried with backoff, atomic; and small
GET requests (an API's JSON answer), retried the same way."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from .errors import BuildError
from .report import progress
from .targets import atomic_path

if TYPE_CHECKING:
    import requests

CHUNK = 1 << 20
TIMEOUT = (10, 60)  # seconds: connect, between bytes
BACKOFF = 0.5  # seconds before the first retry, doubling after each
USER_AGENT = "alloy-sysext"
_RETRY_STATUSES = {408, 429}  # request timeout, too many requests: worth waiting for


class HTTPStatusError(BuildError):
    def __init__(self, url: str, status: int, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{url} returned HTTP {status}")
        self.url, self.status = url, status
        self.headers: Mapping[str, str] = headers or {}


class _Transient(Exception):
    """A failure worth another try: connection trouble, a 5xx, a cut-off body."""


_session: requests.Session | None = None


def session() -> requests.Session:
    global _session
    if _session is None:
        import requests  # imported here: an up-to-date build never needs it

        _session = requests.Session()
        _session.headers["User-Agent"] = USER_AGENT
    return _session


def exists(url: str) -> bool:
    """Whether a HEAD request for `url` succeeds (redirects followed); False on any failure."""
    import requests

    try:
        response = session().head(url, allow_redirects=True, timeout=TIMEOUT)
    except requests.RequestException:
        return False
    return response.ok


def download(
    url: str,
    final: Path,
    *,
    retries: int,
    expected_sha256: str | None = None,
    check_start: Callable[[bytes], None] | None = None,
    show_progress: bool = False,
) -> str:
    """Fetch `url` into `final` and return its sha256; nothing lands at `final` unless complete
    and, when `expected_sha256` is given, matching it. `check_start` vets the first bytes."""
    return _retrying(
        lambda: _download_once(url, final, expected_sha256, check_start, show_progress),
        url=url,
        what=f"download of {url}",
        retries=retries,
        hint="check the network or --base-url, then run again",
    )


_T = TypeVar("_T")


def _retrying(once: Callable[[], _T], *, url: str, what: str, retries: int, hint: str) -> _T:
    """`once()`, tried again with backoff after a transient failure, `retries` times at most."""
    for attempt in range(retries + 1):
        try:
            return once()
        except _Transient as error:
            if attempt == retries:
                tries = f" (tried {retries + 1} times)" if retries else ""
                raise BuildError(f"{what} failed: {error}{tries}", hint) from None
            delay = BACKOFF * 2**attempt
            print(f"{'':<8} {url}: {error}; retrying in {delay:g} s", flush=True)
            time.sleep(delay)
    raise AssertionError("unreachable")


def rate_limited(status: int, headers: Mapping[str, str]) -> bool:
    """Whether an answer says "too many requests, come back later" (GitHub's way: 403 or 429 with
    X-RateLimit-Remaining: 0, or a Retry-After): a retry a second later would be refused too."""
    if status not in (403, 429):
        return False
    return headers.get("X-RateLimit-Remaining") == "0" or "Retry-After" in headers


def get(
    url: str, *, retries: int, hint: str, headers: Mapping[str, str] | None = None
) -> requests.Response:
    """A small GET, read whole, answered 200; retried like a download after connection trouble
    or a 5xx. Any other answer, a rate limit included, raises HTTPStatusError with its headers."""
    import requests

    def once() -> requests.Response:
        try:
            response = session().get(url, headers=dict(headers or {}), timeout=TIMEOUT)
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema) as error:
            raise BuildError(f"invalid URL {url}: {error}", hint) from None
        except requests.RequestException as error:
            raise _Transient(_describe(error)) from None
        status = response.status_code
        if rate_limited(status, response.headers):
            raise HTTPStatusError(url, status, response.headers)
        if status >= 500 or status in _RETRY_STATUSES:
            raise _Transient(f"HTTP {status}")
        if status != 200:
            raise HTTPStatusError(url, status, response.headers)
        return response

    return _retrying(once, url=url, what=f"request to {url}", retries=retries, hint=hint)


def _download_once(
    url: str,
    final: Path,
    expected_sha256: str | None,
    check_start: Callable[[bytes], None] | None,
    show_progress: bool,
) -> str:
    import requests

    try:
        response = session().get(url, stream=True, timeout=TIMEOUT)
    except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema) as error:
        # No retry mends an address (a scheme is required by BuildSpec already).
        raise BuildError(f"invalid URL {url}: {error}", "check --base-url") from None
    except requests.RequestException as error:
        raise _Transient(_describe(error)) from None
    with response:
        if response.status_code >= 500 or response.status_code in _RETRY_STATUSES:
            raise _Transient(f"HTTP {response.status_code}")
        if response.status_code != 200:
            raise HTTPStatusError(url, response.status_code)
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        digest = hashlib.sha256()
        received = 0
        bar = progress(final.name, total) if show_progress else None
        try:
            with atomic_path(final) as tmp, tmp.open("wb") as out:
                try:
                    for chunk in response.iter_content(CHUNK):
                        if received == 0 and check_start is not None:
                            check_start(chunk)
                        out.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
                except requests.RequestException as error:
                    raise _Transient(_describe(error, streaming=True, total=total)) from None
                if total is not None and received < total:
                    raise _Transient(f"cut off after {received} of {total} bytes")
                actual = digest.hexdigest()
                if expected_sha256 is not None and actual != expected_sha256:
                    raise BuildError(
                        f"{url} does not match its SHA256SUMS line "
                        f"(got sha256 {actual}, expected {expected_sha256})",
                        "the download is corrupt or was tampered with; nothing was kept",
                    )
        finally:
            if bar is not None:
                bar.close()
    return actual


def _describe(error: Exception, streaming: bool = False, total: int | None = None) -> str:
    import requests

    if isinstance(error, requests.Timeout):
        return "timed out"
    if streaming:
        # The chunk being read when the connection broke is lost, so the count would be wrong.
        size = f" of {total} bytes" if total is not None else ""
        return f"cut off before the end{size}"
    if isinstance(error, requests.ConnectionError):
        return "connection failed"
    return type(error).__name__
