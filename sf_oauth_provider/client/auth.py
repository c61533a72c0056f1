"""httpx.Auth that sends the cached Salesforce token and refreshes it once on 401.

The bearer token goes only to its ``instance_url`` origin, and only over https unless that
origin is loopback (the emulator): :func:`check_bearer_target` is the one rule, used by this
auth, the clients' ``query`` and the hook's ``get_conn()``.
"""

from __future__ import annotations

from typing import AsyncGenerator, Awaitable, Callable, Generator

import httpx

from sf_oauth_provider.client.config import is_loopback_host
from sf_oauth_provider.client.errors import SalesforceProtocolError
from sf_oauth_provider.client.token import SalesforceToken

__all__ = ["SalesforceTokenAuth", "check_bearer_target", "origin_of"]


def origin_of(url: str | httpx.URL) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL, with the scheme's default port filled in."""
    parsed = httpx.URL(url) if isinstance(url, str) else url
    port = parsed.port or {"https": 443, "http": 80}.get(parsed.scheme, 0)
    return parsed.scheme.lower(), parsed.host.lower(), port


def _show(origin: tuple[str, str, int]) -> str:
    return f"{origin[0]}://{origin[1]}:{origin[2]}"


def check_bearer_target(url: str | httpx.URL, instance_url: str, conn_id: str | None = None) -> None:
    """Refuse to send the bearer token anywhere but the ``instance_url`` origin over https.

    :param url: where the request would go
    :param instance_url: the token's instance URL (from Salesforce's token response)
    :param conn_id: the connection, for the message
    :raises SalesforceProtocolError: plain http to a non-loopback host, or another origin
    """
    try:
        instance, target = origin_of(instance_url), origin_of(url)
    except httpx.InvalidURL:
        raise SalesforceProtocolError(
            "the instance URL or request URL is not a valid URL; the access token is not sent",
            hint="check 'host' and any proxy rewriting Salesforce's token response",
            conn_id=conn_id,
        ) from None
    if instance[0] != "https" and not (instance[0] == "http" and is_loopback_host(instance[1])):
        raise SalesforceProtocolError(
            f"the instance URL {_show(instance)} is not https; the access token is never sent in clear "
            "to a non-loopback host",
            hint="Salesforce always answers with an https instance_url: check 'host' and any proxy "
            "rewriting the token response",
            conn_id=conn_id,
        )
    if target != instance:
        raise SalesforceProtocolError(
            f"refusing to send the access token to {_show(target)}, another origin than the instance "
            f"URL {_show(instance)}",
            hint="only the instance URL Salesforce returned with the token receives it; a reply that "
            "points elsewhere is not followed",
            conn_id=conn_id,
        )

#: get_token(stale_token) -> token. ``stale_token`` is the access token Salesforce just refused
#: (None for the first try): the provider must return a different one.
TokenGetter = Callable[[str | None], SalesforceToken]
AsyncTokenGetter = Callable[[str | None], Awaitable[SalesforceToken]]


class _NeedToken:
    __slots__ = ("stale",)

    def __init__(self, stale: str | None) -> None:
        self.stale = stale


def _expired(response: httpx.Response) -> bool:
    # The REST API answers a dead session with 401 [{"errorCode":"INVALID_SESSION_ID"}] and uses
    # 401 for nothing else, so the status alone decides (no need to read the body).
    return response.status_code == 401


class SalesforceTokenAuth(httpx.Auth):
    """Bearer auth for the REST API: on an expired session, get a new token and retry once.

    :param get_token: sync token provider (for ``httpx.Client``)
    :param aget_token: async token provider (for ``httpx.AsyncClient``)
    :param conn_id: the connection, named in errors
    """

    requires_response_body = False

    def __init__(
        self,
        get_token: TokenGetter | None = None,
        aget_token: AsyncTokenGetter | None = None,
        *,
        conn_id: str | None = None,
    ) -> None:
        self._get_token = get_token
        self._aget_token = aget_token
        self._conn_id = conn_id

    def _authorize(self, request: httpx.Request, token: object) -> SalesforceToken:
        assert isinstance(token, SalesforceToken)
        check_bearer_target(request.url, token.instance_url, self._conn_id)
        request.headers["Authorization"] = f"Bearer {token.access_token}"
        return token

    def _flow(self, request: httpx.Request) -> Generator[_NeedToken | httpx.Request, object, None]:
        token = self._authorize(request, (yield _NeedToken(None)))
        response = yield request
        assert isinstance(response, httpx.Response)
        if _expired(response):
            self._authorize(request, (yield _NeedToken(token.access_token)))
            yield request

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._get_token is None:
            raise RuntimeError("SalesforceTokenAuth was built without a sync token provider")
        flow = self._flow(request)
        item = next(flow)
        while True:
            value = self._get_token(item.stale) if isinstance(item, _NeedToken) else (yield item)
            try:
                item = flow.send(value)
            except StopIteration:
                return

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if self._aget_token is None:
            raise RuntimeError("SalesforceTokenAuth was built without an async token provider")
        flow = self._flow(request)
        item = next(flow)
        while True:
            value: object  # a token for the flow's _NeedToken, else the server's response
            if isinstance(item, _NeedToken):
                value = await self._aget_token(item.stale)
            else:
                value = yield item
            try:
                item = flow.send(value)
            except StopIteration:
                return
