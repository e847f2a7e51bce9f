"""Bytes on the wire, counted at the HTTP server: a published directory per step, served on
127.0.0.1 as the fleet tests serve it (tests/e2e/fleet.py), each response's bytes (status line,
headers and body, as written to the socket) recorded with the step being served."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

SERVE_FILE = "serve"  # in the shared directory: which step's directory is served (check-update.sh)


@dataclass(frozen=True)
class Sent:
    step: str  # the step directory served when the request came
    path: str
    status: str
    bytes: int  # written to the socket for it: status line, headers, body


class CountingWriter:
    """A handler's wfile that counts what it writes."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sent = 0

    def write(self, data: bytes) -> int:
        written = self.raw.write(data)
        self.sent += memoryview(data).nbytes if written is None else written
        return memoryview(data).nbytes if written is None else written

    def flush(self) -> None:
        self.raw.flush()

    def close(self) -> None:
        self.raw.close()

    @property
    def closed(self) -> bool:
        return self.raw.closed


@dataclass
class Ledger:
    """Every response the server wrote, in order."""

    sent: list[Sent] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, item: Sent) -> None:
        with self.lock:
            self.sent.append(item)

    def mark(self) -> int:
        """Where the responses from now on start: `since` for bytes_of and paths_of."""
        with self.lock:
            return len(self.sent)

    def of(self, step: str, since: int = 0) -> list[Sent]:
        with self.lock:
            return [item for item in self.sent[since:] if item.step == step]

    def bytes_of(self, step: str, since: int = 0) -> int:
        with self.lock:
            return sum(item.bytes for item in self.sent[since:] if item.step == step)

    def paths_of(self, step: str, since: int = 0) -> list[str]:
        with self.lock:
            return [item.path for item in self.sent[since:] if item.step == step]


class _Counted(http.server.SimpleHTTPRequestHandler):
    """Serves `steps`/<shared/serve>/ and records each response's bytes in `ledger`."""

    steps: Path
    shared: Path
    ledger: Ledger
    requests: list[str]  # "PATH STATUS" lines, as tests/e2e/fleet.py's Server keeps them

    def setup(self) -> None:
        super().setup()
        self.counted = CountingWriter(self.wfile)  # type: ignore[arg-type]
        self.wfile = self.counted  # type: ignore[assignment]

    def _step(self) -> str:
        return (self.shared / SERVE_FILE).read_text().strip()

    def translate_path(self, path: str) -> str:
        self.directory = str(self.steps / self._step())
        return super().translate_path(path)

    def handle_one_request(self) -> None:
        before = self.counted.sent
        self.status = "-"
        super().handle_one_request()
        sent = self.counted.sent - before
        if sent:
            path = getattr(self, "path", "?")
            self.ledger.add(Sent(self._step(), path, self.status, sent))
            self.requests.append(f"{path} {self.status}")

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self.status = str(getattr(code, "value", code))

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class CountingServer:
    url: str  # ends with "/"
    requests: list[str]
    ledger: Ledger


@contextlib.contextmanager
def counting_server(steps: Path, shared: Path) -> Iterator[CountingServer]:
    """A server of `steps`/N/ on 127.0.0.1 (N from `shared`/serve, "0" to start with)."""
    shared.mkdir(parents=True, exist_ok=True)
    (shared / SERVE_FILE).write_text("0\n")
    ledger, requests = Ledger(), list[str]()
    handler = type(
        "Handler",
        (_Counted,),
        {"steps": steps, "shared": shared, "ledger": ledger, "requests": requests},
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield CountingServer(f"http://127.0.0.1:{server.server_address[1]}/", requests, ledger)
    finally:
        server.shutdown()
        server.server_close()
