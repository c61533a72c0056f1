"""A refresh token is never sent twice (DESIGN §5, "Rotation never bricks a connection").

Salesforce revokes the live refresh token (and its access tokens) when one that rotation retired
is presented again. The emulator's "Data Loader" app (``salesforce_oauth_refresh``) rotates on
every refresh and models that reuse detection, so "the connection is alive" is a fact the
emulator states: the refresh token the chain was rotated into last is still valid.

Each path that used to resend a retired refresh token has a test here, driven for real: the
emulator completes a grant and then answers late or drops the connection, a real ``redis-server``
holds the shared entries, and separate processes with separate cache directories play the hosts.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sf_oauth_provider.client import OAuthConfig, TokenProvider
from sf_oauth_provider.client.errors import SalesforceOAuthError
from sf_oauth_provider.client.oauth import RetryPolicy
from sf_oauth_provider.client.stores.redis import KEY_PREFIX, RedisStore
from sf_oauth_provider.client.token import fingerprint
from tests.helpers.rotation_host import ANSWER

ROOT = Path(__file__).resolve().parents[2]
CONN = "salesforce_oauth_refresh"

pytestmark = pytest.mark.timeout(180)


# ---- what the emulator says ---------------------------------------------------------------------

def token_entries(client) -> list[bytes]:
    """The Redis keys holding token entries (``sf_oauth:v1:<32 hex>``): not the lock, the
    generation and rotation marks, the login budget's counts or a last-error record."""
    return [k for k in client.scan_iter(KEY_PREFIX + "*") if re.fullmatch(rb"sf_oauth:v1:[0-9a-f]{32}", k)]

def chain_alive(emulator) -> bool:
    """The demo refresh token's chain still has a live refresh token (nothing revoked it)."""
    org = emulator.org
    with org.lock:
        appr = org.approvals.get(org.demo.refresh_token)
        seen = 0
        while appr is not None and appr.successor is not None and seen < 10_000:
            appr, seen = appr.successor, seen + 1
        return appr is not None and org.approval_valid(appr)


def live_refresh_fingerprint(emulator) -> str | None:
    """The fingerprint of the one live refresh token of the demo chain."""
    org = emulator.org
    with org.lock:
        appr = org.approvals.get(org.demo.refresh_token)
        while appr is not None and appr.successor is not None:
            appr = appr.successor
        return fingerprint(appr.refresh_token) if appr is not None and org.approval_valid(appr) else None


def refresh_grants(emulator) -> int:
    return emulator.org.count("token", grant="refresh_token")


# ---- hosts --------------------------------------------------------------------------------------
def conn_with(emulator_connections, **extra: Any) -> dict[str, Any]:
    conn = json.loads(json.dumps(emulator_connections[CONN]))
    conn["extra"].update({k: str(v) for k, v in extra.items()})
    return conn


def provider_for(conn: dict[str, Any], cache_dir: Path, redis_url: str | None = None,
                 lock_expiry: float = 30.0) -> TokenProvider:
    config = OAuthConfig.from_connection_fields(
        "rotation", host=conn["host"], login=conn["login"], password=conn.get("password"), extra=conn["extra"]
    )
    layers = (RedisStore(redis_url, config, lock_expiry=lock_expiry),) if redis_url else ()
    return TokenProvider(config, cache_dir=cache_dir, shared_layers=layers,
                         retry=RetryPolicy(attempts=3, initial_backoff=0.05, max_backoff=0.2))


def host(conn: dict[str, Any], cache_dir: Path, redis_url: str | None, command: str, *args: str,
         lock_expiry: float = 30.0) -> subprocess.Popen:
    cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.rotation_host", json.dumps(conn), str(cache_dir), redis_url or "-",
         str(lock_expiry), command, *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )


def answer(proc: subprocess.Popen, timeout: float = 120) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    for line in out.splitlines():
        if line.startswith(ANSWER):
            return json.loads(line[len(ANSWER):])
    raise AssertionError(f"host process gave no answer (exit {proc.returncode}): {err[-3000:]}")


def wait_until(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


# ---- 1. a refresh whose answer is lost is not resent ---------------------------------------------
def get_token(provider: TokenProvider, mode: str, **kwargs: Any):
    """``provider.get_token`` (``sync``) or ``aget_token`` run to completion (``async``)."""
    if mode == "async":
        return asyncio.run(provider.aget_token(**kwargs))
    return provider.get_token(**kwargs)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("fault", ["late=3", "drop"])
def test_a_refresh_whose_answer_is_lost_is_never_resent(emulator, emulator_connections, tmp_path, fault, mode):
    """Salesforce rotated the refresh token, the answer came after the deadline (or never): the
    retired token must not be sent again — the token it was rotated into stays valid."""
    emulator.org.set_faults("token", sequence=[fault])
    provider = provider_for(conn_with(emulator_connections, timeout=1), tmp_path / "cache")
    with pytest.raises(SalesforceOAuthError) as lost:
        get_token(provider, mode)
    assert refresh_grants(emulator) == 1, "the refresh grant was sent again after it may have been delivered"
    assert chain_alive(emulator), "a resent retired refresh token revoked the live one"
    message = str(lost.value)
    assert "rotated" in message and "refresh_token" in message  # what happened, and which field to set
    assert not lost.value.transient  # nothing a retry can fix: Airflow must not retry it
    # the next attempt (another task, another host) does not send it either
    with pytest.raises(SalesforceOAuthError):
        provider_for(conn_with(emulator_connections, timeout=1), tmp_path / "other-host").get_token()
    assert refresh_grants(emulator) == 1
    assert chain_alive(emulator)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("fault", ["reset", "stall=3"])
def test_a_refresh_that_never_reached_salesforce_is_sent_again_after_checking(
        emulator, emulator_connections, tmp_path, fault, mode):
    """The connection dropped before Salesforce did the work: the client cannot tell, so it asks
    Salesforce (introspection: the refresh token is still active) before sending it again."""
    emulator.org.set_faults("token", sequence=[fault])
    provider = provider_for(conn_with(emulator_connections, timeout=1), tmp_path / "cache")
    token = get_token(provider, mode)
    assert refresh_grants(emulator) == 2
    assert token.refresh_token and fingerprint(token.refresh_token) == live_refresh_fingerprint(emulator)


# ---- 2. the Redis lock outlives the fetch it guards ------------------------------------------------
@pytest.mark.parametrize("force", ["force", "aforce"])
def test_a_slow_refresh_keeps_the_redis_lock_so_another_host_waits(emulator, emulator_connections, tmp_path,
                                                                   redis_url, force):
    """Host A's refresh takes 4 s with a 1.5 s lock expiry; host B asks meanwhile. B must wait for
    A's token instead of taking the expired lock and refreshing with the same refresh token."""
    conn = conn_with(emulator_connections)
    emulator.org.set_faults("token", sequence=["latency=4"])
    a = host(conn, tmp_path / "a", redis_url, force, lock_expiry=1.5)
    wait_until(lambda: refresh_grants(emulator) == 1)  # A's request is in (the emulator waits 4 s)
    b = host(conn, tmp_path / "b", redis_url, force, lock_expiry=1.5)
    first, second = answer(a), answer(b)
    assert "error" not in first and "error" not in second, (first, second)
    assert chain_alive(emulator)
    assert refresh_grants(emulator) == 2  # B, after A, with A's rotated refresh token
    assert second["refresh"] == live_refresh_fingerprint(emulator)


def test_the_rotated_refresh_token_is_stored_before_introspection(emulator, emulator_connections, tmp_path,
                                                                  redis_url):
    """A host killed while it introspects its new token (for the expiry) has already stored the
    rotated refresh token: the next host uses it instead of the retired one."""
    conn = conn_with(emulator_connections)
    assert "error" not in answer(host(conn, tmp_path / "first", redis_url, "get"))  # rotated once: stored
    emulator.org.set_faults("introspect", latency=30)
    introspections = emulator.org.count("introspect")
    # a short lock expiry: the killed host's lock frees itself soon, as a real one does within 30 s
    a = host(conn, tmp_path / "a", redis_url, "force", lock_expiry=2)
    # A's grant is answered and its introspection (for the expiry) has reached the emulator
    wait_until(lambda: refresh_grants(emulator) == 2 and emulator.org.count("introspect") > introspections)
    time.sleep(0.3)
    a.send_signal(signal.SIGKILL)
    a.communicate(timeout=30)
    emulator.org.clear_faults()
    b = answer(host(conn, tmp_path / "b", redis_url, "force", lock_expiry=2))
    assert "error" not in b, b
    assert chain_alive(emulator)
    assert b["refresh"] == live_refresh_fingerprint(emulator)


# ---- 3. the newest refresh token never expires out of Redis ------------------------------------------
def test_the_redis_entry_with_a_rotated_refresh_token_does_not_expire(emulator, emulator_connections, tmp_path,
                                                                     redis_url, redis_server):
    provider = provider_for(conn_with(emulator_connections), tmp_path / "a", redis_url)
    provider.get_token()
    client = redis_server.client()
    (entry,) = token_entries(client)
    assert client.ttl(entry) == -1, "an @monthly DAG would find the newest refresh token expired"


@pytest.mark.parametrize("loss", ["evicted", "flushed"])
def test_a_lost_redis_entry_does_not_make_a_new_host_send_the_configured_refresh_token(
        emulator, emulator_connections, tmp_path, redis_url, redis_server, loss):
    """Redis lost the entry (eviction, FLUSHALL) after a rotation; a new pod with an empty cache
    must say so instead of sending the configured (retired) refresh token."""
    conn = conn_with(emulator_connections)
    provider_for(conn, tmp_path / "a", redis_url).get_token()
    client = redis_server.client()
    if loss == "flushed":
        client.flushall()
    else:
        for key in token_entries(client):
            client.delete(key)
    with pytest.raises(SalesforceOAuthError) as missing:
        provider_for(conn, tmp_path / "new-pod", redis_url).get_token()
    assert refresh_grants(emulator) == 1
    assert chain_alive(emulator)
    assert "refresh_token" in str(missing.value) and not missing.value.transient


# ---- 4. a replayed older Redis entry is refused --------------------------------------------------
def test_an_older_redis_entry_put_back_is_refused(emulator, emulator_connections, tmp_path, redis_url, redis_server):
    conn = conn_with(emulator_connections)
    a = provider_for(conn, tmp_path / "a", redis_url)
    a.get_token()
    client = redis_server.client()
    (entry,) = token_entries(client)
    old = client.get(entry)
    a.get_token(force_refresh=True)  # rotated again: the saved entry's refresh token is retired
    client.set(entry, old)  # someone with write access puts the older entry back
    with pytest.raises(SalesforceOAuthError) as rolled_back:
        provider_for(conn, tmp_path / "new-pod", redis_url).get_token(force_refresh=True)
    assert refresh_grants(emulator) == 2, "the replayed entry's retired refresh token was sent"
    assert chain_alive(emulator)
    assert "older" in str(rolled_back.value)
    # the host that holds the newest token heals the store
    healed = a.get_token(force_refresh=True)
    assert fingerprint(healed.refresh_token) == live_refresh_fingerprint(emulator)
    assert provider_for(conn, tmp_path / "third", redis_url).get_token().fingerprint == healed.fingerprint


# ---- the property: whatever the network does, the connection stays alive ----------------------------
def test_many_hosts_refreshing_through_faults_keep_the_connection_alive(emulator, emulator_connections, tmp_path,
                                                                      redis_url):
    """3 hosts x 2 processes refresh a rotating connection at random for 12 s while the token
    endpoint answers 503, resets, or stalls past the client's deadline (nothing processed, but
    the client cannot tell), introspection is slow or failing, and every slow refresh outlives the
    1.5 s lock expiry (the lock's keeper must extend it; its margin, 1 s, is wide enough for a
    loaded CI machine: at 0.6 s a starved keeper thread once let the lock lapse mid-refresh — a
    process paused longer than the expiry is the documented limit). Afterwards Salesforce still accepts the newest refresh token and every
    process gets a token. (Answers lost *after* Salesforce rotated cannot be survived by anyone:
    the tests above show that they end in a clear error, never in a revoked chain.)"""
    conn = conn_with(emulator_connections, timeout=3)
    emulator.org.set_faults("token", rate=0.3, kinds=["json503", "reset", "stall=3.5", "latency=2"])
    emulator.org.set_faults("introspect", rate=0.2, kinds=["json503", "latency=2.5"])
    go = tmp_path / "go"
    procs = [host(conn, tmp_path / f"host{n // 2}", redis_url, "loop", "12", str(n), str(go), lock_expiry=1.5)
             for n in range(6)]
    time.sleep(12)
    time.sleep(4)  # let calls in flight end under the faults
    emulator.org.clear_faults()
    go.touch()
    results = [answer(p, timeout=150) for p in procs]
    assert chain_alive(emulator), results
    for result in results:
        assert "fatal" not in result, results
        assert "error" not in result["last"], results
    assert sum(r["passed"] for r in results) >= 6, results
    live = live_refresh_fingerprint(emulator)
    assert any(r["last"]["refresh"] == live for r in results)  # the last refresh holds the live token
    assert emulator.org.count("token", grant="refresh_token") > 6  # the faults really made them refresh


# ---- Redis settings that would lose the newest refresh token -------------------------------------
def test_redis_settings_that_can_lose_the_refresh_token_are_warned_about_once(
        emulator, emulator_connections, tmp_path, redis_url, redis_server, caplog):
    """An eviction policy that may drop keys without an expiry, and a server that keeps nothing on
    disk, each get one warning naming the setting, read with CONFIG GET at the first write."""
    from sf_oauth_provider.client.stores import redis as redis_store
    from sf_oauth_provider.client.stores import safefs

    client = redis_server.client()
    client.config_set("maxmemory-policy", "allkeys-lru")  # the fixture's server has no AOF and no RDB
    redis_store._SETTINGS_CHECKED.clear()
    safefs._WARNED.clear()
    caplog.set_level("WARNING")
    provider = provider_for(conn_with(emulator_connections), tmp_path / "a", redis_url)
    provider.get_token()
    provider.get_token(force_refresh=True)
    warnings = [r.getMessage() for r in caplog.records if "Redis at" in r.getMessage()]
    assert sum("maxmemory-policy allkeys-lru" in w for w in warnings) == 1, warnings
    assert sum("keeps no data on disk" in w for w in warnings) == 1, warnings
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("appendonly", "yes")
    redis_store._SETTINGS_CHECKED.clear()
    safefs._WARNED.clear()
    caplog.clear()
    provider_for(conn_with(emulator_connections), tmp_path / "b", redis_url).get_token(force_refresh=True)
    client.config_set("appendonly", "no")
    assert not [r for r in caplog.records if "Redis at" in r.getMessage()]
