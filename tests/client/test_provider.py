"""TokenProvider outside Airflow: the same stores, single-flight and rotation as the hook."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sf_oauth_provider.client import OAuthConfig, TokenProvider
from sf_oauth_provider.client.token import fingerprint

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(120)

# A program that cannot import Airflow: 8 processes start at once on a cold file cache.
NO_AIRFLOW = r"""
import json, os, sys, time
sys.modules["airflow"] = None  # any "import airflow..." now raises ImportError
from sf_oauth_provider.client import OAuthConfig, TokenProvider

conn = json.loads(sys.argv[1])
config = OAuthConfig.from_connection_fields("sf_script", host=conn["host"], login=conn["login"],
                                            password=conn["password"], extra=conn["extra"])
go, children = sys.argv[2], []
read_fd, write_fd = os.pipe()
for _ in range(8):
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        while not os.path.exists(go):
            time.sleep(0.002)
        try:
            out = {"fingerprint": TokenProvider(config).get_token().fingerprint}
        except Exception as exc:
            out = {"failure": f"{type(exc).__name__}: {exc}"}
        out["airflow"] = sorted(m for m in sys.modules if m.startswith("airflow.") or (m == "airflow" and sys.modules[m]))
        os.write(write_fd, (json.dumps(out) + "\n").encode())
        os._exit(0)
    children.append(pid)
os.close(write_fd)
open(go, "w").close()
for pid in children:
    os.waitpid(pid, 0)
with os.fdopen(read_fd) as fh:
    print(json.dumps([json.loads(line) for line in fh]))
"""


def test_eight_processes_without_airflow_make_one_token_request(emulator, emulator_connections, cache_dir, tmp_path):
    script = tmp_path / "no_airflow.py"
    script.write_text(NO_AIRFLOW)
    out = subprocess.run(
        [sys.executable, str(script), json.dumps(emulator_connections["salesforce_oauth_default"]),
         str(tmp_path / "go")],
        cwd=ROOT, capture_output=True, text=True, timeout=100,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(results) == 8
    assert [r.get("failure") for r in results] == [None] * 8
    assert {tuple(r["airflow"]) for r in results} == {()}
    assert len({r["fingerprint"] for r in results}) == 1
    assert emulator.org.count("token") == 1
    assert list(cache_dir.glob("*.token"))  # shared through the file store


def config_of(conn: dict, conn_id: str = "sf_script") -> OAuthConfig:
    return OAuthConfig.from_connection_fields(
        conn_id, host=conn["host"], login=conn["login"], password=conn["password"], extra=conn["extra"]
    )


def test_every_secret_handed_out_reaches_on_secret(emulator, emulator_connections, cache_dir):
    seen: list[str] = []
    provider = TokenProvider(config_of(emulator_connections["salesforce_oauth_refresh"]), on_secret=seen.append)
    token = provider.get_token()
    assert token.access_token in seen and token.refresh_token in seen
    assert emulator_connections["salesforce_oauth_refresh"]["password"] in seen  # the consumer secret
    # a token another provider reads from the file store is reported too
    seen_by_other: list[str] = []
    from sf_oauth_provider.client.stores import forget_process_memory

    forget_process_memory(everything=True)
    other = TokenProvider(config_of(emulator_connections["salesforce_oauth_refresh"]), on_secret=seen_by_other.append)
    assert other.get_token() == token
    assert token.access_token in seen_by_other and token.refresh_token in seen_by_other
    assert emulator.org.count("token") == 1


def test_invalidate_keeps_the_rotated_refresh_token(emulator, emulator_connections, cache_dir):
    provider = TokenProvider(config_of(emulator_connections["salesforce_oauth_refresh"]))
    first = provider.get_token()
    assert first.refresh_token != emulator.org.demo.refresh_token  # rotated away at the first refresh
    assert provider.client.revoke(first.access_token)
    provider.invalidate(first.access_token)
    second = provider.get_token()
    assert second.access_token != first.access_token
    assert emulator.org.count("token", grant="refresh_token") == 2
    # the file holds the newest refresh token, not the revoked access token
    from sf_oauth_provider.client.stores import forget_process_memory

    forget_process_memory(everything=True)
    assert TokenProvider(config_of(emulator_connections["salesforce_oauth_refresh"])).get_token() == second


async def test_async_provider_single_flight_and_stale_token(emulator, emulator_connections, cache_dir):
    provider = TokenProvider(config_of(emulator_connections["salesforce_oauth_refresh"]))
    tokens = await asyncio.gather(*(provider.aget_token() for _ in range(20)))
    assert len({t.access_token for t in tokens}) == 1 and emulator.org.count("token") == 1
    cache = await provider.acache()
    assert (await provider.acache()) is cache  # stores built once per provider
    emulator.org.revoke_token(tokens[0].access_token)
    again = await asyncio.gather(*(provider.aget_token(stale_token=tokens[0].access_token) for _ in range(5)))
    assert len({t.access_token for t in again}) == 1 and again[0].access_token != tokens[0].access_token
    assert emulator.org.count("token") == 2
    await provider.ainvalidate(again[0].access_token)
    assert (await provider.aget_token()).access_token not in (tokens[0].access_token, again[0].access_token)
    assert fingerprint((await provider.aget_token()).access_token) != fingerprint(again[0].access_token)


def test_cache_none_still_fetches_every_time(emulator, emulator_connections, cache_dir):
    conn = json.loads(json.dumps(emulator_connections["salesforce_oauth_cc"]))
    conn["extra"]["cache"] = "none"
    provider = TokenProvider(config_of(conn))
    provider.get_token()
    provider.get_token()
    assert emulator.org.count("token") == 2 and not cache_dir.exists()


def test_cache_none_keeps_the_rotated_refresh_token(emulator, emulator_connections, cache_dir):
    conn = json.loads(json.dumps(emulator_connections["salesforce_oauth_refresh"]))
    conn["extra"]["cache"] = "none"
    provider = TokenProvider(config_of(conn))
    first = provider.get_token()
    second = provider.get_token()  # the configured refresh token was rotated away by the first
    assert second.access_token != first.access_token
    assert emulator.org.count("token", grant="refresh_token") == 2 and not cache_dir.exists()
