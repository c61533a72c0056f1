"""Helpers for the ``sf-oauth`` CLI tests: the real console script of this virtualenv, run with
connections as ``AIRFLOW_CONN_*`` JSON, a temporary ``AIRFLOW_HOME`` and token cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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

    def run(self, *args: str, program: Path = SF_OAUTH, timeout: float = 180) -> CliRun:
        proc = subprocess.run([str(program), *args], env=self.environment(), capture_output=True, text=True,
                              timeout=timeout, check=False)
        result = CliRun(proc.returncode, proc.stdout, proc.stderr)
        self.assert_no_secret(result)
        return result

    def assert_no_secret(self, result: CliRun) -> None:
        for secret in self.secrets:
            assert secret not in result.output, "a secret was printed"


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
