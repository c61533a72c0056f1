"""The Redis layer against a real redis-server: many hosts share one token, nothing readable in Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sf_oauth_provider.client import OAuthConfig, TokenProvider
from sf_oauth_provider.client.errors import SalesforceConfigError
from sf_oauth_provider.client.stores.memory import forget_process_memory
from sf_oauth_provider.client.stores.redis import KEY_PREFIX, RedisStore

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(180)


def _config(conn: dict, conn_id: str = "sf_redis", **extra) -> OAuthConfig:
    return OAuthConfig.from_connection_fields(conn_id, host=conn["host"], login=conn["login"],
                                              password=conn["password"], extra={**conn["extra"], **extra})


def _host_provider(config: OAuthConfig, cache_dir: Path, **kwargs) -> TokenProvider:
    """A provider as a fresh process on host ``cache_dir`` would build it (empty memory)."""
    forget_process_memory(everything=True)
    return TokenProvider(config, cache_dir=cache_dir, **kwargs)


def _hosts(cache_dir: Path, count: int = 3) -> list[Path]:
    return [cache_dir.parent / f"host-{n}" for n in range(count)]


def test_three_hosts_share_one_token_through_redis(emulator, emulator_connections, cache_dir, redis_url):
    config = _config(emulator_connections["salesforce_oauth_default"])
    tokens = [_host_provider(config, host).get_token() for host in _hosts(cache_dir)]
    assert len({t.access_token for t in tokens}) == 1
    assert emulator.org.count("token") == 1


def test_without_redis_each_host_logs_in(emulator, emulator_connections, cache_dir, monkeypatch):
    monkeypatch.delenv("SF_OAUTH_REDIS_URL", raising=False)
    config = _config(emulator_connections["salesforce_oauth_default"])
    tokens = [_host_provider(config, host).get_token() for host in _hosts(cache_dir)]
    assert len({t.access_token for t in tokens}) == 3
    assert emulator.org.count("token") == 3


def test_cache_file_mode_ignores_a_configured_redis(emulator, emulator_connections, cache_dir, redis_url,
                                                    redis_server):
    config = _config(emulator_connections["salesforce_oauth_default"], cache="file")
    for host in _hosts(cache_dir, 2):
        _host_provider(config, host).get_token()
    assert emulator.org.count("token") == 2
    assert redis_server.client().dbsize() == 0


def test_cache_redis_without_a_url_is_a_config_error_naming_the_setting(emulator_connections, monkeypatch):
    monkeypatch.delenv("SF_OAUTH_REDIS_URL", raising=False)
    config = _config(emulator_connections["salesforce_oauth_default"], cache="redis")
    with pytest.raises(SalesforceConfigError) as caught:
        TokenProvider(config)
    err = caught.value
    assert err.field == "extra.cache"
    assert "sf_redis" in str(err)
    assert "redis_url" in (err.hint or "") and "SF_OAUTH_REDIS_URL" in (err.hint or "")


def test_nothing_in_redis_is_readable_without_the_credentials(emulator, emulator_connections, cache_dir,
                                                              redis_url, redis_server):
    conns = emulator_connections
    tokens = [_host_provider(_config(conns[name]), cache_dir).get_token()
              for name in ("salesforce_oauth_default", "salesforce_oauth_cc", "salesforce_oauth_refresh")]
    client = redis_server.client()
    keys = list(client.scan_iter(count=1000))
    values = [client.get(k) for k in keys if client.type(k) == b"string"]
    assert len(values) >= 3
    secrets = [t.access_token for t in tokens] + [t.refresh_token for t in tokens if t.refresh_token]
    secrets += [c["password"] for c in conns.values()] + [conns["salesforce_oauth_refresh"]["extra"]["refresh_token"]]
    secrets += [c["login"] for c in conns.values()] + [conns["salesforce_oauth_default"]["extra"]["username"]]
    blob = b"\n".join(keys + values)
    for secret in secrets:
        assert secret.encode() not in blob
        assert secret[-16:].encode() not in blob  # no part of it either
    assert all(k.startswith(KEY_PREFIX.encode()) for k in keys)


def test_an_entry_cannot_be_decrypted_with_other_credentials(emulator, emulator_connections, cache_dir,
                                                             redis_url, redis_server):
    conn = emulator_connections["salesforce_oauth_cc"]
    config = _config(conn)
    _host_provider(config, cache_dir).get_token()
    # someone who knows the cache key but holds another secret reads the same Redis entry
    other = dataclasses.replace(config, credential_digest="0" * 64)
    seen = RedisStore(redis_url, other).get(config.cache_key)
    assert seen is None or (not seen.access_token and not seen.refresh_token)  # at most "an entry exists"
    assert RedisStore(redis_url, config).get(config.cache_key) is not None


def test_entries_expire_with_the_token(emulator, emulator_connections, cache_dir, redis_url, redis_server):
    config = _config(emulator_connections["salesforce_oauth_cc"])
    token = _host_provider(config, cache_dir).get_token()
    ttl = redis_server.client().ttl(KEY_PREFIX + config.cache_key)
    left = token.expires_at - time.time()
    assert left < ttl <= left + 300 + 5  # the token's life plus the margin


def test_async_path_shares_the_token_through_redis(emulator, emulator_connections, cache_dir, redis_url):
    config = _config(emulator_connections["salesforce_oauth_default"])
    first = asyncio.run(_host_provider(config, _hosts(cache_dir)[0]).aget_token())
    second = asyncio.run(_host_provider(config, _hosts(cache_dir)[1]).aget_token())
    assert second.access_token == first.access_token
    assert emulator.org.count("token") == 1


def test_async_calls_do_no_sync_redis_io(emulator, emulator_connections, cache_dir, redis_url, monkeypatch):
    """aget_token / ainvalidate use redis.asyncio: the blocking client is never touched."""
    config = _config(emulator_connections["salesforce_oauth_default"])
    provider = _host_provider(config, cache_dir)
    store = provider.cache.layers[-1]
    assert isinstance(store, RedisStore)

    def no_sync():
        raise AssertionError("blocking Redis client used on the async path")

    monkeypatch.setattr(store, "_sync", no_sync)

    async def calls():
        token = await provider.aget_token()
        forget_process_memory(everything=True)
        again = await provider.aget_token(stale_token=token.access_token)
        await provider.ainvalidate(again.access_token)
        return token, again

    token, again = asyncio.run(calls())
    assert token.access_token != again.access_token
    assert emulator.org.count("token") == 2


def test_invalidate_reaches_every_host(emulator, emulator_connections, cache_dir, redis_url):
    config = _config(emulator_connections["salesforce_oauth_default"])
    one, two = _hosts(cache_dir, 2)
    token = _host_provider(config, one).get_token()
    provider = _host_provider(config, one)
    provider.invalidate(token.access_token)
    fresh = _host_provider(config, two).get_token()
    assert fresh.access_token != token.access_token
    assert emulator.org.count("token") == 2


def test_rotated_refresh_token_reaches_a_new_host(emulator, emulator_connections, cache_dir, redis_url):
    """A pod that starts later refreshes with the refresh token rotated on another host."""
    config = _config(emulator_connections["salesforce_oauth_refresh"])
    one, two = _hosts(cache_dir, 2)
    first = _host_provider(config, one).get_token(force_refresh=True)
    second = _host_provider(config, two).get_token(force_refresh=True)
    assert second.access_token != first.access_token
    assert emulator.org.count("token") == 2


HOST = r"""
import json, os, sys, time
from sf_oauth_provider.client import OAuthConfig, TokenProvider
conn = json.loads(sys.argv[1])
config = OAuthConfig.from_connection_fields("sf_redis", host=conn["host"], login=conn["login"],
                                            password=conn["password"], extra=conn["extra"])
go, children = sys.argv[2], []
read_fd, write_fd = os.pipe()
for _ in range(int(sys.argv[3])):
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        while not os.path.exists(go):
            time.sleep(0.002)
        try:
            out = {"fingerprint": TokenProvider(config).get_token().fingerprint}
        except Exception as exc:
            out = {"failure": f"{type(exc).__name__}: {exc}"}
        os.write(write_fd, (json.dumps(out) + "\n").encode())
        os._exit(0)
    children.append(pid)
os.close(write_fd)
print("forked", flush=True)  # every child exists and waits for the go file
for pid in children:
    os.waitpid(pid, 0)
with os.fdopen(read_fd) as fh:
    print(json.dumps([json.loads(line) for line in fh]))
"""


def _run_hosts(conn: dict, cache_dir: Path, tmp_path: Path, redis: str | None, processes: int = 4) -> list[dict]:
    script = tmp_path / "host.py"
    script.write_text(HOST)
    go = tmp_path / "go"
    env = {k: v for k, v in os.environ.items() if k != "SF_OAUTH_REDIS_URL"}
    if redis:
        env["SF_OAUTH_REDIS_URL"] = redis
    hosts = [subprocess.Popen([sys.executable, str(script), json.dumps(conn), str(go), str(processes)], cwd=ROOT,
                              env=dict(env, SF_OAUTH_CACHE_DIR=str(host)), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for host in _hosts(cache_dir)]
    for proc in hosts:  # every host has forked its processes; then all start at once
        assert proc.stdout is not None and proc.stdout.readline().strip() == "forked"
    go.touch()
    results = []
    for proc in hosts:
        out, err = proc.communicate(timeout=150)
        assert proc.returncode == 0, err[-2000:]
        results += json.loads(out.strip().splitlines()[-1])
    return results


def test_three_hosts_of_processes_starting_at_once_make_one_request(emulator, emulator_connections, cache_dir,
                                                                    tmp_path, redis_url):
    results = _run_hosts(emulator_connections["salesforce_oauth_default"], cache_dir, tmp_path, redis_url)
    assert [r for r in results if "failure" in r] == []
    assert len(results) == 12 and len({r["fingerprint"] for r in results}) == 1
    assert emulator.org.count("token") == 1


def test_three_hosts_of_processes_without_redis_make_one_request_each(emulator, emulator_connections, cache_dir,
                                                                      tmp_path):
    results = _run_hosts(emulator_connections["salesforce_oauth_default"], cache_dir, tmp_path, None)
    assert [r for r in results if "failure" in r] == []
    assert len({r["fingerprint"] for r in results}) == 3
    assert emulator.org.count("token") == 3


def test_hook_reads_the_airflow_setting(emulator, sf_connections, cache_dir, redis_server, redis_url, monkeypatch):
    from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

    monkeypatch.delenv("SF_OAUTH_REDIS_URL")
    monkeypatch.setenv("AIRFLOW__SF_OAUTH__REDIS_URL", redis_url)
    forget_process_memory(everything=True)
    first = SalesforceOAuthHook().get_token()
    monkeypatch.setenv("SF_OAUTH_CACHE_DIR", str(cache_dir.parent / "other-host"))
    forget_process_memory(everything=True)
    second = SalesforceOAuthHook().get_token()
    assert first.access_token == second.access_token
    assert emulator.org.count("token") == 1
    assert redis_server.client().dbsize() >= 1


def test_threads_of_one_process_and_another_host_make_one_request(emulator, emulator_connections, cache_dir,
                                                                 redis_url):
    config = _config(emulator_connections["salesforce_oauth_default"])
    providers = [TokenProvider(config, cache_dir=host) for host in _hosts(cache_dir, 2) for _ in range(4)]
    forget_process_memory(everything=True)
    results: list[str] = []
    threads = [threading.Thread(target=lambda p=p: results.append(p.get_token().access_token)) for p in providers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 8 and len(set(results)) == 1
    assert emulator.org.count("token") == 1


def test_airflow_config_declares_the_redis_url_setting():
    """``airflow config list`` shows [sf_oauth] redis_url, sensitive, unset by default."""
    import airflow
    import jsonschema

    from sf_oauth_provider.get_provider_info import get_provider_info

    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)
    from airflow.providers_manager import ProvidersManager

    from sf_oauth_provider._compat import conf

    # what `airflow config list` reads for providers, on every 3.x release (3.2+ also merge it into
    # conf.configuration_description at start; 3.0/3.1 only on demand)
    option = dict(ProvidersManager().provider_configs)["sf-oauth-provider"]["sf_oauth"]["options"]["redis_url"]
    assert option["sensitive"] is True and option["default"] is None
    assert conf.get("sf_oauth", "redis_url", fallback=None) is None


def test_hook_processes_on_three_hosts_make_one_request(emulator, sf_connections, cache_dir, redis_url):
    """The Airflow path: tests.helpers.token_procs on three hosts, Redis set through Airflow's config."""
    env = {k: v for k, v in os.environ.items() if k != "SF_OAUTH_REDIS_URL"}
    env["AIRFLOW__SF_OAUTH__REDIS_URL"] = redis_url
    hosts = [subprocess.Popen([sys.executable, "-m", "tests.helpers.token_procs", "together", "4"], cwd=ROOT,
                              env=dict(env, SF_OAUTH_CACHE_DIR=str(host)), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for host in _hosts(cache_dir)]
    fingerprints = []
    for proc in hosts:
        out, err = proc.communicate(timeout=150)
        assert proc.returncode == 0, err[-2000:]
        result = json.loads(out.strip().splitlines()[-1])
        assert result["failures"] == []
        fingerprints += result["fingerprints"]
    assert len(fingerprints) == 12 and len(set(fingerprints)) == 1
    assert emulator.org.count("token") == 1


def test_the_cache_reports_the_layers_it_really_uses(emulator_connections, cache_dir, redis_server, monkeypatch):
    """With Redis configured the cache said mode='file' (issue 27): it names Redis and every layer."""
    url = redis_server.url.replace("redis://", "redis://:hunter2secret@", 1)
    monkeypatch.setenv("SF_OAUTH_REDIS_URL", url)
    config = _config(emulator_connections["salesforce_oauth_default"])
    cache = TokenProvider(config, cache_dir=cache_dir).cache
    assert cache.mode == "redis" and cache.layer_names == ("memory", "file", "redis")
    assert "mode='redis'" in repr(cache) and "layers='memory+file+redis'" in repr(cache)
    assert "hunter2secret" not in repr(cache)

    file_only = TokenProvider(_config(emulator_connections["salesforce_oauth_default"], cache="file"),
                              cache_dir=cache_dir).cache
    assert file_only.mode == "file" and file_only.layer_names == ("memory", "file")
    monkeypatch.delenv("SF_OAUTH_REDIS_URL")
    assert TokenProvider(config, cache_dir=cache_dir).cache.mode == "file"  # auto without Redis


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://:pw-1@127.0.0.1:6379/0", "redis://***@127.0.0.1:6379/0"),
    ("redis://ops:pw-1@127.0.0.1:6379/0", "redis://ops:***@127.0.0.1:6379/0"),
    ("redis://127.0.0.1:6379/0?password=pw-1", "redis://127.0.0.1:6379/0?password=***"),
    ("rediss://h:6380/0?username=ops&password=pw-1&ssl_password=pw-2&db=1",
     "rediss://h:6380/0?username=ops&password=***&ssl_password=***&db=1"),
    ("redis://h/0?pass%77ord=pw-1", "redis://h/0?pass%77ord=***"),  # redis-py decodes the name
    ("redis://h/0?a=1;password=pw-1", "redis://h/0?a=1;password=***"),
    ("redis://:pw-1@h/0?password=pw-2", "redis://***@h/0?password=***"),
    ("redis://[::1/0?password=pw-1", "redis://***"),  # unparseable: nothing of it is shown
    ("redis://127.0.0.1:6379/0?socket_timeout=5", "redis://127.0.0.1:6379/0?socket_timeout=5"),
])
def test_redacted_url_hides_every_password_redis_py_reads(url, shown):
    from sf_oauth_provider.client.stores.redis import redacted_url

    assert redacted_url(url) == shown
