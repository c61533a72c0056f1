"""Helpers for the ``sf-oauth`` CLI tests: each command runs in a process of its own, with
connections as ``AIRFLOW_CONN_*`` JSON, a temporary ``AIRFLOW_HOME`` and token cache.

By default that process is forked from the test process, which has imported Airflow already, and
runs the console script's ``main()`` with the command's environment and its own stdout/stderr
pipes: the same code as the installed script, without paying Airflow's import (5–8 s a command on
a loaded 2-core machine) for every one of ~60 commands. ``program=SF_OAUTH`` (or ``AIRFLOW``) runs
the real executable instead; ``test_console_script_is_installed_and_runs`` keeps that path tested."""

from __future__ import annotations

import io
import json
import os
import selectors
import signal
import subprocess
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

SF_OAUTH = Path(sys.executable).with_name("sf-oauth")
AIRFLOW = Path(sys.executable).with_name("airflow")


@dataclass
class CliRun:
    """One run of a command: exit status and what it printed."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Cli:
    """Runs ``sf-oauth`` (or ``airflow``) in a clean environment.

    :ivar connections: conn id → connection dict, passed as ``AIRFLOW_CONN_<ID>``
    :ivar env: extra variables (e.g. ``SF_OAUTH_REDIS_URL``)
    :ivar secrets: values that must never be printed (checked after every run)
    """

    home: Path
    connections: dict[str, dict[str, Any]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    secrets: set[str] = field(default_factory=set)
    #: the latest run a test kept, to check again once more secrets are known
    last: CliRun | None = None

    def environment(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SF_OAUTH"))}
        base.update({
            "AIRFLOW_HOME": str(self.home / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "SF_OAUTH_CACHE_DIR": str(self.home / "token-cache"),
            "PYTHONIOENCODING": "utf-8",
            **{f"AIRFLOW_CONN_{cid.upper()}": json.dumps(conn) for cid, conn in self.connections.items()},
            **self.env,
        })
        return base

    def run(self, *args: str, program: Path | None = None, timeout: float = 180) -> CliRun:
        if program is None:
            result = _forked_main(list(args), self.environment(), timeout)
        else:
            proc = subprocess.run([str(program), *args], env=self.environment(), capture_output=True, text=True,
                                  timeout=timeout, check=False)
            result = CliRun(proc.returncode, proc.stdout, proc.stderr)
        self.assert_no_secret(result)
        return result

    def assert_no_secret(self, result: CliRun) -> None:
        for secret in self.secrets:
            assert secret not in result.output, "a secret was printed"


def _forked_main(argv: list[str], env: dict[str, str], timeout: float) -> CliRun:
    """``sf_oauth_provider.cli.main(argv)`` in a forked child with ``env`` and fresh stdout/stderr."""
    from sf_oauth_provider.cli import main

    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "multi-threaded, use of fork()": the child only runs main()
        pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 99
        try:
            os.close(out_r)
            os.close(err_r)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", closefd=False), encoding="utf-8", line_buffering=True)
            sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", closefd=False), encoding="utf-8", line_buffering=True)
            os.environ.clear()
            os.environ.update(env)
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
        except BaseException:  # noqa: BLE001 - reported to the parent through stderr
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    os.close(out_w)
    os.close(err_w)
    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        for fd in chunks:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map() and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1.0):
                data = os.read(key.fd, 65536)
                if data:
                    chunks[key.fd].append(data)
                else:
                    sel.unregister(key.fd)
        timed_out = bool(sel.get_map())
    if timed_out:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    for fd in chunks:
        os.close(fd)
    code = os.waitstatus_to_exitcode(status)
    stdout, stderr = (b"".join(chunks[fd]).decode("utf-8", "replace") for fd in (out_r, err_r))
    assert code != 99, f"the command crashed:\n{stderr[-3000:]}"
    return CliRun(code, stdout, stderr)


def secrets_of(conns: dict[str, dict[str, Any]], key_path: Path | None = None) -> set[str]:
    """Every secret the connections hold (consumer secrets, refresh tokens, passphrases, key lines)."""
    found: set[str] = set()
    for conn in conns.values():
        if conn.get("password"):
            found.add(conn["password"])
        extra = conn.get("extra") or {}
        for name in ("refresh_token", "private_key_passphrase"):
            if extra.get(name):
                found.add(extra[name])
        pem = extra.get("private_key")
        if pem:
            found |= {line for line in pem.splitlines() if len(line) > 40}
    if key_path is not None and key_path.exists():
        found |= {line for line in key_path.read_text().splitlines() if len(line) > 40}
    return found


def issued_secrets(org: Any) -> set[str]:
    """Every access and refresh token the emulator org has issued so far."""
    with org.lock:
        return set(org.access_tokens) | set(org.approvals)


@pytest.fixture
def cli(emulator_connections: dict[str, dict[str, Any]], tmp_path: Path) -> Cli:
    """The CLI with the emulator's demo connections; their secrets must never be printed."""
    runner = Cli(tmp_path, connections=dict(emulator_connections))
    runner.secrets = secrets_of(emulator_connections, tmp_path / "demo_private_key.pem")
    return runner
