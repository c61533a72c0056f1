"""TokenCache: the store layers of one cache mode, and single-flight get-or-fetch over them.

Layers, cheapest first::

    process memory (MemoryStore)  →  encrypted file (FileStore, every process on the host)

``mode``: ``file`` (memory + file; ``auto`` means the same until a shared store is configured;
``redis`` when the provider layers one on, reported as such),
``memory`` (this process) or ``none`` (every call fetches; only a rotated refresh token is kept,
in this object). A file cache whose
directory cannot be used safely degrades to memory, with one warning. The refresh rules live in
:mod:`sf_oauth_provider.client.singleflight`; the stores in :mod:`sf_oauth_provider.client.stores`.
Nothing here decides whether a token is still good: callers pass ``is_usable``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from sf_oauth_provider.client import singleflight
from sf_oauth_provider.client.config import CACHE_MODES
from sf_oauth_provider.client.stores import FileStore, MemoryStore, Rejected, TokenStore, has_access_token
from sf_oauth_provider.client.stores.memory import (
    _MEMORY,  # noqa: F401  (tests forget process memory through it)
    RefreshTokenKeeper,
)
from sf_oauth_provider.client.stores.safefs import warn_once
from sf_oauth_provider.client.token import SalesforceToken

__all__ = ["TokenCache", "default_cache_dir"]


_KEY_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")
_log = logging.getLogger(__name__)

Fetch = Callable[[str | None], SalesforceToken]
AsyncFetch = Callable[[str | None], Awaitable[SalesforceToken]]


def default_cache_dir() -> Path:
    """``$SF_OAUTH_CACHE_DIR`` if set, else ``$AIRFLOW_HOME/sf_oauth_cache`` (``~/airflow``).

    Read at call time, so a test or a task that sets the variable later is honoured.
    """
    explicit = os.environ.get("SF_OAUTH_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    airflow_home = os.environ.get("AIRFLOW_HOME") or "~/airflow"
    return Path(airflow_home).expanduser() / "sf_oauth_cache"


def _check_key(key: str) -> None:
    if not isinstance(key, str) or _KEY_RE.fullmatch(key) is None:
        raise ValueError(
            "Token cache key must be 1-128 characters of [A-Za-z0-9_-] (a hash of the connection), "
            f"got {type(key).__name__} of length {len(key) if isinstance(key, str) else '?'}"
        )


class TokenCache:
    """Memory → encrypted file → fetch, with one refresh at a time per key.

    Building one in file mode does I/O (directory checks, key file): async code builds it in a
    thread, once.

    :param mode: one of :data:`~sf_oauth_provider.client.config.CACHE_MODES`
    :param cache_dir: directory for the file cache; default :func:`default_cache_dir`
    :param fernet_key: Airflow's Fernet key (or ``new,old`` list); encrypts the cache when valid
    :param lock_timeout: seconds to wait for another refresh before fetching anyway
    :param logger: where warnings go; default this module's logger
    :param extra_layers: wider layers after the file (a shared store for many hosts)
    """

    def __init__(
        self,
        mode: str = "file",
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        fernet_key: str | bytes | None = None,
        lock_timeout: float = 120.0,
        logger: logging.Logger | None = None,
        extra_layers: tuple[TokenStore, ...] = (),
    ) -> None:
        normalized = str(mode).strip().lower()
        if normalized not in CACHE_MODES:
            raise ValueError(f"Token cache mode must be one of {', '.join(CACHE_MODES)}; got {mode!r}")
        self._log = logger or _log
        self.lock_timeout = float(lock_timeout)
        # auto and redis: memory + file, then the shared layers the provider passes (Redis)
        self._mode = "file" if normalized in ("auto", "redis") else normalized
        self._file: FileStore | None = None
        if self._mode == "file":
            directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
            try:
                self._file = FileStore(directory, fernet_key=fernet_key, logger=self._log)
            except (Rejected, OSError) as exc:
                reason = exc.message if isinstance(exc, Rejected) else (exc.strerror or type(exc).__name__)
                warn_once(
                    self._log, ("unusable dir", str(directory), reason),
                    "Token cache directory %s is not usable (%s); caching tokens in this process's "
                    "memory only (set SF_OAUTH_CACHE_DIR to a directory of your own that other users "
                    "cannot write, to share tokens between tasks)", directory, reason,
                )
                self._mode = "memory"
        if self._mode == "none":
            self.layers: tuple[TokenStore, ...] = (RefreshTokenKeeper(),)
        elif self._file is not None:
            self.layers = (MemoryStore(self._file.namespace), self._file, *extra_layers)
        else:
            self.layers = (MemoryStore(None), *extra_layers)

    @property
    def mode(self) -> str:
        """The effective mode: ``redis`` when a shared store is layered on (``auto`` with a Redis
        URL), else ``file``, which degrades to ``memory`` when its directory is unusable."""
        wider = [store.name for store in self.layers if store.shared and store is not self._file]
        return wider[-1] if wider else self._mode

    @property
    def layer_names(self) -> tuple[str, ...]:
        """The layers looked up, cheapest first, e.g. ``("memory", "file", "redis")``."""
        return tuple(store.name for store in self.layers)

    @property
    def cache_dir(self) -> Path | None:
        """The directory of the file cache, or None when not in file mode."""
        return self._file.directory if self._file is not None else None

    def __repr__(self) -> str:
        return (f"TokenCache(mode={self.mode!r}, layers={'+'.join(self.layer_names)!r}, "
                f"cache_dir={str(self.cache_dir) if self.cache_dir else None!r})")

    # ---- plain access ------------------------------------------------------------------------
    def get(self, key: str) -> SalesforceToken | None:
        """The cached token for ``key`` (first layer that has one), usable or not; None on a miss."""
        _check_key(key)
        for depth, store in enumerate(self.layers):
            token = store.get(key)
            if has_access_token(token):
                for upper in self.layers[:depth]:
                    if not upper.shared:
                        upper.put(key, token)
                return token
        return None

    def put(self, key: str, token: SalesforceToken) -> None:
        """Store ``token`` for ``key`` in every layer."""
        _check_key(key)
        for store in self.layers:
            store.put(key, token)

    def invalidate(self, key: str, access_token: str | None = None) -> None:
        """Forget the cached access token for ``key`` in every layer, keeping its refresh token.

        :param access_token: only if the cached token is this one, so a process that saw a dead
            token does not throw away a newer one another process already fetched
        """
        _check_key(key)
        singleflight.run(singleflight.invalidate_flow(self.layers, key, access_token), _no_fetch, self.lock_timeout)

    async def ainvalidate(self, key: str, access_token: str | None = None) -> None:
        """:meth:`invalidate` without blocking the event loop."""
        _check_key(key)
        await singleflight.arun(singleflight.invalidate_flow(self.layers, key, access_token), _no_afetch,
                                self.lock_timeout)

    # ---- single-flight -----------------------------------------------------------------------
    def get_or_fetch(
        self,
        key: str,
        fetch: Fetch,
        *,
        is_usable: Callable[[SalesforceToken], bool],
        force: bool = False,
        stale_token: str | None = None,
    ) -> SalesforceToken:
        """The cached token if usable, else the result of one ``fetch`` across all callers.

        :param fetch: gets a new token with the newest refresh token found in any layer (None
            when none is cached); called at most once per refresh among all threads and
            processes sharing the cache; its exceptions propagate and nothing is cached
        :param is_usable: whether a cached token may be handed out (e.g. fresh with a leeway)
        :param force: skip the cached token (e.g. Salesforce just rejected it)
        :param stale_token: the access token that was rejected: forgotten (its refresh token
            kept); when the cache already holds a different usable token (another caller
            refreshed meanwhile), that token is returned instead of fetching again
        """
        return self.fetch_outcome(key, fetch, is_usable=is_usable, force=force, stale_token=stale_token).token

    def fetch_outcome(self, key: str, ops: singleflight.Operations | Fetch, *,
                      is_usable: Callable[[SalesforceToken], bool], force: bool = False,
                      stale_token: str | None = None, rotating: bool = False,
                      conn_id: str = "?", on_lock: singleflight.LockObserver | None = None) -> singleflight.Outcome:
        """:meth:`get_or_fetch`, telling whether a request was made and with which refresh token.

        :param ops: the fetch, or the fetch with the refresh-token check and the expiry settling
        :param rotating: the grant sends a refresh token Salesforce may rotate (never sent twice)
        :param conn_id: the connection, for the messages
        :param on_lock: told how long the refresh lock was waited for (metrics)
        """
        _check_key(key)
        flow = singleflight.token_flow(self.layers, key, is_usable=is_usable, force=force, stale_token=stale_token,
                                       rotating=rotating, conn_id=conn_id)
        return singleflight.run(flow, ops, self.lock_timeout, on_lock)

    async def aget_or_fetch(
        self,
        key: str,
        fetch: AsyncFetch,
        *,
        is_usable: Callable[[SalesforceToken], bool],
        force: bool = False,
        stale_token: str | None = None,
    ) -> SalesforceToken:
        """Async :meth:`get_or_fetch`: waits without blocking the event loop."""
        outcome = await self.afetch_outcome(key, fetch, is_usable=is_usable, force=force, stale_token=stale_token)
        return outcome.token

    async def afetch_outcome(self, key: str, ops: singleflight.Operations | AsyncFetch, *,
                             is_usable: Callable[[SalesforceToken], bool], force: bool = False,
                             stale_token: str | None = None, rotating: bool = False,
                             conn_id: str = "?", on_lock: singleflight.LockObserver | None = None,
                             ) -> singleflight.Outcome:
        """Async :meth:`fetch_outcome` (``ops`` holds coroutine functions)."""
        _check_key(key)
        flow = singleflight.token_flow(self.layers, key, is_usable=is_usable, force=force, stale_token=stale_token,
                                       rotating=rotating, conn_id=conn_id)
        return await singleflight.arun(flow, ops, self.lock_timeout, on_lock)


def _no_fetch(_refresh_token: str | None) -> SalesforceToken:  # pragma: no cover - invalidate never fetches
    raise AssertionError("invalidation does not fetch")


async def _no_afetch(_refresh_token: str | None) -> SalesforceToken:  # pragma: no cover
    raise AssertionError("invalidation does not fetch")
