"""Many hosts on a real CeleryExecutor stack: one token request per connection across two workers.

api-server, scheduler and dag-processor (SQLite metadata DB), a real ``redis-server`` on a free
loopback port as Celery's broker and result backend and as the token store (``[sf_oauth]
redis_url``), and two ``airflow celery worker`` processes, each with its own
``SF_OAUTH_CACHE_DIR``: two hosts as far as the token cache can tell. ``sf_many_hosts`` (in
``dags/``) maps a task over 40 instances; each gets a token for ``sf_redis`` (JWT bearer, cache
``redis``) and for ``sf_file`` (client credentials, cache ``file``). The emulator counts token
requests by grant: 1 for the Redis connection across both hosts, and 1 per host that ran tasks
(2) for the file-store one; the existing Salesforce provider logs in once per instance (40).

Marked ``stack``: the stack starts once for the module (about a minute on 2 cores).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from sf_oauth_provider.client.token import fingerprint
from sf_oauth_provider.demo import airflow_env, migrate
from sf_oauth_provider.emulator import RunningEmulator
from sf_oauth_provider.emulator.connections import write_connections_file
from tests.redis_fixtures import RedisServer, start_redis_server

from .stack import COMPONENTS, AirflowStack, celery_worker, free_port, stack_settings

pytestmark = [pytest.mark.stack, pytest.mark.timeout(420)]

DAGS = Path(__file__).resolve().parent / "dags"
DAG_ID = "sf_many_hosts"
TASK = "use_tokens"
INSTANCES = 40
HOSTS = ("host-a", "host-b")
ADMIN = "admin"
TOKEN_DB, BROKER_DB, RESULTS_DB = 0, 1, 2


@dataclass
class CeleryRun:
    stack: AirflowStack
    emulator: RunningEmulator
    redis: RedisServer
    connections: dict[str, dict[str, Any]]
    run: dict[str, Any] = field(default_factory=dict)
    instances: list[dict[str, Any]] = field(default_factory=list)
    results: list[dict[str, str]] = field(default_factory=list)
    redis_dump: dict[int, dict[bytes, Any]] = field(default_factory=dict)


def _dump(client: Any) -> dict[bytes, Any]:
    """Every key of one Redis database with its value, whatever the key's type (SCAN, then read)."""
    readers = {
        b"string": client.get, b"hash": client.hgetall, b"list": lambda k: client.lrange(k, 0, -1),
        b"set": client.smembers, b"zset": lambda k: client.zrange(k, 0, -1),
    }
    dump: dict[bytes, Any] = {}
    for key in client.scan_iter(count=500):
        kind = client.type(key)
        dump[key] = readers[kind](key) if kind in readers else kind
    return dump


@pytest.fixture(scope="module")
def celery_run(emulator_server: RunningEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CeleryRun]:
    """Start Redis and the Celery stack, trigger ``sf_many_hosts`` once, wait; stop everything."""
    emulator = emulator_server
    emulator.org.reset()
    base = tmp_path_factory.mktemp("celery-stack")
    (base / "redis").mkdir()
    redis = start_redis_server(base / "redis")
    dags = base / "dags"
    dags.mkdir()
    shutil.copy(DAGS / f"{DAG_ID}.py", dags)
    demo = write_connections_file(emulator, base / "connections.json", base / "demo_private_key.pem")
    connections = {
        "sf_redis": {**demo["salesforce_oauth_default"],
                     "extra": {**demo["salesforce_oauth_default"]["extra"], "cache": "redis"}},
        "sf_file": {**demo["salesforce_oauth_cc"], "extra": {**demo["salesforce_oauth_cc"]["extra"], "cache": "file"}},
    }
    port = free_port()
    settings, password = stack_settings(base, port, ADMIN)
    redis_base = f"redis://127.0.0.1:{redis.port}"
    env = airflow_env(base / "airflow", dags, connections, base / "unused-cache", base / "output")
    env.update(
        {
            **settings,
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "8",
            "AIRFLOW__CELERY__BROKER_URL": f"{redis_base}/{BROKER_DB}",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"{redis_base}/{RESULTS_DB}",
            # celery 5.6.2 / kombu 5.6.2 (the 3.1.8 row): a forked pool process closes the broker
            # channel it inherited and waits forever for a BRPOP reply meant for the parent, so no
            # task ever starts; a socket timeout bounds that wait (celery/celery#8874)
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__SOCKET_TIMEOUT": "5",
            "AIRFLOW__SF_OAUTH__REDIS_URL": f"{redis_base}/{TOKEN_DB}",
        }
    )
    env.pop("SF_OAUTH_REDIS_URL", None)  # the deployment-wide Airflow config is what is tested
    migrate(env)
    components = {name: COMPONENTS[name] for name in ("api-server", "scheduler", "dag-processor")}
    components.update({name: celery_worker(name, concurrency=4) for name in HOSTS})
    host_env = {name: {"SF_OAUTH_CACHE_DIR": str(base / name)} for name in HOSTS}
    stack = AirflowStack(base / "airflow", env, port, components=components, component_env=host_env)
    run = CeleryRun(stack, emulator, redis, connections)
    try:
        stack.start()
        stack.wait_healthy(required=("scheduler", "dag_processor"))
        for name in HOSTS:
            stack.wait_output(name, "ready.")
        stack.login(ADMIN, password)
        stack.wait_dag(DAG_ID)
        assert stack.api.patch(f"/api/v2/dags/{DAG_ID}", json={"is_paused": False}).status_code == 200
        resp = stack.api.post(f"/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": {}})
        assert resp.status_code == 200, resp.text
        run_id = resp.json()["dag_run_id"]
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            run.run = stack.api.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}").json()
            if run.run.get("state") in ("success", "failed"):
                break
            time.sleep(2)
        tis = stack.api.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", params={"limit": 100}).json()
        run.instances = tis.get("task_instances", [])
        for ti in run.instances:
            entry = stack.api.get(
                f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{TASK}/xcomEntries/return_value",
                params={"map_index": ti["map_index"]},
            )
            if entry.status_code == 200:
                value = entry.json()["value"]
                run.results.append(value if isinstance(value, dict) else json.loads(value))
        client = redis.client()
        run.redis_dump = {}
        for db in (TOKEN_DB, BROKER_DB, RESULTS_DB):
            client.execute_command("SELECT", db)
            run.redis_dump[db] = _dump(client)
        client.close()
        yield run
    finally:
        stack.stop()
        redis.stop()


def test_forty_instances_on_two_hosts_make_one_token_request_with_redis(celery_run: CeleryRun) -> None:
    run = celery_run
    assert run.run.get("state") == "success", f"{run.run}\n{run.stack.diagnostics()}"
    assert len(run.instances) == INSTANCES and {ti["state"] for ti in run.instances} == {"success"}
    assert len(run.results) == INSTANCES
    # both "hosts" ran instances (Celery spread them), so the file store's count below means something
    by_host = {h: sum(r["host"] == h for r in run.results) for h in HOSTS}
    assert all(by_host.values()), by_host
    # Redis: one login for 40 instances on two hosts, every instance got that one token
    assert run.emulator.org.count("token", grant="jwt_bearer") == 1, run.emulator.org.counters()
    assert len({r["sf_redis"] for r in run.results}) == 1
    # file store only: one login per host, shared by that host's instances
    assert run.emulator.org.count("token", grant="client_credentials") == len(HOSTS), run.emulator.org.counters()
    per_host = {h: {r["sf_file"] for r in run.results if r["host"] == h} for h in HOSTS}
    assert all(len(fps) == 1 for fps in per_host.values()) and per_host["host-a"] != per_host["host-b"], per_host


def test_redis_holds_no_usable_secret(celery_run: CeleryRun) -> None:
    """SCAN + read every key of the token, broker and result databases: no token, no secret."""
    run = celery_run
    issued = httpx.get(f"{run.emulator.base_url}/__emulator/tokens", timeout=10).json()["tokens"]
    assert len(issued) >= 1 + len(HOSTS)
    demo = run.emulator.org.demo
    secrets_ = {**{f"token {fingerprint(t)}": t for t in issued},
                "jwt consumer secret": demo.jwt_consumer_secret, "cc consumer secret": demo.cc_consumer_secret}
    token_keys = run.redis_dump[TOKEN_DB]
    assert any(b"sf_oauth" in key for key in token_keys), sorted(token_keys)  # the shared token is there …
    text = repr(run.redis_dump)
    hits = [name for name, value in secrets_.items() if value in text]
    assert not hits, f"found in Redis: {hits}"  # … encrypted
