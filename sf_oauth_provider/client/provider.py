"""TokenProvider: "give me a valid token" for one connection, in any Python program.

config → cache key → store layers (memory → file → a shared store) → single-flight → fetch, with
refresh-token rotation carried. The same code serves sync and async callers: the refresh flow
(:mod:`sf_oauth_provider.client.singleflight`) is a sans-IO generator that :meth:`get_token` and
:meth:`aget_token` only drive. No Airflow import: the Airflow hook is a thin layer over this.

    from sf_oauth_provider.client import OAuthConfig, TokenProvider
    provider = TokenProvider(OAuthConfig.from_connection_fields("sf_prod", host=..., login=..., ...))
    token = provider.get_token()            # or: await provider.aget_token()
    provider.invalidate(token.access_token) # e.g. after revoking it
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterator, Sequence

from sf_oauth_provider.client.budget import (
    BudgetLedger,
    BudgetSettings,
    FileLedger,
    LoginBudget,
    MemoryLedger,
    budget_key,
)
from sf_oauth_provider.client.cache import TokenCache, default_cache_dir
from sf_oauth_provider.client.config import OAuthConfig
from sf_oauth_provider.client.errors import SalesforceLoginBudgetExceeded, SalesforceOAuthError
from sf_oauth_provider.client.metrics import Metrics, MetricsSink
from sf_oauth_provider.client.singleflight import Operations, Outcome
from sf_oauth_provider.client.stores import TokenStore
from sf_oauth_provider.client.token import SalesforceToken

if TYPE_CHECKING:
    from sf_oauth_provider.client.oauth import AsyncSalesforceOAuthClient, RetryPolicy, SalesforceOAuthClient

__all__ = ["TokenProvider"]

_log = logging.getLogger(__name__)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="seconds")


class TokenProvider:
    """Valid access tokens for one connection, shared by every process on the host.

    Building a provider does no I/O; its stores are built on first use (in a thread for
    :meth:`aget_token`) and kept for the provider's life.

    :param config: the connection's validated settings (``config.cache`` picks the layers)
    :param leeway: a token with fewer seconds than this left counts as expired
    :param cache_dir: the file store's directory; default ``$SF_OAUTH_CACHE_DIR`` or under
        ``$AIRFLOW_HOME`` (read when the stores are built)
    :param fernet_key: Airflow's Fernet key, when there is one, to encrypt the file store
    :param retry: retry policy for transient errors of the token request
    :param on_secret: called with every secret the moment it is seen (consumer secret,
        assertion, each access and refresh token handed out): the hook masks them
    :param logger: where "fetched" / "rotated" lines and cache warnings go
    :param lock_timeout: seconds to wait for another caller's refresh before fetching anyway
    :param client_factory: the sync client to use (default: one owned by this provider)
    :param cache: a prepared :class:`TokenCache` (default: built from the arguments above)
    :param shared_layers: stores wider than the file (a store shared by many hosts), looked up
        after it, in order; the widest one's lock makes the refresh single-flight (default: a
        :class:`~sf_oauth_provider.client.stores.redis.RedisStore` on ``redis_url`` when
        ``config.cache`` is ``auto`` or ``redis``)
    :param redis_url: the deployment's Redis; default ``$SF_OAUTH_REDIS_URL`` (the hook passes
        Airflow's ``[sf_oauth] redis_url``)
    :param metrics: where metrics go (:mod:`sf_oauth_provider.client.metrics`; default: nowhere;
        the hook passes Airflow's ``Stats``)
    :param login_budget: cap and warning threshold of the login budget
        (:mod:`sf_oauth_provider.client.budget`); default ``$SF_OAUTH_LOGIN_BUDGET_CAP`` /
        ``$SF_OAUTH_LOGIN_BUDGET_WARN`` or 3000 / 0.8 (the hook passes ``[sf_oauth]`` settings)
    :param budget_clock: epoch seconds now, for the login budget's window (tests move it)
    :raises SalesforceConfigError: ``config.cache`` is ``redis`` and no Redis URL is configured
    """

    def __init__(
        self,
        config: OAuthConfig,
        *,
        leeway: float = 300.0,
        cache_dir: str | os.PathLike[str] | None = None,
        fernet_key: str | None = None,
        retry: RetryPolicy | None = None,
        on_secret: Callable[[str], None] | None = None,
        logger: logging.Logger | None = None,
        lock_timeout: float = 120.0,
        client_factory: Callable[[], SalesforceOAuthClient] | None = None,
        cache: TokenCache | None = None,
        shared_layers: Sequence[TokenStore] | None = None,
        redis_url: str | None = None,
        metrics: MetricsSink | None = None,
        login_budget: BudgetSettings | None = None,
        budget_clock: Callable[[], float] | None = None,
    ) -> None:
        self.config = config
        self.leeway = float(leeway)
        self.retry = retry
        self._cache_dir = cache_dir
        self._fernet_key = fernet_key
        self._on_secret = on_secret or (lambda _secret: None)
        self.log = logger or _log
        self._lock_timeout = lock_timeout
        self._client_factory = client_factory
        self._client: SalesforceOAuthClient | None = None
        self._cache = cache
        if shared_layers is None:
            from sf_oauth_provider.client.stores.redis import REDIS_URL_ENV, shared_layers_for

            url = redis_url if redis_url is not None else os.environ.get(REDIS_URL_ENV)
            shared_layers = shared_layers_for(config, url, logger=self.log)
        self._shared_layers = tuple(shared_layers)
        self._build_guard = threading.Lock()
        self.metrics = Metrics(metrics)
        self._budget_settings = login_budget if login_budget is not None else BudgetSettings.from_env()
        self._budget_clock = budget_clock
        self._budget: LoginBudget | None = None
        #: where the last token handed out came from: ``memory``, ``file``, ``redis`` or ``salesforce``
        self.last_layer: str | None = None

    def __repr__(self) -> str:
        return f"TokenProvider(conn_id={self.config.conn_id!r}, cache={self._cache!r})"

    # ---- stores and clients ------------------------------------------------------------------
    @property
    def cache(self) -> TokenCache:
        """The store layers (built on first use, then kept)."""
        cache = self._cache
        if cache is None:
            with self._build_guard:
                if self._cache is None:
                    directory = Path(self._cache_dir) if self._cache_dir is not None else default_cache_dir()
                    self._cache = TokenCache(self.config.cache, cache_dir=directory, fernet_key=self._fernet_key,
                                             lock_timeout=self._lock_timeout, logger=self.log,
                                             extra_layers=self._shared_layers)
                cache = self._cache
        return cache

    async def acache(self) -> TokenCache:
        """:attr:`cache`, built in a thread the first time (it reads and writes files)."""
        return self._cache if self._cache is not None else await asyncio.to_thread(lambda: self.cache)

    @property
    def budget(self) -> LoginBudget:
        """The connection's login budget, counted in the widest store the cache uses (built with it)."""
        budget = self._budget
        if budget is None:
            cache = self.cache
            ledger: BudgetLedger = MemoryLedger()
            if cache.cache_dir is not None:
                ledger = FileLedger(cache.cache_dir, logger=self.log)
            redis_stores = [store for store in cache.layers if store.name == "redis"]
            if redis_stores:
                from sf_oauth_provider.client.budget_redis import RedisLedger
                from sf_oauth_provider.client.stores.redis import RedisStore

                if isinstance(redis_stores[-1], RedisStore):
                    ledger = RedisLedger(redis_stores[-1], ledger)
            extra: dict[str, Any] = {"clock": self._budget_clock} if self._budget_clock is not None else {}
            budget = self._budget = LoginBudget(ledger, self._budget_settings, key=budget_key(self.config),
                                                conn_id=self.config.conn_id, logger=self.log, metrics=self.metrics,
                                                **extra)
        return budget

    async def abudget(self) -> LoginBudget:
        """:attr:`budget`, built in a thread the first time (it may build the stores)."""
        return self._budget if self._budget is not None else await asyncio.to_thread(lambda: self.budget)

    @contextlib.contextmanager
    def _counted(self) -> Iterator[None]:
        """``sf_oauth.token_request`` with the outcome of the token request made inside."""
        flow = self.config.auth_flow
        try:
            yield
        except SalesforceLoginBudgetExceeded:
            self.metrics.token_request(flow, "budget_refused")
            raise
        except SalesforceOAuthError as exc:
            self.metrics.token_request(flow, "transient_error" if exc.transient else "permanent_error")
            raise
        self.metrics.token_request(flow, "ok")

    def _request(self, send: Callable[[], SalesforceToken]) -> SalesforceToken:
        """One token request: counted in the login budget (refused at its cap, before sending), then sent."""
        with self._counted():
            self.budget.admit()
            return send()

    async def _arequest(self, send: Callable[[], Awaitable[SalesforceToken]]) -> SalesforceToken:
        """Async :meth:`_request`."""
        with self._counted():
            await (await self.abudget()).aadmit()
            return await send()

    def _observed(self, outcome: Outcome | None, error: BaseException | None, requested: bool) -> None:
        """Cache hit or miss, and a permanent error's code, for one :meth:`get_token` call."""
        if not self.metrics.enabled:
            return
        if outcome is not None and not outcome.fetched and outcome.layer is not None:
            self.metrics.cache_hit(outcome.layer)
        elif requested or (outcome is not None and outcome.fetched):
            self.metrics.cache_miss()
        if isinstance(error, SalesforceOAuthError) and not error.transient:
            self.metrics.permanent_error(error.error or type(error).__name__)

    def _lock_waited(self, layer: str, seconds: float, _held: bool) -> None:
        self.metrics.lock_wait(layer, seconds)

    @property
    def client(self) -> SalesforceOAuthClient:
        """The sync client that makes the token requests."""
        if self._client_factory is not None:  # the owner's client: asked each time (it may be reopened)
            return self._client_factory()
        if self._client is None:
            from sf_oauth_provider.client.oauth import SalesforceOAuthClient

            self._client = SalesforceOAuthClient(self.config, retry=self.retry, on_secret=self._on_secret)
        return self._client

    def _async_client(self) -> AsyncSalesforceOAuthClient:
        from sf_oauth_provider.client.oauth import AsyncSalesforceOAuthClient

        return AsyncSalesforceOAuthClient(self.config, retry=self.retry, on_secret=self._on_secret, max_connections=1)

    def close(self) -> None:
        """Close the sync client's connection pool, if this provider opened it."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    # ---- tokens ------------------------------------------------------------------------------
    def usable(self, token: SalesforceToken) -> bool:
        """Whether a stored token may be handed out: more than ``leeway`` seconds left."""
        return token.is_fresh(self.leeway)

    def get_token(self, force_refresh: bool = False, stale_token: str | None = None) -> SalesforceToken:
        """A usable access token: from a store, or fetched once for everyone sharing the stores.

        :param force_refresh: fetch a new token even if the stored one looks fresh
        :param stale_token: an access token Salesforce refused: forgotten, and a different one
            returned (another process's newer token, or a new one)
        """
        if stale_token is not None:
            self._on_secret(stale_token)
        requested: list[bool] = []

        def fetch(refresh: str | None) -> SalesforceToken:
            requested.append(True)
            # the client (an httpx pool with its TLS context: tens of ms) is built on the first miss only
            return self._request(lambda: self.client.request_token(refresh_token=refresh))

        ops = Operations(
            fetch=fetch,
            verify=lambda refresh: self.client.refresh_token_active(self._refresh_token_to_check(refresh)),
            settle=lambda token: self.client.settle_expiry(token),
        )
        try:
            outcome = self.cache.fetch_outcome(
                self.config.cache_key, ops, is_usable=self.usable, force=force_refresh, stale_token=stale_token,
                rotating=self._rotating, conn_id=self.config.conn_id, on_lock=self._lock_waited,
            )
        except BaseException as exc:
            self._observed(None, exc, bool(requested))
            raise
        self._observed(outcome, None, bool(requested))
        return self._handed_out(outcome)

    @property
    def _rotating(self) -> bool:
        """The grant sends a refresh token, which Salesforce may rotate: it is never sent twice."""
        return bool(self.config.flow.keeps_refresh_token)

    def _refresh_token_to_check(self, refresh_token: str | None) -> str:
        return refresh_token or self.config.refresh_token or ""

    async def aget_token(self, force_refresh: bool = False, stale_token: str | None = None,
                         client: AsyncSalesforceOAuthClient | None = None) -> SalesforceToken:
        """Async :meth:`get_token`: no blocking I/O on the event loop.

        :param client: the async client to make requests with (kept open); default: one opened
            on the first miss and closed before returning
        """
        if stale_token is not None:
            self._on_secret(stale_token)
        cache = await self.acache()

        opened: list[AsyncSalesforceOAuthClient] = []

        def http() -> AsyncSalesforceOAuthClient:  # built on the first miss only, closed below
            if client is not None:
                return client
            if not opened:
                opened.append(self._async_client())
            return opened[0]

        requested: list[bool] = []

        async def fetch(refresh: str | None) -> SalesforceToken:
            requested.append(True)
            return await self._arequest(lambda: http().request_token(refresh_token=refresh))

        async def verify(refresh: str | None) -> bool | None:
            return await http().refresh_token_active(self._refresh_token_to_check(refresh))

        async def settle(token: SalesforceToken) -> SalesforceToken:
            return await http().settle_expiry(token)

        try:
            outcome = await cache.afetch_outcome(
                self.config.cache_key, Operations(fetch, verify, settle), is_usable=self.usable,
                force=force_refresh, stale_token=stale_token, rotating=self._rotating, conn_id=self.config.conn_id,
                on_lock=self._lock_waited,
            )
        except BaseException as exc:
            self._observed(None, exc, bool(requested))
            raise
        finally:
            for opened_client in opened:
                await opened_client.aclose()
        self._observed(outcome, None, bool(requested))
        return self._handed_out(outcome)

    def invalidate(self, access_token: str | None = None) -> None:
        """Forget the stored access token (only if it is ``access_token``), in every layer.

        The newest refresh token is kept: the next :meth:`get_token` refreshes with it.
        """
        self.cache.invalidate(self.config.cache_key, access_token)

    async def ainvalidate(self, access_token: str | None = None) -> None:
        """Async :meth:`invalidate`."""
        await (await self.acache()).ainvalidate(self.config.cache_key, access_token)

    def _handed_out(self, outcome: Outcome) -> SalesforceToken:
        token = outcome.token
        self.last_layer = outcome.layer
        self._on_secret(token.access_token)
        if token.refresh_token:
            self._on_secret(token.refresh_token)
        if outcome.fetched:
            config = self.config
            used = outcome.refresh_token or config.refresh_token
            if token.refresh_token and token.refresh_token != used:
                self.metrics.refresh_rotated()
                self.log.info(
                    "Salesforce rotated the refresh token of connection %r; the new one is kept in the token cache",
                    config.conn_id,
                )
            self.log.info(
                "Fetched a Salesforce token %s for connection %r (%s), valid until %s (%s)",
                token.fingerprint, config.conn_id, config.auth_flow, _iso(token.expires_at), token.expires_at_source,
            )
        return token
