"""Token requests for 3 hosts × 6 task processes, one connection (DESIGN §7), and Redis hit latency.

Each "host" is a separate token cache directory (``SF_OAUTH_CACHE_DIR``), as on three Celery
workers or three Kubernetes pods; all 18 processes are forked first and released at once. Three
set-ups, each on cold caches:

* ``file``: our hook with the host file store only (no Redis URL) — one login per host;
* ``redis``: our hook with one ``redis-server`` shared by the hosts (``SF_OAUTH_REDIS_URL``);
* ``theirs``: ``apache-airflow-providers-salesforce``'s ``SalesforceHook`` (when installed: the
  ``make bench`` virtualenv has it) — one login per process.

Redis hit latency: ``RedisStore.get()`` of a cached token (a GET on loopback + Fernet decrypt),
and the first ``get_token()`` of a new provider on a new host (empty memory and file) served
from Redis. A ``redis-server`` (Debian package) is started on a free loopback port and stopped.

    python -m benchmarks.multi_host --base-url http://127.0.0.1:PORT --state-dir DIR
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from benchmarks._common import admin, emit, load_connections, stats

__all__ = ["main", "run_hosts", "redis_server"]

OURS_CONN_ID = "salesforce_oauth_default"
THEIRS_CONN_ID = "salesforce_default"


@contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """A ``redis-server`` on 127.0.0.1 (free port, no persistence) until the block exits; yields its URL."""
    import redis

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(directory)], cwd=directory,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def run_hosts(provider: str, hosts: int, per_host: int, caches: Path, redis_url: str | None,
              login_url: str, test_url: str) -> dict[str, Any]:
    """Fork ``hosts × per_host`` children (each host its own cache dir), release them at once.

    :param provider: ``ours`` or ``theirs``
    :param redis_url: the shared Redis for ours (None: file store only)
    """
    from benchmarks.token_requests import _child

    out_r, out_w = os.pipe()
    go_r, go_w = os.pipe()
    pids = []
    for host in range(hosts):
        for _ in range(per_host):
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    os.close(out_r)
                    os.close(go_w)
                    os.environ["SF_OAUTH_CACHE_DIR"] = str(caches / f"host-{host}")
                    if redis_url:
                        os.environ["SF_OAUTH_REDIS_URL"] = redis_url
                    else:
                        os.environ.pop("SF_OAUTH_REDIS_URL", None)
                    os.read(go_r, 1)  # b"" when the parent closes the write end: all go at once
                    result = _child(provider, login_url, test_url)
                    os.write(out_w, (json.dumps(result) + "\n").encode())
                except BaseException:
                    code = 1
                finally:
                    os._exit(code)
            pids.append(pid)
    started = time.perf_counter()
    os.close(go_w)
    os.close(go_r)
    for pid in pids:
        os.waitpid(pid, 0)
    elapsed = time.perf_counter() - started
    os.close(out_w)
    with os.fdopen(out_r) as fh:
        answers = [json.loads(line) for line in fh if line.strip()]
    return {
        "hosts": hosts,
        "per_host": per_host,
        "answers": len(answers),
        "failures": sorted({a["failure"] for a in answers if "failure" in a}),
        "distinct_tokens": len({a["fingerprint"] for a in answers if "fingerprint" in a}),
        "elapsed_s": elapsed,
    }


def redis_latency(conn: dict[str, Any], redis_url: str, caches: Path, repeats: int) -> dict[str, Any]:
    """Median/min of a Redis hit: the store's GET + decrypt, and a new host's first get_token()."""
    from sf_oauth_provider.client import OAuthConfig, TokenProvider
    from sf_oauth_provider.client.stores.memory import forget_process_memory
    from sf_oauth_provider.client.stores.redis import RedisStore

    config = OAuthConfig.from_connection_fields("bench_redis", host=conn["host"], login=conn["login"],
                                                password=conn["password"], extra=conn["extra"])
    TokenProvider(config, cache_dir=caches / "latency-0", redis_url=redis_url).get_token()
    store = RedisStore(redis_url, config)
    store.get(config.cache_key)  # connect
    gets = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        token = store.get(config.cache_key)
        gets.append(time.perf_counter() - t0)
        assert token is not None and token.access_token
    store.close()
    new_host = []
    for n in range(max(5, repeats // 50)):
        forget_process_memory(everything=True)
        provider = TokenProvider(config, cache_dir=caches / f"latency-new-{n}", redis_url=redis_url)
        t0 = time.perf_counter()
        provider.get_token()
        new_host.append(time.perf_counter() - t0)
    return {"store_get": stats(gets), "new_host_get_token": stats(new_host)}


def main(argv: list[str] | None = None) -> int:
    """Run the three set-ups and the latency measurement against a running emulator; print JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base-url", required=True)
    p.add_argument("--state-dir", required=True)
    p.add_argument("--hosts", type=int, default=3)
    p.add_argument("--per-host", type=int, default=6)
    p.add_argument("--repeats", type=int, default=500)
    args = p.parse_args(argv)

    base = args.base_url.rstrip("/")
    login_url, test_url = base + "/login", base + "/test"
    ours = load_connections(args.state_dir)[OURS_CONN_ID]
    theirs = {
        "conn_type": "salesforce",
        "login": ours["extra"]["username"],
        "extra": {"consumer_key": ours["login"], "private_key_file_path": ours["extra"]["jwt_key_file"],
                  "domain": "login"},
    }
    os.environ["AIRFLOW_CONN_" + OURS_CONN_ID.upper()] = json.dumps(ours)
    os.environ["AIRFLOW_CONN_" + THEIRS_CONN_ID.upper()] = json.dumps(theirs)
    os.environ.pop("SF_OAUTH_REDIS_URL", None)

    # Import everything once, before forking.
    try:
        import airflow.providers.salesforce.hooks.salesforce  # noqa: F401
        import requests.adapters  # noqa: F401
        import simple_salesforce  # noqa: F401

        have_theirs = True
    except ImportError:
        have_theirs = False
    import redis  # noqa: F401

    import sf_oauth_provider.client.cache  # noqa: F401
    import sf_oauth_provider.client.oauth  # noqa: F401
    import sf_oauth_provider.client.stores.redis  # noqa: F401
    import sf_oauth_provider.hooks.salesforce_oauth  # noqa: F401

    results: dict[str, Any] = {"theirs_installed": have_theirs}
    with tempfile.TemporaryDirectory(prefix="sf-bench-hosts-") as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "redis").mkdir()
        with redis_server(tmp_path / "redis") as url:
            setups = [("file", "ours", None), ("redis", "ours", url)]
            if have_theirs:
                setups.append(("theirs", "theirs", None))
            for name, provider, redis_url in setups:
                caches = tmp_path / name
                admin(base, "counters/reset", {})
                run = run_hosts(provider, args.hosts, args.per_host, caches, redis_url, login_url, test_url)
                run["token_requests"] = admin(base, "counters")["endpoints"].get("token", 0)
                results[name] = run
                print(f"# {name:6} {args.hosts} hosts x {args.per_host} processes -> {run['token_requests']} "
                      f"token requests ({run['elapsed_s']:.2f} s, failures {run['failures']})",
                      file=sys.stderr, flush=True)
            if not have_theirs:
                print("# theirs: apache-airflow-providers-salesforce is not installed in this interpreter "
                      "(make bench installs it in .venv-bench)", file=sys.stderr, flush=True)
            results["latency"] = redis_latency(ours, url, tmp_path / "latency", args.repeats)
            lat = results["latency"]
            print(f"# redis hit: store GET+decrypt median {lat['store_get']['median'] * 1000:.3f} ms; new host's "
                  f"first get_token() median {lat['new_host_get_token']['median'] * 1000:.2f} ms",
                  file=sys.stderr, flush=True)
    emit(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
