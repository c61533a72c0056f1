"""Salesforce OAuth clients on httpx: token, introspect, revoke, userinfo, query.

Each operation is described once as a :class:`Call` (how to build the request, how to read the
reply). :class:`SalesforceOAuthClient` and :class:`AsyncSalesforceOAuthClient` only differ in how
they send it; retries (tenacity: exponential backoff with jitter, bounded tries and total time)
apply to transient errors only.
"""

from __future__ import annotations

import logging
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar
from urllib.parse import urljoin

import httpx
from tenacity import (
    AsyncRetrying,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from sf_oauth_provider import __version__
from sf_oauth_provider.client.config import OAuthConfig
from sf_oauth_provider.client.errors import (
    SalesforceConfigError,
    SalesforceConnectionError,
    SalesforceOAuthError,
    SalesforceTransientError,
    SalesforceUnavailableError,
)
from sf_oauth_provider.client.responses import (
    MAX_BODY_BYTES,
    Reply,
    parse_introspection,
    parse_json_reply,
    parse_revoke,
    parse_token_response,
)
from sf_oauth_provider.client.token import IntrospectionResult, SalesforceToken, fingerprint

__all__ = [
    "RetryPolicy",
    "Call",
    "SalesforceOAuthClient",
    "AsyncSalesforceOAuthClient",
    "USER_AGENT",
    "tls_verify",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
USER_AGENT = f"sf-oauth-provider/{__version__}"


def tls_verify(ca_bundle: str | None) -> ssl.SSLContext | bool:
    """httpx's ``verify=``: the default store, or a context that trusts the PEM ``ca_bundle``."""
    return ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True


MAX_QUERY_PAGES = 10_000


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of transient errors: ``attempts`` tries in all, within ``max_total`` seconds."""

    attempts: int = 3
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    max_total: float = 60.0

    @classmethod
    def from_numbers(cls, attempts: int | None, backoff: float | None) -> RetryPolicy | None:
        """A policy from plain numbers, as operators and triggers take them (``None`` for both:
        the default policy, returned as ``None``).

        :param attempts: tries in all for a transient error
        :param backoff: first wait in seconds (grows exponentially up to 16 × this, at most 8 s)
        """
        if attempts is None and backoff is None:
            return None
        default = cls()
        first = default.initial_backoff if backoff is None else float(backoff)
        return cls(
            attempts=default.attempts if attempts is None else max(1, int(attempts)),
            initial_backoff=first,
            max_backoff=min(default.max_backoff, max(first, first * 16)),
        )

    def _kwargs(self) -> dict[str, Any]:
        return {
            "stop": stop_after_attempt(max(1, self.attempts)) | stop_after_delay(self.max_total),
            # exponential backoff plus up to one initial step of jitter, so workers spread out
            "wait": wait_exponential(multiplier=self.initial_backoff, max=self.max_backoff)
            + wait_random(0, self.initial_backoff),
            "retry": retry_if_exception(lambda exc: isinstance(exc, SalesforceTransientError)),
            "reraise": True,
            "before_sleep": _log_retry,
        }

    def sync(self) -> Retrying:
        return Retrying(**self._kwargs())

    def async_(self) -> AsyncRetrying:
        return AsyncRetrying(**self._kwargs())


def _log_retry(state) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning(
        "Salesforce call failed (try %d): %s; retrying in %.1f s",
        state.attempt_number,
        exc.message if isinstance(exc, SalesforceOAuthError) else type(exc).__name__,
        state.next_action.sleep if state.next_action else 0.0,
    )


@dataclass
class Call(Generic[T]):
    """One Salesforce request and how to read its reply.

    :param describe: what the log says about the request (never a secret)
    """

    method: str
    url: str
    parse: Callable[[Reply], T]
    describe: str
    data: dict[str, str] | None = None
    params: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def request(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        return http.build_request(self.method, self.url, data=self.data, params=self.params, headers=self.headers)


def _transport_error(exc: httpx.HTTPError, call: Call[Any], timeout: float) -> SalesforceConnectionError:
    if isinstance(exc, httpx.TimeoutException):
        what = f"no answer within {timeout:g} s ({type(exc).__name__})"
    else:
        what = f"connection failed ({type(exc).__name__})"
    return SalesforceConnectionError(
        f"Salesforce {call.describe}: {what}",
        hint="a network problem or an outage; retried automatically. Check 'host' if it persists",
    )


class _Base:
    """What both clients share: the config, the requests they make, the parsing."""

    def __init__(
        self,
        config: OAuthConfig,
        *,
        retry: RetryPolicy | None = None,
        on_secret: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.retry = retry or RetryPolicy()
        self._on_secret = on_secret or (lambda _s: None)
        self._clock = clock
        for secret in config.secrets:
            self._on_secret(secret)

    def _http_kwargs(self) -> dict[str, Any]:
        return {
            "timeout": httpx.Timeout(self.config.timeout),
            "headers": {"User-Agent": USER_AGENT, "Accept": "application/json"},
            "follow_redirects": False,
            "verify": tls_verify(self.config.ca_bundle),
        }

    # ---- request building ------------------------------------------------------------------
    def _client_auth(self) -> dict[str, str]:
        if not self.config.consumer_secret:
            raise SalesforceConfigError(
                f"Connection {self.config.conn_id!r}: 'password' (Consumer Secret) is required for introspection",
                field="password",
                hint="set the connected app's consumer secret in the connection's password",
            )
        return {"client_id": self.config.consumer_key, "client_secret": self.config.consumer_secret}

    def token_call(self, refresh_token: str | None = None) -> Call[SalesforceToken]:
        cfg = self.config
        data = cfg.flow.grant_form(cfg, refresh_token=refresh_token, now=self._clock(), on_secret=self._on_secret)

        def parse(reply: Reply) -> SalesforceToken:
            tok = parse_token_response(
                reply, session_timeout=cfg.session_timeout, consumer_secret=cfg.consumer_secret, now=self._clock()
            )
            self._on_secret(tok.access_token)
            if tok.refresh_token:
                self._on_secret(tok.refresh_token)
            return tok

        return Call("POST", cfg.token_url, parse, f"token request ({cfg.auth_flow})", data=data)

    def introspect_call(self, token: str, token_type_hint: str = "access_token") -> Call[IntrospectionResult]:
        self._on_secret(token)
        data = {"token": token, "token_type_hint": token_type_hint, **self._client_auth()}
        return Call(
            "POST", f"{self.config.host}/services/oauth2/introspect", parse_introspection,
            f"introspection of {fingerprint(token)}", data=data,
        )

    def revoke_call(self, token: str) -> Call[bool]:
        self._on_secret(token)
        return Call(
            "POST", f"{self.config.host}/services/oauth2/revoke", parse_revoke,
            f"revocation of {fingerprint(token)}", data={"token": token},
        )

    def userinfo_call(self, access_token: str) -> Call[dict[str, Any]]:
        def parse(reply: Reply) -> dict[str, Any]:
            data = parse_json_reply(reply, "userinfo request")
            if not isinstance(data, dict):
                raise SalesforceUnavailableError("Salesforce's userinfo response is not a JSON object",
                                                 status_code=reply.status_code)
            return data

        return Call(
            "GET", f"{self.config.host}/services/oauth2/userinfo", parse, "userinfo request",
            headers={"Authorization": f"Bearer {access_token}"},
        )

    def query_call(self, token: SalesforceToken, soql: str | None, next_url: str | None = None) -> Call[dict[str, Any]]:
        if next_url:
            url, params = urljoin(token.instance_url + "/", next_url.lstrip("/")), None
        else:
            url, params = f"{token.instance_url}/services/data/v{self.config.api_version}/query", {"q": soql or ""}

        def parse(reply: Reply) -> dict[str, Any]:
            data = parse_json_reply(reply, "query")
            if not isinstance(data, dict) or not isinstance(data.get("records"), list):
                raise SalesforceUnavailableError("Salesforce's query response has no 'records' list",
                                                 status_code=reply.status_code)
            return data

        return Call("GET", url, parse, "query", params=params,
                    headers={"Authorization": f"Bearer {token.access_token}"})

    def _with_expiry(self, token: SalesforceToken, info: IntrospectionResult | None) -> SalesforceToken:
        if info is not None and info.active and info.exp:
            return token.with_expiry(float(info.exp), "introspection")
        return token

    def _log_reply(self, call: Call[Any], status: int, started: float) -> None:
        log.debug("%s %s -> HTTP %d in %.0f ms", call.method, call.describe, status, (time.monotonic() - started) * 1000)

    def _next_page(self, page: dict[str, Any], pages: int) -> str | None:
        if page.get("done", True) or not page.get("nextRecordsUrl"):
            return None
        if pages >= MAX_QUERY_PAGES:
            raise SalesforceUnavailableError(f"query returned more than {MAX_QUERY_PAGES} pages; stopped")
        return str(page["nextRecordsUrl"])


class SalesforceOAuthClient(_Base):
    """Blocking client.

    :param config: validated connection settings
    :param http: an ``httpx.Client`` to use (default: one owned by this client)
    :param retry: retry policy for transient errors
    :param on_secret: called with every secret the moment it exists (the hook passes ``mask_secret``)
    """

    def __init__(
        self,
        config: OAuthConfig,
        *,
        http: httpx.Client | None = None,
        retry: RetryPolicy | None = None,
        on_secret: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(config, retry=retry, on_secret=on_secret, clock=clock)
        self._owns_http = http is None
        self.http = http or httpx.Client(**self._http_kwargs())

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> SalesforceOAuthClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, call: Call[T]) -> T:
        """Send once and parse; transport failures become :class:`SalesforceConnectionError`."""
        started = time.monotonic()
        try:
            response = self.http.send(call.request(self.http), stream=True)
            try:
                body, truncated = bytearray(), False
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_BODY_BYTES:
                        truncated = True
                        break
            finally:
                response.close()
        except httpx.HTTPError as exc:
            raise _transport_error(exc, call, self.config.timeout) from None
        self._log_reply(call, response.status_code, started)
        return call.parse(Reply(response.status_code, response.headers.get("content-type", ""), bytes(body), truncated))

    def call(self, make: Callable[[], Call[T]]) -> T:
        """Build and send with retries; ``make`` is called per try (a JWT is signed afresh)."""
        for attempt in self.retry.sync():
            with attempt:
                return self.send(make())
        raise AssertionError("unreachable")  # pragma: no cover

    def fetch_token(self, refresh_token: str | None = None) -> SalesforceToken:
        """Make one grant request (retried only on transient errors) and settle the expiry."""
        token = self.call(lambda: self.token_call(refresh_token))
        return self._with_expiry(token, self._expiry_info(token))

    def _expiry_info(self, token: SalesforceToken) -> IntrospectionResult | None:
        if not self.config.consumer_secret:
            return None
        try:
            return self.send(self.introspect_call(token.access_token))
        except SalesforceOAuthError as exc:
            log.warning("Could not introspect the new token %s for its expiry (%s); assuming the session timeout",
                        token.fingerprint, exc.message)
            return None

    def introspect(self, token: str, token_type_hint: str = "access_token") -> IntrospectionResult:
        return self.call(lambda: self.introspect_call(token, token_type_hint))

    def revoke(self, token: str) -> bool:
        return self.call(lambda: self.revoke_call(token))

    def userinfo(self, access_token: str) -> dict[str, Any]:
        return self.call(lambda: self.userinfo_call(access_token))

    def iter_query_pages(self, token: SalesforceToken, soql: str) -> Iterator[dict[str, Any]]:
        page = self.call(lambda: self.query_call(token, soql))
        pages = 1
        yield page
        while (next_url := self._next_page(page, pages)) is not None:
            page = self.call(lambda: self.query_call(token, None, next_url))
            pages += 1
            yield page

    def query(self, token: SalesforceToken, soql: str) -> list[dict[str, Any]]:
        return [rec for page in self.iter_query_pages(token, soql) for rec in page["records"]]


class AsyncSalesforceOAuthClient(_Base):
    """Non-blocking client with the same operations (for triggers and large audits)."""

    def __init__(
        self,
        config: OAuthConfig,
        *,
        http: httpx.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
        on_secret: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
        max_connections: int = 16,
    ) -> None:
        super().__init__(config, retry=retry, on_secret=on_secret, clock=clock)
        self._owns_http = http is None
        self.http = http or httpx.AsyncClient(
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            **self._http_kwargs(),
        )

    async def aclose(self) -> None:
        if self._owns_http:
            await self.http.aclose()

    async def __aenter__(self) -> AsyncSalesforceOAuthClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def send(self, call: Call[T]) -> T:
        started = time.monotonic()
        try:
            response = await self.http.send(call.request(self.http), stream=True)
            try:
                body, truncated = bytearray(), False
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_BODY_BYTES:
                        truncated = True
                        break
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise _transport_error(exc, call, self.config.timeout) from None
        self._log_reply(call, response.status_code, started)
        return call.parse(Reply(response.status_code, response.headers.get("content-type", ""), bytes(body), truncated))

    async def call(self, make: Callable[[], Call[T]]) -> T:
        async for attempt in self.retry.async_():
            with attempt:
                return await self.send(make())
        raise AssertionError("unreachable")  # pragma: no cover

    async def fetch_token(self, refresh_token: str | None = None) -> SalesforceToken:
        token = await self.call(lambda: self.token_call(refresh_token))
        return self._with_expiry(token, await self._expiry_info(token))

    async def _expiry_info(self, token: SalesforceToken) -> IntrospectionResult | None:
        if not self.config.consumer_secret:
            return None
        try:
            return await self.send(self.introspect_call(token.access_token))
        except SalesforceOAuthError as exc:
            log.warning("Could not introspect the new token %s for its expiry (%s); assuming the session timeout",
                        token.fingerprint, exc.message)
            return None

    async def introspect(self, token: str, token_type_hint: str = "access_token") -> IntrospectionResult:
        return await self.call(lambda: self.introspect_call(token, token_type_hint))

    async def revoke(self, token: str) -> bool:
        return await self.call(lambda: self.revoke_call(token))

    async def userinfo(self, access_token: str) -> dict[str, Any]:
        return await self.call(lambda: self.userinfo_call(access_token))

    async def query(self, token: SalesforceToken, soql: str) -> list[dict[str, Any]]:
        page = await self.call(lambda: self.query_call(token, soql))
        records, pages = list(page["records"]), 1
        while (next_url := self._next_page(page, pages)) is not None:
            page = await self.call(lambda: self.query_call(token, None, next_url))
            records.extend(page["records"])
            pages += 1
        return records
