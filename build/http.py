"""Downloads: streamed in chunks, hashed while streaming, retried with backoff, atomic."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

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
    def __init__(self, url: str, status: int) -> None:
        super().__init__(f"{url} returned HTTP {status}")
        self.url, self.status = url, status


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
    for attempt in range(retries + 1):
        try:
            return _download_once(url, final, expected_sha256, check_start, show_progress)
        except _Transient as error:
            if attempt == retries:
                tries = f" (tried {retries + 1} times)" if retries else ""
                raise BuildError(
                    f"download of {url} failed: {error}{tries}",
                    "check the network or --base-url, then run again",
                ) from None
            delay = BACKOFF * 2**attempt
            print(f"{'':<8} {url}: {error}; retrying in {delay:g} s", flush=True)
            time.sleep(delay)
    raise AssertionError("unreachable")


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
