"""REST API queries: ``GET /services/data/vNN.N/query?q=SOQL``, then ``nextRecordsUrl`` page by page.

One page is one request, made as the pages are consumed (memory bounded by one page: up to
2,000 records). The bearer token goes only to the token's instance origin (a ``nextRecordsUrl``
elsewhere is refused before anything is sent), and a server that loops — a repeated locator, more
records than its own ``totalSize``, too many pages — is stopped at once. A session Salesforce
refuses mid-way is renewed once through ``renew`` and the same page asked again.

    from sf_oauth_provider.data import rest
    for page in rest.iter_query_pages(client, token, "SELECT Id FROM Account", renew=...):
        ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator
from urllib.parse import urljoin

from sf_oauth_provider.client.auth import check_bearer_target
from sf_oauth_provider.client.errors import (
    SalesforceProtocolError,
    SalesforceSessionExpired,
    SalesforceUnavailableError,
)
from sf_oauth_provider.client.oauth import AsyncSalesforceOAuthClient, Call, SalesforceOAuthClient
from sf_oauth_provider.client.responses import Reply, parse_json_reply
from sf_oauth_provider.client.token import SalesforceToken

__all__ = ["MAX_QUERY_PAGES", "QueryPager", "query_call", "iter_query_pages", "aiter_query_pages", "query", "aquery"]

#: a query that pages further than this is stopped (20 million records at 2,000 a page)
MAX_QUERY_PAGES = 10_000


@dataclass
class QueryPager:
    """Where a query goes next: follows ``nextRecordsUrl`` until ``done``, and stops a server that
    loops (a repeated locator, more records than its own ``totalSize``, too many pages).

    :param conn_id: the connection, for the messages
    """

    conn_id: str
    seen: set[str] = field(default_factory=set)
    pages: int = 0
    records: int = 0
    total: int | None = None

    def next_url(self, page: dict[str, Any]) -> str | None:
        self.pages += 1
        self.records += len(page["records"])
        size = page.get("totalSize")
        if self.total is None and isinstance(size, int) and not isinstance(size, bool) and size >= 0:
            self.total = size
        if self.total is not None and self.records > self.total:
            raise SalesforceProtocolError(
                f"the query returned more records ({self.records}) than its totalSize ({self.total}); stopped",
                hint="not what Salesforce sends: check 'host' and any proxy in between", conn_id=self.conn_id,
            )
        if page.get("done", True) or not page.get("nextRecordsUrl"):
            return None
        url = str(page["nextRecordsUrl"])
        if url in self.seen:
            raise SalesforceProtocolError(
                f"the query's nextRecordsUrl repeated after {self.pages} pages (a paging loop); stopped",
                hint="not what Salesforce sends: check 'host' and any proxy in between", conn_id=self.conn_id,
            )
        if self.pages >= MAX_QUERY_PAGES:
            raise SalesforceUnavailableError(
                f"query returned more than {MAX_QUERY_PAGES} pages; stopped",
                hint="narrow the SOQL (WHERE, LIMIT) or read it with query_iter in smaller slices",
                conn_id=self.conn_id,
            )
        self.seen.add(url)
        return url


def query_call(client: SalesforceOAuthClient | AsyncSalesforceOAuthClient, token: SalesforceToken,
               soql: str | None, next_url: str | None = None) -> Call[dict[str, Any]]:
    """The first page of ``soql``, or the page at ``next_url`` (Salesforce's ``nextRecordsUrl``).

    :raises SalesforceProtocolError: the URL is on another origin than the token's instance
        URL, or that is plain http to a non-loopback host (the token would leak)
    """
    config = client.config
    if next_url:
        # a relative locator is joined under the instance URL; an absolute one must stay on it
        url, params = urljoin(token.instance_url + "/", next_url.lstrip("/")), None
    else:
        url, params = f"{token.instance_url}/services/data/v{config.api_version}/query", {"q": soql or ""}
    check_bearer_target(url, token.instance_url, config.conn_id)

    def parse(reply: Reply) -> dict[str, Any]:
        data = parse_json_reply(reply, "query")
        if not isinstance(data, dict) or not isinstance(data.get("records"), list):
            raise SalesforceUnavailableError("Salesforce's query response has no 'records' list",
                                             status_code=reply.status_code)
        return data

    return Call("GET", url, parse, "query", params=params, headers={"Authorization": f"Bearer {token.access_token}"})


def iter_query_pages(
    client: SalesforceOAuthClient, token: SalesforceToken, soql: str, *,
    renew: Callable[[str], SalesforceToken] | None = None,
) -> Iterator[dict[str, Any]]:
    """The pages of ``soql``, one request per page as they are consumed.

    :param renew: ``renew(stale_access_token) -> new token``; called once if Salesforce
        refuses the session mid-way, and the page is asked again with the new token
    :raises SalesforceProtocolError: a repeated or off-origin ``nextRecordsUrl``
    """
    pager, next_url, renewed = QueryPager(client.config.conn_id), None, False
    while True:
        try:
            page = client.call(partial(query_call, client, token, soql, next_url))
        except SalesforceSessionExpired:
            if renew is None or renewed:
                raise
            token, renewed = renew(token.access_token), True
            continue
        yield page
        next_url = pager.next_url(page)
        if next_url is None:
            return


async def aiter_query_pages(
    client: AsyncSalesforceOAuthClient, token: SalesforceToken, soql: str, *,
    renew: Callable[[str], Awaitable[SalesforceToken]] | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Async :func:`iter_query_pages`."""
    pager, next_url, renewed = QueryPager(client.config.conn_id), None, False
    while True:
        try:
            page = await client.call(partial(query_call, client, token, soql, next_url))
        except SalesforceSessionExpired:
            if renew is None or renewed:
                raise
            token, renewed = await renew(token.access_token), True
            continue
        yield page
        next_url = pager.next_url(page)
        if next_url is None:
            return


def query(client: SalesforceOAuthClient, token: SalesforceToken, soql: str) -> list[dict[str, Any]]:
    """Every record of ``soql`` (see :func:`iter_query_pages`)."""
    return [rec for page in iter_query_pages(client, token, soql) for rec in page["records"]]


async def aquery(client: AsyncSalesforceOAuthClient, token: SalesforceToken, soql: str) -> list[dict[str, Any]]:
    """Async :func:`query`."""
    return [rec async for page in aiter_query_pages(client, token, soql) for rec in page["records"]]
