"""``--tls`` mode (https with a CA in the state dir, named by connections.json) and the
``export AIRFLOW_CONN_...`` lines (``airflow dags test`` has no ``--conn-file-path``)."""

from __future__ import annotations

import json
import shlex
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from sf_oauth_provider.emulator import seed_demo_org, serve
from sf_oauth_provider.emulator.connections import write_connections_file

from .test_cli_and_misc import ROOT, _read_until_ready


def test_tls_mode_serves_https_with_a_ca_in_the_state_dir(tmp_path: Path) -> None:
    with serve(seed_demo_org(42), tls_dir=tmp_path) as emu:
        assert emu.base_url.startswith("https://127.0.0.1:")
        ca = Path(emu.ca_bundle)
        assert ca.parent == tmp_path
        key = tmp_path / "tls-server.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        # a strict default context trusting only this CA verifies the server
        ctx = ssl.create_default_context(cafile=str(ca))
        with httpx.Client(verify=ctx, timeout=10) as client:
            assert client.get(f"{emu.base_url}/id/keys").status_code == 200
            info = client.get(f"https://localhost:{emu.port}/.well-known/openid-configuration").json()
            assert info["token_endpoint"].startswith("https://localhost:")
        # without the CA, verification fails: the certificate is not trusted by default
        with httpx.Client(timeout=10) as client, pytest.raises(httpx.ConnectError):
            client.get(f"{emu.base_url}/id/keys")
        conns = write_connections_file(emu, tmp_path / "connections.json", tmp_path / "key.pem")
        assert {c["extra"]["ca_bundle"] for c in conns.values()} == {str(ca)}
        assert all(c["host"].startswith("https://") for c in conns.values())


def test_env_sh_and_print_env(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sf_oauth_provider.emulator", "--state-dir", str(state), "--print-env", "--tls"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        lines = _read_until_ready(proc)
        base = lines[-1].split()[1]
        assert base.startswith("https://127.0.0.1:")
        exports = [ln for ln in lines if ln.startswith("export AIRFLOW_CONN_")]
        assert len(exports) == 3
        env_sh = (state / "env.sh").read_text().splitlines()
        assert env_sh == exports
        assert stat.S_IMODE((state / "env.sh").stat().st_mode) == 0o600
        conns = json.loads((state / "connections.json").read_text())
        # a shell evaluating the lines gets exactly the connection JSON
        out = subprocess.run(
            ["bash", "-c", f"source {shlex.quote(str(state / 'env.sh'))}; printf %s \"$AIRFLOW_CONN_SALESFORCE_OAUTH_DEFAULT\""],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout
        assert json.loads(out) == conns["salesforce_oauth_default"]
        assert conns["salesforce_oauth_default"]["extra"]["ca_bundle"] == str(state / "tls-ca.pem")
    finally:
        proc.terminate()
        proc.wait(timeout=15)
