"""The one interface every token store implements (memory, file, and next a shared store).

A store maps a cache key (a hash of the connection, see ``OAuthConfig.cache_key``) to the
connection's latest :class:`SalesforceToken`. Stores never judge expiry and never fetch: the
refresh flow (:mod:`sf_oauth_provider.client.singleflight`) does that, asking the layers in
order and taking the widest layer's lock before a refresh.

Rotation rule (DESIGN §5): a store forgets an *access* token, never the newest *refresh* token.
After :meth:`TokenStore.invalidate`, :meth:`TokenStore.get` answers a "refresh-only" token
(:func:`refresh_only`: no access token, already expired) when the dropped token carried a
refresh token, so the next refresh still has it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import AsyncContextManager, ContextManager, Literal, Protocol, TypeGuard, runtime_checkable

from sf_oauth_provider.client.token import SalesforceToken

__all__ = ["TokenStore", "BlockingStore", "refresh_only", "has_access_token", "forget_access_token", "replaces",
           "marker_token"]


def refresh_only(token: SalesforceToken) -> SalesforceToken:
    """``token`` without its access token: kept only to carry the refresh token to the next refresh."""
    return replace(token, access_token="", expires_at=0.0, expires_at_source="invalidated")


def marker_token(kind: str, generation: int, *, rotated: bool = False, refresh_token: str | None = None,
                 like: SalesforceToken | None = None) -> SalesforceToken:
    """A store entry that records a fact, not a token (see ``SalesforceToken.marker``): no access
    token, already expired, so nothing hands it out.

    :param like: a token of the same connection, for its instance and identity URLs
    """
    return SalesforceToken(
        access_token="", instance_url=like.instance_url if like is not None else "",
        id_url=like.id_url if like is not None else None, issued_at=time.time(), expires_at=0.0,
        refresh_token=refresh_token, expires_at_source=kind, generation=generation, rotated=rotated, marker=kind,
    )


def replaces(current: SalesforceToken | None, new: SalesforceToken) -> bool:
    """Whether a store may write ``new`` over ``current``: never over a higher generation (a slow
    writer must not put back an older refresh token over a newer one)."""
    return current is None or new.generation >= current.generation


def has_access_token(token: SalesforceToken | None) -> TypeGuard[SalesforceToken]:
    """True when ``token`` holds an access token (not a :func:`refresh_only` entry)."""
    return token is not None and bool(token.access_token)


def forget_access_token(
    current: SalesforceToken | None, access_token: str | None
) -> SalesforceToken | None | Literal[False]:
    """What a store keeps after ``invalidate(access_token)``.

    :returns: ``False`` to keep ``current`` unchanged (it is another token), ``None`` to delete
        the entry, or the :func:`refresh_only` token to store instead
    """
    if current is None or not current.access_token:
        return False
    if access_token is not None and current.access_token != access_token:
        return False
    return refresh_only(current) if current.refresh_token else None


@runtime_checkable
class TokenStore(Protocol):
    """A token store layer.

    :ivar name: ``memory``, ``file``, ``redis``, ... (for logs)
    :ivar shared: seen by other processes; the refresh flow writes to a shared store only under
        the lock (an unlocked write could put back an older refresh token)
    """

    name: str
    shared: bool

    def get(self, key: str) -> SalesforceToken | None:
        """The stored token (usable, expired, or refresh-only), or None."""

    def put(self, key: str, token: SalesforceToken) -> None:
        """Store ``token`` unless the entry has a higher generation (:func:`replaces`); failures
        are logged (once), never raised: a cache never fails a task."""

    def invalidate(self, key: str, access_token: str | None) -> None:
        """Forget the stored access token if it is ``access_token`` (None: whichever is stored),
        keeping its refresh token (see :func:`forget_access_token`)."""

    def lock(self, key: str, timeout: float) -> ContextManager[bool]:
        """Single-flight lock for ``key`` across everyone who shares this store; yields whether
        it is held (False after ``timeout`` seconds: the caller goes on without it)."""

    async def aget(self, key: str) -> SalesforceToken | None:
        """:meth:`get` without blocking the event loop."""

    async def aput(self, key: str, token: SalesforceToken) -> None:
        """:meth:`put` without blocking the event loop."""

    async def ainvalidate(self, key: str, access_token: str | None) -> None:
        """:meth:`invalidate` without blocking the event loop."""

    def alock(self, key: str, timeout: float) -> AsyncContextManager[bool]:
        """:meth:`lock` for coroutines (waits without blocking the event loop)."""


class BlockingStore:
    """Async methods for a store whose sync methods do blocking I/O: run them in a thread."""

    def get(self, key: str) -> SalesforceToken | None:  # pragma: no cover - overridden
        raise NotImplementedError

    def put(self, key: str, token: SalesforceToken) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def invalidate(self, key: str, access_token: str | None) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    async def aget(self, key: str) -> SalesforceToken | None:
        return await asyncio.to_thread(self.get, key)

    async def aput(self, key: str, token: SalesforceToken) -> None:
        await asyncio.to_thread(self.put, key, token)

    async def ainvalidate(self, key: str, access_token: str | None) -> None:
        await asyncio.to_thread(self.invalidate, key, access_token)
