"""The refresh flow, written once for sync and async callers.

:func:`token_flow` is a sans-IO generator (like httpx's ``Auth.auth_flow`` and the project's
token check): it yields what it needs — read, write or invalidate a store, take the lock, fetch
a token, ask Salesforce whether a refresh token is still active, settle a new token's expiry —
and receives the answers (a failed fetch is thrown into it). :func:`run` performs the steps with
blocking calls, :func:`arun` with awaitables; neither re-states the rules:

1. a usable token in a layer (memory, then file, then shared) is returned; a hit in a wider
   layer is copied into the unshared layers above it;
2. otherwise take the widest layer's lock (single-flight: among all who share that layer, one
   refreshes, the others find its token under the lock); a layer that cannot lock answers
   False and the next narrower layer's lock is taken instead;
3. under the lock, read every layer, widest first (the freshest view: process memory may hold
   a refresh token another process has rotated away); a rejected ``stale_token`` is forgotten
   there (its refresh token kept); a usable token found is returned;
4. else refresh with the refresh token of the **newest generation** found in any layer (every
   write carries a generation one above everything seen; an entry older than one this process
   has seen is refused as a replay). A refresh token is never sent twice (DESIGN §5): when the
   newest entry says rotation happened but holds no refresh token, or a refresh may have been
   delivered and its answer lost, Salesforce is asked (introspection, not a grant) before
   anything is sent, and a retired token is never sent;
5. the new token (and its rotated refresh token) is written to every layer **before** anything
   else can fail; only then is its expiry settled (introspection) and written again.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field, replace
from typing import Any, Awaitable, Callable, Generator, Sequence, Union

from sf_oauth_provider.client.errors import SalesforceRefreshInDoubt, SalesforceRefreshTokenLost
from sf_oauth_provider.client.stores.base import TokenStore, marker_token, refresh_only
from sf_oauth_provider.client.stores.memory import GENERATIONS as _SEEN
from sf_oauth_provider.client.token import SalesforceToken

__all__ = ["Outcome", "Operations", "LockObserver", "token_flow", "invalidate_flow", "run", "arun"]


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


@dataclass(frozen=True)
class Verify:
    """Ask Salesforce whether ``refresh_token`` (None: the configured one) is still active.
    Answer: True, False, or None when it cannot be asked (no consumer secret)."""

    refresh_token: str | None = field(repr=False)


@dataclass(frozen=True)
class Settle:
    """Settle a new token's expiry (introspection); answer: the token to keep."""

    token: SalesforceToken = field(repr=False)


Step = Union[Read, Write, Invalidate, Lock, Fetch, Verify, Settle]


@dataclass(frozen=True)
class Outcome:
    """What the flow returned.

    :param token: the token to use
    :param fetched: a token request was made
    :param refresh_token: the refresh token the request used (None: the configured one)
    :param layer: where the token came from: a store's name (``memory``, ``file``, ``redis``) or
        ``salesforce`` (fetched)
    """

    token: SalesforceToken
    fetched: bool = False
    refresh_token: str | None = field(default=None, repr=False)
    layer: str | None = None


_MAX_RESENDS = 2


def token_flow(
    layers: Sequence[TokenStore],
    key: str,
    *,
    is_usable: Callable[[SalesforceToken], bool],
    force: bool = False,
    stale_token: str | None = None,
    rotating: bool = False,
    conn_id: str = "?",
) -> Generator[Step, Any, Outcome]:
    """A usable token for ``key`` from ``layers`` (narrowest first), or one fetch among all callers.

    :param is_usable: whether a stored token may be handed out (fresh with a leeway)
    :param force: skip stored tokens (and, with ``stale_token``, only that one)
    :param stale_token: an access token Salesforce refused: never returned; another caller's
        newer token is returned instead of fetching again
    :param rotating: the grant sends a refresh token that Salesforce may rotate (the
        ``refresh_token`` flow): the never-twice rules apply
    :param conn_id: the connection, for the messages
    """
    force = force or stale_token is not None
    if not force:
        cached, layer = yield from _stored_usable(layers, key, is_usable)
        if cached is not None:
            return Outcome(cached, layer=layer)
    for store in reversed(layers):
        # the widest layer's lock; when it cannot be had (a shared store that is down, a stuck
        # holder), the next narrower one, so that at least this host refreshes once
        if (yield Lock(store, key)):
            break
    found = yield from _read_locked(layers, key, stale_token)
    if not (force and stale_token is None):
        for depth, (holder, token) in enumerate(found):
            if token is not None and token.access_token and is_usable(token):
                for narrower, _ in found[depth + 1:]:
                    yield Write(narrower, key, token)
                return Outcome(token, layer=holder.name)
    tokens = [t for _, t in found if t is not None]
    newest = _newest(tokens)
    refresh = newest.refresh_token if newest is not None else None
    rotated = any(t.rotated for t in tokens)
    if rotating:
        yield from _check_sendable(newest, refresh, rotated, tokens, conn_id)
    token, generation = yield from _fetch_once(layers, key, tokens, newest, refresh, rotated, rotating, conn_id)
    returned = token.refresh_token
    rotated = rotated or (rotating and returned is not None and returned != refresh)
    token = replace(token, refresh_token=returned or refresh, generation=generation, rotated=rotated, marker=None)
    # the rotated refresh token reaches every layer before anything else can fail
    for store in layers:
        yield Write(store, key, token)
    _saw(key, generation)
    settled = yield Settle(token)
    if settled is not token:
        for store in layers:
            yield Write(store, key, settled)
    return Outcome(settled, fetched=True, refresh_token=refresh, layer="salesforce")


def _fetch_once(layers: Sequence[TokenStore], key: str, tokens: list[SalesforceToken],
                newest: SalesforceToken | None, refresh: str | None, rotated: bool, rotating: bool,
                conn_id: str) -> Generator[Step, Any, tuple[SalesforceToken, int]]:
    """One grant, and its generation. A rotating grant whose answer was lost is recorded in every
    layer (``in_doubt``) and sent again only after Salesforce says its refresh token is active."""
    for resends in range(_MAX_RESENDS + 1):
        generation = max([t.generation for t in tokens] + [_SEEN.get(key, 0)]) + 1
        try:
            return (yield Fetch(refresh)), generation
        except SalesforceRefreshInDoubt as in_doubt:
            if not rotating:
                raise
            marker = marker_token("in_doubt", generation, rotated=rotated, refresh_token=refresh, like=newest)
            for store in layers:
                yield Write(store, key, marker)
            _saw(key, generation)
            tokens.append(marker)
            active = yield Verify(refresh)
            if active is False:
                raise _lost(conn_id, "answer_lost") from None
            if active is None or resends == _MAX_RESENDS:
                raise in_doubt from None
    raise AssertionError("unreachable")  # pragma: no cover


def _check_sendable(newest: SalesforceToken | None, refresh: str | None, rotated: bool,
                    tokens: list[SalesforceToken], conn_id: str) -> Generator[Step, Any, None]:
    """Raise unless ``refresh`` (None: the configured refresh token) is safe to send."""
    if refresh is None and rotated:
        rolled_back = any(t.marker == "rolled_back" for t in tokens)
        raise _lost(conn_id, "rolled_back" if rolled_back else "missing")
    if refresh is None or (newest is not None and newest.marker == "in_doubt"):
        # the configured token on a host whose stores know nothing of this connection (a new
        # pod, a flushed Redis), or one whose last refresh lost its answer: ask Salesforce first
        active = yield Verify(refresh)
        if active is False:
            reason = "answer_lost" if newest is not None and newest.marker == "in_doubt" else "configured_retired"
            raise _lost(conn_id, reason)
        if active is None and newest is not None and newest.marker == "in_doubt":
            raise _lost(conn_id, "cannot_check")


_LOST_REASONS = {
    "answer_lost": "a refresh request reached Salesforce and its answer was lost (a timeout or a dropped "
                   "connection); Salesforce rotated the refresh token and now reports the one sent as no longer "
                   "active, so the new one is gone",
    "missing": "Salesforce has rotated this connection's refresh token, and the newest one is missing from "
               "the token stores (a Redis entry evicted or flushed, a cache emptied)",
    "rolled_back": "the shared store's entry is older than one already seen (someone put back an earlier copy, "
                   "e.g. from a replica or a backup); its refresh token was rotated away",
    "configured_retired": "Salesforce reports the configured refresh token as no longer active: it was rotated "
                          "(and the newest one is not in any store this host can read) or revoked",
    "cannot_check": "a refresh request may have reached Salesforce and its answer was lost, and without the "
                    "consumer secret it cannot be checked whether the refresh token it carried is still active",
}


def _lost(conn_id: str, reason: str) -> SalesforceRefreshTokenLost:
    return SalesforceRefreshTokenLost(
        f"{_LOST_REASONS[reason]}. The retired refresh token is not sent again: Salesforce would revoke the live "
        "one and every token issued from it",
        hint="restore the token store (Redis) from a copy that has the newest entry, or re-authorise the connected "
        "app for this user and put the new refresh token in the connection's extra 'refresh_token'. Keep the "
        "stores able to hold it: Redis with persistence and a maxmemory-policy of noeviction or volatile-* "
        "(README, 'Running on many workers')",
        conn_id=conn_id,
    )


def _saw(key: str, generation: int) -> None:
    if generation > _SEEN.get(key, 0):
        _SEEN[key] = generation


def _accepted(key: str, token: SalesforceToken | None) -> SalesforceToken | None:
    """``token`` as this process may use it: one older than a generation already seen is a
    replay (or a store that missed writes) and becomes a ``rolled_back`` marker."""
    if token is None:
        return None
    seen = _SEEN.get(key, 0)
    if token.generation < seen and token.refresh_token and token.marker is None:
        return replace(token, access_token="", refresh_token=None, expires_at=0.0, marker="rolled_back",
                       generation=seen)
    _saw(key, token.generation)
    return token


def _stored_usable(
    layers: Sequence[TokenStore], key: str, is_usable: Callable[[SalesforceToken], bool]
) -> Generator[Step, Any, tuple[SalesforceToken | None, str | None]]:
    """The first usable stored token (narrowest layer first) and its layer's name, copied into
    the narrower unshared layers that missed it; (None, None) when no layer has one."""
    for depth, store in enumerate(layers):
        token = _accepted(key, (yield Read(store, key)))
        if token is not None and is_usable(token):
            for upper in layers[:depth]:
                if not upper.shared:  # shared layers are written under the lock only
                    yield Write(upper, key, token)
            return token, store.name
    return None, None


def _read_locked(
    layers: Sequence[TokenStore], key: str, stale_token: str | None
) -> Generator[Step, Any, list[tuple[TokenStore, SalesforceToken | None]]]:
    """Every layer's token (widest first), read under the lock; ``stale_token`` is invalidated
    where found, keeping only its refresh token."""
    found: list[tuple[TokenStore, SalesforceToken | None]] = []
    for store in reversed(layers):
        token = _accepted(key, (yield Read(store, key)))
        if stale_token is not None and token is not None and token.access_token == stale_token:
            yield Invalidate(store, key, stale_token)
            token = refresh_only(token) if token.refresh_token else None
        found.append((store, token))
    return found


def _newest(tokens: list[SalesforceToken]) -> SalesforceToken | None:
    """The entry of the highest generation (ties: one that carries a refresh token, then the
    latest issued, then the widest layer).

    Every refresh writes a generation one above all it has seen, together with the refresh token
    Salesforce issued with it, so the newest generation carries the one refresh token Salesforce
    still accepts — even when a wider layer missed the last write (a full disk, a store that was
    down). A lower generation's refresh token may be retired: it is never chosen over it.
    """
    if not tokens:
        return None
    return max(tokens, key=lambda t: (t.generation, t.refresh_token is not None, t.issued_at))


def invalidate_flow(layers: Sequence[TokenStore], key: str, access_token: str | None) -> Generator[Step, Any, None]:
    """Forget ``access_token`` (None: whichever is stored) in every layer, under the lock, so
    that no concurrent refresh's newer refresh token is overwritten."""
    if not layers:
        return
    yield Lock(layers[-1], key)
    for store in reversed(layers):
        yield Invalidate(store, key, access_token)


@dataclass(frozen=True)
class Operations:
    """What a driver does for the steps that talk to Salesforce (sync or async callables).

    :param fetch: ``fetch(refresh_token) -> token``: one grant (None: the configured refresh
        token, or another grant); may raise, the error is thrown into the flow
    :param verify: ``verify(refresh_token) -> bool | None``: is it still active (None: the
        configured one)? None when it cannot be asked; default: cannot
    :param settle: ``settle(token) -> token``: the token with its expiry settled; default: as is
    """

    fetch: Callable[[str | None], Any]
    verify: Callable[[str | None], Any] | None = None
    settle: Callable[[SalesforceToken], Any] | None = None


def _operations(ops: Operations | Callable[[str | None], Any]) -> Operations:
    return ops if isinstance(ops, Operations) else Operations(ops)


#: told how long a lock was waited for: ``on_lock(layer name, seconds, held)``
LockObserver = Callable[[str, float, bool], None]


def _no_observer(_layer: str, _seconds: float, _held: bool) -> None:
    return None


def run(flow: Generator[Step, Any, Any], ops: Operations | Callable[[str | None], SalesforceToken],
        lock_timeout: float, on_lock: LockObserver | None = None) -> Any:
    """Drive ``flow`` with blocking calls; locks taken are released when it ends.

    :param ops: the Salesforce operations (a bare callable: the fetch alone)
    :param on_lock: told how long each lock was waited for (metrics)
    """
    observe = on_lock or _no_observer
    ops = _operations(ops)
    with contextlib.ExitStack() as held:
        answer: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = flow.throw(error) if error is not None else flow.send(answer)
            except StopIteration as stop:
                return stop.value
            answer, error = None, None
            if isinstance(step, Read):
                answer = step.store.get(step.key)
            elif isinstance(step, Write):
                step.store.put(step.key, step.token)
            elif isinstance(step, Invalidate):
                step.store.invalidate(step.key, step.access_token)
            elif isinstance(step, Lock):
                started = time.monotonic()
                answer = held.enter_context(step.store.lock(step.key, lock_timeout))
                observe(step.store.name, time.monotonic() - started, bool(answer))
            elif isinstance(step, Verify):
                answer = ops.verify(step.refresh_token) if ops.verify is not None else None
            elif isinstance(step, Settle):
                answer = ops.settle(step.token) if ops.settle is not None else step.token
            else:
                try:
                    answer = ops.fetch(step.refresh_token)
                except SalesforceRefreshInDoubt as exc:  # the flow records it, then re-raises
                    error = exc


async def arun(flow: Generator[Step, Any, Any], ops: Operations | Callable[[str | None], Awaitable[SalesforceToken]],
               lock_timeout: float, on_lock: LockObserver | None = None) -> Any:
    """Drive ``flow`` with awaitables: no blocking I/O on the event loop (stores do theirs in threads)."""
    observe = on_lock or _no_observer
    ops = _operations(ops)
    async with contextlib.AsyncExitStack() as held:
        answer: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = flow.throw(error) if error is not None else flow.send(answer)
            except StopIteration as stop:
                return stop.value
            answer, error = None, None
            if isinstance(step, Read):
                answer = await step.store.aget(step.key)
            elif isinstance(step, Write):
                await step.store.aput(step.key, step.token)
            elif isinstance(step, Invalidate):
                await step.store.ainvalidate(step.key, step.access_token)
            elif isinstance(step, Lock):
                started = time.monotonic()
                answer = await held.enter_async_context(step.store.alock(step.key, lock_timeout))
                observe(step.store.name, time.monotonic() - started, bool(answer))
            elif isinstance(step, Verify):
                answer = await ops.verify(step.refresh_token) if ops.verify is not None else None
            elif isinstance(step, Settle):
                answer = await ops.settle(step.token) if ops.settle is not None else step.token
            else:
                try:
                    answer = await ops.fetch(step.refresh_token)
                except SalesforceRefreshInDoubt as exc:
                    error = exc
