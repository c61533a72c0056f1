"""CLI (subprocess), connection files, seeding determinism, import hygiene, server lifecycle."""

from __future__ import annotations

import ast
import json
import queue
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import jwt

import sf_oauth_provider.emulator as emulator_pkg
from sf_oauth_provider.emulator import RunningEmulator, seed_demo_org, serve

from ._util import HTTP, JWT_GRANT

ROOT = Path(__file__).resolve().parents[2]


def _read_until_ready(proc: subprocess.Popen[str], timeout: float = 20.0) -> list[str]:
    """Collect stdout lines (in a thread: select() cannot see Python's read buffer) until READY."""
    lines: "queue.Queue[str | None]" = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        if line is None:
            break
        seen.append(line)
        if line.startswith("READY "):
            return seen
    raise AssertionError(f"emulator CLI did not become ready: {seen!r}")


def test_cli_ready_connections_faults_and_sigterm(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "sf_oauth_provider.emulator", "--state-dir", str(state), "--seed", "7",
            "--page-size", "4", "--fault", "token:json503,html503", "--session-timeout", "600",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = _read_until_ready(proc)
        base = lines[-1].split()[1]
        assert base.startswith("http://127.0.0.1:")
        out = "\n".join(lines)
        assert f"{base}/login" in out and f"{base}/test" in out
        conn_file, key_file = state / "connections.json", state / "demo_private_key.pem"
        assert str(conn_file) in out and str(key_file) in out
        for f in (conn_file, key_file):
            assert stat.S_IMODE(f.stat().st_mode) == 0o600
        conns = json.loads(conn_file.read_text())
        default = conns["salesforce_oauth_default"]
        assert default["host"] == f"{base}/login" and default["extra"]["jwt_key_file"] == str(key_file)
        assert conns["salesforce_oauth_cc"]["host"] == base

        claims = {"iss": default["login"], "sub": default["extra"]["username"], "aud": "https://login.salesforce.com",
                  "exp": int(time.time()) + 120}
        a = jwt.encode(claims, key_file.read_text(), algorithm="RS256")
        url = f"{default['host']}/services/oauth2/token"
        with httpx.Client(timeout=10) as c:
            assert c.post(url, data={"grant_type": JWT_GRANT, "assertion": a}).status_code == 503
            assert c.post(url, data={"grant_type": JWT_GRANT, "assertion": a}).status_code == 503
            r = c.post(url, data={"grant_type": JWT_GRANT, "assertion": a})
            assert r.status_code == 200, r.text
            tok = r.json()["access_token"]
            q = c.get(f"{base}/services/data/v63.0/query", params={"q": "SELECT Id FROM Account"},
                      headers={"Authorization": f"Bearer {tok}"}).json()
            assert len(q["records"]) == 4 and q["done"] is False
            assert c.get(f"{base}/__emulator/settings").json()["session_timeout"] == 600
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()


def test_connections_fixture(emulator: RunningEmulator, emulator_connections: dict[str, Any], tmp_path: Path) -> None:
    assert set(emulator_connections) == {"salesforce_oauth_default", "salesforce_oauth_cc", "salesforce_oauth_refresh"}
    for conn in emulator_connections.values():
        assert conn["conn_type"] == "salesforce_oauth"
    d = emulator.org.demo
    default = emulator_connections["salesforce_oauth_default"]
    assert (default["host"], default["login"], default["password"]) == (emulator.login_url, d.jwt_consumer_key, d.jwt_consumer_secret)
    assert default["extra"] == {
        "auth_flow": "jwt_bearer", "username": "integration@demo.example",
        "jwt_key_file": str(tmp_path / "demo_private_key.pem"),
    }
    cc = emulator_connections["salesforce_oauth_cc"]
    assert cc["host"] == emulator.base_url and cc["extra"]["auth_flow"] == "client_credentials"
    refresh = emulator_connections["salesforce_oauth_refresh"]
    assert refresh["host"] == emulator.login_url and refresh["extra"]["refresh_token"] == d.refresh_token
    assert (tmp_path / "demo_private_key.pem").read_text() == d.jwt_private_key_pem
    assert json.loads((tmp_path / "connections.json").read_text()) == emulator_connections


def test_seed_is_deterministic() -> None:
    a, b, c = seed_demo_org(42), seed_demo_org(42), seed_demo_org(43)
    assert a.demo.jwt_consumer_key == b.demo.jwt_consumer_key != c.demo.jwt_consumer_key
    assert a.demo.refresh_token == b.demo.refresh_token
    assert a.seed_facts == b.seed_facts
    assert sorted(u.id for u in a.users.values()) == sorted(u.id for u in b.users.values())
    assert a.demo.jwt_private_key_pem == b.demo.jwt_private_key_pem  # cached per seed
    assert "BEGIN PRIVATE KEY" in a.demo.jwt_private_key_pem
    t = time.monotonic()
    a.reset()
    assert time.monotonic() - t < 0.5
    assert a.seed_facts == b.seed_facts
    facts = a.seed_facts
    assert 40 <= facts["oauth_token_count"] <= 60
    assert facts["approval_limit"] == [{"username": "analyst@demo.example", "app": "Salesforce Mobile", "count": 5}]
    assert "former@demo.example" in facts["inactive_usernames"]
    assert len(facts["closed_won_yesterday_ids"]) == 6


def test_emulator_never_imports_airflow() -> None:
    pkg = Path(emulator_pkg.__file__).parent
    for path in pkg.glob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [n.name for n in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level in (0, 1), path  # only sibling-relative imports
                names = [node.module or ""] if node.level == 0 else []
            else:
                continue
            for name in names:
                assert not name.startswith("airflow"), f"{path.name} imports {name}"
                assert not name.startswith("sf_oauth_provider"), f"{path.name} imports {name}"
        assert "__all__" in path.read_text(), f"{path.name} lacks __all__"


def test_serve_binds_loopback_and_stops() -> None:
    with serve(seed_demo_org(42)) as emu:
        assert emu.running and emu.base_url == f"http://127.0.0.1:{emu.port}"
        assert HTTP.get(f"{emu.base_url}/id/keys").status_code == 200
        t = time.monotonic()
    assert time.monotonic() - t < 3
    assert not emu.running
    with socket.socket() as s:  # the port is free again / nothing listening
        assert s.connect_ex(("127.0.0.1", emu.port)) != 0
    emu.stop()  # idempotent
