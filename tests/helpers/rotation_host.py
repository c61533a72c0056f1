"""One "host" of a deployment, as a process: a framework-free TokenProvider with its own cache
directory, sharing one Redis with the other hosts (the rotation-safety tests start several).

    python -m tests.helpers.rotation_host CONN_JSON CACHE_DIR REDIS_URL LOCK_EXPIRY get
    python -m tests.helpers.rotation_host ... force     # aget / aforce: the same through aget_token
    python -m tests.helpers.rotation_host ... loop SECONDS SEED GO_FILE
        # get / force at random until SECONDS pass; then, once GO_FILE exists, one last forced get

``REDIS_URL`` ``-`` means no Redis (the file store is the widest layer). Prints one JSON line
(:data:`ANSWER` first): ``{"fingerprint", "refresh"}``, ``{"error", "type", "permanent"}``, or for
``loop`` the counts of calls that passed and failed, by error type, and the last get's answer.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from typing import Any

ANSWER = "@answer "


def _provider(conn: dict[str, Any], cache_dir: str, redis_url: str, lock_expiry: float) -> Any:
    from sf_oauth_provider.client import OAuthConfig, TokenProvider
    from sf_oauth_provider.client.oauth import RetryPolicy
    from sf_oauth_provider.client.stores.redis import RedisStore

    config = OAuthConfig.from_connection_fields(
        "rotation_host", host=conn["host"], login=conn["login"], password=conn.get("password"), extra=conn["extra"]
    )
    layers = () if redis_url == "-" else (RedisStore(redis_url, config, lock_expiry=lock_expiry, retry_after=1.0),)
    retry = RetryPolicy(attempts=3, initial_backoff=0.05, max_backoff=0.2, max_total=30.0)
    return TokenProvider(config, cache_dir=cache_dir, shared_layers=layers, retry=retry)


def _one(provider: Any, force: bool, asynchronous: bool = False) -> dict[str, Any]:
    from sf_oauth_provider.client.errors import SalesforceOAuthError
    from sf_oauth_provider.client.token import fingerprint

    try:
        if asynchronous:
            token = asyncio.run(provider.aget_token(force_refresh=force))
        else:
            token = provider.get_token(force_refresh=force)
    except SalesforceOAuthError as exc:
        return {"error": str(exc), "type": type(exc).__name__, "permanent": not exc.transient}
    return {"fingerprint": token.fingerprint,
            "refresh": fingerprint(token.refresh_token) if token.refresh_token else None}


def _loop(provider: Any, seconds: float, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    passed, failed = 0, {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = _one(provider, force=rng.random() < 0.4)
        if "error" in result:
            failed[result["type"]] = failed.get(result["type"], 0) + 1
            if result["permanent"]:
                return {"passed": passed, "failed": failed, "fatal": result["error"]}
        else:
            passed += 1
        time.sleep(rng.random() * 0.1)
    return {"passed": passed, "failed": failed}


def main(argv: list[str]) -> None:
    conn, cache_dir, redis_url, lock_expiry, command, *rest = argv
    provider = _provider(json.loads(conn), cache_dir, redis_url, float(lock_expiry))
    if command == "loop":
        result = _loop(provider, float(rest[0]), int(rest[1]))
        deadline = time.monotonic() + 120
        while not os.path.exists(rest[2]) and time.monotonic() < deadline:
            time.sleep(0.05)
        result["last"] = _one(provider, force=True)
    else:
        result = _one(provider, force=command in ("force", "aforce"), asynchronous=command.startswith("a"))
    print(ANSWER + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
