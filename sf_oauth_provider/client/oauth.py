"""Salesforce OAuth clients on httpx: token, introspect, revoke, userinfo (REST data access is in
:mod:`sf_oauth_provider.data`, on these clients).

Each operation is described once as a :class:`Call` (how to build the request, how to read the
reply). :class:`SalesforceOAuthClient` and :class:`AsyncSalesforceOAuthClient` only differ in how
they send it; retries (tenacity: exponential backoff with jitter, bounded tries and total time)
apply to errors :func:`retry_may_help` says may pass.

Salesforce may be broken or hostile (DESIGN §5), so every request has a wall-clock deadline
(``timeout`` for the request, and the retry policy's ``max_total`` for all tries together)
enforced on each socket read and write, bodies are capped on the wire and after decoding, the
bearer token goes only to the instance origin.
"""

from __future__ import annotations

import logging
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, TypeVar

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
    SalesforceOAuthError,
    SalesforceRefreshInDoubt,
    SalesforceUnavailableError,
    may_have_been_processed,
    retry_may_help,
)
from sf_oauth_provider.client.responses import (
    BodyReader,
    Reply,
    parse_introspection,
    parse_json_reply,
    parse_revoke,
    parse_token_response,
)
from sf_oauth_provider.client.token import IntrospectionResult, SalesforceToken, fingerprint
from sf_oauth_provider.client.transport import (
    AsyncDeadlineBackend,
    Deadline,
    DeadlineBackend,
    DeadlineTransport,
    tls_verify,
    transport_error,
    with_deadlines,
)

__all__ = [
    "RetryPolicy",
    "Call",
    "SalesforceOAuthClient",
    "AsyncSalesforceOAuthClient",
    "USER_AGENT",
    "tls_verify",
    "DeadlineTransport",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
USER_AGENT = f"sf-oauth-provider/{__version__}"




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

    def _kwargs(self, resend_ok: Callable[[BaseException], bool] | None = None) -> dict[str, Any]:
        def retry(exc: BaseException) -> bool:
            return retry_may_help(exc, same_request=True) and (resend_ok is None or resend_ok(exc))

        return {
            "stop": stop_after_attempt(max(1, self.attempts)) | stop_after_delay(self.max_total),
            # exponential backoff plus up to one initial step of jitter, so workers spread out
            "wait": wait_exponential(multiplier=self.initial_backoff, max=self.max_backoff)
            + wait_random(0, self.initial_backoff),
            # resending the same request never fixes an expired session: the caller refreshes
            "retry": retry_if_exception(retry),
            "reraise": True,
            "before_sleep": _log_retry,
        }

    def sync(self, resend_ok: Callable[[BaseException], bool] | None = None) -> Retrying:
        """Tenacity's retrying; ``resend_ok(exc)`` False stops after ``exc`` even if transient."""
        return Retrying(**self._kwargs(resend_ok))

    def async_(self, resend_ok: Callable[[BaseException], bool] | None = None) -> AsyncRetrying:
        return AsyncRetrying(**self._kwargs(resend_ok))


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

    ``repr()`` shows the method, the URL and ``describe`` only: the form and headers carry
    secrets (assertion, client secret, bearer token) and stay out of every traceback.

    :param describe: what the log says about the request (never a secret)
    :param login_host: the request goes to the connection's ``host`` (not the instance URL)
    """

    method: str
    url: str
    parse: Callable[[Reply], T] = field(repr=False)
    describe: str
    data: dict[str, str] | None = field(default=None, repr=False)
    params: dict[str, str] | None = field(default=None, repr=False)
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    login_host: bool = False
    json: Any = field(default=None, repr=False)

    def request(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        return http.build_request(self.method, self.url, data=self.data, params=self.params, headers=self.headers,
                                  json=self.json)

    def secrets(self) -> list[str]:
        """The secret values this request carries (to redact them from what the reply says)."""
        found = [v for k, v in (self.data or {}).items() if k in _SECRET_FORM_FIELDS and v]
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            found.append(auth[len("Bearer "):])
        return found


#: form fields whose values are secrets (client_id and username are not)
_SECRET_FORM_FIELDS = ("assertion", "client_secret", "refresh_token", "token")


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
            # identity: a compressed body could be a decompression bomb (the reader decodes one
            # anyway, capped, if a server compresses unasked)
            "headers": {"User-Agent": USER_AGENT, "Accept": "application/json", "Accept-Encoding": "identity"},
            "follow_redirects": False,
        }

    # ---- request building ------------------------------------------------------------------
    def _client_auth(self) -> dict[str, str]:
        if not self.config.consumer_secret:
            raise SalesforceConfigError(
                "'password' (Consumer Secret) is required for introspection",
                field="password",
                hint="set the connected app's consumer secret in the connection's password",
                conn_id=self.config.conn_id,
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

        return Call("POST", cfg.token_url, parse, f"token request ({cfg.auth_flow})", data=data, login_host=True)

    def introspect_call(self, token: str, token_type_hint: str = "access_token") -> Call[IntrospectionResult]:
        self._on_secret(token)
        data = {"token": token, "token_type_hint": token_type_hint, **self._client_auth()}
        return Call(
            "POST", f"{self.config.host}/services/oauth2/introspect", parse_introspection,
            f"introspection of {fingerprint(token)}", data=data, login_host=True,
        )

    def revoke_call(self, token: str) -> Call[bool]:
        self._on_secret(token)
        return Call(
            "POST", f"{self.config.host}/services/oauth2/revoke", parse_revoke,
            f"revocation of {fingerprint(token)}", data={"token": token}, login_host=True,
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
            headers={"Authorization": f"Bearer {access_token}"}, login_host=True,
        )

    def _with_expiry(self, token: SalesforceToken, info: IntrospectionResult | None) -> SalesforceToken:
        if info is None or not info.active or not info.exp:
            return token
        now = self._clock()
        # Salesforce sessions last at most 24 h: an exp in the past or far ahead is a lie that
        # would make the token look dead, or fresh forever
        if not now < info.exp <= now + max(self.config.session_timeout, 86400) + 3600:
            log.warning("Connection %r: introspection gave token %s an implausible exp (%s); assuming the session "
                        "timeout", self.config.conn_id, token.fingerprint, info.exp)
            return token
        return token.with_expiry(float(info.exp), "introspection")

    def _sends_refresh_token(self) -> bool:
        return bool(self.config.flow.keeps_refresh_token)

    def _resend_ok(self) -> Callable[[BaseException], bool] | None:
        """For a grant that carries a refresh token: resend only what cannot have been processed
        (with rotation on, a delivered refresh retired the token it carried)."""
        if not self._sends_refresh_token():
            return None
        return lambda exc: not may_have_been_processed(exc)

    def _in_doubt(self, exc: SalesforceOAuthError) -> SalesforceOAuthError:
        if not self._sends_refresh_token() or not may_have_been_processed(exc):
            return exc
        cause = exc.message.removeprefix(f"Connection {self.config.conn_id!r}: ")
        return SalesforceRefreshInDoubt(
            f"the refresh-token request may have reached Salesforce, but its answer was lost ({cause}); "
            "it is not sent again blindly",
            status_code=exc.status_code,
            hint="with refresh token rotation on, Salesforce retires a refresh token the moment it answers; "
            "the next attempt asks Salesforce (introspection) whether it is still active before sending it",
            conn_id=self.config.conn_id,
        )

    def _log_reply(self, call: Call[Any], status: int, started: float) -> None:
        log.debug(
            "%s %s -> HTTP %d in %.0f ms", call.method, call.describe, status, (time.monotonic() - started) * 1000
        )

    def _deadline(self, overall: float | None) -> Deadline:
        """The deadline of one try: ``timeout`` from now, and never past the retries' ``overall``."""
        own = time.monotonic() + self.config.timeout
        return Deadline(own if overall is None else min(own, overall))

    def _reply(self, call: Call[Any], response: httpx.Response, reader: BodyReader) -> Reply:
        if reader.unsupported is not None:
            raise SalesforceUnavailableError(
                f"Salesforce answered the {call.describe} in content-encoding {reader.unsupported!r}, "
                "although the client asked for 'identity'",
                status_code=response.status_code, hint="check 'host' and any proxy in between",
            )
        return Reply(response.status_code, response.headers.get("content-type", ""), reader.body, reader.truncated,
                     url=call.url, login_host=call.login_host)

    def _named(self, exc: SalesforceOAuthError) -> SalesforceOAuthError:
        # configuration errors are written naming their connection already (OAuthConfig, keys)
        return exc if isinstance(exc, SalesforceConfigError) else exc.for_connection(self.config.conn_id)


def _reader_for(response: httpx.Response) -> BodyReader:
    # A response built in memory (httpx.MockTransport) arrives already read and decoded by httpx;
    # one from the network is read raw and decoded by the capped reader.
    if response.is_stream_consumed:
        return BodyReader("identity")
    return BodyReader(response.headers.get("content-encoding", ""))


def _undecodable(call: Call[Any]) -> SalesforceUnavailableError:
    return SalesforceUnavailableError(f"Salesforce's reply to the {call.describe} is not valid gzip/deflate",
                                      hint="check 'host' and any proxy in between; retried automatically")


class SalesforceOAuthClient(_Base):
    """Blocking client.

    :param config: validated connection settings
    :param http: an ``httpx.Client`` to use (default: one owned by this client, with the deadline)
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
        self.http = http or httpx.Client(
            transport=with_deadlines(httpx.HTTPTransport(verify=tls_verify(self.config.ca_bundle)), DeadlineBackend),
            **self._http_kwargs(),
        )

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> SalesforceOAuthClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _exchange(self, call: Call[Any]) -> tuple[httpx.Response, BodyReader]:
        response = self.http.send(call.request(self.http), stream=True)
        try:
            reader = _reader_for(response)
            for chunk in [response.content] if response.is_stream_consumed else response.iter_raw():
                if reader.feed(chunk):
                    break
        finally:
            response.close()
        return response, reader

    def send(self, call: Call[T], *, deadline: float | None = None) -> T:
        """Send once and parse; transport failures become :class:`SalesforceConnectionError`.

        :param deadline: ``time.monotonic()`` value no part of the exchange may pass (default:
            ``timeout`` seconds from now)
        """
        started, failure = time.monotonic(), None
        try:
            with self._deadline(deadline):
                response, reader = self._exchange(call)
        except httpx.HTTPError as exc:
            failure = transport_error(exc, call, self.config.timeout)
        except zlib.error:
            failure = _undecodable(call)
        if failure is not None:
            # raised outside the except block: no __context__ keeps httpx's request (form, headers)
            raise failure.for_connection(self.config.conn_id)
        self._log_reply(call, response.status_code, started)
        try:
            return call.parse(self._reply(call, response, reader))
        except SalesforceOAuthError as exc:
            raise exc.redact(call.secrets() + self.config.secrets).for_connection(self.config.conn_id) from None

    def call(self, make: Callable[[], Call[T]], resend_ok: Callable[[BaseException], bool] | None = None) -> T:
        """Build and send with retries; ``make`` is called per try (a JWT is signed afresh).

        :param resend_ok: False for an error after which the request must not be sent again
        """
        overall = time.monotonic() + self.retry.max_total
        try:
            for attempt in self.retry.sync(resend_ok):
                with attempt:
                    return self.send(make(), deadline=overall)
        except SalesforceOAuthError as exc:
            raise self._named(exc) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def request_token(self, refresh_token: str | None = None) -> SalesforceToken:
        """One grant request, retried only on transient errors — and, when it carries a refresh
        token, only on errors that prove Salesforce did not process it.

        :raises SalesforceRefreshInDoubt: a refresh grant may have been processed, its answer lost
        """
        try:
            return self.call(lambda: self.token_call(refresh_token), self._resend_ok())
        except SalesforceOAuthError as exc:
            raise self._in_doubt(exc) from None

    def settle_expiry(self, token: SalesforceToken) -> SalesforceToken:
        """``token`` with its expiry from introspection, when the consumer secret allows it."""
        return self._with_expiry(token, self._expiry_info(token))

    def fetch_token(self, refresh_token: str | None = None) -> SalesforceToken:
        """:meth:`request_token`, then :meth:`settle_expiry`."""
        return self.settle_expiry(self.request_token(refresh_token))

    def refresh_token_active(self, refresh_token: str) -> bool | None:
        """Whether Salesforce still accepts ``refresh_token`` (introspection, which is not a grant:
        it never trips rotation's reuse detection); None when it cannot be asked (no consumer secret).

        :raises SalesforceOAuthError: introspection failed
        """
        if not self.config.consumer_secret:
            return None
        return bool(self.introspect(refresh_token, "refresh_token").active)

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
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self.http = http or httpx.AsyncClient(
            transport=with_deadlines(
                httpx.AsyncHTTPTransport(verify=tls_verify(self.config.ca_bundle), limits=limits), AsyncDeadlineBackend
            ),
            **self._http_kwargs(),
        )

    async def aclose(self) -> None:
        if self._owns_http:
            await self.http.aclose()

    async def __aenter__(self) -> AsyncSalesforceOAuthClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _exchange(self, call: Call[Any]) -> tuple[httpx.Response, BodyReader]:
        response = await self.http.send(call.request(self.http), stream=True)
        try:
            reader = _reader_for(response)
            if response.is_stream_consumed:
                reader.feed(response.content)
            else:
                async for chunk in response.aiter_raw():
                    if reader.feed(chunk):
                        break
        finally:
            await response.aclose()
        return response, reader

    async def send(self, call: Call[T], *, deadline: float | None = None) -> T:
        started, failure = time.monotonic(), None
        try:
            with self._deadline(deadline):
                response, reader = await self._exchange(call)
        except httpx.HTTPError as exc:
            failure = transport_error(exc, call, self.config.timeout)
        except zlib.error:
            failure = _undecodable(call)
        if failure is not None:
            raise failure.for_connection(self.config.conn_id)
        self._log_reply(call, response.status_code, started)
        try:
            return call.parse(self._reply(call, response, reader))
        except SalesforceOAuthError as exc:
            raise exc.redact(call.secrets() + self.config.secrets).for_connection(self.config.conn_id) from None

    async def call(self, make: Callable[[], Call[T]],
                   resend_ok: Callable[[BaseException], bool] | None = None) -> T:
        overall = time.monotonic() + self.retry.max_total
        try:
            async for attempt in self.retry.async_(resend_ok):
                with attempt:
                    return await self.send(make(), deadline=overall)
        except SalesforceOAuthError as exc:
            raise self._named(exc) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def request_token(self, refresh_token: str | None = None) -> SalesforceToken:
        """Async :meth:`SalesforceOAuthClient.request_token`."""
        try:
            return await self.call(lambda: self.token_call(refresh_token), self._resend_ok())
        except SalesforceOAuthError as exc:
            raise self._in_doubt(exc) from None

    async def settle_expiry(self, token: SalesforceToken) -> SalesforceToken:
        return self._with_expiry(token, await self._expiry_info(token))

    async def fetch_token(self, refresh_token: str | None = None) -> SalesforceToken:
        return await self.settle_expiry(await self.request_token(refresh_token))

    async def refresh_token_active(self, refresh_token: str) -> bool | None:
        """Async :meth:`SalesforceOAuthClient.refresh_token_active`."""
        if not self.config.consumer_secret:
            return None
        return bool((await self.introspect(refresh_token, "refresh_token")).active)

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


