"""SalesforceBulkQueryOperator: a SOQL extract of any size as a Bulk API 2.0 query job, streamed
to a local file or object storage and moved into place only when complete (DESIGN §11).

DAG files import this module: the hook, the client and the trigger load when a task first uses them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn, Sequence

from airflow.sdk import BaseOperator

from sf_oauth_provider import client as core
from sf_oauth_provider import hooks, triggers
from sf_oauth_provider._compat import AirflowException, AirflowFailException, conf
from sf_oauth_provider.client.errors import SalesforceOAuthError, retry_may_help
from sf_oauth_provider.operators._params import as_bool, as_int, as_number, is_unset

if TYPE_CHECKING:
    from airflow.sdk import Context

    from sf_oauth_provider.data.bulk import BulkExtractResult, BulkQueryJob
    from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

__all__ = ["SalesforceBulkQueryOperator"]


@dataclass(frozen=True)
class _Settings:
    """The operator's parameters after rendering, converted and checked."""

    soql: str
    destination: str
    all_rows: bool
    poll_interval: float
    timeout: float
    column_delimiter: str
    line_ending: str
    max_records: int | None
    retry_attempts: int | None
    retry_backoff: float | None


class SalesforceBulkQueryOperator(BaseOperator):
    """Run SOQL as a Bulk API 2.0 query job and stream its CSV to ``destination``.

    The job is submitted from the worker. Deferrable (the default follows ``[operators]
    default_deferrable``), the task then waits in the triggerer — no worker slot while Salesforce
    works — and resumes to stream the results; otherwise it polls in the worker. The results are
    written to a temporary name beside ``destination`` and renamed into place only when complete:
    a failed or killed task never leaves a partial file under the final name, and a rerun
    replaces it. A job still running when the task fails, is killed or times out is aborted.

    Returns (XCom) ``{"location", "rows", "bytes", "job_id"}`` — never data.

    :param soql: the SOQL statement (templated; a ``.soql`` file is read as a template). Bulk 2.0
        refuses aggregates, GROUP BY, OFFSET, TYPEOF, FIELDS() and parent-to-child subqueries
    :param destination: a local file path or any ``ObjectStoragePath`` URI, e.g.
        ``s3://aws_default@bucket/opps/{{ ds }}.csv`` (templated)
    :param all_rows: ``queryAll``: deleted and archived records too (templated)
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``)
    :param poll_interval: seconds between job status checks, growing up to 8 × (templated)
    :param timeout: seconds for the whole extract, job and download; past it the job is aborted
        (templated)
    :param column_delimiter: ``COMMA``, ``TAB``, ``PIPE``, ``SEMICOLON``, ``CARET`` or ``BACKQUOTE``
    :param line_ending: ``LF`` or ``CRLF``
    :param max_records: rows per results page (default: Salesforce's choice; templated)
    :param retry_attempts: tries per request for a transient error (default: the hook's; templated)
    :param retry_backoff: first backoff in seconds between those tries (default: the hook's; templated)
    :param salesforce_oauth_conn_id: the ``salesforce_oauth`` connection

    Every templated flag and number is converted after rendering: a value that cannot be
    converted fails the task naming the parameter, before any request.
    """

    template_fields: Sequence[str] = (
        "soql", "destination", "all_rows", "poll_interval", "timeout", "column_delimiter", "line_ending",
        "max_records", "retry_attempts", "retry_backoff", "salesforce_oauth_conn_id",
    )
    template_ext: Sequence[str] = (".soql",)
    template_fields_renderers = {"soql": "sql"}
    ui_color = "#d6e9f9"

    def __init__(
        self,
        *,
        soql: str,
        destination: str,
        all_rows: bool | str = False,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float | str = 5.0,
        timeout: float | str = 3600.0,
        column_delimiter: str = "COMMA",
        line_ending: str = "LF",
        max_records: int | str | None = None,
        retry_attempts: int | str | None = None,
        retry_backoff: float | str | None = None,
        salesforce_oauth_conn_id: str = "salesforce_oauth_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.soql = soql
        self.destination = destination
        self.all_rows = all_rows
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.column_delimiter = column_delimiter
        self.line_ending = line_ending
        self.max_records = max_records
        self.retry_attempts = retry_attempts
        self.retry_backoff = retry_backoff
        self.salesforce_oauth_conn_id = salesforce_oauth_conn_id
        self._job: tuple[str, str] | None = None  # (job id, API version) while a job may run
        if not any(isinstance(v, str) and "{" in v for v in (all_rows, poll_interval, timeout, max_records,
                                                             retry_attempts, retry_backoff)):
            self._numbers()  # plain values: a bad one fails when the DAG is parsed

    def _numbers(self) -> tuple[bool, float, float, int | None, int | None, float | None]:
        return (
            as_bool(self.all_rows, "all_rows"),
            as_number(self.poll_interval, "poll_interval", above=0),
            as_number(self.timeout, "timeout", above=0),
            None if is_unset(self.max_records) or self.max_records == "None"
            else as_int(self.max_records, "max_records", minimum=1),
            None if is_unset(self.retry_attempts) else as_int(self.retry_attempts, "retry_attempts", minimum=1),
            None if is_unset(self.retry_backoff) else as_number(self.retry_backoff, "retry_backoff", minimum=0),
        )

    def _settings(self) -> _Settings:
        """The rendered parameters, converted (``ValueError`` naming the parameter)."""
        for name in ("soql", "destination"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name!r} is empty" + (" (did its template render to nothing?)"
                                                         if isinstance(value, str) else f": got {value!r}"))
        all_rows, poll, timeout, max_records, attempts, backoff = self._numbers()
        return _Settings(self.soql.strip(), self.destination.strip(), all_rows, poll, timeout,
                         str(self.column_delimiter).strip().upper(), str(self.line_ending).strip().upper(),
                         max_records, attempts, backoff)

    def _hook(self, settings: _Settings) -> SalesforceOAuthHook:
        retry = core.oauth.RetryPolicy.from_numbers(settings.retry_attempts, settings.retry_backoff)
        return hooks.SalesforceOAuthHook(self.salesforce_oauth_conn_id, retry=retry)

    def _fail(self, exc: SalesforceOAuthError | ValueError, what: str) -> NoReturn:
        if isinstance(exc, SalesforceOAuthError) and retry_may_help(exc):
            raise AirflowException(f"{what} failed: {exc}") from None
        raise AirflowFailException(f"{what} failed: {exc}") from None

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            settings = self._settings()
        except ValueError as exc:
            raise AirflowFailException(f"{self.task_id}: {exc}") from None
        hook = self._hook(settings)
        try:
            if not self.deferrable:
                return self._report(self._extract(hook, settings))
            self._submit_and_defer(hook, settings)
        finally:
            hook.close()
        raise AssertionError("unreachable")  # pragma: no cover - defer() raises

    def _extract(self, hook: SalesforceOAuthHook, settings: _Settings) -> BulkExtractResult:
        def remember(job: BulkQueryJob) -> None:
            self._job = (job.id, job.api_version)

        try:
            return hook.bulk_extract(settings.soql, settings.destination, settings.all_rows, settings.max_records,
                                     settings.timeout, poll_interval=settings.poll_interval,
                                     column_delimiter=settings.column_delimiter, line_ending=settings.line_ending,
                                     on_job=remember)
        except (SalesforceOAuthError, ValueError) as exc:
            self._fail(exc, "The Bulk extract")
        finally:
            self._job = None

    def _submit_and_defer(self, hook: SalesforceOAuthHook, settings: _Settings) -> None:
        from sf_oauth_provider.hooks._bulk import split_destination

        try:
            split_destination(settings.destination)[0].prepare()
            job = hook.bulk_query(settings.soql, settings.all_rows, column_delimiter=settings.column_delimiter,
                                  line_ending=settings.line_ending)
        except (SalesforceOAuthError, ValueError) as exc:
            self._fail(exc, "Submitting the Bulk query job")
        self.log.info("Bulk query job %s submitted; waiting in the triggerer", job.id)
        self.defer(
            trigger=triggers.SalesforceBulkJobTrigger(
                salesforce_oauth_conn_id=self.salesforce_oauth_conn_id, job_id=job.id, api_version=job.api_version,
                poll_interval=settings.poll_interval, end_at=time.time() + settings.timeout,
                retry_attempts=settings.retry_attempts, retry_backoff=settings.retry_backoff,
            ),
            method_name="execute_complete",
            # the trigger aborts the job and ends the wait at `timeout`; this is the backstop
            timeout=timedelta(seconds=settings.timeout + max(60.0, 2 * settings.poll_interval)),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None) -> dict[str, Any]:
        """Resume after the trigger: stream the results, or fail with the trigger's reason."""
        settings = self._settings()
        event = event or {}
        if event.get("status") == "timeout":
            raise AirflowException(f"Connection {self.salesforce_oauth_conn_id!r}: {event.get('message')}")
        if event.get("status") != "success":
            message = event.get("message") or "the trigger ended without a result"
            raise AirflowFailException(f"{message}" + (f" — {event['hint']}" if event.get("hint") and
                                                       str(event["hint"]) not in str(message) else ""))
        hook = self._hook(settings)
        try:
            result = hook.bulk_download(event["job_id"], settings.destination, api_version=event.get("api_version"),
                                        max_records=settings.max_records, timeout=settings.timeout,
                                        poll_interval=settings.poll_interval)
        except (SalesforceOAuthError, ValueError) as exc:
            self._fail(exc, f"Downloading Bulk query job {event['job_id']}")
        finally:
            hook.close()
        return self._report(result)

    def _report(self, result: BulkExtractResult) -> dict[str, Any]:
        self.log.info("Bulk query job %s: %d rows, %d bytes written to %s", result.job_id, result.rows, result.bytes,
                      result.location)
        return result.as_dict()

    def on_kill(self) -> None:
        """A killed task aborts the job it was waiting for (the download of a finished job just stops)."""
        if self._job is None:
            return
        job_id, version = self._job
        hook = hooks.SalesforceOAuthHook(self.salesforce_oauth_conn_id)
        try:
            hook.bulk_queries().abort_quietly(job_id, version)
        finally:
            hook.close()
