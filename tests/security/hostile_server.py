"""A small hostile HTTP server on 127.0.0.1 port 0 for the security tests.

It speaks just enough HTTP/1.1 to read a request and then does what a broken or malicious
"Salesforce" would: drip bytes, send a gzip bomb, loop. Each test passes a ``behave(request,
send, stop)`` function; every connection runs in its own thread and every loop in a behaviour
checks ``stop`` so that :meth:`HostileServer.close` ends them all.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Seen:
    """One request as the server read it."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes = field(repr=False)


Behaviour = Callable[[Seen, Callable[[bytes], None], threading.Event], None]


@dataclass
class HostileServer:
    behave: Behaviour
    requests: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            while not self._stop.is_set():
                seen = self._read_request(conn)
                if seen is None:
                    return
                with self._lock:
                    self.requests.append(seen)
                self.behave(seen, conn.sendall, self._stop)
        except OSError:
            return
        finally:
            conn.close()

    @staticmethod
    def _read_request(conn: socket.socket) -> Seen | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
            if len(data) > 1 << 20:
                return None
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            rest += chunk
        return Seen(method, target, headers, rest[:length])

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        with self._lock:
            for conn in self._conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._accepter.join(5)
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> HostileServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def head(status: int, headers: dict[str, str] | None = None, *, length: int | None = None) -> bytes:
    """A status line and headers (``Connection: close`` unless a length is given)."""
    lines = [f"HTTP/1.1 {status} X"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def reply(status: int, body: bytes, headers: dict[str, str] | None = None) -> Behaviour:
    """A behaviour that answers every request with ``body`` and closes."""

    def behave(_seen: Seen, send: Callable[[bytes], None], _stop: threading.Event) -> None:
        send(head(status, headers, length=len(body)) + body)
        raise OSError("close")  # one request per connection

    return behave
