"""Bulk API 2.0 query jobs under ``/services/data/vNN.N/jobs/query`` (Bulk API 2.0 and Bulk API
Developer Guide, "Query Jobs"): create, list, job info, abort (``PATCH``), delete, and the CSV
results pages with ``Sforce-Locator`` / ``Sforce-NumberOfRecords``. The jobs themselves live in
:mod:`..bulk_query`.

Like the rest of ``/services/data``: faults and latency first, then the version, the session
(``401 INVALID_SESSION_ID``) and the API request limit; every answer carries
``Sforce-Limit-Info``.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass
from typing import Any, Iterator

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..bulk_query import DELIMITERS, LINE_ENDINGS, QueryJob, check_query, decode_locator, encode_locator
from ..soql import build_tables, find_table, parse
from ..state import AccessTokenRecord, Org
from ..versions import bulk_version_error
from ._common import bearer, data_error, guard, org_of

__all__ = ["routes"]

_VERSION_RE = re.compile(r"^v(\d+\.\d)$")
#: query jobs exist from API version 47.0
_FIRST_VERSION = 47.0
_STATE_NAMES = {"UploadComplete": "UPLOAD_COMPLETE", "InProgress": "IN_PROGRESS", "Aborted": "ABORTED",
                "Failed": "FAILED", "JobComplete": "JOB_COMPLETE"}


def _not_found() -> JSONResponse:
    return data_error("NOT_FOUND", "The requested resource does not exist", 404)


@dataclass(frozen=True)
class _Call:
    """One authenticated Bulk call: the org, the API version, the caller's token, the usage."""

    org: Org
    version: str
    rec: AccessTokenRecord
    used: int

    def now(self) -> float:
        """The org clock."""
        return self.org.clock.now()


async def _authenticate(request: Request) -> _Call | Response:
    org = org_of(request)
    faulted = await guard(org, "bulk", data_api=True)
    if faulted is not None:
        return faulted
    refused = bulk_version_error(request.path_params["version"])  # retired or never existed
    if refused is not None:
        return refused
    m = _VERSION_RE.match(request.path_params["version"])
    if m is None or float(m.group(1)) < _FIRST_VERSION:
        return _not_found()
    rec = org.use_access_token(bearer(request))
    if rec is None:
        return data_error("INVALID_SESSION_ID", "Session expired or invalid", 401)
    used = org.count_api_request()
    if used is None:
        return data_error("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.", 403)
    return _Call(org, m.group(1), rec, used)


async def _body(request: Request) -> dict[str, Any] | None:
    try:
        data = json.loads(await request.body() or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _job_spec_error(d: dict[str, Any]) -> str | None:
    if d.get("operation") not in ("query", "queryAll"):
        return f"Invalid operation for a query job: {d.get('operation')!r} (query or queryAll)"
    if not isinstance(d.get("query"), str) or not d["query"].strip():
        return "A query job needs a query"
    if d.get("contentType", "CSV") != "CSV":
        return "Query jobs only support the CSV content type"
    if d.get("columnDelimiter", "COMMA") not in DELIMITERS:
        return f"Invalid columnDelimiter: {d.get('columnDelimiter')!r}"
    if d.get("lineEnding", "LF") not in LINE_ENDINGS:
        return f"Invalid lineEnding: {d.get('lineEnding')!r}"
    return None


async def _create(call: _Call, request: Request) -> Response:
    d = await _body(request)
    if d is None:
        return data_error("JSON_PARSER_ERROR", "The request body is not a JSON object", 400)
    problem = _job_spec_error(d)
    if problem is not None:
        return data_error("INVALIDJOB", problem, 400)
    org, now = call.org, call.now()
    tables = build_tables(org, org.users[call.rec.user_id])
    refused = check_query(d["query"], tables, now)
    if refused is not None:
        return data_error(refused[0], refused[1], 400)
    table = find_table(tables, parse(d["query"], now).obj)
    assert table is not None  # check_query resolved it
    job = QueryJob(
        id=org.bulk_query.new_id(), operation=d["operation"], soql=d["query"], object=table.name,
        created_by=call.rec.user_id, created=now, api_version=call.version,
        column_delimiter=d.get("columnDelimiter", "COMMA"), line_ending=d.get("lineEnding", "LF"),
        delay=max(0.0, org.settings.bulk_query_delay), tables=tables,
    )
    if not org.bulk_query.add(job):
        return data_error("LIMIT_EXCEEDED", "Max limit of 10000 Bulk API 2.0 query jobs in 24 hours reached", 400)
    return JSONResponse(job.info(now, "create"))


def _list(call: _Call, request: Request) -> Response:
    p = request.query_params
    start = decode_locator(p["queryLocator"]) if p.get("queryLocator") else 0
    if start is None:
        return data_error("INVALID_QUERY_LOCATOR", "invalid query locator", 400)
    jobs, next_start = call.org.bulk_query.listing(start)
    if (
        p.get("isPkChunkingEnabled", "").lower() == "true"
        or p.get("jobType", "V2Query") != "V2Query"
        or p.get("concurrencyMode", "Parallel") != "Parallel"
    ):
        jobs, next_start = [], None  # query jobs are never PK-chunked, always V2Query and Parallel
    now = call.now()
    next_url = None
    if next_start is not None:
        next_url = f"/services/data/v{call.version}/jobs/query?queryLocator={encode_locator(next_start)}"
    return JSONResponse({"done": next_url is None, "records": [j.info(now, "list") for j in jobs],
                         "nextRecordsUrl": next_url})


async def _info(call: _Call, job: QueryJob) -> Response:
    now = call.now()
    if job.state(now) == "JobComplete":
        await run_in_threadpool(job.complete)  # a large object takes a while to count
    return JSONResponse(job.info(now))


async def _abort(call: _Call, job: QueryJob, request: Request) -> Response:
    d = await _body(request)
    if d is None:
        return data_error("JSON_PARSER_ERROR", "The request body is not a JSON object", 400)
    if d.get("state") != "Aborted":
        return data_error("INVALIDJOBSTATE", f"Invalid state for a query job: {d.get('state')!r} (only Aborted)", 400)
    now = call.now()
    state = job.state(now)
    if state not in ("UploadComplete", "InProgress"):
        word = "Aborted" if state == "Aborted" else "Completed"
        return data_error("INVALIDJOBSTATE", f"Aborting already {word} Job not allowed", 400)
    job.aborted_at = now
    return JSONResponse(job.info(now))


def _delete(call: _Call, job: QueryJob) -> Response:
    if job.state(call.now()) == "InProgress":
        return data_error("INVALIDJOBSTATE", "Deleting a job in progress is not allowed; abort it first", 400)
    call.org.bulk_query.delete(job.id)
    return Response(status_code=204)


def _gzip(chunks: Iterator[bytes]) -> Iterator[bytes]:
    z = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: a gzip member
    for chunk in chunks:
        out = z.compress(chunk)
        if out:
            yield out
    yield z.flush()


def _wants_gzip(request: Request) -> bool:
    for part in request.headers.get("accept-encoding", "").split(","):
        name, _, params = part.strip().partition(";")
        if name.strip().lower() == "gzip" and params.replace(" ", "").lower() not in ("q=0", "q=0.0"):
            return True
    return False


async def _results(call: _Call, job: QueryJob, request: Request) -> Response:
    if call.version != job.api_version:
        return data_error(
            "API_ERROR",
            f"Results of this job can only be read with the API version that created it ({job.api_version})", 409,
        )
    state = job.state(call.now())
    if state != "JobComplete":
        return data_error(
            "JOB_NOT_COMPLETE",
            "can only download query results of successfully completed bulk job with status: JOB_COMPLETE. "
            f"Current status: {_STATE_NAMES[state]}", 412,
        )
    result = await run_in_threadpool(job.complete)
    p = request.query_params
    offset = decode_locator(p["locator"]) if p.get("locator") else 0
    if offset is None or offset > result.total:
        return data_error("INVALID_QUERY_LOCATOR", "invalid query locator", 400)
    raw_max = p.get("maxRecords", "")
    if raw_max and (not raw_max.isdigit() or int(raw_max) < 1):
        return data_error("INVALIDJOB", f"maxRecords must be a positive integer, not {raw_max!r}", 400)
    count = min(int(raw_max) if raw_max else result.total, result.total - offset)
    nxt = offset + count
    headers = {
        "Sforce-Locator": encode_locator(nxt) if nxt < result.total else "null",
        "Sforce-NumberOfRecords": str(count),
    }
    body = job.csv_chunks(offset, count)
    if _wants_gzip(request):
        body, headers["Content-Encoding"] = _gzip(body), "gzip"
    return StreamingResponse(body, media_type="text/csv", headers=headers)


async def _job_route(call: _Call, job: QueryJob, tail: str, request: Request) -> Response:
    if tail == "":
        if request.method in ("GET", "HEAD"):
            return await _info(call, job)
        if request.method == "PATCH":
            return await _abort(call, job, request)
        if request.method == "DELETE":
            return _delete(call, job)
        return data_error("METHOD_NOT_ALLOWED", f"HTTP Method '{request.method}' not allowed. "
                          "Allowed are GET,HEAD,PATCH,DELETE", 405)
    if tail == "results":
        if request.method not in ("GET", "HEAD"):
            return data_error("METHOD_NOT_ALLOWED", f"HTTP Method '{request.method}' not allowed. "
                              "Allowed are GET,HEAD", 405)
        return await _results(call, job, request)
    return _not_found()


async def _dispatch(call: _Call, request: Request) -> Response:
    parts = [x for x in request.path_params["rest"].split("/") if x]
    if not parts:
        if request.method == "POST":
            return await _create(call, request)
        if request.method in ("GET", "HEAD"):
            return _list(call, request)
        return data_error("METHOD_NOT_ALLOWED", f"HTTP Method '{request.method}' not allowed. "
                          "Allowed are GET,HEAD,POST", 405)
    if len(parts) > 2:
        return _not_found()
    job = call.org.bulk_query.get(parts[0])
    if job is None:
        return _not_found()
    return await _job_route(call, job, parts[1] if len(parts) == 2 else "", request)


async def query_jobs(request: Request) -> Response:
    """``/services/data/vNN.N/jobs/query[/{id}[/results]]``."""
    if request.path_params["rest"] and not request.path_params["rest"].startswith("/"):
        return _not_found()  # /jobs/queryX
    call = await _authenticate(request)
    if isinstance(call, Response):
        return call
    response = await _dispatch(call, request)
    response.headers["Sforce-Limit-Info"] = f"api-usage={call.used}/{call.org.settings.api_request_limit}"
    return response


def routes() -> list[Route]:
    """The Bulk API 2.0 query routes (root only; ahead of the REST API's catch-all)."""
    methods = ["GET", "HEAD", "POST", "PATCH", "PUT", "DELETE"]
    return [Route("/services/data/{version}/jobs/query{rest:path}", query_jobs, methods=methods)]
