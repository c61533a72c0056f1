"""A real Airflow stack on loopback for the end-to-end tests (no pytest in here).

By default api-server, scheduler, triggerer and dag-processor (SQLite + ``LocalExecutor``, which
every 3.x release accepts for this use); a caller may pass other components, e.g. Celery workers
(:func:`celery_worker`) with their own environment. Each runs in its own process group with a
temp ``AIRFLOW_HOME``; the api-server binds 127.0.0.1 on a free port. :meth:`AirflowStack.stop`
ends every process group: SIGTERM, then SIGKILL after a timeout.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

__all__ = ["AirflowStack", "celery_worker", "free_port", "stack_settings"]

COMPONENTS: dict[str, list[str]] = {
    "api-server": ["api-server", "-H", "127.0.0.1", "-p", "{port}"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
}


def celery_worker(name: str, concurrency: int) -> list[str]:
    """``airflow celery worker`` arguments for a worker called ``name`` (its Celery hostname).

    ``--skip-serve-logs``: the log server would listen on every interface; the tests read the
    task logs from the shared ``AIRFLOW_HOME`` instead.
    """
    return ["celery", "worker", "--celery-hostname", f"{name}@127.0.0.1", "--concurrency", str(concurrency),
            "--skip-serve-logs"]


def stack_settings(base: Path, port: int, admin: str) -> tuple[dict[str, str], str]:
    """The Airflow settings every test stack shares, and the password of its ``admin`` user.

    api-server and execution API on ``port``; the simple auth manager with ``admin`` whose password
    is already in its passwords file (written under ``base``), so that the tests log in as a REST
    client must on every release; fresh Fernet and JWT keys; only the runs a test triggers
    (unpausing a scheduled DAG adds none); short heartbeats and parse intervals.
    """
    from cryptography.fernet import Fernet

    password = secrets.token_urlsafe(16)
    passwords_file = base / "simple_auth_manager_passwords.json"
    passwords_file.write_text(json.dumps({admin: password}))
    return {
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{admin}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
        "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
        "AIRFLOW__API_AUTH__JWT_SECRET": Fernet.generate_key().decode(),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    }, password


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AirflowStack:
    """The running components, their output files and a REST client.

    :param home: the stack's ``AIRFLOW_HOME`` (already migrated)
    :param env: environment for every component
    :param port: the api-server's port
    :param components: name → ``airflow`` CLI arguments (``{port}`` is replaced); default
        :data:`COMPONENTS`
    :param component_env: name → environment entries that only that component gets (e.g. a
        worker's own ``SF_OAUTH_CACHE_DIR``, standing for its own host)
    """

    def __init__(
        self,
        home: Path,
        env: dict[str, str],
        port: int,
        components: dict[str, list[str]] | None = None,
        component_env: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.home = home
        self.env = env
        self.port = port
        self.components = dict(components or COMPONENTS)
        self.component_env = component_env or {}
        self.base_url = f"http://127.0.0.1:{port}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.outputs: dict[str, Path] = {}
        self.api = httpx.Client(base_url=self.base_url, timeout=30)
        self.token = ""

    @property
    def db_path(self) -> Path:
        """The SQLite metadata DB."""
        return self.home / "airflow.db"

    def start(self) -> None:
        """Start every component (own process group, output to ``<home>/<component>.out``)."""
        for name, args in self.components.items():
            out = self.home / f"{name}.out"
            self.outputs[name] = out
            with out.open("wb") as fh:
                self.procs[name] = subprocess.Popen(
                    [sys.executable, "-m", "airflow", *(a.format(port=self.port) for a in args)],
                    env={**self.env, **self.component_env.get(name, {})},
                    cwd=self.home,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )

    def output(self, name: str) -> str:
        """What a component printed so far."""
        path = self.outputs.get(name)
        return path.read_text(encoding="utf-8", errors="replace") if path and path.exists() else ""

    def diagnostics(self, lines: int = 30) -> str:
        """The last lines of every component's output, for assertion messages."""
        return "\n".join(
            f"--- {name} (exit {self.procs[name].poll()}) ---\n" + "\n".join(self.output(name).splitlines()[-lines:])
            for name in self.procs
        )

    def wait_healthy(
        self, timeout: float = 120.0, required: tuple[str, ...] = ("scheduler", "triggerer", "dag_processor")
    ) -> dict[str, Any]:
        """Poll ``/api/v2/monitor/health`` until the metadatabase and the ``required``
        components are healthy."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead:
                raise RuntimeError(f"components exited: {dead}\n{self.diagnostics()}")
            try:
                resp = self.api.get("/api/v2/monitor/health")
                last = resp.json() if resp.status_code == 200 else resp.text
                if resp.status_code == 200 and all(
                    (last.get(c) or {}).get("status") == "healthy"
                    for c in ("metadatabase", *required)
                ):
                    return last
            except (httpx.HTTPError, ValueError) as exc:
                last = repr(exc)
            time.sleep(1)
        raise TimeoutError(f"stack not healthy after {timeout} s: {last}\n{self.diagnostics()}")

    def login(self, username: str, password: str) -> str:
        """Log in as a REST client must (``POST /auth/token``); later API calls carry the token.

        No release-specific shortcut: 3.1 ignores ``simple_auth_manager_all_admins`` for REST
        calls (every call is a 401), so the tests authenticate on every release.

        :param username: a user of ``[core] simple_auth_manager_users``
        :param password: that user's password (from the passwords file)
        :return: the JWT, also for the browser's ``_token`` cookie
        """
        resp = self.api.post("/auth/token", json={"username": username, "password": password})
        if resp.status_code not in (200, 201):
            raise RuntimeError(f"login as {username!r} failed: {resp.status_code} {resp.text}")
        token = str(resp.json()["access_token"])
        self.api.headers["Authorization"] = f"Bearer {token}"
        self.token = token
        return token

    def wait_output(self, name: str, text: str, timeout: float = 120.0) -> None:
        """Wait until component ``name`` has printed ``text`` (e.g. a Celery worker's "ready.")."""
        deadline = time.monotonic() + timeout
        while text not in self.output(name):
            if self.procs[name].poll() is not None or time.monotonic() > deadline:
                raise TimeoutError(f"{name} did not print {text!r} in {timeout} s\n{self.diagnostics()}")
            time.sleep(0.5)

    def wait_dag(self, dag_id: str, timeout: float = 120.0) -> dict[str, Any]:
        """Poll until the dag-processor has serialized ``dag_id``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            resp = self.api.get(f"/api/v2/dags/{dag_id}")
            if resp.status_code == 200:
                return resp.json()
            time.sleep(1)
        raise TimeoutError(f"dag {dag_id} not parsed after {timeout} s\n{self.diagnostics()}")

    def stop(self, timeout: float = 30.0) -> dict[str, int | None]:
        """SIGTERM every process group, SIGKILL what is left after ``timeout``; exit codes."""
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.procs.values():
            # the group may hold children (task runners, gunicorn/uvicorn workers) even after
            # the leader exited
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if proc.poll() is None:
                proc.wait(10)
        self.api.close()
        return {name: proc.returncode for name, proc in self.procs.items()}


def dumps(value: Any) -> str:
    """JSON for request bodies and scans."""
    return json.dumps(value, default=str)
