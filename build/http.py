"""Downloads: streamed in chunks, hashed while streaming, retried with backoff, resumed with an
HTTP Range request after a broken connection, atomic; and small GET requests (an API's JSON
answer), retried the same way. Redirects are followed; plain http:// is refused unless the host is
this machine or allow_http is given; TLS certificates are always verified (requests' default,
never turned off here).

Every body is read raw: the bytes kept and hashed are the bytes served, never a Content-Encoding
decoded (a small gzip answer can unpack to gigabytes). Each read is bounded by Limits: a size cap
(checked against Content-Length up front and while streaming), a stall rule and a deadline per
attempt."""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urljoin, urlsplit

from .errors import BuildError
from .fileio import atomic_path
from .report import progress

if TYPE_CHECKING:
    import requests

CHUNK = 1 << 20
START = 512  # bytes check_start is given to judge a file's start by
READ = 64 << 10  # bytes asked of the socket at a time: read1 hands back whatever has arrived
TIMEOUT = (10, 60)  # seconds: connect, between bytes (unless Limits gives a stall timeout)
STALL_BYTES = 1024  # an attempt receiving less than this in any stall timeout has stalled
MAX_HINT = 100 * 366 * 86400  # seconds: a server's "come back then" is capped at ~100 years
# For tests only: one number of seconds that replaces both timeouts (a stalling test server).
TIMEOUT_VARIABLE = "ALLOY_SYSEXT_TEST_TIMEOUT"
BACKOFF = 0.5  # seconds before the first retry, doubling after each
MAX_BACKOFF = 60  # seconds: no wait between two tries is longer
MAX_WAIT = 60  # seconds a download waits in total when a server asks it to (Retry-After)
USER_AGENT = "alloy-sysext"
_RETRY_STATUSES = {408, 429}  # request timeout, too many requests: worth waiting for
_HTTP_HINT = "use an https:// URL, or allow plain http with --allow-http (INVOKE_ALLOW_HTTP=true)"


@dataclass(frozen=True)
class Limits:
    """What one GET may take: at most `max_bytes` of body (`what` and `hint` say so when more is
    offered), at least STALL_BYTES in any `stall_timeout` seconds (None: TIMEOUT's read timeout
    between bytes), all within `attempt_timeout` seconds per attempt."""

    max_bytes: int
    what: str = "a download"
    hint: str = "check the URL"
    stall_timeout: float | None = None
    attempt_timeout: float = 3600.0


class HTTPStatusError(BuildError):
    def __init__(self, url: str, status: int, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{url} returned HTTP {status}")
        self.url, self.status = url, status
        self.headers: Mapping[str, str] = headers or {}


class _Transient(Exception):
    """A failure worth another try: connection trouble, a 5xx, a cut-off body. `wait`: seconds
    the server asked us to wait first (Retry-After), instead of the backoff."""

    def __init__(self, message: str, wait: float | None = None, retry_at: float | None = None):
        super().__init__(message)
        self.wait, self.retry_at = wait, retry_at


_session: requests.Session | None = None


def session() -> requests.Session:
    global _session
    if _session is None:
        import requests  # imported here: an up-to-date build never needs it

        _session = requests.Session()
        for prefix in ("http://", "https://"):
            _session.mount(prefix, _watched_adapter())
        _session.headers["User-Agent"] = USER_AGENT
        # Never an encoded body: bodies are read raw, and a raw gzip is not what was asked for.
        _session.headers["Accept-Encoding"] = "identity"
        _session.verify = True  # the default, said out loud: certificates are always checked
    return _session


# The deadline of an attempt. A socket's read timeout ends a silence, not a trickle, and while
# http.client reads the status line and headers no check of ours runs: so a timer shuts the
# attempt's socket down when its time is up, which ends whatever read waits on it.

_current = threading.local()  # .watch: the _Watch of the attempt running on this thread


class _Watch:
    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._connection: Any = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def attach(self, connection: Any) -> None:
        """The connection the attempt sends its request on (new, or reused from the pool)."""
        with self._lock:
            self._connection = connection

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            sock = getattr(self._connection, "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> _Watch:
        _current.watch = self
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._timer.cancel()
        _current.watch = None


@contextlib.contextmanager
def _deadline(limits: Limits) -> Iterator[None]:
    """Run one attempt within `limits.attempt_timeout` seconds: when the deadline passes, its
    socket is shut down, and the attempt fails, told as the deadline."""
    late = f"took longer than {limits.attempt_timeout:g} s (--download-timeout)"
    with _Watch(limits.attempt_timeout) as watch:
        try:
            yield
        except _Transient:
            if watch.fired:
                raise _Transient(late) from None
            raise
        # A socket shut down can also read as the end of a body (or of the headers): whatever
        # was read after the deadline is not trusted.
        if watch.fired:
            raise _Transient(late)


def _watched_adapter() -> Any:
    """requests' adapter, whose connections tell the running attempt's _Watch about themselves
    before each request."""
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    def watched(base: type) -> type:
        def request(self: Any, *args: Any, **kwargs: Any) -> Any:
            watch = getattr(_current, "watch", None)
            if watch is not None:
                watch.attach(self)
            return base.request(self, *args, **kwargs)

        return type(f"Watched{base.__name__}", (base,), {"request": request})

    def pool(base: type, connection: type) -> type:
        return type(f"Watched{base.__name__}", (base,), {"ConnectionCls": watched(connection)})

    adapter = HTTPAdapter()
    adapter.poolmanager.pool_classes_by_scheme = {
        "http": pool(HTTPConnectionPool, HTTPConnection),
        "https": pool(HTTPSConnectionPool, HTTPSConnection),
    }
    return adapter


def timeouts(limits: Limits | None = None) -> tuple[float, float]:
    """(connect, read) seconds: TIMEOUT's, the read one replaced by a stall timeout when `limits`
    gives one; both replaced by the test override in $ALLOY_SYSEXT_TEST_TIMEOUT."""
    override = os.environ.get(TIMEOUT_VARIABLE, "").strip()
    try:
        seconds = float(override) if override else 0.0
    except ValueError:
        seconds = 0.0
    if 0 < seconds < MAX_HINT:
        return (seconds, seconds)
    if limits is not None and limits.stall_timeout is not None:
        return (TIMEOUT[0], limits.stall_timeout)
    return TIMEOUT


_IPV4_SPELLING = re.compile(r"[0-9a-fA-FxX.]+")


def is_loopback(host: str | None) -> bool:
    """Whether `host` is this machine: localhost, 127.0.0.0/8 or ::1. An IPv4 address counts in
    every spelling the resolver takes (127.1, 0x7f000001, 2130706433): decided on the address
    it resolves to, not on how it is written."""
    if not host:
        return False
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if not _IPV4_SPELLING.fullmatch(host):  # a name: never taken for this machine
        return False
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host)).is_loopback
    except OSError:
        return False


def check_url(url: str, allow_http: bool, via: str | None = None) -> None:
    """Refuse plain http:// to another host than this machine, unless `allow_http`."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "http" or allow_http or is_loopback(parts.hostname):
        return
    if via is None:
        raise BuildError(f"refusing plain http:// URL {url}: not encrypted", _HTTP_HINT)
    raise BuildError(f"refusing the redirect from {via} to plain http:// {url}", _HTTP_HINT)


def _redirect_guard(allow_http: bool) -> Callable[..., Any]:
    """A response hook: vets each redirect's target before requests follows it."""

    def hook(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        if response.is_redirect:
            target = urljoin(response.url, response.headers["location"])
            try:
                check_url(target, allow_http, via=response.url)
            except BuildError:
                response.close()
                raise
        return response

    return hook


def exists(url: str, allow_http: bool = False) -> bool:
    """Whether a HEAD request for `url` succeeds (redirects followed); False on any failure."""
    import requests

    check_url(url, allow_http)
    try:
        response = session().head(
            url,
            allow_redirects=True,
            timeout=timeouts(),
            hooks={"response": _redirect_guard(allow_http)},
        )
    except requests.RequestException:
        return False
    return response.ok


# Server-asked waits (Retry-After, X-RateLimit-Reset), shared with build/latest.py.


_SECONDS = re.compile(r"[0-9]+")


def _seconds(text: str) -> int | None:
    """A whole number of seconds in ASCII digits, capped at MAX_HINT; None for anything else.
    Thousands of digits must not reach int() (Python refuses to convert them)."""
    if not _SECONDS.fullmatch(text):
        return None
    digits = text.lstrip("0") or "0"
    return MAX_HINT if len(digits) > len(str(MAX_HINT)) else min(int(digits), MAX_HINT)


def retry_at(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The Unix time a server says to come back at: Retry-After (seconds or an HTTP date), else
    X-RateLimit-Reset (a Unix time, GitHub's way); None if it says neither. Never more than
    MAX_HINT seconds from now, whatever the server says."""
    now = time.time() if now is None else now
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


def describe_reset(at: float, now: float | None = None) -> str:
    """ "it resets at 12:34:56 UTC, in 30 s" (or "in 5 min", or a date more than a day away)."""
    now = time.time() if now is None else now
    wait = max(0, int(at - now))
    if wait >= 86400:
        return f"it resets at {_clock(at)}, in {wait // 86400} days"
    if wait < 60:
        return f"it resets at {_clock(at)}, in {wait} s"
    return f"it resets at {_clock(at)}, in {(wait + 59) // 60} min"


def _clock(at: float, now: float | None = None) -> str:
    """12:34:56 UTC, with the date in front when it is not within a day from now."""
    now = time.time() if now is None else now
    try:
        moment = time.gmtime(at)
    except (OverflowError, OSError, ValueError):  # retry_at caps its times; others may not
        return "a time too far off to say"
    if abs(at - now) < 86400:
        return time.strftime("%H:%M:%S UTC", moment)
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", moment)


def rate_limited(status: int, headers: Mapping[str, str]) -> bool:
    """Whether an answer says "too many requests, come back later" (GitHub's way: 403 or 429 with
    X-RateLimit-Remaining: 0, or a Retry-After): a retry a second later would be refused too."""
    if status not in (403, 429):
        return False
    return headers.get("X-RateLimit-Remaining") == "0" or "Retry-After" in headers


def _rate_limit(url: str, status: int, headers: Mapping[str, str]) -> _Transient | None:
    """A 403/429 that says when to come back, as a wait; None for any other answer."""
    if not rate_limited(status, headers) and not (status == 429 and "X-RateLimit-Reset" in headers):
        return None
    now = time.time()
    at = retry_at(headers, now)
    if at is None:  # limited, but no time given: an ordinary backoff
        return _Transient(f"rate limited (HTTP {status})")
    wait = max(0.0, at - now)
    return _Transient(f"rate limited (HTTP {status}), {describe_reset(at, now)}", wait, at)


DEFAULT_LIMITS = Limits(2048 << 20, "a download", "check the URL")


def download(
    url: str,
    final: Path,
    *,
    retries: int,
    expected_sha256: str | None = None,
    check_start: Callable[[bytes], None] | None = None,
    check_done: Callable[[Path], None] | None = None,
    show_progress: bool = False,
    allow_http: bool = False,
    limits: Limits = DEFAULT_LIMITS,
) -> str:
    """Fetch `url` into `final` and return its sha256; nothing lands at `final` unless complete
    and, when `expected_sha256` is given, matching it. `check_start` vets the first bytes,
    `check_done` the whole file before it takes its final name. A retry after a broken connection
    resumes where it stopped (a Range request), or starts afresh when the server ignores or
    refuses the Range."""
    check_url(url, allow_http)
    with atomic_path(final) as tmp:  # removed unless the block succeeds
        partial = _Partial(tmp)

        def once() -> str:
            with _deadline(limits):
                return _download_once(
                    url, partial, final.name, check_start, show_progress, allow_http, limits
                )

        actual = _retrying(
            once,
            url=url,
            what=f"download of {url}",
            retries=retries,
            hint="check the network or --base-url, then run again",
        )
        if expected_sha256 is not None and actual != expected_sha256:
            raise BuildError(
                f"{url} does not match its SHA256SUMS line "
                f"(got sha256 {actual}, expected {expected_sha256})",
                "the download is corrupt or was tampered with; nothing was kept",
            )
        if check_done is not None:
            check_done(tmp)
    return actual


_T = TypeVar("_T")


def _retrying(once: Callable[[], _T], *, url: str, what: str, retries: int, hint: str) -> _T:
    """`once()`, tried again with backoff after a transient failure, `retries` times at most.
    A server's own wait (Retry-After) replaces the backoff, up to MAX_WAIT seconds in total."""
    waited = 0.0
    for attempt in range(retries + 1):
        try:
            return once()
        except _Transient as error:
            if error.retry_at is not None and waited + (error.wait or 0) > MAX_WAIT:
                raise BuildError(
                    f"{what} failed: {error}, longer than the {MAX_WAIT} s this tool waits",
                    f"run again after {_clock(error.retry_at)}",
                ) from None
            if attempt == retries:
                tries = f" (tried {retries + 1} times)" if retries else ""
                raise BuildError(f"{what} failed: {error}{tries}", hint) from None
            delay = min(BACKOFF * 2**attempt, MAX_BACKOFF) if error.wait is None else error.wait
            waited += delay if error.wait is not None else 0
            print(f"{'':<8} {url}: {error}; retrying in {delay:g} s", flush=True)
            time.sleep(delay)
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Page:
    """A small answer read whole: its body as served, and its Link: header's links."""

    url: str
    body: bytearray  # as read: a copy would double what a large page takes
    links: Mapping[str, Mapping[str, str]]


def get(
    url: str,
    *,
    retries: int,
    hint: str,
    headers: Mapping[str, str] | None = None,
    allow_http: bool = False,
    limits: Limits,
) -> Page:
    """A small GET, read whole (at most `limits.max_bytes`), answered 200; retried like a
    download after connection trouble or a 5xx. Any other answer, a rate limit included, raises
    HTTPStatusError with its headers."""
    check_url(url, allow_http)

    def once() -> Page:
        started = time.monotonic()
        with _deadline(limits):
            response = _request(url, dict(headers or {}), allow_http, limits, hint)
            return _read_page(url, response, limits, started)

    return _retrying(once, url=url, what=f"request to {url}", retries=retries, hint=hint)


def _read_page(url: str, response: requests.Response, limits: Limits, started: float) -> Page:
    with response:
        status = response.status_code
        if rate_limited(status, response.headers):
            raise HTTPStatusError(url, status, response.headers)
        if status >= 500 or status in _RETRY_STATUSES:
            raise _Transient(f"HTTP {status}")
        if status != 200:
            raise HTTPStatusError(url, status, response.headers)
        _check_size(url, _content_length(response.headers), limits)
        body = bytearray()
        _stream(response, url, limits, started, 0, None, body.extend)
        return Page(url, body, response.links)


@dataclass
class _Partial:
    """The bytes received so far, across the attempts of one download: kept in `path`, hashed."""

    path: Path
    received: int = 0
    digest: Any = field(default_factory=hashlib.sha256)
    validator: str | None = None  # ETag or Last-Modified of what they came from: If-Range

    def reset(self) -> None:
        self.received, self.digest, self.validator = 0, hashlib.sha256(), None


# ASCII digits, at most 18 of them (under 2**63): a longer number is no size this tool takes.
_NUMBER = "[0-9]{1,18}"
_CONTENT_RANGE = re.compile(rf"bytes ({_NUMBER})-({_NUMBER})/({_NUMBER}|\*)")
_HUGE = 1 << 62  # what a longer number counts as: more than any cap


def _content_length(headers: Mapping[str, str]) -> int | None:
    length = headers.get("Content-Length", "").strip()
    if re.fullmatch(_NUMBER, length):
        return int(length)
    return _HUGE if re.fullmatch("[0-9]+", length) else None


def _check_size(url: str, size: int | None, limits: Limits) -> None:
    """Refuse at once a body said to be larger than `limits` allows (before reading any)."""
    if size is not None and size > limits.max_bytes:
        raise _too_big(url, limits, f"is {size} bytes")


def _too_big(url: str, limits: Limits, said: str) -> BuildError:
    return BuildError(
        f"{url} {said}, more than the {_mib(limits.max_bytes)} this tool takes for "
        f"{limits.what}; nothing was kept",
        limits.hint,
    )


def _mib(size: int) -> str:
    return f"{size >> 20} MiB" if size >= 1 << 20 else f"{size} bytes"


def _request(
    url: str, headers: dict[str, str], allow_http: bool, limits: Limits, hint: str
) -> requests.Response:
    import requests

    try:
        return session().get(
            url,
            headers=headers,
            stream=True,
            timeout=timeouts(limits),
            hooks={"response": _redirect_guard(allow_http)},
        )
    except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema) as error:
        # No retry mends an address (a scheme is required by BuildSpec already).
        raise BuildError(f"invalid URL {url}: {error}", hint) from None
    except requests.exceptions.SSLError as error:
        raise _tls_error(url, error) from None
    except requests.RequestException as error:
        raise _Transient(_describe(error)) from None


def _stream(
    response: requests.Response,
    url: str,
    limits: Limits,
    started: float,
    already: int,
    total: int | None,
    consume: Callable[[bytes], None],
) -> None:
    """Hand the raw body of `response` to `consume`, read as it arrives (never decoded): at most
    `limits.max_bytes` counting `already` (bytes kept from an earlier attempt), at least
    STALL_BYTES in any stall timeout (a sliding window), within the attempt's deadline.

    read1 returns whatever has arrived, and the socket's read timeout is the stall timeout, so
    the checks run at least once in each stall timeout, however slowly bytes trickle in."""
    from urllib3.exceptions import HTTPError as URLLib3Error
    from urllib3.exceptions import ReadTimeoutError

    stall = limits.stall_timeout if limits.stall_timeout is not None else TIMEOUT[1]
    deadline = started + limits.attempt_timeout
    # (time, bytes so far) from the oldest point still within the last STALL_BYTES received.
    window: deque[tuple[float, int]] = deque([(time.monotonic(), 0)])
    got = 0
    of = f" of {total}" if total is not None else ""
    while True:
        try:
            data = response.raw.read1(READ, decode_content=False)
        except ReadTimeoutError:
            raise _Transient(
                f"timed out: the server stalled after {already + got}{of} bytes"
            ) from None
        except (URLLib3Error, OSError):
            raise _Transient(f"cut off after {already + got}{of} bytes") from None
        if not data:
            return
        if already + got + len(data) > limits.max_bytes:
            raise _too_big(url, limits, f"sent more than {limits.max_bytes} bytes")
        consume(data)
        got += len(data)
        now = time.monotonic()
        window.append((now, got))
        while window[0][1] <= got - STALL_BYTES:
            window.popleft()
        if now - window[0][0] >= stall:
            raise _Transient(
                f"stalled: less than {STALL_BYTES} bytes in {stall:g} s, "
                f"after {already + got}{of} bytes (--stall-timeout)"
            )
        if now >= deadline:
            raise _Transient(
                f"took longer than {limits.attempt_timeout:g} s (--download-timeout), "
                f"after {already + got}{of} bytes"
            )


def _download_once(
    url: str,
    partial: _Partial,
    label: str,
    check_start: Callable[[bytes], None] | None,
    show_progress: bool,
    allow_http: bool,
    limits: Limits,
) -> str:
    # Identity: Range offsets and Content-Length then count the file's own bytes.
    started = time.monotonic()
    headers = {"Accept-Encoding": "identity"}
    hint = "check --base-url"
    if partial.received:
        headers["Range"] = f"bytes={partial.received}-"
        if partial.validator:  # changed since? then the whole file (200), not a splice
            headers["If-Range"] = partial.validator
    response = _request(url, headers, allow_http, limits, hint)
    if response.status_code == 416 and partial.received:
        response.close()
        print(f"{'':<8} {url}: cannot resume (HTTP 416); downloading afresh", flush=True)
        partial.reset()
        response = _request(url, {"Accept-Encoding": "identity"}, allow_http, limits, hint)
    with response:
        status = response.status_code
        limited = _rate_limit(url, status, response.headers)
        if limited is not None:
            raise limited
        if status >= 500 or status in _RETRY_STATUSES:
            raise _Transient(f"HTTP {status}")
        size = _content_length(response.headers)
        if status == 206 and partial.received:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
            if match is None or int(match[1]) != partial.received:
                partial.reset()
                raise _Transient("answered a Range request with other bytes; starting afresh")
            total = int(match[3]) if match[3] != "*" else None
            if total is None and size is not None:
                total = partial.received + size
        elif status == 200:
            if partial.received:  # Range ignored (or If-Range said it changed): all of it again
                print(f"{'':<8} {url}: the server sent the whole file again", flush=True)
                partial.reset()
            total = size
            etag = response.headers.get("ETag", "")
            strong = etag if etag and not etag.startswith("W/") else None
            partial.validator = strong or response.headers.get("Last-Modified")
        else:
            raise HTTPStatusError(url, status, response.headers)
        _check_size(url, total, limits)
        bar = progress(label, total) if show_progress else None
        if bar is not None and partial.received:
            bar.update(partial.received)
        try:
            with partial.path.open("r+b") as out:
                out.seek(partial.received)
                out.truncate()
                head = bytearray()  # the first bytes, held back until check_start saw them
                vetted = check_start is None or partial.received > 0

                def write(data: bytes) -> None:
                    out.write(data)
                    partial.digest.update(data)
                    partial.received += len(data)
                    if bar is not None:
                        bar.update(len(data))

                def keep(data: bytes) -> None:
                    nonlocal vetted
                    if not vetted:
                        head.extend(data)
                        if len(head) < START:
                            return
                        check_start(bytes(head))  # type: ignore[misc]
                        vetted = True
                        data = bytes(head)
                    write(data)

                _stream(response, url, limits, started, partial.received, total, keep)
                if not vetted and head:  # a body shorter than START bytes
                    check_start(bytes(head))  # type: ignore[misc]
                    write(bytes(head))
        finally:
            if bar is not None:
                bar.close()
        if total is not None and partial.received < total:
            raise _Transient(f"cut off after {partial.received} of {total} bytes")
    return partial.digest.hexdigest()


def _tls_error(url: str, error: Exception) -> BuildError:
    """A certificate that does not verify: no retry mends it, and none is tried without TLS."""
    verify = "CERTIFICATE_VERIFY_FAILED" in str(error)
    reason = "its certificate is not trusted" if verify else "the TLS handshake failed"
    return BuildError(
        f"TLS to {url} failed: {reason}",
        "check the URL; for a private CA, point REQUESTS_CA_BUNDLE at its certificate",
    )


def _describe(error: Exception) -> str:
    import requests

    if isinstance(error, requests.Timeout):
        return "timed out"
    if isinstance(error, requests.ConnectionError):
        return "connection failed"
    return type(error).__name__
