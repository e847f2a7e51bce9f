"""A raw HTTP server on a loopback address, for faults an ordinary server will not make: a body
cut short of its Content-Length, a stall, odd status lines."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterable

Request = tuple[str, str, dict[str, str]]  # method, path, headers (lower-case names)
Answer = Callable[[str, str, dict[str, str]], Iterable["bytes | float"]]


def head(status: str, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join([*lines, "Connection: close", "", ""])).encode()


class RawServer:
    """A raw HTTP server on `host`: each request, on a thread of its own, is answered by
    `answer(method, path, headers)`: bytes are sent, a number is seconds of silence (a stall,
    cut short when the server stops); then the connection closes."""

    def __init__(
        self, answer: Answer, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
    ) -> None:
        self.answer = answer
        self.tls = tls  # given: https too, on the same port (a TLS handshake is told by its start)
        self.requests: list[Request] = []
        self.sock = socket.create_server((host, 0))
        self.sock.settimeout(0.1)
        self.base_url = f"http://{host}:{self.sock.getsockname()[1]}"
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            request = b""
            scheme = "http"
            try:
                if self.tls is not None and conn.recv(1, socket.MSG_PEEK) == b"\x16":
                    conn, scheme = self.tls.wrap_socket(conn, server_side=True), "https"
                while b"\r\n\r\n" not in request:
                    data = conn.recv(65536)
                    if not data:
                        return
                    request += data
                lines = request.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
                headers = {k.lower(): v for k, v in headers.items()}
                headers[":scheme"] = scheme  # no header of HTTP/1.1 can take this name
                self.requests.append((method, path, headers))
                for part in self.answer(method, path, headers):
                    if isinstance(part, bytes):
                        conn.sendall(part)
                    elif self.stopping.wait(part):
                        return
            except OSError:  # ssl.SSLError too
                return
            finally:
                conn.close()  # the TLS socket, when there is one

    def gets(self, suffix: str) -> list[dict[str, str]]:
        """Headers of each GET whose path ends with `suffix`."""
        return [h for m, p, h in self.requests if m == "GET" and p.endswith(suffix)]

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()
        self.sock.close()
