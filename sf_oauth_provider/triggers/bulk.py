"""SalesforceBulkJobTrigger: wait in the triggerer, with async I/O only, until a Bulk API 2.0 query
job finishes, so no worker slot is held while Salesforce works (DESIGN §11).

Besides ``airflow.triggers.base``, this module loads only what defining the trigger needs.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, AsyncIterator

from airflow.triggers.base import BaseTrigger, TriggerEvent

from sf_oauth_provider import client as core
from sf_oauth_provider import hooks
from sf_oauth_provider.client.errors import SalesforceOAuthError, retry_may_help

if TYPE_CHECKING:
    from sf_oauth_provider.data.bulk import AsyncBulkQueries, BulkQueryJob

__all__ = ["SalesforceBulkJobTrigger"]

#: the poll interval grows up to this many times the first one
_MAX_GROWTH = 8.0


class SalesforceBulkJobTrigger(BaseTrigger):
    """Poll a Bulk API 2.0 query job until it is ``JobComplete``, ``Failed`` or ``Aborted``.

    Yields exactly one event: ``{"status": "success", "job_id", "api_version", "state",
    "records_processed"}`` when complete; ``{"status": "error", "job_id", "state", "message",
    "error", "hint"}`` when Salesforce failed or aborted the job, or on a permanent error; or
    ``{"status": "timeout", "job_id", "message"}`` after ``end_at`` (the job is aborted first).
    Transient errors are logged and the job is checked again at the next interval.

    :param salesforce_oauth_conn_id: the connection id
    :param job_id: the job to watch
    :param api_version: the API version the job was created with
    :param poll_interval: seconds before the first check; grows by half each time up to 8 ×
    :param end_at: epoch seconds after which the job is aborted and the wait ends
    :param retry_attempts: tries per request for a transient error (default: the hook's)
    :param retry_backoff: first backoff in seconds between those tries (default: the hook's)
    """

    def __init__(
        self,
        salesforce_oauth_conn_id: str,
        job_id: str,
        api_version: str,
        poll_interval: float = 5.0,
        end_at: float | None = None,
        retry_attempts: int | None = None,
        retry_backoff: float | None = None,
    ) -> None:
        super().__init__()
        self.salesforce_oauth_conn_id = salesforce_oauth_conn_id
        self.job_id = job_id
        self.api_version = api_version
        self.poll_interval = max(0.05, float(poll_interval))
        self.end_at = None if end_at is None else float(end_at)
        self.retry_attempts = retry_attempts
        self.retry_backoff = retry_backoff

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and plain kwargs (no secrets: the triggerer reads the connection itself)."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "salesforce_oauth_conn_id": self.salesforce_oauth_conn_id,
                "job_id": self.job_id,
                "api_version": self.api_version,
                "poll_interval": self.poll_interval,
                "end_at": self.end_at,
                "retry_attempts": self.retry_attempts,
                "retry_backoff": self.retry_backoff,
            },
        )

    def _event(self, status: str, **fields: Any) -> TriggerEvent:
        return TriggerEvent({"status": status, "job_id": self.job_id, **fields})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Check, sleep, repeat; one event when the job finishes, on a permanent error or at ``end_at``."""
        retry = core.oauth.RetryPolicy.from_numbers(self.retry_attempts, self.retry_backoff)
        hook = hooks.SalesforceOAuthHook(self.salesforce_oauth_conn_id, retry=retry)
        async with hook.reusing_connections(), hook.abulk_queries() as bulk:  # one HTTP pool for every check
            yield await self._watch(bulk)

    async def _watch(self, bulk: AsyncBulkQueries) -> TriggerEvent:
        wait, last = self.poll_interval, "no check finished"
        while True:
            try:
                job = await bulk.get(self.job_id, self.api_version)
            except SalesforceOAuthError as exc:
                if not retry_may_help(exc):
                    return self._event("error", message=str(exc), error=exc.error, hint=exc.hint, state=None)
                last = f"last check failed: {exc}"
                self.log.warning("Bulk query job %s: %s; checking again in %.0f s", self.job_id, exc, wait)
            else:
                if job.finished:
                    return self._finished(job)
                last = f"last state {job.state}"
            if self.end_at is not None and time.time() + wait > self.end_at:
                left = self.end_at - time.time()
                if left > 0:
                    await asyncio.sleep(left)
                await bulk.abort_quietly(self.job_id, self.api_version)
                return self._event("timeout", message=f"Bulk query job {self.job_id} did not finish in time ({last}); "
                                   "it was aborted")
            await asyncio.sleep(wait)
            wait = min(wait * 1.5, self.poll_interval * _MAX_GROWTH)

    def _finished(self, job: BulkQueryJob) -> TriggerEvent:
        from sf_oauth_provider.data.bulk import finished_job

        try:
            finished_job(job, self.salesforce_oauth_conn_id)
        except SalesforceOAuthError as exc:
            return self._event("error", message=str(exc), error=exc.error, hint=exc.hint, state=job.state)
        return self._event("success", api_version=job.api_version, state=job.state,
                           records_processed=job.records_processed)
