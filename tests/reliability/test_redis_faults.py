"""A cache never fails a task: Redis down, dying, stalled, full, read-only, or a lock holder killed.

Every case uses a real redis-server. Each one checks that the task still gets a token, that the
process logs exactly one Redis warning, and counts the token requests. The bound: while Redis
cannot be used, each *host* makes at most one token request per token lifetime (its file lock
takes over the single-flight), i.e. the deployment degrades to what the file store gives; a
killed lock holder costs nothing extra, only a wait of at most the lock's expiry.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sf_oauth_provider.client import OAuthConfig, TokenProvider
from sf_oauth_provider.client.stores import safefs
from sf_oauth_provider.client.stores import redis as redis_store
from sf_oauth_provider.client.stores.memory import forget_process_memory
from sf_oauth_provider.client.stores.redis import KEY_PREFIX
from tests.redis_fixtures import _free_port, start_redis_server

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(autouse=True)
def _fresh_process_state():
    """Each test is a new process as far as warnings and Redis back-off go."""
    safefs._WARNED.clear()
    redis_store._DOWN_UNTIL.clear()
    yield
    safefs._WARNED.clear()
    redis_store._DOWN_UNTIL.clear()


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test's own (the test may kill it)."""
    directory = tmp_path / "redis"
    directory.mkdir()
    server = start_redis_server(directory)
    yield server
    server.stop()


def _config(conn: dict) -> OAuthConfig:
    return OAuthConfig.from_connection_fields("sf_redis", host=conn["host"], login=conn["login"],
                                              password=conn["password"], extra=conn["extra"])


def _host(config: OAuthConfig, directory: Path, url: str) -> TokenProvider:
    """The provider a new task process on host ``directory`` builds."""
    forget_process_memory(everything=True)
    return TokenProvider(config, cache_dir=directory, redis_url=url)


def _redis_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "Redis" in r.getMessage()]


def test_redis_down_at_start(emulator, emulator_connections, tmp_path, caplog):
    url = f"redis://127.0.0.1:{_free_port()}/0"  # nothing listens there
    config = _config(emulator_connections["salesforce_oauth_default"])
    with caplog.at_level(logging.WARNING):
        tokens = [_host(config, tmp_path / f"host-{n}", url).get_token() for n in range(3)]
        again = _host(config, tmp_path / "host-0", url).get_token()  # the host's file still serves
    assert all(t.access_token for t in tokens) and again.access_token == tokens[0].access_token
    assert emulator.org.count("token") == 3  # one per host: the file store's number
    warnings = _redis_warnings(caplog)
    assert len(warnings) == 1 and f"127.0.0.1:{url.split(':')[2]}" in warnings[0]


def test_redis_password_never_reaches_the_log(emulator, emulator_connections, tmp_path, caplog):
    url = f"redis://:hunter2-redis-pass@127.0.0.1:{_free_port()}/0"
    with caplog.at_level(logging.WARNING):
        _host(_config(emulator_connections["salesforce_oauth_cc"]), tmp_path, url).get_token()
    assert len(_redis_warnings(caplog)) == 1
    assert "hunter2" not in caplog.text


def test_a_redis_password_in_the_query_never_reaches_the_log_or_repr(emulator, emulator_connections, tmp_path,
                                                                    own_redis, caplog):
    """redis-py reads ``?password=`` as the password: Redis refuses the wrong one, the warning and
    ``repr()`` show the URL without it; with the right one the store works and still hides it."""
    own_redis.client().config_set("requirepass", "right-redis-pass")
    config = _config(emulator_connections["salesforce_oauth_cc"])
    wrong = f"redis://127.0.0.1:{own_redis.port}/0?socket_keepalive=true&password=hunter2-query-pass"
    with caplog.at_level(logging.WARNING):
        assert _host(config, tmp_path / "host-0", wrong).get_token().access_token
    warnings = _redis_warnings(caplog)
    assert len(warnings) == 1 and "AuthenticationError" in warnings[0]
    assert "hunter2" not in caplog.text and "password=***" in warnings[0] and "socket_keepalive=true" in warnings[0]
    assert "hunter2" not in repr(redis_store.RedisStore(wrong, config))

    right = f"redis://127.0.0.1:{own_redis.port}/0?password=right-redis-pass"
    store = redis_store.RedisStore(right, config)
    store.put("probe", _host(config, tmp_path / "host-1", right).get_token())
    assert store.get("probe") is not None  # the password in the query is the one Redis checks
    assert "right-redis-pass" not in repr(store) and "password=***" in repr(store)


def test_redis_dies_between_hosts(emulator, emulator_connections, tmp_path, own_redis, caplog):
    config = _config(emulator_connections["salesforce_oauth_default"])
    first = _host(config, tmp_path / "host-0", own_redis.url).get_token()
    own_redis.process.kill()
    own_redis.process.wait(10)
    with caplog.at_level(logging.WARNING):
        second = _host(config, tmp_path / "host-1", own_redis.url).get_token()
        third = _host(config, tmp_path / "host-1", own_redis.url).get_token()
        back = _host(config, tmp_path / "host-0", own_redis.url).get_token()
    assert second.access_token != first.access_token  # host-1 had to log in itself
    assert third.access_token == second.access_token and back.access_token == first.access_token
    assert emulator.org.count("token") == 2
    assert len(_redis_warnings(caplog)) == 1


def test_redis_dies_during_a_refresh(emulator, emulator_connections, tmp_path, own_redis, caplog):
    """Killed while this host holds the Redis lock and waits for Salesforce: the token still arrives."""
    config = _config(emulator_connections["salesforce_oauth_default"])
    emulator.org.set_faults("token", sequence=[{"kind": "latency", "seconds": 1.5}])
    provider = _host(config, tmp_path / "host-0", own_redis.url)
    result: dict = {}
    with caplog.at_level(logging.WARNING):
        worker = threading.Thread(target=lambda: result.setdefault("token", provider.get_token()))
        worker.start()
        client = own_redis.client()
        deadline = time.monotonic() + 30
        while not client.exists(KEY_PREFIX + config.cache_key + ":lock") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert client.exists(KEY_PREFIX + config.cache_key + ":lock")
        own_redis.process.kill()
        worker.join(60)
        later = _host(config, tmp_path / "host-0", own_redis.url).get_token()
    assert result["token"].access_token and later.access_token == result["token"].access_token
    assert emulator.org.count("token") == 1
    assert len(_redis_warnings(caplog)) == 1


HOLDER = r"""
import json, sys, time
from sf_oauth_provider.client import OAuthConfig
from sf_oauth_provider.client.stores.redis import RedisStore
conn = json.loads(sys.argv[1])
config = OAuthConfig.from_connection_fields("sf_redis", host=conn["host"], login=conn["login"],
                                            password=conn["password"], extra=conn["extra"])
store = RedisStore(sys.argv[2], config, lock_expiry=float(sys.argv[3]))
with store.lock(config.cache_key, 10) as held:
    print("held" if held else "not held", flush=True)
    time.sleep(600)  # "fetching": killed with SIGKILL before it ends
"""


def test_a_lock_holder_killed_mid_fetch_blocks_others_only_until_the_lock_expires(
        emulator, emulator_connections, tmp_path, redis_url, redis_server, caplog):
    conn = emulator_connections["salesforce_oauth_default"]
    config = _config(conn)
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    holder = subprocess.Popen([sys.executable, str(script), json.dumps(conn), redis_url, "3"], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        lock_name = KEY_PREFIX + config.cache_key + ":lock"
        assert 0 < redis_server.client().pttl(lock_name) <= 3000  # it frees itself
        with caplog.at_level(logging.WARNING):
            tokens = [_host(config, tmp_path / f"host-{n}", redis_url).get_token() for n in range(3)]
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)
    assert len({t.access_token for t in tokens}) == 1
    assert emulator.org.count("token") == 1  # the dead holder's fetch never happened: nothing extra
    assert _redis_warnings(caplog) == []


def test_a_full_redis(emulator, emulator_connections, tmp_path, redis_url, redis_server, caplog):
    config = _config(emulator_connections["salesforce_oauth_default"])
    client = redis_server.client()
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "1")
    with caplog.at_level(logging.WARNING):
        tokens = [_host(config, tmp_path / f"host-{n}", redis_url).get_token() for n in range(3)]
        again = [_host(config, tmp_path / f"host-{n}", redis_url).get_token() for n in range(3)]
    assert [t.access_token for t in again] == [t.access_token for t in tokens]
    assert emulator.org.count("token") == 3  # at most one per host
    assert len(_redis_warnings(caplog)) == 1


def test_a_read_only_redis_still_serves_what_it_holds(emulator, emulator_connections, tmp_path, redis_url,
                                                     redis_server, caplog):
    config = _config(emulator_connections["salesforce_oauth_default"])
    first = _host(config, tmp_path / "host-0", redis_url).get_token()
    # a replica of a master that is gone: reads answer, writes fail with READONLY
    redis_server.client().replicaof("127.0.0.1", str(_free_port()))
    with caplog.at_level(logging.WARNING):
        second = _host(config, tmp_path / "host-1", redis_url).get_token()
        assert second.access_token == first.access_token and emulator.org.count("token") == 1
        forced = _host(config, tmp_path / "host-1", redis_url).get_token(force_refresh=True)
    assert forced.access_token != first.access_token
    assert emulator.org.count("token") == 2
    assert len(_redis_warnings(caplog)) == 1


def _wait_until_asleep(server, timeout: float = 10.0) -> None:
    """Return once ``server`` stops answering (a PING times out, not retried): DEBUG SLEEP has begun."""
    import redis

    probe = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=0.2, retry_on_timeout=False, retry=None)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                probe.ping()
            except redis.TimeoutError:
                return
        raise AssertionError(f"redis-server still answered PING after {timeout} s")
    finally:
        probe.close()


def test_a_stalled_redis_does_not_hold_the_task(emulator, emulator_connections, tmp_path, own_redis, caplog):
    config = _config(emulator_connections["salesforce_oauth_default"])
    staller = threading.Thread(target=lambda: own_redis.client().execute_command("DEBUG", "SLEEP", "8"))
    staller.start()
    try:
        _wait_until_asleep(own_redis)
        with caplog.at_level(logging.WARNING):
            tokens = [_host(config, tmp_path / f"host-{n}", own_redis.url).get_token() for n in range(2)]
    finally:
        staller.join(30)
    assert all(t.access_token for t in tokens)
    assert emulator.org.count("token") == 2  # one per host while Redis is left alone
    warnings = _redis_warnings(caplog)
    assert len(warnings) == 1 and "TimeoutError" in warnings[0]


def test_async_path_survives_a_dead_redis(emulator, emulator_connections, tmp_path, caplog):
    import asyncio

    url = f"redis://127.0.0.1:{_free_port()}/0"
    config = _config(emulator_connections["salesforce_oauth_default"])
    with caplog.at_level(logging.WARNING):
        token = asyncio.run(_host(config, tmp_path, url).aget_token())
        again = asyncio.run(_host(config, tmp_path, url).aget_token(force_refresh=True))
    assert token.access_token and again.access_token != token.access_token
    assert emulator.org.count("token") == 2
    assert len(_redis_warnings(caplog)) == 1


def test_redis_back_after_an_outage_is_used_again(emulator, emulator_connections, tmp_path, own_redis):
    config = _config(emulator_connections["salesforce_oauth_default"])
    port = own_redis.port
    own_redis.stop()
    _host(config, tmp_path / "host-0", own_redis.url).get_token()
    restarted = start_redis_server(own_redis.directory, port)
    try:
        redis_store._DOWN_UNTIL.clear()  # the back-off period (30 s) has passed
        first = _host(config, tmp_path / "host-1", restarted.url).get_token(force_refresh=True)
        second = _host(config, tmp_path / "host-2", restarted.url).get_token()
    finally:
        restarted.stop()
    assert second.access_token == first.access_token
    assert emulator.org.count("token") == 2


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379/0", "redis://127.0.0.1:99999/0", "redis://127.0.0.1:6379/0?socket_timeout=abc"])
def test_a_malformed_redis_url_does_not_fail_a_task(emulator, emulator_connections, tmp_path, url, caplog):
    config = _config(emulator_connections["salesforce_oauth_cc"])
    with caplog.at_level(logging.WARNING):
        token = _host(config, tmp_path, url).get_token()
    assert token.access_token and emulator.org.count("token") == 1
    assert len(_redis_warnings(caplog)) == 1


def test_a_malformed_redis_url_with_cache_redis_is_a_config_error(emulator_connections, tmp_path):
    from sf_oauth_provider.client.errors import SalesforceConfigError

    conn = emulator_connections["salesforce_oauth_cc"]
    config = OAuthConfig.from_connection_fields("sf_redis", host=conn["host"], login=conn["login"],
                                                password=conn["password"], extra={**conn["extra"], "cache": "redis"})
    with pytest.raises(SalesforceConfigError) as caught:
        TokenProvider(config, cache_dir=tmp_path, redis_url="http://:pw-in-url@127.0.0.1:6379/0")
    assert caught.value.field == "extra.cache" and "redis_url" in (caught.value.hint or "")
    assert "pw-in-url" not in str(caught.value)
