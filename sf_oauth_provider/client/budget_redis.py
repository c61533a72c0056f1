"""The login budget's ledger in Redis: every host of a deployment counts against one number.

``sf_oauth:v1:logins:<budget key>`` (the ``:`` sets it apart from the token entries,
``sf_oauth:v1:<cache key>``) is a sorted set of login times (score: epoch seconds); one
Lua script drops the logins older than the window, counts, and adds this one unless the cap is
reached — atomically, so hosts racing for the last login cannot both get it. The set expires an
hour (and a minute) after its last login. Redis down or failing: the host's ledger counts
instead (the token store's one warning per process says Redis failed): a cache never fails a task.
"""

from __future__ import annotations

import os
from typing import Any

from sf_oauth_provider.client.budget import WINDOW, Admission, BudgetLedger
from sf_oauth_provider.client.stores.redis import KEY_PREFIX, RedisStore

__all__ = ["RedisLedger", "LEDGER_PREFIX"]

#: every login-count key starts with this
LEDGER_PREFIX = KEY_PREFIX + "logins:"

#: KEYS set; ARGV now, window, cap (0: none), member, admit ('1' or '0')
_ADMIT_SCRIPT = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local admitted = 0
if ARGV[5] == '1' and (cap <= 0 or count < cap) then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('EXPIRE', KEYS[1], math.ceil(window) + 60)
  count = count + 1
  admitted = 1
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {admitted, count, oldest[2] or ''}
"""


class RedisLedger:
    """Logins counted in the deployment's Redis (the token store's connection and failure rules).

    :param store: the connection's Redis token store
    :param fallback: counts when Redis cannot (the host's file ledger)
    """

    name = "redis"

    def __init__(self, store: RedisStore, fallback: BudgetLedger) -> None:
        self._store = store
        self.fallback = fallback

    def __repr__(self) -> str:
        return f"RedisLedger({self._store!r})"

    @staticmethod
    def _args(key: str, now: float, cap: int, admit: bool) -> tuple[Any, ...]:
        member = f"{now:.6f}:{os.getpid()}:{os.urandom(4).hex()}"
        return (_ADMIT_SCRIPT, 1, LEDGER_PREFIX + key, repr(now), repr(WINDOW), int(cap), member,
                "1" if admit else "0")

    @staticmethod
    def _answer(reply: Any) -> Admission:
        admitted, count, oldest = reply
        text = oldest.decode() if isinstance(oldest, bytes) else str(oldest)
        return Admission(bool(admitted), int(count), float(text) if text else None)

    def _run(self, key: str, now: float, cap: int, admit: bool) -> Admission | None:
        if not self._store._usable():
            return None
        try:
            return self._answer(self._store._sync().eval(*self._args(key, now, cap, admit)))
        except self._store._errors() as exc:
            self._store._failed(exc, "counting a login")
            return None

    async def aadmit(self, key: str, now: float, cap: int) -> Admission:
        """:meth:`admit` on redis.asyncio (the blocking client is never used on the event loop)."""
        if self._store._usable():
            try:
                async with self._store._async() as client:
                    return self._answer(await client.eval(*self._args(key, now, cap, True)))
            except self._store._errors() as exc:
                self._store._failed(exc, "counting a login")
        return await self.fallback.aadmit(key, now, cap)

    def admit(self, key: str, now: float, cap: int) -> Admission:
        answer = self._run(key, now, cap, admit=True)
        return answer if answer is not None else self.fallback.admit(key, now, cap)

    def count(self, key: str, now: float) -> Admission:
        answer = self._run(key, now, 0, admit=False)
        return answer if answer is not None else self.fallback.count(key, now)
