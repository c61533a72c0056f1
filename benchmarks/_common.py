"""Helpers shared by the benchmark sections: the emulator process, its admin API, statistics."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

__all__ = [
    "EmulatorProcess",
    "admin",
    "emit",
    "emulator_process",
    "load_connections",
    "stats",
]

READY_TIMEOUT = 60.0


class EmulatorProcess:
    """An emulator running in its own process (own GIL), on 127.0.0.1.

    :param base_url: the emulator's root URL (My Domain / instance URL)
    :param state_dir: where the emulator wrote ``connections.json`` and ``demo_private_key.pem``
    :param pid: the emulator's process id (None when attached to an emulator started elsewhere)
    """

    def __init__(self, base_url: str, state_dir: Path, pid: int | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.login_url = self.base_url + "/login"
        self.test_url = self.base_url + "/test"
        self.state_dir = Path(state_dir)
        self.pid = pid

    @property
    def key_path(self) -> Path:
        """The JWT demo app's private key (PEM) written by the emulator."""
        return self.state_dir / "demo_private_key.pem"


def admin(base_url: str, path: str, body: dict[str, Any] | None = None, timeout: float = 120.0) -> Any:
    """Call the emulator's admin API (``/__emulator/<path>``); POST when ``body`` is given.

    :param base_url: the emulator's root URL
    :param path: path under ``/__emulator/``, e.g. ``counters``
    :param body: JSON body for a POST (``{}`` for an empty POST)
    :param timeout: seconds
    """
    url = f"{base_url.rstrip('/')}/__emulator/{path}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    req.add_header("Content-Type", "application/json")
    # No proxy for loopback, whatever the environment says.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def load_connections(state_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The connection dicts the emulator wrote (conn id → dict)."""
    return json.loads((Path(state_dir) / "connections.json").read_text())


@contextmanager
def emulator_process(state_dir: str | os.PathLike[str], python: str | None = None) -> Iterator[EmulatorProcess]:
    """Run ``python -m sf_oauth_provider.emulator --port 0 --state-dir DIR`` until the block exits.

    :param state_dir: directory for the emulator's connection file and key
    :param python: interpreter to run it with (default: this one)
    """
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    log = open(state / "emulator.log", "wb")
    proc = subprocess.Popen(
        [python or sys.executable, "-m", "sf_oauth_provider.emulator", "--port", "0", "--state-dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=log,
        start_new_session=True,
    )
    try:
        base_url = None
        deadline = time.monotonic() + READY_TIMEOUT
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:  # the process ended before READY
                break
            text = line.decode(errors="replace").strip()
            if text.startswith("READY "):
                base_url = text.split(" ", 1)[1]
                break
        if base_url is None:
            raise RuntimeError(f"emulator did not print READY; see {state / 'emulator.log'}")
        yield EmulatorProcess(base_url, state, proc.pid)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()
        log.close()


def stats(samples: list[float]) -> dict[str, Any]:
    """``{"min", "median", "max", "n"}`` of ``samples`` (empty → Nones)."""
    if not samples:
        return {"min": None, "median": None, "max": None, "n": 0}
    return {"min": min(samples), "median": statistics.median(samples), "max": max(samples), "n": len(samples)}


def emit(result: dict[str, Any]) -> None:
    """Print a section's result as the last line of stdout (one JSON object)."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
