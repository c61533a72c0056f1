"""Bulk API 2.0 query jobs: submit, wait, stream the CSV results to a binary sink (DESIGN §11).

    from sf_oauth_provider.data.bulk import BulkQueries
    bulk = BulkQueries(client, lambda stale: provider.get_token(stale_token=stale))
    with open("opps.csv", "wb") as sink:
        result = bulk.extract("SELECT Id, Name FROM Opportunity", sink)   # BulkExtractResult

``POST /jobs/query`` creates the job, ``GET /jobs/query/{id}`` is polled with a growing interval
until ``JobComplete`` (or ``Failed`` / ``Aborted``: permanent errors naming the job and
Salesforce's ``errorMessage``), then ``GET …/results`` is read page by page until
``Sforce-Locator: null``. Every page repeats the CSV header row; it is written once. Memory is
bounded by a buffer, never by the row count. A session Salesforce refuses mid-way (HTTP 401) is
renewed once through the token source and the same request — the same locator — sent again: no
row lost or repeated. 5xx answers and broken transfers are retried with the client's policy,
the page rewritten from its start. A job still running when the extract fails, is cancelled or
runs past its ``timeout`` is aborted. Framework-free: no Airflow import.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, BinaryIO, Callable, TypeVar

from sf_oauth_provider.client.auth import check_bearer_target
from sf_oauth_provider.client.errors import (
    SalesforceBulkJobError,
    SalesforceBulkTimeout,
    SalesforceConfigError,
    SalesforceOAuthError,
    SalesforceSessionExpired,
    SalesforceUnavailableError,
)
from sf_oauth_provider.client.oauth import AsyncSalesforceOAuthClient, Call, SalesforceOAuthClient
from sf_oauth_provider.client.responses import Reply, parse_json_reply
from sf_oauth_provider.client.token import SalesforceToken
from sf_oauth_provider.data._pages import PageWriter, ResultPager, astream_call, stream_call

__all__ = [
    "COLUMN_DELIMITERS",
    "LINE_ENDINGS",
    "AsyncBulkQueries",
    "BulkExtractResult",
    "BulkQueries",
    "BulkQueryJob",
    "BulkRequest",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

COLUMN_DELIMITERS = ("COMMA", "TAB", "PIPE", "SEMICOLON", "CARET", "BACKQUOTE")
LINE_ENDINGS = ("LF", "CRLF")
#: Bulk API 2.0 query jobs exist from API version 47.0
MIN_API_VERSION = 47.0
TERMINAL_STATES = ("JobComplete", "Failed", "Aborted")
#: the poll interval grows by this factor up to ``max_poll_interval``
_POLL_GROWTH = 1.5

#: get_token(stale) -> token; ``stale`` is the access token Salesforce just refused (None first)
TokenSource = Callable[[str | None], SalesforceToken]
AsyncTokenSource = Callable[[str | None], Awaitable[SalesforceToken]]


@dataclass(frozen=True)
class BulkQueryJob:
    """A Bulk API 2.0 query job as Salesforce last described it."""

    id: str
    state: str
    api_version: str
    operation: str = "query"
    object: str | None = None
    error_message: str | None = None
    records_processed: int | None = None

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES


@dataclass(frozen=True)
class BulkExtractResult:
    """What an extract wrote: never data, only where and how much (this is what goes to XCom)."""

    job_id: str
    rows: int
    bytes: int
    location: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"location": self.location, "rows": self.rows, "bytes": self.bytes, "job_id": self.job_id}


@dataclass(frozen=True)
class BulkRequest:
    """A query job to create, checked before anything is sent.

    :param soql: the query (Bulk 2.0 refuses aggregates, GROUP BY, OFFSET, TYPEOF, FIELDS() and
        parent-to-child subqueries: Salesforce's message is raised as it says it)
    :param all_rows: ``queryAll`` (deleted and archived records too) instead of ``query``
    :param column_delimiter: one of :data:`COLUMN_DELIMITERS`
    :param line_ending: ``LF`` or ``CRLF``
    """

    soql: str
    all_rows: bool = False
    column_delimiter: str = "COMMA"
    line_ending: str = "LF"

    def checked(self, conn_id: str) -> BulkRequest:
        if not isinstance(self.soql, str) or not self.soql.strip():
            raise SalesforceConfigError("'soql' is empty: a Bulk query job needs a SOQL statement", field="soql",
                                        conn_id=conn_id)
        delimiter, ending = str(self.column_delimiter).upper(), str(self.line_ending).upper()
        if delimiter not in COLUMN_DELIMITERS:
            raise SalesforceConfigError(f"'column_delimiter' is {self.column_delimiter!r}; Salesforce accepts "
                                        f"{', '.join(COLUMN_DELIMITERS)}", field="column_delimiter", conn_id=conn_id)
        if ending not in LINE_ENDINGS:
            raise SalesforceConfigError(f"'line_ending' is {self.line_ending!r}; Salesforce accepts LF or CRLF",
                                        field="line_ending", conn_id=conn_id)
        return BulkRequest(self.soql.strip(), bool(self.all_rows), delimiter, ending)

    def body(self) -> dict[str, str]:
        return {"operation": "queryAll" if self.all_rows else "query", "query": self.soql, "contentType": "CSV",
                "columnDelimiter": self.column_delimiter, "lineEnding": self.line_ending}


def _job_from(data: Any, api_version: str) -> BulkQueryJob:
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not isinstance(data.get("state"), str):
        raise SalesforceUnavailableError("Salesforce's Bulk job reply has no 'id' and 'state'",
                                         hint="check 'host' and any proxy in between")
    processed = data.get("numberRecordsProcessed")
    version = data.get("apiVersion")
    return BulkQueryJob(
        id=data["id"], state=data["state"],
        api_version=f"{float(version):.1f}" if isinstance(version, (int, float)) and version else api_version,
        operation=str(data.get("operation") or "query"), object=data.get("object"),
        error_message=data.get("errorMessage") or None,
        records_processed=processed if isinstance(processed, int) and not isinstance(processed, bool) else None,
    )


def finished_job(job: BulkQueryJob, conn_id: str) -> BulkQueryJob:
    """``job`` when complete; the permanent error when Salesforce failed or aborted it."""
    if job.state == "Failed":
        raise SalesforceBulkJobError(
            f"Bulk query job {job.id} failed — Salesforce says: {job.error_message or '(no errorMessage)'}",
            error="Failed", error_description=job.error_message,
            hint="a query that timed out needs a narrower WHERE (an indexed field such as SystemModstamp or Id); "
            "otherwise fix what the message names (the SOQL, or the user's access to the object)",
            conn_id=conn_id,
        )
    if job.state == "Aborted":
        raise SalesforceBulkJobError(f"Bulk query job {job.id} was aborted before it finished", error="Aborted",
                                     hint="someone (or another task) aborted it in Salesforce; run the task again",
                                     conn_id=conn_id)
    return job


class _Jobs:
    """The requests both clients make, and the rules they share."""

    def __init__(self, client: SalesforceOAuthClient | AsyncSalesforceOAuthClient, *,
                 max_poll_interval: float = 30.0) -> None:
        self.client = client
        self.conn_id = client.config.conn_id
        self.api_version = client.config.api_version
        self.max_poll_interval = max_poll_interval
        if float(self.api_version) < MIN_API_VERSION:
            raise SalesforceConfigError(
                f"extra 'api_version' is {self.api_version}; Bulk API 2.0 query jobs need {MIN_API_VERSION} or later",
                field="extra.api_version", conn_id=self.conn_id,
            )

    def _url(self, token: SalesforceToken, path: str, version: str | None = None) -> str:
        url = f"{token.instance_url}/services/data/v{version or self.api_version}/jobs/query{path}"
        check_bearer_target(url, token.instance_url, self.conn_id)
        return url

    def _job_call(self, token: SalesforceToken, method: str, path: str, describe: str, *,
                  json: Any = None, version: str | None = None) -> Call[BulkQueryJob]:
        api_version = version or self.api_version

        def parse(reply: Reply) -> BulkQueryJob:
            return _job_from(parse_json_reply(reply, describe), api_version)

        return Call(method, self._url(token, path, version), parse, describe, json=json,
                    headers={"Authorization": f"Bearer {token.access_token}"})

    def create_call(self, token: SalesforceToken, request: BulkRequest) -> Call[BulkQueryJob]:
        return self._job_call(token, "POST", "", "Bulk query job creation", json=request.body())

    def get_call(self, token: SalesforceToken, job_id: str, version: str | None = None) -> Call[BulkQueryJob]:
        return self._job_call(token, "GET", f"/{_checked_id(job_id, self.conn_id)}", "Bulk query job status",
                              version=version)

    def abort_call(self, token: SalesforceToken, job_id: str, version: str | None = None) -> Call[BulkQueryJob]:
        return self._job_call(token, "PATCH", f"/{_checked_id(job_id, self.conn_id)}", "Bulk query job abort",
                              json={"state": "Aborted"}, version=version)

    def results_call(self, token: SalesforceToken, job: BulkQueryJob, locator: str | None,
                     max_records: int | None) -> Call[None]:
        params = {k: v for k, v in (("locator", locator), ("maxRecords", max_records and str(max_records))) if v}
        return Call("GET", self._url(token, f"/{job.id}/results", job.api_version), lambda _r: None,
                    "Bulk query results", params=params or None,
                    headers={"Authorization": f"Bearer {token.access_token}", "Accept": "text/csv",
                             "Accept-Encoding": "gzip"})

    def next_wait(self, wait: float) -> float:
        return min(self.max_poll_interval, wait * _POLL_GROWTH)

    def timed_out(self, job_id: str, timeout: float, what: str) -> SalesforceBulkTimeout:
        return SalesforceBulkTimeout(f"Bulk query job {job_id} {what} within {timeout:g} s; the job was aborted",
                                     hint="raise 'timeout', or narrow the SOQL", conn_id=self.conn_id)


def _checked_id(job_id: str, conn_id: str) -> str:
    if not isinstance(job_id, str) or not job_id.isalnum() or len(job_id) not in (15, 18):
        raise SalesforceConfigError(f"{job_id!r} is not a Salesforce job id (15 or 18 letters and digits)",
                                    field="job_id", conn_id=conn_id)
    return job_id


def _max_records(value: int | None, conn_id: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SalesforceConfigError(f"'max_records' must be a positive whole number or None, got {value!r}",
                                    field="max_records", conn_id=conn_id)
    return value


class BulkQueries(_Jobs):
    """Blocking Bulk API 2.0 query jobs on a token client's HTTP pool.

    :param client: the connection's :class:`SalesforceOAuthClient` (deadlines, retries, redaction)
    :param get_token: ``get_token(stale_access_token_or_None) -> token`` (a ``TokenProvider``)
    :param max_poll_interval: longest wait between two status checks
    :param sleep: how to wait (tests pass a clock's)
    """

    def __init__(self, client: SalesforceOAuthClient, get_token: TokenSource, *, max_poll_interval: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(client, max_poll_interval=max_poll_interval)
        self.sync_client, self.get_token, self.sleep = client, get_token, sleep

    def _authed(self, make: Callable[[SalesforceToken], Call[T]]) -> T:
        """Send with the current token; on an expired session, once more with a new one."""
        token = self.get_token(None)
        try:
            return self.sync_client.call(lambda: make(token))
        except SalesforceSessionExpired:
            renewed = self.get_token(token.access_token)
            return self.sync_client.call(lambda: make(renewed))

    def submit(self, soql: str, *, all_rows: bool = False, column_delimiter: str = "COMMA",
               line_ending: str = "LF") -> BulkQueryJob:
        """Create the job; Salesforce starts it at once (state ``UploadComplete``)."""
        request = BulkRequest(soql, all_rows, column_delimiter, line_ending).checked(self.conn_id)
        job = self._authed(lambda token: self.create_call(token, request))
        log.info("Connection %r: Bulk query job %s created (%s, API %s)", self.conn_id, job.id, job.operation,
                 job.api_version)
        return job

    def get(self, job_id: str, api_version: str | None = None) -> BulkQueryJob:
        return self._authed(lambda token: self.get_call(token, job_id, api_version))

    def abort(self, job_id: str, api_version: str | None = None) -> BulkQueryJob:
        return self._authed(lambda token: self.abort_call(token, job_id, api_version))

    def abort_quietly(self, job_id: str, api_version: str | None = None) -> None:
        """Abort a job that may still run; a failure is logged, never raised (used on the way out)."""
        try:
            self.abort(job_id, api_version)
            log.warning("Connection %r: Bulk query job %s aborted", self.conn_id, job_id)
        except SalesforceOAuthError as exc:
            log.warning("Connection %r: could not abort Bulk query job %s: %s", self.conn_id, job_id, exc.message)

    def wait(self, job: BulkQueryJob, *, poll_interval: float = 2.0, timeout: float = 3600.0) -> BulkQueryJob:
        """Poll until the job finishes; ``JobComplete`` returned, ``Failed``/``Aborted`` raised. A job
        left running by any other way out (a kill, a cancel, an error) is aborted.

        :raises SalesforceBulkTimeout: not finished within ``timeout`` seconds (the job is aborted)
        """
        deadline, wait = time.monotonic() + timeout, max(0.05, float(poll_interval))
        try:
            while not job.finished:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.abort_quietly(job.id, job.api_version)
                    raise self.timed_out(job.id, timeout, "did not finish")
                self.sleep(min(wait, left))
                wait = self.next_wait(wait)
                job = self.get(job.id, job.api_version)
        except SalesforceBulkTimeout:
            raise
        except BaseException:  # a kill (SIGTERM), a cancel, an error: the job must not run on
            self.abort_quietly(job.id, job.api_version)
            raise
        return finished_job(job, self.conn_id)

    def download(self, job: BulkQueryJob, sink: BinaryIO, *, max_records: int | None = None,
                 deadline: float | None = None) -> BulkExtractResult:
        """Stream a complete job's results into ``sink`` (header once); rows and bytes written."""
        writer, pager = PageWriter(sink, self.conn_id), ResultPager(self.conn_id)
        per_page, locator = _max_records(max_records, self.conn_id), None
        end = deadline if deadline is not None else time.monotonic() + 24 * 3600
        try:
            while True:
                headers = self._page(job, locator, per_page, writer, end)
                locator = pager.next_locator(headers)
                if locator is None:
                    return BulkExtractResult(job.id, pager.rows, writer.bytes)
        finally:
            writer.discard()

    def _page(self, job: BulkQueryJob, locator: str | None, per_page: int | None, writer: PageWriter,
              end: float) -> Any:
        token = self.get_token(None)
        for renewed in (False, True):
            try:
                for attempt in self.sync_client.retry.sync():
                    with attempt:
                        writer.begin_page()
                        headers = stream_call(self.sync_client, self.results_call(token, job, locator, per_page),
                                              writer.write, end)
                        writer.end_page()
                        return headers
            except SalesforceSessionExpired:
                if renewed:
                    raise
                token = self.get_token(token.access_token)
        raise AssertionError("unreachable")  # pragma: no cover

    def extract(self, soql: str, sink: BinaryIO, *, all_rows: bool = False, max_records: int | None = None,
                timeout: float = 3600.0, poll_interval: float = 2.0, column_delimiter: str = "COMMA",
                line_ending: str = "LF") -> BulkExtractResult:
        """Submit, wait and download; a job still running when anything fails is aborted.

        :param timeout: seconds for the whole extract (job and download)
        """
        started = time.monotonic()
        job = self.submit(soql, all_rows=all_rows, column_delimiter=column_delimiter, line_ending=line_ending)
        job = self.wait(job, poll_interval=poll_interval, timeout=timeout)
        result = self.download(job, sink, max_records=max_records, deadline=started + timeout)
        log.info("Connection %r: Bulk query job %s: %d rows, %d bytes", self.conn_id, job.id, result.rows,
                 result.bytes)
        return result


class AsyncBulkQueries(_Jobs):
    """Async :class:`BulkQueries` (for triggers and async programs)."""

    def __init__(self, client: AsyncSalesforceOAuthClient, get_token: AsyncTokenSource, *,
                 max_poll_interval: float = 30.0) -> None:
        super().__init__(client, max_poll_interval=max_poll_interval)
        self.async_client, self.get_token = client, get_token

    async def _authed(self, make: Callable[[SalesforceToken], Call[T]]) -> T:
        token = await self.get_token(None)
        try:
            return await self.async_client.call(lambda: make(token))
        except SalesforceSessionExpired:
            renewed = await self.get_token(token.access_token)
            return await self.async_client.call(lambda: make(renewed))

    async def submit(self, soql: str, *, all_rows: bool = False, column_delimiter: str = "COMMA",
                     line_ending: str = "LF") -> BulkQueryJob:
        request = BulkRequest(soql, all_rows, column_delimiter, line_ending).checked(self.conn_id)
        job = await self._authed(lambda token: self.create_call(token, request))
        log.info("Connection %r: Bulk query job %s created (%s, API %s)", self.conn_id, job.id, job.operation,
                 job.api_version)
        return job

    async def get(self, job_id: str, api_version: str | None = None) -> BulkQueryJob:
        return await self._authed(lambda token: self.get_call(token, job_id, api_version))

    async def abort(self, job_id: str, api_version: str | None = None) -> BulkQueryJob:
        return await self._authed(lambda token: self.abort_call(token, job_id, api_version))

    async def abort_quietly(self, job_id: str, api_version: str | None = None) -> None:
        try:
            await self.abort(job_id, api_version)
            log.warning("Connection %r: Bulk query job %s aborted", self.conn_id, job_id)
        except SalesforceOAuthError as exc:
            log.warning("Connection %r: could not abort Bulk query job %s: %s", self.conn_id, job_id, exc.message)

    async def wait(self, job: BulkQueryJob, *, poll_interval: float = 2.0, timeout: float = 3600.0) -> BulkQueryJob:
        deadline, wait = time.monotonic() + timeout, max(0.05, float(poll_interval))
        try:
            while not job.finished:
                left = deadline - time.monotonic()
                if left <= 0:
                    await self.abort_quietly(job.id, job.api_version)
                    raise self.timed_out(job.id, timeout, "did not finish")
                await asyncio.sleep(min(wait, left))
                wait = self.next_wait(wait)
                job = await self.get(job.id, job.api_version)
        except SalesforceBulkTimeout:
            raise
        except BaseException:
            await self.abort_quietly(job.id, job.api_version)
            raise
        return finished_job(job, self.conn_id)

    async def download(self, job: BulkQueryJob, sink: BinaryIO, *, max_records: int | None = None,
                       deadline: float | None = None) -> BulkExtractResult:
        writer, pager = PageWriter(sink, self.conn_id), ResultPager(self.conn_id)
        per_page, locator = _max_records(max_records, self.conn_id), None
        end = deadline if deadline is not None else time.monotonic() + 24 * 3600
        try:
            while True:
                headers = await self._page(job, locator, per_page, writer, end)
                locator = pager.next_locator(headers)
                if locator is None:
                    return BulkExtractResult(job.id, pager.rows, writer.bytes)
        finally:
            writer.discard()

    async def _page(self, job: BulkQueryJob, locator: str | None, per_page: int | None, writer: PageWriter,
                    end: float) -> Any:
        token = await self.get_token(None)
        for renewed in (False, True):
            try:
                async for attempt in self.async_client.retry.async_():
                    with attempt:
                        writer.begin_page()
                        headers = await astream_call(self.async_client,
                                                     self.results_call(token, job, locator, per_page),
                                                     writer.write, end)
                        writer.end_page()
                        return headers
            except SalesforceSessionExpired:
                if renewed:
                    raise
                token = await self.get_token(token.access_token)
        raise AssertionError("unreachable")  # pragma: no cover

    async def extract(self, soql: str, sink: BinaryIO, *, all_rows: bool = False, max_records: int | None = None,
                      timeout: float = 3600.0, poll_interval: float = 2.0, column_delimiter: str = "COMMA",
                      line_ending: str = "LF") -> BulkExtractResult:
        started = time.monotonic()
        job = await self.submit(soql, all_rows=all_rows, column_delimiter=column_delimiter, line_ending=line_ending)
        job = await self.wait(job, poll_interval=poll_interval, timeout=timeout)
        return await self.download(job, sink, max_records=max_records, deadline=started + timeout)
