"""The refresh flow, written once for sync and async callers.

:func:`token_flow` is a sans-IO generator (like httpx's ``Auth.auth_flow`` and the project's
token check): it yields what it needs — read, write or invalidate a store, take the lock, fetch
a token — and receives the answers. :func:`run` performs the steps with blocking calls,
:func:`arun` with awaitables; neither re-states the rules:

1. a usable token in a layer (memory, then file, then shared) is returned; a hit in a wider
   layer is copied into the unshared layers above it;
2. otherwise take the widest layer's lock (single-flight: among all who share that layer, one
   refreshes, the others find its token under the lock); a layer that cannot lock answers
   False and the next narrower layer's lock is taken instead;
3. under the lock, read every layer, widest first (the freshest view: process memory may hold
   a refresh token another process has rotated away); a rejected ``stale_token`` is forgotten
   there (its refresh token kept); a usable token found is returned;
4. else fetch with the **newest refresh token found in any layer** (the one issued last), keep it on the new token
   when Salesforce sent none back, and write the token to every layer.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from typing import Any, Awaitable, Callable, Generator, Sequence, Union

from sf_oauth_provider.client.stores.base import TokenStore, refresh_only
from sf_oauth_provider.client.token import SalesforceToken

__all__ = ["Outcome", "token_flow", "invalidate_flow", "run", "arun"]


@dataclass(frozen=True)
class Read:
    store: TokenStore
    key: str


@dataclass(frozen=True)
class Write:
    store: TokenStore
    key: str
    token: SalesforceToken = field(repr=False)


@dataclass(frozen=True)
class Invalidate:
    store: TokenStore
    key: str
    access_token: str | None = field(repr=False)


@dataclass(frozen=True)
class Lock:
    """Take ``store``'s lock for ``key``; it is held until the flow ends. Answer: held or not."""

    store: TokenStore
    key: str


@dataclass(frozen=True)
class Fetch:
    """Request a new token with ``refresh_token`` (None: the configured one, or another grant)."""

    refresh_token: str | None = field(repr=False)


Step = Union[Read, Write, Invalidate, Lock, Fetch]


@dataclass(frozen=True)
class Outcome:
    """What the flow returned.

    :param token: the token to use
    :param fetched: a token request was made
    :param refresh_token: the refresh token the request used (None: the configured one)
    """

    token: SalesforceToken
    fetched: bool = False
    refresh_token: str | None = field(default=None, repr=False)


def token_flow(
    layers: Sequence[TokenStore],
    key: str,
    *,
    is_usable: Callable[[SalesforceToken], bool],
    force: bool = False,
    stale_token: str | None = None,
) -> Generator[Step, Any, Outcome]:
    """A usable token for ``key`` from ``layers`` (narrowest first), or one fetch among all callers.

    :param is_usable: whether a stored token may be handed out (fresh with a leeway)
    :param force: skip stored tokens (and, with ``stale_token``, only that one)
    :param stale_token: an access token Salesforce refused: never returned; another caller's
        newer token is returned instead of fetching again
    """
    force = force or stale_token is not None
    if not layers:
        return Outcome((yield Fetch(None)), fetched=True)
    if not force:
        cached = yield from _stored_usable(layers, key, is_usable)
        if cached is not None:
            return Outcome(cached)
    for store in reversed(layers):
        # the widest layer's lock; when it cannot be had (a shared store that is down, a stuck
        # holder), the next narrower one, so that at least this host refreshes once
        if (yield Lock(store, key)):
            break
    found = yield from _read_locked(layers, key, stale_token)
    if not (force and stale_token is None):
        for depth, (_, token) in enumerate(found):
            if token is not None and token.access_token and is_usable(token):
                for narrower, _ in found[depth + 1:]:
                    yield Write(narrower, key, token)
                return Outcome(token)
    refresh = _newest_refresh_token([t for _, t in found])
    token = yield Fetch(refresh)
    if token.refresh_token is None and refresh:
        token = replace(token, refresh_token=refresh)  # Salesforce did not rotate: keep the one we have
    for store in layers:
        yield Write(store, key, token)
    return Outcome(token, fetched=True, refresh_token=refresh)


def _stored_usable(
    layers: Sequence[TokenStore], key: str, is_usable: Callable[[SalesforceToken], bool]
) -> Generator[Step, Any, SalesforceToken | None]:
    """The first usable stored token (narrowest layer first), copied into the narrower unshared
    layers that missed it; None when no layer has one."""
    for depth, store in enumerate(layers):
        token = yield Read(store, key)
        if token is not None and is_usable(token):
            for upper in layers[:depth]:
                if not upper.shared:  # shared layers are written under the lock only
                    yield Write(upper, key, token)
            return token
    return None


def _read_locked(
    layers: Sequence[TokenStore], key: str, stale_token: str | None
) -> Generator[Step, Any, list[tuple[TokenStore, SalesforceToken | None]]]:
    """Every layer's token (widest first), read under the lock; ``stale_token`` is invalidated
    where found, keeping only its refresh token."""
    found: list[tuple[TokenStore, SalesforceToken | None]] = []
    for store in reversed(layers):
        token = yield Read(store, key)
        if stale_token is not None and token is not None and token.access_token == stale_token:
            yield Invalidate(store, key, stale_token)
            token = refresh_only(token) if token.refresh_token else None
        found.append((store, token))
    return found


def _newest_refresh_token(tokens: list[SalesforceToken | None]) -> str | None:
    """The refresh token that came with the most recently issued token (ties: the widest layer).

    Every refresh issues an access token and, with rotation on, a refresh token together, so the
    newest ``issued_at`` carries the one refresh token Salesforce still accepts — even when a
    wider layer missed the last write (a full disk, a store that was down).
    """
    with_refresh = [t for t in tokens if t is not None and t.refresh_token]
    if not with_refresh:
        return None
    return max(with_refresh, key=lambda t: t.issued_at).refresh_token  # max keeps the first of equals


def invalidate_flow(layers: Sequence[TokenStore], key: str, access_token: str | None) -> Generator[Step, Any, None]:
    """Forget ``access_token`` (None: whichever is stored) in every layer, under the lock, so
    that no concurrent refresh's newer refresh token is overwritten."""
    if not layers:
        return
    yield Lock(layers[-1], key)
    for store in reversed(layers):
        yield Invalidate(store, key, access_token)


def run(flow: Generator[Step, Any, Any], fetch: Callable[[str | None], SalesforceToken], lock_timeout: float) -> Any:
    """Drive ``flow`` with blocking calls; locks taken are released when it ends.

    :param fetch: requests a new token with the given refresh token
    """
    with contextlib.ExitStack() as held:
        answer: Any = None
        while True:
            try:
                step = flow.send(answer)
            except StopIteration as stop:
                return stop.value
            if isinstance(step, Read):
                answer = step.store.get(step.key)
            elif isinstance(step, Write):
                step.store.put(step.key, step.token)
                answer = None
            elif isinstance(step, Invalidate):
                step.store.invalidate(step.key, step.access_token)
                answer = None
            elif isinstance(step, Lock):
                answer = held.enter_context(step.store.lock(step.key, lock_timeout))
            else:
                answer = fetch(step.refresh_token)


async def arun(
    flow: Generator[Step, Any, Any], fetch: Callable[[str | None], Awaitable[SalesforceToken]], lock_timeout: float
) -> Any:
    """Drive ``flow`` with awaitables: no blocking I/O on the event loop (stores do theirs in threads)."""
    async with contextlib.AsyncExitStack() as held:
        answer: Any = None
        while True:
            try:
                step = flow.send(answer)
            except StopIteration as stop:
                return stop.value
            if isinstance(step, Read):
                answer = await step.store.aget(step.key)
            elif isinstance(step, Write):
                await step.store.aput(step.key, step.token)
                answer = None
            elif isinstance(step, Invalidate):
                await step.store.ainvalidate(step.key, step.access_token)
                answer = None
            elif isinstance(step, Lock):
                answer = await held.enter_async_context(step.store.alock(step.key, lock_timeout))
            else:
                answer = await fetch(step.refresh_token)
