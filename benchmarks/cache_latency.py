"""Token cache hit latency and JWT assertion cost, in one process (DESIGN §7: ≤ 50 µs in-process,
≤ 2 ms from the file cache).

Lines (each a batch of calls, repeated; per-call min / median over the batches):

* ``memory_hit`` — ``hook.get_token()`` on a warm hook (the token is in this process's memory);
* ``file_hit`` — ``hook.get_token()`` after emptying this process's memory cache before every
  call (``forget_process_memory``, untimed): read, decrypt and parse the encrypted cache file;
* ``async_memory_hit`` / ``async_file_hit`` — the same through ``await hook.aget_token()`` on one
  event loop (the triggerer's path; file I/O runs in a thread);
* ``provider_memory_hit`` — ``TokenProvider.get_token()`` without Airflow's hook around it;
* ``new_hook_file_hit`` — ``SalesforceOAuthHook(conn_id).get_token()`` with a new hook and an
  empty memory cache, as the first call in a new task process pays (connection from the
  environment, validation incl. loading the private key, cache set-up, file read);
* ``assertion`` — ``build_assertion`` (RS256 sign) with a 2048-bit RSA key;
* ``token_request`` — for reference, a real token request to the emulator
  (``hook.client.fetch_token()``: the grant, plus the introspection that settles the expiry when
  the connection has a consumer secret) — what every cache miss costs.

    python -m benchmarks.cache_latency --state-dir DIR
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Any, Callable

from benchmarks._common import emit, load_connections, stats

__all__ = ["main", "per_call"]

CONN_ID = "salesforce_oauth_default"


def per_call(fn: Callable[[], Any], calls: int, repeats: int, before: Callable[[], Any] | None = None) -> list[float]:
    """Mean seconds per call of ``fn`` for each of ``repeats`` batches of ``calls``.

    :param fn: the call to time
    :param calls: calls per batch
    :param repeats: batches
    :param before: untimed set-up before every call (e.g. emptying a cache)
    """
    out = []
    for _ in range(repeats):
        total = 0.0
        for _ in range(calls):
            if before is not None:
                before()
            started = time.perf_counter()
            fn()
            total += time.perf_counter() - started
        out.append(total / calls)
    return out


def aper_call(fn: Callable[[], Any], calls: int, repeats: int, before: Callable[[], Any] | None = None) -> list[float]:
    """:func:`per_call` for a coroutine function, all batches on one event loop."""
    import asyncio

    async def batches() -> list[float]:
        out = []
        for _ in range(repeats):
            total = 0.0
            for _ in range(calls):
                if before is not None:
                    before()
                started = time.perf_counter()
                await fn()
                total += time.perf_counter() - started
            out.append(total / calls)
        return out

    return asyncio.run(batches())


def _forget_memory() -> None:
    try:
        from sf_oauth_provider.client.stores import forget_process_memory
    except ImportError:  # the code before the stores package, for a before/after comparison
        from sf_oauth_provider.client import cache

        for tokens in cache._MEMORY.values():
            tokens.clear()
        return
    forget_process_memory(everything=True)


def main(argv: list[str] | None = None) -> int:
    """Measure every line against a running emulator's JWT connection; print JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--state-dir", required=True)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)

    conn = load_connections(args.state_dir)[CONN_ID]
    os.environ["AIRFLOW_CONN_" + CONN_ID.upper()] = json.dumps(conn)
    with tempfile.TemporaryDirectory(prefix="sf-bench-cache-") as cache_dir:
        os.environ["SF_OAUTH_CACHE_DIR"] = cache_dir
        from cryptography.hazmat.primitives.asymmetric import rsa

        from sf_oauth_provider.client.assertion import build_assertion
        from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

        hook = SalesforceOAuthHook(CONN_ID)
        hook.get_token()  # one real token request fills memory and the file
        r = args.repeats
        lines: dict[str, list[float]] = {}
        lines["memory_hit"] = per_call(hook.get_token, 2000, r)
        lines["file_hit"] = per_call(hook.get_token, 200, r, before=_forget_memory)
        lines["new_hook_file_hit"] = per_call(
            lambda: SalesforceOAuthHook(CONN_ID).get_token(), 50, r, before=_forget_memory
        )
        ahook = SalesforceOAuthHook(CONN_ID)
        lines["async_memory_hit"] = aper_call(ahook.aget_token, 500, r)
        lines["async_file_hit"] = aper_call(ahook.aget_token, 100, r, before=_forget_memory)
        try:
            from sf_oauth_provider.client import TokenProvider
        except ImportError:
            TokenProvider = None
        if TokenProvider is not None:
            provider = TokenProvider(hook.config)
            provider.get_token()
            lines["provider_memory_hit"] = per_call(provider.get_token, 2000, r)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        lines["assertion"] = per_call(
            lambda: build_assertion(key, consumer_key="3MVG9bench", username="bench@example.com",
                                    audience="https://login.salesforce.com"),
            50, r,
        )
        lines["token_request"] = per_call(hook.client.fetch_token, 5, r)
        token = hook.get_token()
        checks = {
            "file_cache_files": sorted(n for n in os.listdir(cache_dir) if n.endswith(".token")).__len__(),
            "token_cache_mode": hook.cache.mode,
            "token_fingerprint": token.fingerprint,
        }
    emit({name: stats(v) for name, v in lines.items()} | {"checks": checks})
    return 0


if __name__ == "__main__":
    sys.exit(main())
