"""The hook's Bulk API 2.0 methods (DESIGN §11): query jobs on the connection's token, results
streamed to a local path or any ``ObjectStoragePath`` URI through a temporary name moved into
place only when complete."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable

if TYPE_CHECKING:
    from sf_oauth_provider.data.bulk import AsyncBulkQueries, BulkExtractResult, BulkQueries, BulkQueryJob
    from sf_oauth_provider.reporting.location import ReportFolder

__all__ = ["BulkMethods", "split_destination"]


def split_destination(destination: str | os.PathLike[str] | Any) -> tuple[ReportFolder, str]:
    """The folder and file name of ``destination`` (a local path, a ``file://`` URI, an
    ``ObjectStoragePath`` or any URI it accepts).

    :raises ReportLocationError: empty, a folder, or a scheme Airflow has no object storage for
    """
    from sf_oauth_provider.reporting.location import ReportFolder, ReportLocationError

    shown = str(destination)
    if not shown.strip() or shown.endswith("/"):
        raise ReportLocationError(f"destination {shown!r} is not a file: give a path or URI ending in a file name, "
                                  "e.g. s3://aws_default@bucket/opps/{{ ds }}.csv")
    whole = ReportFolder(destination, what="destination")
    if whole.remote is not None:
        return ReportFolder(whole.remote.parent, what="destination"), whole.remote.name
    assert whole.local is not None
    return ReportFolder(whole.local.parent, what="destination"), whole.local.name


class BulkMethods:
    """Mixed into :class:`~sf_oauth_provider.hooks.salesforce_oauth.SalesforceOAuthHook`."""

    salesforce_oauth_conn_id: str

    def bulk_queries(self) -> BulkQueries:
        """The framework-free Bulk 2.0 client on this hook's token and HTTP pool."""
        from sf_oauth_provider.data.bulk import BulkQueries

        hook: Any = self
        return BulkQueries(hook.client, lambda stale: hook.get_token(stale_token=stale))

    @contextlib.asynccontextmanager
    async def abulk_queries(self) -> AsyncIterator[AsyncBulkQueries]:
        """Async :meth:`bulk_queries` on the hook's async client (one pool for the block)."""
        from sf_oauth_provider.data.bulk import AsyncBulkQueries

        hook: Any = self
        async with hook.async_client() as client:
            yield AsyncBulkQueries(client, lambda stale: hook.aget_token(stale_token=stale))

    def bulk_query(self, soql: str, all_rows: bool = False, *, column_delimiter: str = "COMMA",
                   line_ending: str = "LF") -> BulkQueryJob:
        """Create a Bulk API 2.0 query job (``queryAll`` with ``all_rows``); Salesforce starts it."""
        return self.bulk_queries().submit(soql, all_rows=all_rows, column_delimiter=column_delimiter,
                                          line_ending=line_ending)

    def bulk_extract(self, soql: str, destination: str | os.PathLike[str] | Any, all_rows: bool = False,
                     max_records: int | None = None, timeout: float = 3600.0, *, poll_interval: float = 2.0,
                     column_delimiter: str = "COMMA", line_ending: str = "LF",
                     on_job: Callable[[BulkQueryJob], None] | None = None) -> BulkExtractResult:
        """Run ``soql`` as a Bulk API 2.0 query job and stream its CSV to ``destination``.

        The file appears under its final name only when complete (a temporary name beside it
        until then); a rerun replaces it. A job still running when this fails is aborted.

        :param destination: a local path or any ``ObjectStoragePath`` URI (``s3://conn@bucket/key.csv``)
        :param max_records: rows per results page (Salesforce's ``maxRecords``; default: its choice)
        :param timeout: seconds for the whole extract, job and download
        :param on_job: called with the job once created (e.g. to abort it from ``on_kill``)
        """
        folder, name = split_destination(destination)
        folder.prepare()
        bulk = self.bulk_queries()
        job = bulk.submit(soql, all_rows=all_rows, column_delimiter=column_delimiter, line_ending=line_ending)
        if on_job is not None:
            on_job(job)
        return self._finish(bulk, job, folder, name, max_records=max_records, timeout=timeout,
                            poll_interval=poll_interval)

    def bulk_download(self, job_id: str, destination: str | os.PathLike[str] | Any, *, api_version: str | None = None,
                      max_records: int | None = None, timeout: float = 3600.0,
                      poll_interval: float = 2.0) -> BulkExtractResult:
        """Wait for an existing job (e.g. one a trigger watched) and stream its results to
        ``destination`` like :meth:`bulk_extract`."""
        folder, name = split_destination(destination)
        folder.prepare()
        bulk = self.bulk_queries()
        return self._finish(bulk, bulk.get(job_id, api_version), folder, name, max_records=max_records,
                            timeout=timeout, poll_interval=poll_interval)

    def _finish(self, bulk: BulkQueries, job: BulkQueryJob, folder: ReportFolder, name: str, *,
                max_records: int | None, timeout: float, poll_interval: float) -> BulkExtractResult:
        import time
        from dataclasses import replace

        started = time.monotonic()
        job = bulk.wait(job, poll_interval=poll_interval, timeout=timeout)  # aborts a job it leaves running
        with folder.open_atomic(name) as sink:
            result = bulk.download(job, sink, max_records=max_records, deadline=started + timeout)
        return replace(result, location=folder.location_of(name))
