"""Streaming Bulk API 2.0 result pages into a binary sink: header once, bounded memory, a page
that fails half-way written again from its start (framework-free, like the rest of ``data``).

* :class:`PageWriter` — every page repeats the CSV header row; it is written once. A page is
  written straight to a seekable sink (a local file) and cut back on a retry, or spooled
  (memory up to ``spool_bytes``, then a temporary file) and copied once complete for a sink that
  cannot seek (an object-storage stream): either way memory is bounded by a buffer, not by rows.
* :class:`ResultPager` — reads ``Sforce-Locator`` / ``Sforce-NumberOfRecords`` and stops a
  server that loops (a repeated locator, too many pages) or drops a header.
* :func:`stream_call` / :func:`astream_call` — one streamed request on a token client's HTTP
  pool, with its deadline, typed errors and secret redaction.
"""

from __future__ import annotations

import shutil
import tempfile
import zlib
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable

import httpx

from sf_oauth_provider.client.errors import SalesforceOAuthError, SalesforceProtocolError
from sf_oauth_provider.client.oauth import AsyncSalesforceOAuthClient, Call, SalesforceOAuthClient
from sf_oauth_provider.client.responses import BodyReader, Reply, error_for
from sf_oauth_provider.client.transport import Deadline, transport_error

__all__ = ["MAX_RESULT_PAGES", "PageWriter", "ResultPager", "astream_call", "stream_call"]

#: a job whose results page further than this is stopped (Salesforce pages hold up to ~1 GB)
MAX_RESULT_PAGES = 100_000
#: a header row longer than this is not a CSV header
_MAX_HEADER = 1 << 20
_SPOOL_BYTES = 8 << 20
_COPY_BYTES = 1 << 20
_HINT = "not what Salesforce sends: check 'host' and any proxy in between"


def _seekable(sink: BinaryIO) -> bool:
    try:
        return bool(sink.seekable()) and isinstance(sink.tell(), int)
    except (AttributeError, OSError, ValueError):
        return False


class PageWriter:
    """Writes result pages to ``sink``: the header row of the first page, then every page's
    rows. :meth:`begin_page` starts (or restarts) a page, :meth:`end_page` commits it.

    :param sink: a binary file opened for writing (``write``; ``seek``/``truncate`` if it can)
    :param conn_id: the connection, for the messages
    :param spool_bytes: memory a page of a non-seekable sink may take before it spills to disk
    """

    def __init__(self, sink: BinaryIO, conn_id: str, spool_bytes: int = _SPOOL_BYTES) -> None:
        self.sink, self.conn_id, self.spool_bytes = sink, conn_id, spool_bytes
        self.seekable = _seekable(sink)
        self.header: bytes | None = None
        #: bytes committed to the sink (complete pages only)
        self.bytes = 0
        self._start = sink.tell() if self.seekable else 0
        self._spool: Any = None
        self._head = bytearray()
        self._in_header = True
        self._page_bytes = 0

    def begin_page(self) -> None:
        """Start a page, dropping whatever an unfinished try of it wrote."""
        if self.seekable:
            self.sink.seek(self._start)
            self.sink.truncate()
        else:
            self.discard()
            self._spool = tempfile.SpooledTemporaryFile(max_size=self.spool_bytes)  # noqa: SIM115 - closed in end_page
        self._head.clear()
        self._in_header, self._page_bytes = True, 0

    def _out(self, data: bytes | bytearray) -> None:
        (self.sink if self.seekable else self._spool).write(data)
        self._page_bytes += len(data)

    def write(self, chunk: bytes) -> None:
        """Write one decoded chunk of the current page (its header row only on the first page)."""
        if self._in_header:
            cut = chunk.find(b"\n")
            self._head += chunk if cut < 0 else chunk[: cut + 1]
            if len(self._head) > _MAX_HEADER:
                raise SalesforceProtocolError(f"a results page's first line is over {_MAX_HEADER} bytes; stopped",
                                              hint=_HINT, conn_id=self.conn_id)
            if cut < 0:
                return
            self._header_done()
            chunk = chunk[cut + 1:]
        if chunk:
            self._out(chunk)

    def _header_done(self) -> None:
        self._in_header = False
        if self.header is None:
            self.header = bytes(self._head)
            self._out(self._head)
        elif bytes(self._head).rstrip(b"\r\n") != self.header.rstrip(b"\r\n"):
            raise SalesforceProtocolError(
                "a results page has another header row than the first page (columns changed mid-job); stopped",
                hint=_HINT, conn_id=self.conn_id,
            )

    def end_page(self) -> None:
        """Commit the page (a page of a header without a line break counts as its header)."""
        if self._in_header and self._head:
            self._header_done()
        if not self.seekable:
            self._spool.seek(0)
            shutil.copyfileobj(self._spool, self.sink, _COPY_BYTES)
            self.discard()
        else:
            self._start = self.sink.tell()
        self.bytes += self._page_bytes
        self._page_bytes = 0

    def discard(self) -> None:
        """Drop the spool of an unfinished page (for a sink that cannot seek)."""
        if self._spool is not None:
            self._spool.close()
            self._spool = None


@dataclass
class ResultPager:
    """Where the results go next, from each page's headers; counts rows from Salesforce's own
    ``Sforce-NumberOfRecords``.

    :param conn_id: the connection, for the messages
    """

    conn_id: str
    rows: int = 0
    pages: int = 0
    seen: set[str] = field(default_factory=set)

    def _header(self, headers: httpx.Headers, name: str) -> str:
        value = headers.get(name)
        if value is None:
            raise SalesforceProtocolError(f"a results page came without its {name} header; stopped (the extract "
                                          "could end early without it)", hint=_HINT, conn_id=self.conn_id)
        return value.strip()

    def next_locator(self, headers: httpx.Headers) -> str | None:
        """Count the page; the locator of the next page, or None after the last one."""
        count = self._header(headers, "Sforce-NumberOfRecords")
        if not count.isdigit():
            raise SalesforceProtocolError(f"Sforce-NumberOfRecords is {count[:40]!r}, not a count; stopped",
                                          hint=_HINT, conn_id=self.conn_id)
        self.rows += int(count)
        self.pages += 1
        locator = self._header(headers, "Sforce-Locator")
        if locator in ("null", ""):
            return None
        if locator in self.seen:
            raise SalesforceProtocolError(
                f"the results locator repeated after {self.pages} pages (a paging loop); stopped",
                hint=_HINT, conn_id=self.conn_id,
            )
        if self.pages >= MAX_RESULT_PAGES:
            raise SalesforceProtocolError(f"the results ran past {MAX_RESULT_PAGES} pages; stopped",
                                          hint=_HINT, conn_id=self.conn_id)
        self.seen.add(locator)
        return locator


def _refusal(call: Call[Any], response: httpx.Response, reader: BodyReader,
             client: SalesforceOAuthClient | AsyncSalesforceOAuthClient) -> SalesforceOAuthError:
    reply = Reply(response.status_code, response.headers.get("content-type", ""), reader.body, reader.truncated,
                  url=call.url)
    return error_for(reply, call.describe).redact(call.secrets() + client.config.secrets)


def stream_call(client: SalesforceOAuthClient, call: Call[Any], consume: Callable[[bytes], None],
                deadline: float) -> httpx.Headers:
    """Send ``call`` and feed its decoded 2xx body to ``consume`` chunk by chunk.

    :param deadline: ``time.monotonic()`` value the whole exchange must end by
    :returns: the response headers
    :raises SalesforceOAuthError: the typed error of a non-2xx reply or a transport failure
    """
    failure: SalesforceOAuthError | None = None
    try:
        with Deadline(deadline):
            response = client.http.send(call.request(client.http), stream=True)
            try:
                if 200 <= response.status_code < 300:
                    for chunk in response.iter_bytes():
                        consume(chunk)
                    return response.headers
                reader = BodyReader(response.headers.get("content-encoding", ""))
                for chunk in response.iter_raw():
                    if reader.feed(chunk):
                        break
            finally:
                response.close()
    except httpx.HTTPError as exc:
        failure = transport_error(exc, call, client.config.timeout)
    except zlib.error:
        failure = transport_error(httpx.DecodingError("corrupt gzip"), call, client.config.timeout)
    if failure is None:
        failure = _refusal(call, response, reader, client)
    raise failure.for_connection(client.config.conn_id)


async def astream_call(client: AsyncSalesforceOAuthClient, call: Call[Any], consume: Callable[[bytes], None],
                       deadline: float) -> httpx.Headers:
    """Async :func:`stream_call` (``consume`` is a plain function: a local write)."""
    failure: SalesforceOAuthError | None = None
    try:
        with Deadline(deadline):
            response = await client.http.send(call.request(client.http), stream=True)
            try:
                if 200 <= response.status_code < 300:
                    async for chunk in response.aiter_bytes():
                        consume(chunk)
                    return response.headers
                reader = BodyReader(response.headers.get("content-encoding", ""))
                async for chunk in response.aiter_raw():
                    if reader.feed(chunk):
                        break
            finally:
                await response.aclose()
    except httpx.HTTPError as exc:
        failure = transport_error(exc, call, client.config.timeout)
    except zlib.error:
        failure = transport_error(httpx.DecodingError("corrupt gzip"), call, client.config.timeout)
    if failure is None:
        failure = _refusal(call, response, reader, client)
    raise failure.for_connection(client.config.conn_id)
