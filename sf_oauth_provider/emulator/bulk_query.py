"""Bulk API 2.0 query jobs: the job model, its states over (org clock) time, and its CSV pages.

A job is created ``UploadComplete``; it reads ``InProgress`` after a quarter of the org's
``bulk_query_delay`` and ``JobComplete`` (or ``Failed``) once the whole delay has passed on the
org clock, so tests move it with ``POST /__emulator/clock``. When it completes, the query runs
over a snapshot of the tables the creator sees: matching rows are counted, and every
:data:`~.soql_rows.CHECKPOINT` th match records its row index, so a page for any locator starts near its
first row instead of re-reading the rows before it (``ORDER BY`` keeps the sorted indices
instead). The rows themselves are never listed: pages are written as they stream.

Locators are what Salesforce's look like (base64 of the offset of the page's first record), and
the same locator always gives the same page.
"""

from __future__ import annotations

import base64
import binascii
import csv
import datetime as dt
import io
import re
import secrets
import string
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterator

from .soql import SoqlError, Table, parse
from .soql_rows import ResultIndex, RowPlan, index_result

__all__ = [
    "DAILY_JOB_LIMIT",
    "DELIMITERS",
    "LINE_ENDINGS",
    "BulkQueryStore",
    "QueryJob",
    "decode_locator",
    "encode_locator",
    "refusal",
]

#: ``DailyBulkV2QueryJobs`` (Bulk API 2.0 and Bulk API Developer Guide, "Bulk API 2.0 Query" limits)
DAILY_JOB_LIMIT = 10000
DELIMITERS = {"BACKQUOTE": "`", "CARET": "^", "COMMA": ",", "PIPE": "|", "SEMICOLON": ";", "TAB": "\t"}
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
#: jobs kept at most; past it the oldest go first
_MAX_JOBS = 1000
#: finished jobs are deleted after 7 days ("Understanding Bulk API 2.0 Query" limits)
_KEEP = 7 * 86400.0
_FINISHED = ("JobComplete", "Failed", "Aborted")
_WINDOW = 24 * 3600.0
_LIST_PAGE = 1000
_STRINGS = re.compile(r"'(?:\\.|[^'\\])*'")
_ALNUM = string.ascii_letters + string.digits

# What Bulk API 2.0 refuses at job creation ("Understanding Bulk API 2.0 Query", SOQL
# considerations): (pattern, message, whether only the select list is searched), over the query
# with its string literals blanked. A sub-select after FROM is a semi-join, which Bulk allows.
_REFUSED = (
    (
        re.compile(r"\(\s*SELECT\b", re.I),
        "Aggregate Relationships not supported in Bulk V2 Query with CSV content type.",
        True,
    ),
    (re.compile(r"\bFIELDS\s*\(", re.I), "FIELDS() is not supported in Bulk API 2.0 query jobs.", False),
    (re.compile(r"\bTYPEOF\b", re.I), "TYPEOF is not supported in Bulk API 2.0 query jobs.", False),
    (re.compile(r"\bGROUP\s+BY\b", re.I), "GROUP BY is not supported in Bulk API 2.0 query jobs.", False),
    (re.compile(r"\bOFFSET\b", re.I), "OFFSET is not supported in Bulk API 2.0 query jobs.", False),
    (
        re.compile(r"\b(COUNT|COUNT_DISTINCT|SUM|AVG|MIN|MAX)\s*\(", re.I),
        "Aggregate queries are not supported in Bulk API 2.0 query jobs.",
        False,
    ),
)


def refusal(soql: str) -> str | None:
    """The message Bulk API 2.0 refuses ``soql`` with, or ``None`` if it may run."""
    text = _STRINGS.sub("''", soql)
    select_list = re.split(r"\bFROM\b", text, maxsplit=1, flags=re.I)[0]
    for rx, message, select_list_only in _REFUSED:
        if rx.search(select_list if select_list_only else text):
            return message
    return None


def encode_locator(offset: int) -> str:
    """The locator of the page that starts at record ``offset``."""
    return base64.b64encode(str(offset).encode()).decode().rstrip("=")


def decode_locator(locator: str) -> int | None:
    """The record offset a locator names, or ``None`` if it names none."""
    try:
        text = base64.b64decode(locator + "=" * (-len(locator) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def _sf_datetime(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


@dataclass
class QueryJob:
    """One Bulk API 2.0 query job."""

    id: str
    operation: str
    soql: str
    object: str
    created_by: str
    created: float
    api_version: str
    column_delimiter: str
    line_ending: str
    delay: float
    tables: dict[str, Table]
    fail_message: str | None = None
    aborted_at: float | None = None
    result: ResultIndex | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def state(self, now: float) -> str:
        """The state at org time ``now``."""
        if self.aborted_at is not None:
            return "Aborted"
        elapsed = now - self.created
        if elapsed < self.delay * 0.25:
            return "UploadComplete"
        if elapsed < self.delay:
            return "InProgress"
        return "Failed" if self.fail_message is not None else "JobComplete"

    def finished_at(self) -> float:
        """When the job stopped (completed, failed or aborted)."""
        return self.aborted_at if self.aborted_at is not None else self.created + self.delay

    def complete(self) -> ResultIndex:
        """Run the query over the snapshot (once): count the records, remember where they are."""
        with self.lock:
            if self.result is None:
                self.result = index_result(RowPlan(parse(self.soql, self.created), self.tables))
            return self.result

    def info(self, now: float, kind: str = "get") -> dict[str, Any]:
        """The job info body as ``create`` answers it, as one ``list`` record, or as ``get``
        answers it (with the processing figures). Creation always answers ``UploadComplete``, as
        Salesforce does, even when the job is already done on the org clock (no processing delay)."""
        state = "UploadComplete" if kind == "create" else self.state(now)
        body: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.object,
            "createdById": self.created_by,
            "createdDate": _sf_datetime(self.created),
            "systemModstamp": _sf_datetime(self.created if state == "UploadComplete" else min(now, self.finished_at())),
            "state": state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(self.api_version),
        }
        if kind != "create":
            body["jobType"] = "V2Query"
        body["lineEnding"] = self.line_ending
        body["columnDelimiter"] = self.column_delimiter
        if kind == "get":
            done = state == "JobComplete"
            body["numberRecordsProcessed"] = self.complete().total if done else 0
            body["retries"] = 0
            body["totalProcessingTime"] = int(self.delay * 1000) if done else 0
            if state == "Failed":
                body["errorMessage"] = self.fail_message
        return body

    def csv_chunks(self, offset: int, count: int, rows_per_chunk: int = 500) -> Iterator[bytes]:
        """One results page as CSV: the header row, then the page's records, in chunks."""
        plan = self.complete().plan
        buf = io.StringIO()
        writer = csv.writer(
            buf, delimiter=DELIMITERS[self.column_delimiter], lineterminator=LINE_ENDINGS[self.line_ending],
            quoting=csv.QUOTE_ALL,
        )
        writer.writerow(plan.header)
        n = 0
        for row in self.complete().rows(offset, count):
            writer.writerow(plan.csv_values(row))
            n += 1
            if n % rows_per_chunk == 0:
                yield buf.getvalue().encode("utf-8")
                buf.seek(0)
                buf.truncate()
        if buf.tell():
            yield buf.getvalue().encode("utf-8")


class BulkQueryStore:
    """The org's query jobs and its rolling 24-hour job count."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.jobs: dict[str, QueryJob] = {}
        self._created: deque[float] = deque()
        #: the next job created fails with this ``errorMessage`` (set through the admin API)
        self.fail_next: str | None = None

    def clear(self) -> None:
        """Forget every job, the count and a planned failure."""
        with self.lock:
            self.jobs.clear()
            self._created.clear()
            self.fail_next = None

    def used(self, now: float) -> int:
        """Jobs created in the 24 hours before ``now``."""
        with self.lock:
            while self._created and self._created[0] <= now - _WINDOW:
                self._created.popleft()
            return len(self._created)

    def new_id(self) -> str:
        """A fresh 18-character job id (key prefix ``750``)."""
        from .state import sf_id18  # state imports this module

        return sf_id18("750" + "".join(secrets.choice(_ALNUM) for _ in range(12)))

    def add(self, job: QueryJob) -> bool:
        """Store a new job; ``False`` when the daily limit is used up."""
        if self.used(job.created) >= DAILY_JOB_LIMIT:
            return False
        with self.lock:
            job.fail_message, self.fail_next = self.fail_next, None
            self._created.append(job.created)
            self.jobs[job.id] = job
            if len(self.jobs) > _MAX_JOBS:
                oldest = min(self.jobs.values(), key=lambda j: j.created)
                del self.jobs[oldest.id]
        return True

    def _expire(self, now: float) -> None:
        """Forget finished jobs older than :data:`_KEEP` (Salesforce deletes them after 7 days)."""
        with self.lock:
            for job in [j for j in self.jobs.values() if j.state(now) in _FINISHED and j.finished_at() < now - _KEEP]:
                del self.jobs[job.id]

    def get(self, job_id: str, now: float) -> QueryJob | None:
        """The job with this id (15 or 18 characters)."""
        self._expire(now)
        with self.lock:
            return next((j for k, j in self.jobs.items() if k[:15] == job_id[:15] and len(job_id) in (15, 18)), None)

    def delete(self, job_id: str) -> None:
        """Forget a job."""
        with self.lock:
            self.jobs.pop(job_id, None)

    def listing(self, start: int, now: float) -> tuple[list[QueryJob], int | None]:
        """One page of jobs, oldest first, and the start of the next page (``None``: last)."""
        self._expire(now)
        with self.lock:
            jobs = sorted(self.jobs.values(), key=lambda j: j.created)
        page = jobs[start : start + _LIST_PAGE]
        return page, (start + _LIST_PAGE if start + _LIST_PAGE < len(jobs) else None)


def check_query(soql: str, tables: dict[str, Table], now: float) -> tuple[str, str] | None:
    """``(errorCode, message)`` if the query cannot run, checked as Salesforce checks it at job
    creation (the refusals above, then the SOQL itself)."""
    message = refusal(soql)
    if message is not None:
        return "API_ERROR", message
    try:
        RowPlan(parse(soql, now), tables)
    except SoqlError as exc:
        return exc.error_code, exc.message
    return None
