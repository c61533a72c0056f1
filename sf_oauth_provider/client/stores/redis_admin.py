"""What an operator does to the Redis token store (``sf-oauth cache`` and ``sf-oauth doctor``):
list its entries, remove one, read the settings that decide whether refresh tokens survive, and
prove the refresh lock works. The token path never calls these.

Entries are read and written through :class:`~sf_oauth_provider.client.stores.redis.RedisStore`
(which holds the connection's key); this module only touches key names and server settings.
"""

from __future__ import annotations

import uuid
from typing import Any

from sf_oauth_provider.client.stores.redis import KEY_PREFIX, settings_problems

__all__ = ["redis_client", "entry_keys", "remove_entry", "settings_report", "lock_works"]

_SUFFIXES = (":gen", ":rotated", ":lock")


def redis_client(url: str, timeout: float = 2.0) -> Any:
    """A redis-py client that gives up after ``timeout`` seconds (connect and each command)."""
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout,
                                retry_on_timeout=False, retry=None)


def entry_keys(client: Any) -> list[str]:
    """The cache keys that have an entry in Redis (sorted; bookkeeping keys left out)."""
    keys = set()
    for raw in client.scan_iter(match=KEY_PREFIX + "*", count=500):
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        rest = name[len(KEY_PREFIX):]
        if rest and not rest.endswith(_SUFFIXES) and ":" not in rest:
            keys.add(rest)
    return sorted(keys)


def remove_entry(client: Any, key: str, *, lock_timeout: float | None = None) -> bool | None:
    """Delete ``key``'s entry, refresh token included (its generation and "rotated" records stay,
    so no process sends a retired refresh token again). Call it under the store's lock, or give
    ``lock_timeout`` to take that lock here (an entry whose connection is unknown).

    :returns: whether there was one; None when the lock was not had within ``lock_timeout``
    """
    if lock_timeout is None:
        return bool(client.delete(KEY_PREFIX + key))
    lock = client.lock(KEY_PREFIX + key + ":lock", timeout=lock_timeout + 10, sleep=0.05,
                       blocking_timeout=lock_timeout, thread_local=False)
    if not lock.acquire():
        return None
    try:
        return bool(client.delete(KEY_PREFIX + key))
    finally:
        lock.release()


def settings_report(client: Any) -> dict[str, Any]:
    """``{"policy", "appendonly", "save", "problems": {kind: message}}``; ``problems`` is None
    when the server refuses ``CONFIG GET`` (managed Redis often does)."""
    import redis

    def get(name: str) -> str:
        value = client.config_get(name).get(name, "")
        return value.decode() if isinstance(value, bytes) else str(value or "")

    try:
        policy, aof, save = get("maxmemory-policy"), get("appendonly"), get("save")
    except redis.ResponseError:
        return {"policy": None, "appendonly": None, "save": None, "problems": None}
    return {"policy": policy, "appendonly": aof, "save": save, "problems": settings_problems(policy, aof, save)}


def lock_works(client: Any) -> bool:
    """Take a throw-away lock the way the refresh flow does, check that a second taker is refused
    while it is held, and release it."""
    name = f"{KEY_PREFIX}doctor-{uuid.uuid4().hex}:lock"
    first = client.lock(name, timeout=10, sleep=0.05, blocking_timeout=2, thread_local=False)
    if not first.acquire():
        return False
    try:
        second = client.lock(name, timeout=10, sleep=0.05, blocking_timeout=0.2, thread_local=False)
        return not second.acquire()
    finally:
        first.release()
