"""MemoryStore: tokens in this process's memory, shared by every hook and provider in it."""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import AsyncIterator, Iterator

from sf_oauth_provider.client.stores.base import forget_access_token, refresh_only, replaces
from sf_oauth_provider.client.stores.locks import task_locked, thread_locked
from sf_oauth_provider.client.token import SalesforceToken

__all__ = ["MemoryStore", "RefreshTokenKeeper", "forget_process_memory"]

# Namespaced by cache directory (None: memory-only caches) so that caches pointing at
# different directories stay separate. Never rebound: tests and tools may clear it.
_MEMORY: dict[str | None, dict[str, SalesforceToken]] = {}
_GUARD = threading.Lock()
#: cache key -> the highest generation this process has seen (the refresh flow refuses an older
#: entry as a replay); forgotten with the process memory
GENERATIONS: dict[str, int] = {}


def forget_process_memory(namespace: str | None = None, *, everything: bool = False) -> None:
    """Empty this process's token memory (as a new process starts): one namespace, or all.

    Emptied in place, so that every store already built sees it too.
    """
    with _GUARD:
        for name, tokens in _MEMORY.items():
            if everything or name == namespace:
                tokens.clear()
        if everything:
            GENERATIONS.clear()


@dataclass
class MemoryStore:
    """Process memory, the first layer: a dict lookup.

    :param namespace: the file store's directory (real path) when layered over one, else None
    """

    namespace: str | None = None
    name: str = field(default="memory", init=False)
    shared: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        with _GUARD:
            self._tokens = _MEMORY.setdefault(self.namespace, {})

    def get(self, key: str) -> SalesforceToken | None:
        return self._tokens.get(key)

    def put(self, key: str, token: SalesforceToken) -> None:
        with _GUARD:
            if not replaces(self._tokens.get(key), token):
                return
            self._tokens[key] = token

    def invalidate(self, key: str, access_token: str | None) -> None:
        with _GUARD:
            kept = forget_access_token(self._tokens.get(key), access_token)
            if kept is None:
                del self._tokens[key]
            elif kept is not False:
                self._tokens[key] = kept

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float) -> Iterator[bool]:
        with thread_locked((self.namespace, key), timeout) as held:
            yield held

    # No I/O: the async methods answer at once, on the event loop.
    async def aget(self, key: str) -> SalesforceToken | None:
        return self.get(key)

    async def aput(self, key: str, token: SalesforceToken) -> None:
        self.put(key, token)

    async def ainvalidate(self, key: str, access_token: str | None) -> None:
        self.invalidate(key, access_token)

    @contextlib.asynccontextmanager
    async def alock(self, key: str, timeout: float) -> AsyncIterator[bool]:
        async with task_locked((self.namespace, key), timeout) as held:
            yield held


class RefreshTokenKeeper:
    """Cache mode ``none``: no access token is ever reused, but a rotated refresh token is kept
    (in this object only), so that the next request does not use one Salesforce rotated away."""

    name = "refresh-token keeper"
    shared = False

    def __init__(self) -> None:
        self._tokens: dict[str, SalesforceToken] = {}
        self._namespace = f"none:{id(self)}"

    def get(self, key: str) -> SalesforceToken | None:
        token = self._tokens.get(key)
        return refresh_only(token) if token is not None else None

    def put(self, key: str, token: SalesforceToken) -> None:
        if (token.refresh_token or token.marker) and replaces(self._tokens.get(key), token):
            self._tokens[key] = refresh_only(token)

    def invalidate(self, key: str, access_token: str | None) -> None:
        """Nothing to do: no access token is kept."""

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float) -> Iterator[bool]:
        with thread_locked((self._namespace, key), timeout) as held:
            yield held

    async def aget(self, key: str) -> SalesforceToken | None:
        return self.get(key)

    async def aput(self, key: str, token: SalesforceToken) -> None:
        self.put(key, token)

    async def ainvalidate(self, key: str, access_token: str | None) -> None:
        """Nothing to do: no access token is kept."""

    @contextlib.asynccontextmanager
    async def alock(self, key: str, timeout: float) -> AsyncIterator[bool]:
        async with task_locked((self._namespace, key), timeout) as held:
            yield held
