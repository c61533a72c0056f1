"""SalesforceOAuthHook: the only code that reads a ``salesforce_oauth`` Airflow connection.

DAG files import this module, so it imports only what defining the hook needs; the client's
modules (config, tokens, stores, HTTP) load when a task first uses them, read as ``core.<name>``
through the lazily loading :mod:`sf_oauth_provider.client` package.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
from functools import cached_property
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Iterator, TypeVar, cast

import httpx

from sf_oauth_provider import client as core  # the framework-free core; its modules load on first use
from sf_oauth_provider._compat import BaseHook, conf
from sf_oauth_provider.client.errors import SalesforceConfigError, SalesforceOAuthError, SalesforceSessionExpired
from sf_oauth_provider.hooks._bulk import BulkMethods
from sf_oauth_provider.hooks.airflow_metrics import AirflowStatsSink
from sf_oauth_provider.masking import amask_secrets, mask_secrets

if TYPE_CHECKING:
    import logging

    from sf_oauth_provider.client.cache import TokenCache
    from sf_oauth_provider.client.config import OAuthConfig
    from sf_oauth_provider.client.oauth import AsyncSalesforceOAuthClient, RetryPolicy, SalesforceOAuthClient
    from sf_oauth_provider.client.provider import TokenProvider
    from sf_oauth_provider.client.token import IntrospectionResult, SalesforceToken

__all__ = ["SalesforceOAuthHook"]

T = TypeVar("T")
_SECRET_EXTRAS = ("private_key", "private_key_passphrase", "refresh_token")


def _mask(secret: str | None) -> None:
    """Register ``secret`` (in every form it can take in text) with Airflow's secrets masker."""
    mask_secrets([secret])


async def _amask(secrets: list[str]) -> None:
    """Register (and forget) the secrets an async client reported."""
    batch, secrets[:] = list(secrets), []
    await amask_secrets(batch)


class SalesforceOAuthHook(BulkMethods, BaseHook):
    """Salesforce OAuth 2.0 tokens for a ``salesforce_oauth`` connection.

    Tokens come from a cache shared by every task process on the host (one token request per
    token lifetime, single-flight), and are refreshed ``leeway`` seconds before they expire.

    :param salesforce_oauth_conn_id: the connection id
    :param leeway: a token with fewer seconds than this left counts as expired
    :param retry: retry policy for transient errors (default: 3 tries, exponential backoff, jitter)
    """

    conn_name_attr = "salesforce_oauth_conn_id"
    default_conn_name = "salesforce_oauth_default"
    conn_type = "salesforce_oauth"
    hook_name = "Salesforce OAuth"

    def __init__(
        self,
        salesforce_oauth_conn_id: str = default_conn_name,
        *,
        leeway: float = 300.0,
        retry: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.salesforce_oauth_conn_id = salesforce_oauth_conn_id
        self.leeway = leeway
        self.retry = retry
        self._aconfig: OAuthConfig | None = None
        #: the one async client of a :meth:`reusing_connections` block
        self._pool: AsyncSalesforceOAuthClient | None = None

    # ---- configuration -----------------------------------------------------------------------
    def _config_from(self, conn: Any, extra_text: str | None) -> OAuthConfig:
        extra: dict[str, Any] = {}
        if extra_text and extra_text.strip():
            try:
                extra = json.loads(extra_text)
            except ValueError:
                raise SalesforceConfigError(
                    f"Connection {self.salesforce_oauth_conn_id!r}: 'extra' is not valid JSON",
                    field="extra",
                    hint='write the extras as a JSON object, e.g. {"auth_flow": "jwt_bearer", "username": "..."}',
                ) from None
            if not isinstance(extra, dict):
                raise SalesforceConfigError(
                    f"Connection {self.salesforce_oauth_conn_id!r}: 'extra' must be a JSON object", field="extra"
                )
        if conn.conn_type and conn.conn_type.replace("-", "_") != self.conn_type:
            raise SalesforceConfigError(
                f"Connection {self.salesforce_oauth_conn_id!r} has conn_type {conn.conn_type!r}, "
                f"not {self.conn_type!r}",
                field="conn_type",
                hint=f"set conn_type to {self.conn_type!r}; a connection of apache-airflow-providers-salesforce "
                "keeps the consumer key in 'login' and moves its extras (README: 'Migrating from "
                "apache-airflow-providers-salesforce')",
            )
        return core.OAuthConfig.from_connection_fields(
            self.salesforce_oauth_conn_id,
            host=conn.host,
            login=conn.login,
            password=conn.password,
            extra=extra,
            schema=conn.schema,
            port=conn.port,
        )

    @staticmethod
    def _secrets_of(conn: Any, extra_text: str | None) -> list[str]:
        found = [conn.password] if conn.password else []
        try:
            extra = json.loads(extra_text or "{}")
        except ValueError:
            return found
        if isinstance(extra, dict):
            found += [str(extra[k]) for k in _SECRET_EXTRAS if extra.get(k)]
        return found

    def _not_found(self, exc: Exception) -> Exception:
        """Airflow's "not defined" as a permanent error naming the closest connection id."""
        from sf_oauth_provider.hooks.connection_lookup import is_not_found, not_found_error

        if not is_not_found(exc):
            return exc
        return not_found_error(self.salesforce_oauth_conn_id, exc, self.conn_name_attr)

    @cached_property
    def config(self) -> OAuthConfig:
        """The connection's validated settings (raises :class:`SalesforceConfigError`; an unknown
        connection id is :class:`~sf_oauth_provider.hooks.connection_lookup.SalesforceConnectionNotFound`)."""
        try:
            conn = self.get_connection(self.salesforce_oauth_conn_id)
        except Exception as exc:
            error = self._not_found(exc)
            if error is exc:
                raise
            raise error from exc
        for secret in self._secrets_of(conn, conn.extra):
            _mask(secret)
        config = self._config_from(conn, conn.extra)
        for secret in config.secrets:  # what validation read besides the fields (a key file's PEM)
            _mask(secret)
        return config

    async def aconfig(self) -> OAuthConfig:
        """Like :attr:`config`, read with ``aget_connection`` (safe on an event loop); the
        :attr:`config` already read, when there is one."""
        if self._aconfig is None and "config" in self.__dict__:
            self._aconfig = self.__dict__["config"]
        if self._aconfig is None:
            try:
                conn = await self.aget_connection(self.salesforce_oauth_conn_id)
            except Exception as exc:
                # listing may read the metadata DB: not on the event loop
                error = await asyncio.to_thread(self._not_found, exc)
                if error is exc:
                    raise
                raise error from exc
            await _amask(self._secrets_of(conn, conn.extra))
            config = self._config_from(conn, conn.extra)
            await _amask(list(config.secrets))
            self._aconfig = config
        return self._aconfig

    def _fernet_key(self) -> str | None:
        key = conf.get("core", "fernet_key", fallback=None) or None
        # Without an airflow.cfg the value is the literal placeholder '{FERNET_KEY}': no key.
        return None if key is None or key.startswith("{") else key

    def _provider_for(self, config: OAuthConfig) -> TokenProvider:
        return core.TokenProvider(
            config, leeway=self.leeway, cache_dir=core.cache.default_cache_dir(), fernet_key=self._fernet_key(),
            retry=self.retry, on_secret=self._unmasked.append, client_factory=lambda: self.client,
            # Airflow's task logger is not a logging.Logger but has the methods the client calls
            logger=cast("logging.Logger", self.log),
            # [sf_oauth] redis_url (env AIRFLOW__SF_OAUTH__REDIS_URL); unset: $SF_OAUTH_REDIS_URL
            redis_url=conf.get("sf_oauth", "redis_url", fallback=None) or None,
            metrics=self.metrics_sink, login_budget=self._login_budget(),
        )

    #: where the token client's metrics go: Airflow's ``Stats``, as ``[metrics]`` configures it
    metrics_sink = AirflowStatsSink()

    @staticmethod
    def _login_budget() -> core.budget.BudgetSettings:
        """``[sf_oauth] login_budget_cap`` / ``login_budget_warn`` (env AIRFLOW__SF_OAUTH__LOGIN_BUDGET_*)."""
        return core.budget.BudgetSettings.parse(
            conf.get("sf_oauth", "login_budget_cap", fallback=None),
            conf.get("sf_oauth", "login_budget_warn", fallback=None),
        )

    def _config_failed(self, exc: BaseException) -> None:
        """A connection that cannot even be read counts as a permanent error too (metrics)."""
        if isinstance(exc, SalesforceOAuthError) and not exc.transient and "provider" not in self.__dict__:
            core.metrics.Metrics(self.metrics_sink).permanent_error(exc.error or type(exc).__name__)

    @cached_property
    def _unmasked(self) -> collections.deque[str]:
        """Secrets the provider saw and the masker does not know yet (masked after each call)."""
        return collections.deque()

    def _flush_masks(self) -> None:
        pending = self._unmasked
        while pending:
            _mask(pending.popleft())

    async def _aflush_masks(self) -> None:
        pending, batch = self._unmasked, []
        while pending:
            batch.append(pending.popleft())
        await _amask(batch)

    @cached_property
    def provider(self) -> TokenProvider:
        """The connection's :class:`~sf_oauth_provider.client.TokenProvider` (stores built once)."""
        return self._provider_for(self.config)

    async def _aprovider(self) -> TokenProvider:
        if "provider" not in self.__dict__:
            self.__dict__["provider"] = self._provider_for(await self.aconfig())
        return self.__dict__["provider"]

    @property
    def cache(self) -> TokenCache:
        """The token cache layers of the connection (memory, file, and Redis when configured)."""
        return self.provider.cache

    # ---- clients -----------------------------------------------------------------------------
    @cached_property
    def client(self) -> SalesforceOAuthClient:
        return core.oauth.SalesforceOAuthClient(self.config, retry=self.retry, on_secret=_mask)

    def _async_client(
        self, config: OAuthConfig, sink: list[str] | collections.deque[str], max_connections: int = 16
    ) -> AsyncSalesforceOAuthClient:
        return core.oauth.AsyncSalesforceOAuthClient(
            config, retry=self.retry, on_secret=sink.append, max_connections=max_connections
        )

    @contextlib.asynccontextmanager
    async def reusing_connections(self, max_connections: int = 4) -> AsyncIterator[None]:
        """Within this block every async call of this hook — tokens, introspection, userinfo —
        shares one HTTP connection pool (a trigger opens one for its whole life, not one per call).
        Outside it, each async call opens and closes its own.

        :param max_connections: size of the pool
        """
        if self._pool is not None:  # already inside one
            yield
            return
        try:
            config = await self.aconfig()
        except Exception:  # noqa: BLE001 - the calls inside report it, as they would without a pool
            yield
            return
        async with self._async_client(config, self._unmasked, max_connections) as client:
            self._pool = client
            try:
                yield
            finally:
                self._pool = None
                await self._aflush_masks()

    @contextlib.asynccontextmanager
    async def async_client(self, max_connections: int = 16) -> AsyncIterator[AsyncSalesforceOAuthClient]:
        """An async client on one connection pool (for many concurrent calls, e.g. audits).

        Every secret it sees is registered with the secrets masker (``amask_secret``).

        :param max_connections: size of the connection pool
        """
        if self._pool is not None:
            try:
                yield self._pool
            finally:
                await self._aflush_masks()
            return
        config = await self.aconfig()
        sink: list[str] = []
        try:
            async with self._async_client(config, sink, max_connections) as client:
                yield client
        finally:
            await _amask(sink)

    def close(self) -> None:
        """Close the HTTP connection pool of the sync client, if one was opened."""
        client = self.__dict__.pop("client", None)
        if client is not None:
            client.close()

    # ---- tokens ------------------------------------------------------------------------------
    def get_token(self, force_refresh: bool = False, *, stale_token: str | None = None) -> SalesforceToken:
        """A usable access token: cached, or fetched once for every process on this host.

        :param force_refresh: fetch a new token even if the cached one looks fresh
        :param stale_token: an access token Salesforce refused; a different one is returned
        """
        try:
            token = self.provider.get_token(force_refresh, stale_token=stale_token)
        except SalesforceOAuthError as exc:
            self._config_failed(exc)
            self._note_outcome(exc)
            raise
        finally:
            self._flush_masks()
        self._note_outcome(None)
        return token

    async def aget_token(self, force_refresh: bool = False, *, stale_token: str | None = None) -> SalesforceToken:
        """Async :meth:`get_token` (for triggers): no blocking I/O on the event loop."""
        try:
            provider = await self._aprovider()
            token = await provider.aget_token(force_refresh, stale_token=stale_token, client=self._pool)
        except SalesforceOAuthError as exc:
            self._config_failed(exc)
            await asyncio.to_thread(self._note_outcome, exc)
            raise
        finally:
            await self._aflush_masks()
        await asyncio.to_thread(self._note_outcome, None)
        return token

    def _note_outcome(self, exc: SalesforceOAuthError | None) -> None:
        """Keep a permanent error (message and hint, no secret) beside the cached token for the
        status page; a token handed out clears it (:mod:`sf_oauth_provider.ui.last_error`)."""
        from sf_oauth_provider.ui.last_error import note_outcome

        provider = self.__dict__.get("provider")
        if provider is None or provider._cache is None:  # the connection itself is unreadable
            return
        note_outcome(provider._cache, provider.config.cache_key, exc)

    def invalidate_token(self, access_token: str | None = None) -> None:
        """Forget the cached access token (any, or only if it is ``access_token``).

        The newest refresh token stays cached: the next :meth:`get_token` refreshes with it.
        """
        self.provider.invalidate(access_token)

    # ---- calls that use the token ------------------------------------------------------------
    def _with_token(self, call: Callable[[SalesforceToken], T]) -> T:
        """Run ``call`` with the token; on an expired session refresh once and retry once."""
        token = self.get_token()
        try:
            return call(token)
        except SalesforceSessionExpired:
            self.log.info("Salesforce refused token %s as expired; refreshing once", token.fingerprint)
            return call(self.get_token(stale_token=token.access_token))

    async def _awith_token(self, call: Callable[[SalesforceToken], Awaitable[T]]) -> T:
        token = await self.aget_token()
        try:
            return await call(token)
        except SalesforceSessionExpired:
            self.log.info("Salesforce refused token %s as expired; refreshing once", token.fingerprint)
            return await call(await self.aget_token(stale_token=token.access_token))

    def get_conn(self) -> httpx.Client:
        """An ``httpx.Client`` on the instance URL whose auth refreshes the token once on 401.

        The token is only ever sent to the instance URL's origin, over https unless it is
        loopback: a request to another origin raises :class:`SalesforceProtocolError`. Every
        request ends within the connection's ``timeout`` of wall-clock time, body included.
        """
        token = self.get_token()
        core.auth.check_bearer_target(token.instance_url, token.instance_url, self.salesforce_oauth_conn_id)
        return httpx.Client(
            base_url=token.instance_url,
            auth=core.auth.SalesforceTokenAuth(get_token=lambda stale: self.get_token(stale_token=stale),
                                               conn_id=self.salesforce_oauth_conn_id),
            headers={"User-Agent": core.oauth.USER_AGENT, "Accept": "application/json"},
            timeout=self.config.timeout,
            transport=core.oauth.DeadlineTransport(
                self.config.timeout, verify=core.oauth.tls_verify(self.config.ca_bundle)
            ),
        )

    def introspect(self, token: str | SalesforceToken, token_type_hint: str = "access_token") -> IntrospectionResult:
        """What Salesforce knows about ``token`` (needs the consumer secret).

        :param token: a token string, or a :class:`SalesforceToken` (its access token is asked about)
        :param token_type_hint: ``access_token`` or ``refresh_token``
        """
        value = token.access_token if isinstance(token, core.SalesforceToken) else token
        _mask(value)
        return self.client.introspect(value, token_type_hint)

    async def aintrospect(
        self, token: str | SalesforceToken, token_type_hint: str = "access_token"
    ) -> IntrospectionResult:
        """Async :meth:`introspect`."""
        value = token.access_token if isinstance(token, core.SalesforceToken) else token
        async with self.async_client(max_connections=1) as client:
            return await client.introspect(value, token_type_hint)

    def revoke(self, token: str) -> bool:
        """Revoke ``token``; True if revoked now, False if it was already invalid."""
        _mask(token)
        revoked = self.client.revoke(token)
        self.invalidate_token(access_token=token)
        return revoked

    def userinfo(self, access_token: str | None = None) -> dict[str, Any]:
        """The OpenID userinfo of the connection's user.

        :param access_token: check exactly this token (an expired one raises
            :class:`SalesforceSessionExpired`); default: the connection's token, refreshed once
            if Salesforce refuses it
        """
        if access_token is not None:
            _mask(access_token)
            return self.client.userinfo(access_token)
        return self._with_token(lambda tok: self.client.userinfo(tok.access_token))

    async def auserinfo(self, access_token: str | None = None) -> dict[str, Any]:
        """Async :meth:`userinfo`."""

        async def call(tok: SalesforceToken) -> dict[str, Any]:
            async with self.async_client(max_connections=1) as client:
                return await client.userinfo(tok.access_token)

        if access_token is not None:
            async with self.async_client(max_connections=1) as client:
                client._on_secret(access_token)
                return await client.userinfo(access_token)
        return await self._awith_token(call)

    def query_iter(self, soql: str) -> Iterator[dict[str, Any]]:
        """Run SOQL and yield its records page by page, following ``nextRecordsUrl`` only as the
        records are consumed: memory is bounded by one page (Salesforce sends up to 2,000 records).

        An expired session is refreshed once and the page asked again. A repeated or off-origin
        ``nextRecordsUrl`` raises :class:`SalesforceProtocolError` at once.

        :param soql: the SOQL statement
        """
        from sf_oauth_provider.data import rest  # execute-time only: DAG parsing never needs it

        pages = rest.iter_query_pages(
            self.client, self.get_token(), soql, renew=lambda stale: self.get_token(stale_token=stale)
        )
        for page in pages:
            yield from page["records"]

    def query(self, soql: str) -> list[dict[str, Any]]:
        """Run SOQL and return every record, following ``nextRecordsUrl`` (see :meth:`query_iter`)."""
        return list(self.query_iter(soql))

    def get_simple_salesforce(self) -> Any:
        """A ``simple_salesforce.Salesforce`` on the cached token (extra ``simple-salesforce``)."""
        try:
            from simple_salesforce import Salesforce
        except ImportError:
            raise SalesforceConfigError(
                "get_simple_salesforce() needs simple-salesforce: pip install 'sf-oauth-provider[simple-salesforce]'"
            ) from None
        token = self.get_token()
        session = _requests_session(self.config.ca_bundle)
        return Salesforce(
            instance_url=token.instance_url,
            session_id=token.access_token,
            version=self.config.api_version,
            session=session,
        )

    def test_connection(self) -> tuple[bool, str]:
        """The UI's Test button: a real token exchange, a userinfo call, and a check of every other
        credential the connection holds (the consumer secret, by introspecting the new token).

        The exchange goes through the :class:`TokenProvider` like every other token request: with
        rotation on, a refresh outside it would send a refresh token a task has already rotated
        away, and Salesforce would revoke the live one.
        """
        try:
            token = self.get_token(force_refresh=True)
            info = self.client.userinfo(token.access_token)
            secret_note = self._test_consumer_secret(token)
        except SalesforceOAuthError as exc:
            return False, str(exc)
        user = info.get("preferred_username") or info.get("user_id") or "?"
        return True, (
            f"Authenticated as {user} on {token.instance_url} ({self.config.auth_flow}); token {token.fingerprint}"
            f"{secret_note}"
        )

    def _test_consumer_secret(self, token: SalesforceToken) -> str:
        """Introspect ``token`` with the consumer secret (what the sensor, audits and revocation
        use later); a refused secret is a failed test naming the field."""
        from sf_oauth_provider.client.errors import SalesforceAuthError

        if not self.config.consumer_secret:
            return "; no consumer secret set (introspection, audits and the sensor's checks need one)"
        try:
            self.client.introspect(token.access_token)
        except SalesforceAuthError as exc:
            raise SalesforceConfigError(
                f"the token exchange works, but Salesforce refuses the consumer secret in 'password' "
                f"({exc.error or 'refused'}): introspection, revocation audits and the sensor will fail",
                field="password",
                hint="copy the consumer secret of this connected app (Setup → App Manager → View → "
                "Manage Consumer Details) into the connection's password",
                conn_id=self.config.conn_id,
            ) from None
        return "; consumer secret accepted"


def _requests_session(ca_bundle: str | None) -> Any:
    """A requests session that verifies TLS against extra ``ca_bundle`` when set. An adapter
    enforces it because requests lets ``REQUESTS_CA_BUNDLE`` override ``Session.verify``."""
    import requests
    from requests.adapters import HTTPAdapter

    class _Verify(HTTPAdapter):
        def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            kwargs["verify"] = ca_bundle
            return super().send(request, **kwargs)

    session = requests.Session()
    if ca_bundle:
        session.mount("https://", _Verify())
    return session
