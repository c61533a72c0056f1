"""Audit throughput: introspecting N tokens (DESIGN §7: within 1.5x of the emulator's capacity,
at least 5x faster than one-at-a-time requests).

The emulator runs in its own process (own GIL); this process is the client. Tokens are minted
through the admin API (``POST /__emulator/tokens/mint``, no logins) and held only in memory.

Lines measured (each repeated; min / median seconds):

* ``capacity`` — a raw load generator: asyncio + httpx with C concurrent connections POSTing
  ``/services/oauth2/introspect``, reading each body, parsing nothing. The best C of
  ``--capacity-concurrency`` is the emulator's capacity (as far as one Python client can push it).
* ``capacity_raw`` — the same with plain asyncio streams (hand-written HTTP/1.1 keep-alive
  requests, reading status line, headers and ``Content-Length`` bytes): a lighter client, to see
  how far the httpx client (not the emulator) is the limit.
* ``operator`` — ``SalesforceTokenAuditOperator(tokens=..., inventory=False).execute()``
  end to end (masking, introspection with its default ``max_concurrency``, findings, reports).
* ``core`` — the operator's introspection core alone: ``AsyncSalesforceOAuthClient.introspect``
  on one pool (``hook._async_client``), the same concurrency, results parsed.
* ``sequential`` — one request at a time on one keep-alive ``httpx.Client`` (JSON parsed).

With ``--emulator-pid`` the emulator's CPU seconds per line are recorded too (from
``/proc/PID/stat``): requests per server CPU second is the emulator's capacity with an idle core.

``--latency S`` adds a second, smaller run in which the emulator delays every introspection by S
seconds (its ``latency`` fault, like a WAN round trip to Salesforce): the operator on all tokens,
one-at-a-time requests on ``--latency-sample`` tokens (extrapolated to all, and labelled so).

    python -m benchmarks.audit_throughput --base-url http://127.0.0.1:PORT --state-dir DIR
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import tempfile
import time
from typing import Any

from benchmarks._common import admin, emit, load_connections, stats

__all__ = ["ServerCPU", "main", "raw_load", "raw_socket_load", "run_core", "run_operator", "run_sequential"]

CONN_ID = "salesforce_oauth_default"
PATH = "/services/oauth2/introspect"


def _basic(conn: dict[str, Any]) -> str:
    return "Basic " + base64.b64encode(f"{conn['login']}:{conn['password']}".encode()).decode()


async def _raw_load_async(base_url: str, auth: str, tokens: list[str], concurrency: int) -> tuple[float, int]:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": auth, "Content-Type": "application/x-www-form-urlencoded"}
    bodies = [f"token={t}&token_type_hint=access_token".encode() for t in tokens]
    cursor = iter(bodies)
    errors = 0

    async with httpx.AsyncClient(base_url=base_url, limits=limits, trust_env=False, timeout=60) as client:

        async def worker() -> None:
            nonlocal errors
            for body in cursor:  # shared iterator: each body is sent once
                resp = await client.post(PATH, content=body, headers=headers)
                await resp.aread()
                if resp.status_code != 200:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, errors


def raw_load(base_url: str, auth: str, tokens: list[str], concurrency: int) -> tuple[float, int]:
    """Seconds to POST every token once with ``concurrency`` connections; and the non-200 count.

    :param base_url: emulator root URL
    :param auth: HTTP Basic header of the introspecting connected app
    :param tokens: tokens to introspect
    :param concurrency: connections (and requests in flight)
    """
    return asyncio.run(_raw_load_async(base_url, auth, tokens, concurrency))


async def _raw_socket_async(base_url: str, auth: str, tokens: list[str], concurrency: int) -> tuple[float, int]:
    from urllib.parse import urlsplit

    url = urlsplit(base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    requests = []
    for t in tokens:
        body = f"token={t}&token_type_hint=access_token".encode()
        requests.append(
            (f"POST {PATH} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: {auth}\r\n"
             f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
        )
    cursor = iter(requests)
    errors = 0

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for req in cursor:
                writer.write(req)
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    errors += 1
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, errors


def raw_socket_load(base_url: str, auth: str, tokens: list[str], concurrency: int) -> tuple[float, int]:
    """Like :func:`raw_load` with plain asyncio streams instead of httpx.

    :param base_url: emulator root URL (http)
    :param auth: HTTP Basic header of the introspecting connected app
    :param tokens: tokens to introspect
    :param concurrency: connections
    """
    return asyncio.run(_raw_socket_async(base_url, auth, tokens, concurrency))


class ServerCPU:
    """CPU seconds (user + system) used by a process, from ``/proc/PID/stat``; 0 without a pid.

    :param pid: the emulator's process id, or None
    """

    def __init__(self, pid: int | None) -> None:
        self.pid = pid

    def __call__(self) -> float:
        if not self.pid:
            return 0.0
        try:
            with open(f"/proc/{self.pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_sequential(base_url: str, auth: str, tokens: list[str]) -> tuple[float, int]:
    """One request at a time on a keep-alive client; JSON parsed; returns (seconds, inactive count).

    :param base_url: emulator root URL
    :param auth: HTTP Basic header of the introspecting connected app
    :param tokens: tokens to introspect
    """
    import httpx

    inactive = 0
    headers = {"Authorization": auth}
    with httpx.Client(base_url=base_url, trust_env=False, timeout=60) as client:
        started = time.perf_counter()
        for token in tokens:
            resp = client.post(PATH, data={"token": token, "token_type_hint": "access_token"}, headers=headers)
            if not resp.json().get("active"):
                inactive += 1
        return time.perf_counter() - started, inactive


def run_operator(tokens: list[str], report_dir: str, max_concurrency: int | None) -> tuple[float, dict[str, Any]]:
    """``SalesforceTokenAuditOperator(tokens=..., inventory=False).execute({})``; (seconds, counts).

    :param tokens: tokens to audit
    :param report_dir: where the operator writes its reports
    :param max_concurrency: the operator's ``max_concurrency`` (None: its default)
    """
    from sf_oauth_provider.operators.audit import SalesforceTokenAuditOperator

    kwargs: dict[str, Any] = {} if max_concurrency is None else {"max_concurrency": max_concurrency}
    op = SalesforceTokenAuditOperator(
        task_id="bench_audit", salesforce_oauth_conn_id=CONN_ID, tokens=list(tokens), inventory=False,
        report_dir=report_dir, **kwargs,
    )
    started = time.perf_counter()
    result = op.execute({})  # type: ignore[arg-type]  # the operator needs nothing from the context
    elapsed = time.perf_counter() - started
    return elapsed, {"counts": result["counts"], "failed": result["counts"]["failed"], "max_concurrency": op.max_concurrency}


def run_core(tokens: list[str], concurrency: int) -> tuple[float, int]:
    """The introspection core: one async pool, ``concurrency`` in flight; (seconds, inactive count).

    :param tokens: tokens to introspect
    :param concurrency: requests in flight (and pool size)
    """
    from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

    hook = SalesforceOAuthHook(CONN_ID)
    config = hook.config

    async def go() -> tuple[float, int]:
        sink: list[str] = []
        semaphore = asyncio.Semaphore(concurrency)
        async with hook._async_client(config, sink, max_connections=concurrency) as client:

            async def one(token: str) -> bool:
                async with semaphore:
                    return (await client.introspect(token, "access_token")).active

            started = time.perf_counter()
            results = await asyncio.gather(*(one(t) for t in tokens))
            return time.perf_counter() - started, results.count(False)

    return asyncio.run(go())


def main(argv: list[str] | None = None) -> int:
    """Mint tokens in the running emulator, measure every line, print JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base-url", required=True)
    p.add_argument("--state-dir", required=True)
    p.add_argument("--emulator-pid", type=int, default=None)
    p.add_argument("--tokens", type=int, default=5000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sequential-repeats", type=int, default=2)
    p.add_argument("--capacity-concurrency", type=int, default=16, help="connections of the load generators")
    p.add_argument("--max-concurrency", type=int, default=None, help="operator max_concurrency (default: its own)")
    p.add_argument("--latency", type=float, default=0.0, help="seconds; 0: no latency run")
    p.add_argument("--latency-sample", type=int, default=300)
    args = p.parse_args(argv)

    base = args.base_url.rstrip("/")
    conn = load_connections(args.state_dir)[CONN_ID]
    os.environ["AIRFLOW_CONN_" + CONN_ID.upper()] = json.dumps(conn)
    auth = _basic(conn)
    tokens: list[str] = admin(base, "tokens/mint", {"n": args.tokens})["tokens"]
    server_cpu = ServerCPU(args.emulator_pid)
    log = lambda msg: print(f"# {msg}", file=sys.stderr, flush=True)  # noqa: E731
    log(f"minted {len(tokens)} tokens")

    # Import the operator, hook and client before timing anything.
    import httpx  # noqa: F401

    import sf_oauth_provider.client.oauth  # noqa: F401
    import sf_oauth_provider.operators.audit  # noqa: F401

    raw_load(base, auth, tokens[:500], 16)  # warm-up (both processes)

    c = args.capacity_concurrency
    lines: dict[str, list[float]] = {k: [] for k in ("capacity", "capacity_raw", "operator", "core", "sequential")}
    cpu: dict[str, list[float]] = {k: [] for k in lines}
    checks: dict[str, Any] = {}
    op_concurrency = args.max_concurrency

    def measure(name: str, fn: Any, *a: Any) -> Any:
        before = server_cpu()
        seconds, info = fn(*a)
        lines[name].append(seconds)
        cpu[name].append(server_cpu() - before)
        return info

    with tempfile.TemporaryDirectory(prefix="sf-bench-audit-") as reports:
        for rep in range(args.repeats):  # interleaved, so that load from elsewhere hits every line alike
            checks["capacity_non200"] = measure("capacity", raw_load, base, auth, tokens, c)
            checks["capacity_raw_non200"] = measure("capacity_raw", raw_socket_load, base, auth, tokens, c)
            info = measure("operator", run_operator, tokens, os.path.join(reports, str(rep)), args.max_concurrency)
            op_concurrency = info["max_concurrency"]
            checks["operator_failed"] = info["failed"]
            checks["operator_introspected"] = info["counts"].get("introspected")
            checks["core_inactive"] = measure("core", run_core, tokens, op_concurrency)
            log(f"repeat {rep + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in lines.items() if v))
        for _ in range(args.sequential_repeats):
            checks["sequential_inactive"] = measure("sequential", run_sequential, base, auth, tokens)
            log(f"sequential {lines['sequential'][-1]:.2f} s")

        latency: dict[str, Any] | None = None
        if args.latency > 0:
            admin(base, "faults", {"endpoint": "introspect", "latency": args.latency})
            try:
                sample = tokens[: args.latency_sample]
                seq_s, _ = run_sequential(base, auth, sample)
                op_s, info = run_operator(tokens, os.path.join(reports, "latency"), args.max_concurrency)
                cap_s, _ = raw_load(base, auth, tokens, c)
            finally:
                req = __import__("urllib.request").request
                opener = req.build_opener(req.ProxyHandler({}))
                opener.open(req.Request(f"{base}/__emulator/faults", method="DELETE"), timeout=30).read()
            latency = {
                "latency_s": args.latency,
                "capacity_s": cap_s,
                "operator_s": op_s,
                "operator_failed": info["failed"],
                "sequential_sample_tokens": len(sample),
                "sequential_sample_s": seq_s,
                "sequential_extrapolated_s": seq_s * len(tokens) / len(sample),
            }
            log(f"latency {args.latency}s: capacity {cap_s:.2f} s, operator {op_s:.2f} s, "
                f"sequential ~{latency['sequential_extrapolated_s']:.1f} s (from {len(sample)})")

    emit({
        "tokens": len(tokens),
        "operator_max_concurrency": op_concurrency,
        "capacity_concurrency": c,
        **{name: stats(v) for name, v in lines.items()},
        "server_cpu_s": {name: stats(v) for name, v in cpu.items()} if args.emulator_pid else None,
        "latency_run": latency,
        "checks": checks,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
