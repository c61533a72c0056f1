"""Run the emulator with uvicorn in a background thread, bound to 127.0.0.1 only.

``serve()`` pre-binds a loopback socket (port 0 picks a free port), starts uvicorn on it in a
daemon thread, waits until it accepts connections and yields a :class:`RunningEmulator`. The
server is stopped on exit from the context (or by :meth:`RunningEmulator.stop`).

With ``tls_dir`` it writes a private CA and a loopback certificate there (:mod:`.tls`) and
serves https only; ``RunningEmulator.ca_bundle`` is the CA file clients must trust.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import uvicorn

from .app import build_app
from .seed import seed_demo_org
from .state import Org
from .tls import TlsFiles, write_tls_files

__all__ = ["LOOPBACK_HOST", "RunningEmulator", "serve", "start"]

LOOPBACK_HOST = "127.0.0.1"


class _QuietResetFilter(logging.Filter):
    """Hide uvicorn's complaints about deliberately dropped ``reset`` fault responses and about
    ``latency`` faults cancelled at shutdown."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if "returned without completing response" in msg or "timeout graceful shutdown exceeded" in msg:
            return False
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, asyncio.CancelledError)


_FILTER = _QuietResetFilter()


class RunningEmulator:
    """A running emulator: URLs, the served :class:`Org`, and :meth:`stop`."""

    def __init__(
        self,
        org: Org,
        server: uvicorn.Server,
        thread: threading.Thread,
        sock: socket.socket,
        tls: TlsFiles | None = None,
    ) -> None:
        self.org = org
        self.tls = tls
        #: PEM file of the CA that signed the server certificate (TLS mode), else None
        self.ca_bundle: str | None = str(tls.ca_path) if tls else None
        self._server = server
        self._thread = thread
        self._sock = sock
        self.host = LOOPBACK_HOST
        self.port: int = sock.getsockname()[1]
        self.base_url = f"{'https' if tls else 'http'}://{LOOPBACK_HOST}:{self.port}"
        self.login_url = self.base_url + "/login"
        self.test_url = self.base_url + "/test"
        self._stopped = False

    @property
    def running(self) -> bool:
        """True while the server thread is alive."""
        return self._thread.is_alive() and not self._stopped

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server and wait for its thread (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout)
        try:
            self._sock.close()
        except OSError:
            pass

    def __repr__(self) -> str:
        return f"RunningEmulator(base_url={self.base_url!r}, running={self.running})"


def start(
    org: Org | None = None,
    port: int = 0,
    log_level: str = "warning",
    tls_dir: str | os.PathLike[str] | None = None,
) -> RunningEmulator:
    """Start a server (call :meth:`RunningEmulator.stop` yourself; prefer :func:`serve`).

    :param org: the org to serve (default: the seed-42 demo org)
    :param port: port on 127.0.0.1 (0: any free port)
    :param log_level: uvicorn's log level
    :param tls_dir: serve https with a certificate written to this directory
    """
    org = org if org is not None else seed_demo_org()
    tls = write_tls_files(tls_dir) if tls_dir is not None else None
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((LOOPBACK_HOST, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    logging.getLogger("uvicorn.error").addFilter(_FILTER)
    config = uvicorn.Config(
        build_app(org),
        host=LOOPBACK_HOST,
        log_level=log_level,
        access_log=False,
        date_header=False,  # OrgClockDate sets it from the org clock
        lifespan="off",
        timeout_graceful_shutdown=1,
        timeout_keep_alive=5,
        backlog=1024,
        ssl_certfile=str(tls.cert_path) if tls else None,
        ssl_keyfile=str(tls.key_path) if tls else None,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"sf-emulator-{sock.getsockname()[1]}", daemon=True
    )
    thread.start()
    running = RunningEmulator(org, server, thread, sock, tls)
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            running.stop()
            raise RuntimeError("emulator server failed to start")
        time.sleep(0.005)
    org.base_url = running.base_url
    return running


@contextmanager
def serve(
    org: Org | None = None,
    port: int = 0,
    log_level: str = "warning",
    tls_dir: str | os.PathLike[str] | None = None,
) -> Iterator[RunningEmulator]:
    """Run the emulator on ``127.0.0.1:port`` (0: any free port) for the duration of the block
    (https when ``tls_dir`` is given; see :func:`start`)."""
    running = start(org, port, log_level, tls_dir)
    try:
        yield running
    finally:
        running.stop()
