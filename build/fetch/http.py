"""Downloads: streamed in chunks, hashed while streaming, retried with backoff, resumed with an
HTTP Range request after a broken connection, atomic; and small GET requests (an API's JSON
answer), retried the same way. Redirects are followed; every URL, each redirect's too, is read
and checked by urls.check; plain http:// is refused unless the host is this machine or
allow_http is given; TLS certificates are always verified (requests' default,
never turned off here).

Every body is read raw: the bytes kept and hashed are the bytes served, never a Content-Encoding
decoded (a small gzip answer can unpack to gigabytes). Each read is bounded by Limits: a size cap
(checked against Content-Length up front and while streaming), a stall rule and a deadline per
attempt."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urljoin

from build.core import urls
from build.core.errors import BuildError
from build.core.fileio import atomic_path
from build.core.report import Progress, progress, say
from build.fetch.ratelimit import MAX_HINT, RateLimit, clock, rate_limit

if TYPE_CHECKING:
    import _hashlib

    import requests

CHUNK = 1 << 20
START = 512  # bytes check_start is given to judge a file's start by
READ = 64 << 10  # bytes asked of the socket at a time: read1 hands back whatever has arrived
TIMEOUT = (10, 60)  # seconds: connect, between bytes (unless Limits gives a stall timeout)
STALL_BYTES = 1024  # an attempt receiving less than this in any stall timeout has stalled
# For tests only: one number of seconds that replaces both timeouts (a stalling test server).
TIMEOUT_VARIABLE = "ALLOY_SYSEXT_TEST_TIMEOUT"
BACKOFF = 0.5  # seconds before the first retry, doubling after each
MAX_BACKOFF = 60  # seconds: no wait between two tries is longer
MAX_WAIT = 60  # seconds a download waits in total when a server asks it to (Retry-After)
USER_AGENT = "alloy-sysext"
_RETRY_STATUSES = {408, 429}  # request timeout, too many requests: worth waiting for
_HTTP_HINT = "use an https:// URL, or allow plain http with --allow-http (INVOKE_ALLOW_HTTP=true)"
_TLS_HINT = "check the URL; for a private CA, point REQUESTS_CA_BUNDLE at its certificate"


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


DEFAULT_LIMITS = Limits(2048 << 20, "a download", "check the URL")


class HTTPStatusError(BuildError):
    def __init__(self, url: str, status: int, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{url} returned HTTP {status}")
        self.url, self.status = url, status
        self.headers: Mapping[str, str] = headers or {}


class _Transient(Exception):
    """A failure worth another try: connection trouble, a 5xx, a cut-off body, a rate limit
    (whose time to come back replaces the backoff)."""

    def __init__(self, message: str, limit: RateLimit | None = None) -> None:
        super().__init__(message)
        self.limit = limit


_session: requests.Session | None = None


def session() -> requests.Session:
    global _session
    if _session is None:
        import requests  # imported here: an up-to-date build never needs it

        _session = requests.Session()
        for prefix in ("http://", "https://"):
            _session.mount(prefix, _watched_adapter())
        _session.headers["User-Agent"] = USER_AGENT
        # Never an encoded body: bodies are read raw, so a gzip would not be the file asked for;
        # and Range offsets and Content-Length then count the file's own bytes.
        _session.headers["Accept-Encoding"] = "identity"
        _session.verify = True  # the default, said out loud: certificates are always checked
    return _session


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

    def watched(base: type[HTTPConnection]) -> type:
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


# Which URLs are asked at all: each through urls.check (the same reading as urllib3's, which
# requests connects by), then plain http:// only to this machine or with allow_http.


def check_url(
    url: str, allow_http: bool, via: str | None = None, source: str | None = None
) -> urls.Target:
    """Refuse a URL urls.check refuses, and plain http:// to another host than this machine
    unless `allow_http`. `via`: the URL whose redirect led here; `source`: where `url` came from
    (default: the redirect, else the request itself)."""
    where = source or (f"the redirect from {via}" if via else "the request")
    target = urls.check(url, where)
    if target.scheme != "http" or allow_http:
        return target
    if not target.is_loopback:
        if via is None:
            raise BuildError(f"refusing plain http:// URL {url}: not encrypted", _HTTP_HINT)
        raise BuildError(f"refusing the redirect from {via} to plain http:// {url}", _HTTP_HINT)
    proxy = _proxy_host(url)
    if proxy is not None and not urls.is_loopback(proxy):
        raise BuildError(
            f"refusing plain http:// URL {url}: it would go through the proxy at {proxy} "
            "(HTTP_PROXY), not encrypted",
            f"{_HTTP_HINT}, or list {target.host} in NO_PROXY",
        )
    return target


def _proxy_host(url: str) -> str | None:
    """The host of the proxy requests would send `url` through (HTTP_PROXY and the like, NO_PROXY
    heeded), which is then the host it connects to; None without one. Only the host: a proxy
    URL may hold a password."""
    from requests.utils import get_environ_proxies, select_proxy
    from urllib3.exceptions import LocationParseError
    from urllib3.util import parse_url

    proxy = select_proxy(url, get_environ_proxies(url))
    if not proxy:
        return None
    try:
        return parse_url(proxy).host or "(none)"
    except LocationParseError:
        return "(unreadable)"


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


def _request(
    url: str, headers: Mapping[str, str], allow_http: bool, limits: Limits, hint: str
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
    except requests.RequestException as error:
        raise _failure(error, url, hint) from None


# What an answer or an error means: one reading of each, for the API and downloads alike.


def _failure(error: Exception, url: str, hint: str, got: str | None = None) -> Exception:
    """What a network error (requests', urllib3's, a socket's, TLS's) means, as the exception to
    raise: a BuildError when no retry can mend it (an invalid URL, TLS that fails: never tried
    again, and never without TLS), else a _Transient, which _retrying turns into one line when
    the tries run out. `got`: how much of a body had arrived, when reading it failed."""
    import requests
    from urllib3.exceptions import ReadTimeoutError

    if got is not None:
        if isinstance(error, ReadTimeoutError):
            return _Transient(f"timed out: the server stalled after {got} bytes")
        return _Transient(f"cut off after {got} bytes")
    if isinstance(error, (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema)):
        return BuildError(f"invalid URL {url}: {error}", hint)
    if isinstance(error, requests.exceptions.SSLError):
        untrusted = "CERTIFICATE_VERIFY_FAILED" in str(error)
        reason = "its certificate is not trusted" if untrusted else "the TLS handshake failed"
        return BuildError(f"TLS to {url} failed: {reason}", _TLS_HINT)
    if isinstance(error, requests.Timeout):
        return _Transient("timed out")
    if isinstance(error, requests.ConnectionError):
        return _Transient("connection failed")
    return _Transient(type(error).__name__)


def _check_status(
    url: str, response: requests.Response, accepted: Collection[int], wait_out_limits: bool
) -> None:
    """Raise unless the answer's status is one of `accepted`: a _Transient for a 5xx, 408 or 429
    (and for a rate limit, when `wait_out_limits`), HTTPStatusError with the headers otherwise."""
    status, headers = response.status_code, response.headers
    limit = rate_limit(status, headers)
    if limit is not None and wait_out_limits:
        raise _Transient(str(limit), limit)
    if limit is None and (status >= 500 or status in _RETRY_STATUSES):
        raise _Transient(f"HTTP {status}")
    if status not in accepted:
        raise HTTPStatusError(url, status, headers)


_T = TypeVar("_T")


def _retrying(once: Callable[[], _T], *, url: str, what: str, retries: int, hint: str) -> _T:
    """`once()`, tried again with backoff after a transient failure, `retries` times at most.
    A server's own wait (Retry-After) replaces the backoff, up to MAX_WAIT seconds in total."""
    waited = 0.0
    for attempt in range(retries + 1):
        try:
            return once()
        except _Transient as error:
            limit = error.limit
            asked = limit.wait if limit is not None else None  # seconds the server asked for
            if limit is not None and limit.at is not None and waited + (asked or 0) > MAX_WAIT:
                raise BuildError(
                    f"{what} failed: {error}, longer than the {MAX_WAIT} s this tool waits",
                    f"run again after {clock(limit.at)}",
                ) from None
            if attempt == retries:
                tries = f" (tried {retries + 1} times)" if retries else ""
                raise BuildError(f"{what} failed: {error}{tries}", hint) from None
            delay = min(BACKOFF * 2**attempt, MAX_BACKOFF) if asked is None else asked
            waited += asked or 0
            say("", f"{url}: {error}; retrying in {delay:g} s")
            time.sleep(delay)
    raise AssertionError("unreachable")


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

    stall = limits.stall_timeout if limits.stall_timeout is not None else TIMEOUT[1]
    deadline = started + limits.attempt_timeout
    # (time, bytes so far) from the oldest point still within the last STALL_BYTES received.
    window: deque[tuple[float, int]] = deque([(time.monotonic(), 0)])
    got = 0
    of = f" of {total}" if total is not None else ""
    while True:
        try:
            data = response.raw.read1(READ, decode_content=False)
        except (URLLib3Error, OSError) as error:
            raise _failure(error, url, limits.hint, got=f"{already + got}{of}") from None
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
    size = limits.max_bytes
    cap = f"{size >> 20} MiB" if size >= 1 << 20 else f"{size} bytes"
    return BuildError(
        f"{url} {said}, more than the {cap} this tool takes for {limits.what}; nothing was kept",
        limits.hint,
    )


# Small GETs: an API's answer, read whole.


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
    source: str | None = None,
) -> Page:
    """A small GET, read whole (at most `limits.max_bytes`), answered 200; retried like a
    download after connection trouble or a 5xx. Any other answer, a rate limit included, raises
    HTTPStatusError with its headers. `source`: where `url` came from, for check_url."""
    check_url(url, allow_http, source=source)

    def once() -> Page:
        started = time.monotonic()
        with _deadline(limits), _request(url, headers or {}, allow_http, limits, hint) as answer:
            _check_status(url, answer, (200,), wait_out_limits=False)
            _check_size(url, _content_length(answer.headers), limits)
            body = bytearray()
            _stream(answer, url, limits, started, 0, None, body.extend)
            return Page(url, body, answer.links)

    return _retrying(once, url=url, what=f"request to {url}", retries=retries, hint=hint)


# Downloads: into a file, resumed across attempts.


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
        job = _Download(url, tmp, final.name, check_start, show_progress, allow_http, limits)
        actual = _retrying(
            job.attempt,
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


@dataclass
class _Download:
    """One download across its attempts: what to fetch and how, and the bytes received so far
    (kept in `path`, hashed as they arrive)."""

    url: str
    path: Path
    label: str
    check_start: Callable[[bytes], None] | None
    show_progress: bool
    allow_http: bool
    limits: Limits
    received: int = 0
    digest: _hashlib.HASH = field(default_factory=hashlib.sha256)
    validator: str | None = None  # ETag or Last-Modified of what they came from: If-Range

    def reset(self) -> None:
        self.received, self.digest, self.validator = 0, hashlib.sha256(), None

    def attempt(self) -> str:
        """One try, within the deadline: the rest of the file (or all of it); its sha256."""
        with _deadline(self.limits):
            started = time.monotonic()
            with self._ask() as response:
                accepted = (200, 206) if self.received else (200,)
                _check_status(self.url, response, accepted, wait_out_limits=True)
                total = self._take(response)
                _check_size(self.url, total, self.limits)
                self._receive(response, total, started)
            if total is not None and self.received < total:
                raise _Transient(f"cut off after {self.received} of {total} bytes")
            return self.digest.hexdigest()

    def _ask(self) -> requests.Response:
        """A GET for the bytes not received yet: a Range request once some are."""
        headers = {}
        if self.received:
            headers["Range"] = f"bytes={self.received}-"
            if self.validator:  # changed since? then the whole file (200), not a splice
                headers["If-Range"] = self.validator
        response = self._get(headers)
        if response.status_code == 416 and self.received:
            response.close()
            say("", f"{self.url}: cannot resume (HTTP 416); downloading afresh")
            self.reset()
            response = self._get({})
        return response

    def _get(self, headers: Mapping[str, str]) -> requests.Response:
        return _request(self.url, headers, self.allow_http, self.limits, "check --base-url")

    def _take(self, response: requests.Response) -> int | None:
        """The whole file's size, as an accepted answer tells it: a 206 must go on where the
        bytes received stop; a 200 is the whole file (again)."""
        size = _content_length(response.headers)
        if response.status_code == 206:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
            if match is None or int(match[1]) != self.received:
                self.reset()
                raise _Transient("answered a Range request with other bytes; starting afresh")
            if match[3] != "*":
                return int(match[3])
            return None if size is None else self.received + size
        if self.received:  # Range ignored (or If-Range said it changed): all of it again
            say("", f"{self.url}: the server sent the whole file again")
            self.reset()
        etag = response.headers.get("ETag", "")
        strong = etag if etag and not etag.startswith("W/") else None
        self.validator = strong or response.headers.get("Last-Modified")
        return size

    def _receive(self, response: requests.Response, total: int | None, started: float) -> None:
        """The body into the file after the bytes received: a new file's first START bytes are
        held back until check_start has seen them."""
        bar = progress(self.label, total) if self.show_progress else None
        if bar is not None and self.received:
            bar.update(self.received)
        held = bytearray()
        vetting = self.check_start is not None and not self.received
        check_start = self.check_start or (lambda start: None)
        try:
            with self.path.open("r+b") as out:
                out.seek(self.received)
                out.truncate()

                def keep(data: bytes) -> None:
                    nonlocal vetting
                    if vetting:
                        held.extend(data)
                        if len(held) < START:
                            return
                        check_start(bytes(held))
                        vetting, data = False, bytes(held)
                    self._write(out, data, bar)

                _stream(response, self.url, self.limits, started, self.received, total, keep)
                if vetting and held:  # a body shorter than START bytes
                    check_start(bytes(held))
                    self._write(out, bytes(held), bar)
        finally:
            if bar is not None:
                bar.close()

    def _write(self, out: Any, data: bytes, bar: Progress | None) -> None:
        out.write(data)
        self.digest.update(data)
        self.received += len(data)
        if bar is not None:
            bar.update(len(data))
