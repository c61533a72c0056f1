"""pytest fixtures for a real ``redis-server`` on a random loopback port (loaded via ``pytest_plugins``).

* ``redis_server`` (session): one ``redis-server`` (no persistence) in a temp dir, stopped at the end.
* ``redis_url``: its URL, emptied (``FLUSHALL``) and reset to a writable, unlimited server before
  each test; ``SF_OAUTH_REDIS_URL`` is set to it for the test.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

__all__ = ["RedisServer", "redis_server", "redis_url", "start_redis_server"]


@dataclass
class RedisServer:
    """A running ``redis-server`` process.

    :param port: its loopback port
    :param process: the server process (tests may stop or kill it)
    :param directory: its working directory
    """

    port: int
    process: subprocess.Popen
    directory: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis_server(directory: Path, port: int | None = None) -> RedisServer:
    """Start ``redis-server`` on 127.0.0.1 (a free port unless given) and wait until it answers PING."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = port or _free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(directory), "--enable-debug-command", "local"],
        cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    server = RedisServer(port, process, directory)
    deadline = time.monotonic() + 20
    while True:
        try:
            if server.client().ping():
                return server
        except Exception:  # noqa: BLE001 - not up yet
            if process.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"redis-server did not start on port {port}") from None
            time.sleep(0.05)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One ``redis-server`` for the whole session, stopped at its end."""
    with tempfile.TemporaryDirectory(prefix="sf-oauth-redis-") as directory:
        server = start_redis_server(Path(directory))
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The session server, empty and writable, as ``SF_OAUTH_REDIS_URL`` for this test."""
    from sf_oauth_provider.client.stores import redis as redis_store

    redis_store._DOWN_UNTIL.clear()  # a new process: no back-off from an earlier test's outage
    client = redis_server.client()
    client.config_set("maxmemory", "0")
    client.config_set("maxmemory-policy", "noeviction")
    client.replicaof("NO", "ONE")
    client.flushall()
    monkeypatch.setenv("SF_OAUTH_REDIS_URL", redis_server.url)
    yield redis_server.url
    if redis_server.process.poll() is None:
        client.config_set("maxmemory", "0")
        client.replicaof("NO", "ONE")
