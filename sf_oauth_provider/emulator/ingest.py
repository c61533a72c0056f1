"""Bulk API 2.0 ingest jobs on the emulated org (Bulk API 2.0 Developer Guide, "Ingest"):
the job model, its states over the org clock, and the record work when a job runs.

A job is ``Open`` until ``UploadComplete``; then, on the org clock, ``InProgress`` for the second
half of ``settings.bulk_ingest_delay`` and ``JobComplete`` (or ``Failed``) at its end. Jobs are
settled lazily — whenever a job or the REST API is looked at — so the emulator needs no worker
thread and a test moves a job along by advancing the clock. Each started chunk of 10,000 rows
counts as one batch against ``DailyBulkApiBatches``, as Salesforce counts Bulk API 2.0 ingest.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import secrets
import string
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import records
from .records import DmlError, ObjectSpec
from .state import sf_id18

if TYPE_CHECKING:  # pragma: no cover
    from .state import Org

__all__ = [
    "DELIMITERS",
    "LINE_ENDINGS",
    "OPERATIONS",
    "IngestJob",
    "JobError",
    "new_job",
    "results_csv",
    "settle",
    "settle_all",
    "unprocessed_rows",
]

OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")
DELIMITERS = {"COMMA": ",", "TAB": "\t", "PIPE": "|", "SEMICOLON": ";", "CARET": "^", "BACKQUOTE": "`"}
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
CHUNK_ROWS = 10_000
MAX_JOBS = 1000
FINISHED = ("JobComplete", "Failed", "Aborted")
#: Salesforce deletes finished jobs after seven days
KEEP_FINISHED_SECONDS = 7 * 86400
_ALNUM = string.ascii_letters + string.digits


class JobError(Exception):
    """A refused job request: Bulk API 2.0 ``errorCode``, message and HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def _iso(epoch: float) -> str:
    t = dt.datetime.fromtimestamp(epoch, dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}+0000"


@dataclass
class IngestJob:
    """One ingest job and, once it ran, its per-row results (cells as uploaded)."""

    id: str
    object: str
    operation: str
    external_id_field: str | None
    column_delimiter: str
    line_ending: str
    api_version: str
    created_by: str
    created: float
    modstamp: float
    state: str = "Open"
    uploads: list[str] = field(default_factory=list)
    closed_at: float | None = None
    header: list[str] = field(default_factory=list)
    successes: list[tuple[str, bool, list[str]]] = field(default_factory=list)
    failures: list[tuple[str, str, list[str]]] = field(default_factory=list)
    unprocessed: list[list[str]] = field(default_factory=list)
    error_message: str | None = None

    def info(self, full: bool = False) -> dict[str, Any]:
        """The JobInfo body (``full``: as ``GET …/jobs/ingest/{id}`` answers, with counts)."""
        out: dict[str, Any] = {
            "id": self.id, "operation": self.operation, "object": self.object, "createdById": self.created_by,
            "createdDate": _iso(self.created), "systemModstamp": _iso(self.modstamp), "state": self.state,
        }
        if self.external_id_field:
            out["externalIdFieldName"] = self.external_id_field
        out.update({
            "concurrencyMode": "Parallel", "contentType": "CSV", "apiVersion": float(self.api_version),
            "jobType": "V2Ingest", "lineEnding": self.line_ending, "columnDelimiter": self.column_delimiter,
        })
        if self.state == "Open":
            out["contentUrl"] = f"services/data/v{self.api_version}/jobs/ingest/{self.id}/batches"
        if full:
            out.update({
                "numberRecordsProcessed": len(self.successes) + len(self.failures),
                "numberRecordsFailed": len(self.failures), "retries": 0,
                "totalProcessingTime": 0 if self.state not in FINISHED else 120,
                "apiActiveProcessingTime": 0 if self.state not in FINISHED else 80, "apexProcessingTime": 0,
            })
            if self.error_message:
                out["errorMessage"] = self.error_message
        return out


def _job_id() -> str:
    return sf_id18("750" + "5h00000" + "".join(secrets.choice(_ALNUM) for _ in range(5)))


def new_job(org: Org, body: dict[str, Any], api_version: str, user_id: str) -> IngestJob:
    """Validate a create-job request body and register the job (``Open``)."""
    operation = body.get("operation")
    if operation not in OPERATIONS:
        raise JobError("INVALIDJOB", f"Invalid operation: {operation}. Valid operations are {', '.join(OPERATIONS)}")
    name = str(body.get("object") or "")
    spec = records.spec_of(name)
    if spec is None:
        raise JobError("INVALIDJOB", f"Entity '{name}' is not supported by the Bulk API.")
    if body.get("contentType", "CSV") != "CSV":
        raise JobError("INVALIDJOB", f"Unsupported content type: {body.get('contentType')}. Only CSV is supported")
    delimiter = body.get("columnDelimiter", "COMMA")
    ending = body.get("lineEnding", "LF")
    if delimiter not in DELIMITERS:
        raise JobError("INVALIDJOB", f"Invalid column delimiter: {delimiter}")
    if ending not in LINE_ENDINGS:
        raise JobError("INVALIDJOB", f"Invalid line ending: {ending}")
    ext = _external_id(spec, operation, body.get("externalIdFieldName"))
    now = org.clock.now()
    job = IngestJob(_job_id(), spec.name, operation, ext, delimiter, ending, api_version, user_id, now, now)
    with org.lock:
        org.ingest_jobs[job.id] = job
        while len(org.ingest_jobs) > MAX_JOBS:
            org.ingest_jobs.pop(next(iter(org.ingest_jobs)))
    return job


def _external_id(spec: ObjectSpec, operation: str, given: Any) -> str | None:
    if operation != "upsert":
        return None
    if not given:
        raise JobError(
            "INVALIDJOB",
            f"External ID was blank for {spec.name}. An External ID must be specified for upsert.",
        )
    for name in ("Id", *spec.external_ids):
        if name.lower() == str(given).lower():
            return name
    raise JobError(
        "INVALIDJOB",
        f"Field name provided, {given} does not match an External ID, Salesforce Id, or indexed field for "
        f"{spec.name}",
    )


def settle(org: Org, job: IngestJob) -> None:
    """Move a closed job along the org clock; run it when its time has come."""
    if job.state not in ("UploadComplete", "InProgress") or job.closed_at is None:
        return
    elapsed = org.clock.now() - job.closed_at
    delay = max(0.0, org.settings.bulk_ingest_delay)
    if elapsed >= delay:
        _run(org, job)
    elif elapsed >= delay / 2 and job.state == "UploadComplete":
        job.state = "InProgress"
        job.modstamp = org.clock.now()


def settle_all(org: Org) -> None:
    """Settle every job (so rows a finished job wrote are visible to the next REST query) and
    forget jobs finished more than seven days ago."""
    with org.lock:
        now = org.clock.now()
        for job in list(org.ingest_jobs.values()):
            settle(org, job)
            if job.state in FINISHED and now - job.modstamp > KEEP_FINISHED_SECONDS:
                del org.ingest_jobs[job.id]


def _rows(job: IngestJob) -> list[list[str]]:
    """Every uploaded data row; the first upload's header becomes ``job.header``."""
    out: list[list[str]] = []
    for text in job.uploads:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=DELIMITERS[job.column_delimiter])
        header = next(reader, [])
        if not job.header:
            job.header = header
        elif header != job.header:
            raise JobError("InvalidBatch", "All uploads of a job must have the same header row")
        out += [row for row in reader if row]
    return out


def _check_header(job: IngestJob, spec: ObjectSpec) -> None:
    known = {n.lower() for n in (*spec.read_only, *spec.writable)}
    for name in job.header:
        rel_name, dot, _ = name.partition(".")
        if dot and records.relationship(spec, rel_name) is not None:
            continue
        if name.lower() not in known:
            raise JobError("InvalidBatch", f"Field name not found : {name}")
    if job.operation in ("delete", "hardDelete") and [h.lower() for h in job.header] != ["id"]:
        raise JobError("InvalidBatch", f"The '{job.operation}' batch must contain only ids")
    if job.external_id_field and job.external_id_field.lower() not in {h.lower() for h in job.header}:
        raise JobError("InvalidBatch", f"Field name not found : {job.external_id_field}")


def _run(org: Org, job: IngestJob) -> None:
    spec = records.spec_of(job.object)
    assert spec is not None
    job.modstamp = org.clock.now()
    try:
        rows = _rows(job)
        if not rows and not job.header:
            raise JobError("InvalidBatch", "No data was uploaded for this job")
        _check_header(job, spec)
        for i, row in enumerate(rows, start=2):
            if len(row) != len(job.header):
                raise JobError("ClientInputError", f"LineNumber {i}: incorrect number of columns")
    except JobError as exc:
        job.state, job.error_message = "Failed", f"{exc.code} : {exc.message}"
        job.unprocessed = unprocessed_rows(job)
        return
    for row in rows:
        _one_row(org, spec, job, row)
    org.bulk_batches_used += max(1, math.ceil(len(rows) / CHUNK_ROWS))
    job.state = "JobComplete"


def unprocessed_rows(job: IngestJob) -> list[list[str]]:
    """The uploaded rows (none when the uploads cannot be read)."""
    try:
        return _rows(job)
    except JobError:
        return []


def _one_row(org: Org, spec: ObjectSpec, job: IngestJob, row: list[str]) -> None:
    values = dict(zip(job.header, row, strict=True))
    given_id = next((v for k, v in values.items() if k.lower() == "id"), "")
    try:
        record_id, created = _apply(org, spec, job, values, given_id)
    except DmlError as exc:
        job.failures.append((given_id, exc.bulk_text(), row))
        return
    job.successes.append((record_id, created, row))


def _apply(org: Org, spec: ObjectSpec, job: IngestJob, values: dict[str, str], given_id: str) -> tuple[str, bool]:
    without_id = {k: v for k, v in values.items() if k.lower() != "id"}
    if job.operation == "insert":
        return records.insert(org, spec, values, from_csv=True), True
    if job.operation == "upsert":
        ext = job.external_id_field or "Id"
        key = next(v for k, v in values.items() if k.lower() == ext.lower())
        if not key:
            raise DmlError("MISSING_ARGUMENT", f"{ext} not specified", [ext])
        try:
            return records.upsert(org, spec, ext, key, without_id, from_csv=True)
        except DmlError as exc:
            if exc.code != "MULTIPLE_CHOICES":
                raise
            ids = [r["Id"] for r in records.find_by_external_id(org, spec, ext, key)]
            raise DmlError(
                "DUPLICATE_EXTERNAL_ID",
                f"{ext}: more than one record found for external id field: [{', '.join(ids)}]", [ext],
            ) from None
    if not given_id:
        raise DmlError("MISSING_ARGUMENT", f"Id not specified in an {job.operation} call", [])
    if job.operation == "update":
        return records.update(org, spec, given_id, without_id, from_csv=True), False
    record_id = records.delete(org, spec, given_id)
    if job.operation == "hardDelete":
        org.deleted_records.pop(record_id[:15], None)
    return record_id, False


def results_csv(job: IngestJob, kind: str) -> str:
    """``successfulResults`` / ``failedResults`` / ``unprocessedrecords`` as CSV in the job's
    delimiter and line ending (every value quoted, as Salesforce writes them)."""
    buf = io.StringIO()
    writer = csv.writer(
        buf, delimiter=DELIMITERS[job.column_delimiter], lineterminator=LINE_ENDINGS[job.line_ending],
        quoting=csv.QUOTE_ALL,
    )
    if kind == "successfulResults":
        writer.writerow(["sf__Id", "sf__Created", *job.header])
        for record_id, created, row in job.successes:
            writer.writerow([record_id, "true" if created else "false", *row])
    elif kind == "failedResults":
        writer.writerow(["sf__Id", "sf__Error", *job.header])
        for record_id, error, row in job.failures:
            writer.writerow([record_id, error, *row])
    else:
        writer.writerow(job.header)
        for row in job.unprocessed:
            writer.writerow(row)
    return buf.getvalue()
