"""httpx.Auth that sends the cached Salesforce token and refreshes it once on 401."""

from __future__ import annotations

from typing import AsyncGenerator, Awaitable, Callable, Generator

import httpx

from sf_oauth_provider.client.token import SalesforceToken

__all__ = ["SalesforceTokenAuth"]

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
    """

    requires_response_body = False

    def __init__(self, get_token: TokenGetter | None = None, aget_token: AsyncTokenGetter | None = None) -> None:
        self._get_token = get_token
        self._aget_token = aget_token

    def _flow(self, request: httpx.Request) -> Generator[_NeedToken | httpx.Request, object, None]:
        token = yield _NeedToken(None)
        assert isinstance(token, SalesforceToken)
        request.headers["Authorization"] = f"Bearer {token.access_token}"
        response = yield request
        assert isinstance(response, httpx.Response)
        if _expired(response):
            token = yield _NeedToken(token.access_token)
            assert isinstance(token, SalesforceToken)
            request.headers["Authorization"] = f"Bearer {token.access_token}"
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
            if isinstance(item, _NeedToken):
                value = await self._aget_token(item.stale)
            else:
                value = yield item
            try:
                item = flow.send(value)
            except StopIteration:
                return
