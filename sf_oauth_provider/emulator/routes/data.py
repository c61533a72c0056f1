"""The REST API under ``/services/data`` (REST API Developer Guide): the versions list, the
resource list, ``limits``, ``query`` / ``queryAll`` with paging and ``columns=true``,
``sobjects`` (describeGlobal, describe, record retrieve). Served under the root only.

Every authenticated reply carries ``Sforce-Limit-Info: api-usage=N/M`` and every call counts
against ``settings.api_request_limit``, so the header and ``limits`` agree. Unknown resources
answer ``404 [{"message", "errorCode": "NOT_FOUND"}]``; trailing slashes are accepted, never
redirected.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..bulk_query import DAILY_JOB_LIMIT
from ..describe import column_metadata, describe_global, describe_sobject, sobject_basic
from ..ingest import settle_all
from ..methods import method_not_allowed
from ..soql import SoqlError, Table, build_tables, execute, find_table, parse, selected_columns
from ..state import AccessTokenRecord, Org
from ..versions import LATEST_VERSION, bulk_version_error, rest_version_error, versions
from . import search
from ._common import Bases, bearer, data_error, guard, org_of

__all__ = ["LATEST_VERSION", "RestCall", "begin", "retrieve", "routes", "versions"]

_MAX_CURSORS = 500
_RESOURCES = (
    "tooling", "metadata", "eclair", "folders", "prechatForms", "jobs", "query", "queryAll", "search",
    "sobjects", "limits", "recent", "analytics", "connect", "composite", "process", "quickActions",
    "parameterizedSearch", "identity",
)
#: methods per resource (first path segment after the version); others serve GET (and HEAD)
_METHODS: dict[str, tuple[str, ...]] = {"parameterizedSearch": ("GET", "POST")}


def _not_found() -> JSONResponse:
    return data_error("NOT_FOUND", "The requested resource does not exist", 404)


@dataclass(frozen=True)
class _Call:
    """One authenticated REST call: the org, the API version, the caller's token, and the API
    usage including this call."""

    org: Org
    version: str
    rec: AccessTokenRecord
    used: int

    @property
    def limit_info(self) -> str:
        """The ``Sforce-Limit-Info`` header value."""
        return f"api-usage={self.used}/{self.org.settings.api_request_limit}"

    def finish(self, response: Response) -> Response:
        """Stamp ``Sforce-Limit-Info`` on the call's answer."""
        response.headers["Sforce-Limit-Info"] = self.limit_info
        return response

    def tables(self) -> dict[str, Table]:
        """The queryable tables as the caller sees them."""
        return build_tables(self.org, self.org.users[self.rec.user_id])


#: the public name of a REST call, for the route modules that share :func:`begin`
RestCall = _Call


async def list_versions(request: Request) -> Response:
    """``GET /services/data``: no session needed, as on Salesforce."""
    return JSONResponse(versions())


def _page(version: str, locator: str, records: list[dict[str, Any]], offset: int, size: int) -> dict[str, Any]:
    chunk = records[offset : offset + size]
    done = offset + size >= len(records)
    body: dict[str, Any] = {"totalSize": len(records), "done": done, "records": chunk}
    if not done:
        body["nextRecordsUrl"] = f"/services/data/v{version}/query/{locator}-{offset + size}"
    return body


def _query(call: _Call, request: Request) -> Response:
    org = call.org
    q = request.query_params.get("q")
    if not q:
        return data_error("MALFORMED_QUERY", "A query string has to be specified", 400)
    try:
        parsed = parse(q, org.clock.now())
        tables = call.tables()
        if request.query_params.get("columns", "").lower() == "true":
            table, selected = selected_columns(parsed, tables)
            return JSONResponse(column_metadata(table, selected))
        total, records = execute(parsed, tables, call.version)
    except SoqlError as exc:
        return data_error(exc.error_code, exc.message, 400)
    if parsed.count_only:
        return JSONResponse({"totalSize": total, "done": True, "records": []})
    locator = "01g" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(15))
    size = max(1, org.settings.page_size)
    body = _page(call.version, locator, records, 0, size)
    if not body["done"]:
        with org.lock:
            org.cursors[locator] = (call.rec.user_id, records)
            while len(org.cursors) > _MAX_CURSORS:
                org.cursors.pop(next(iter(org.cursors)))
    return JSONResponse(body)


def _query_more(call: _Call, locator_and_offset: str) -> Response:
    org = call.org
    locator, _, off = locator_and_offset.rpartition("-")
    with org.lock:
        cursor = org.cursors.get(locator)
    if cursor is None or not off.isdigit() or cursor[0] != call.rec.user_id:
        return data_error("INVALID_QUERY_LOCATOR", "invalid query locator", 400)
    return JSONResponse(_page(call.version, locator, cursor[1], int(off), max(1, org.settings.page_size)))


def _limits(call: _Call) -> Response:
    s = call.org.settings
    used = call.org.api_requests_used
    bulk_jobs = call.org.bulk_query.used(call.org.clock.now())

    def limit(mx: int, remaining: int | None = None) -> dict[str, int]:
        return {"Max": mx, "Remaining": mx if remaining is None else remaining}

    return JSONResponse(
        {
            "ConcurrentAsyncGetReportInstances": limit(200),
            "ConcurrentSyncReportRuns": limit(20),
            "DailyApiRequests": limit(s.api_request_limit, max(0, s.api_request_limit - used)),
            "DailyAsyncApexExecutions": limit(250000),
            "DailyBulkApiBatches": limit(15000, max(0, 15000 - call.org.bulk_batches_used)),
            "DailyBulkV2QueryJobs": limit(DAILY_JOB_LIMIT, max(0, DAILY_JOB_LIMIT - bulk_jobs)),
            "DailyStreamingApiEvents": limit(10000),
            "DataStorageMB": limit(1024, 1019),
            "FileStorageMB": limit(1024, 1024),
            "HourlyODataCallout": limit(10000),
            "SingleEmail": limit(5000),
        }
    )


def retrieve(call: _Call, table: Table, record_id: str, request: Request) -> Response:
    """One record by id (``?fields=`` picks fields), as ``GET …/sobjects/{type}/{id}`` answers."""
    if not table.url_ids or len(record_id) not in (15, 18):
        return _not_found()
    row = next((r for r in table.rows if r.get("Id") and r["Id"][:15] == record_id[:15]), None)
    if row is None:
        return _not_found()
    wanted = request.query_params.get("fields")
    names = list(table.fields)
    if wanted:
        lowered = {n.lower(): n for n in names}
        picked = []
        for w in (x.strip() for x in wanted.split(",") if x.strip()):
            if w.lower() not in lowered:
                return data_error("INVALID_FIELD", f"No such column '{w}' on sobject of type {table.name}", 400)
            picked.append(lowered[w.lower()])
        names = picked
    one = Table(table.name, table.fields, table.relationships, [row], table.url_ids)
    soql = f"SELECT {', '.join(names)} FROM {table.name}"
    _, records = execute(parse(soql, call.org.clock.now()), {table.name: one}, call.version)
    return JSONResponse(records[0])


def _sobjects(call: _Call, parts: list[str], request: Request) -> Response:
    tables = call.tables()
    if not parts:
        return JSONResponse(describe_global(tables, call.version))
    table = find_table(tables, parts[0])
    if table is None or len(parts) > 2:
        return _not_found()
    if len(parts) == 1:
        return JSONResponse({"objectDescribe": sobject_basic(table, call.version), "recentItems": []})
    if parts[1] == "describe":
        return JSONResponse(describe_sobject(table, call.version))
    return retrieve(call, table, parts[1], request)


def _resources(call: _Call, request: Request) -> dict[str, str]:
    out = {name: f"/services/data/v{call.version}/{name}" for name in _RESOURCES}
    # Salesforce lists the caller's identity URL (absolute, on the login host); jsforce's
    # identity() reads it from here
    out["identity"] = Bases(request).id_url(call.org, call.org.users[call.rec.user_id])
    return out


async def _dispatch(call: _Call, parts: list[str], request: Request) -> Response:
    if not parts:
        return JSONResponse(_resources(call, request))
    head, rest = parts[0], parts[1:]
    if head in ("query", "queryAll"):
        if not rest:
            return _query(call, request)
        if len(rest) == 1:
            return _query_more(call, rest[0])
        return _not_found()
    if head == "limits" and not rest:
        return _limits(call)
    if head == "sobjects":
        return _sobjects(call, rest, request)
    if head in ("search", "parameterizedSearch") and not rest:
        return await search.answer(head, call.tables(), call.version, request, call.org.clock.now())
    return _not_found()


async def begin(request: Request, version: str, *, allowed: tuple[str, ...] | None = None,
                bulk: bool = False) -> _Call | Response:
    """The preamble of every REST call: faults, the version (``vNN.N``; a retired one answers 410,
    or 400 ``InvalidVersion`` on Bulk paths), the method (when ``allowed`` is given), the session,
    the API limit. Returns the call, or the response that ends it (use :meth:`_Call.finish` on the
    call's answer)."""
    org = org_of(request)
    faulted = await guard(org, "query", data_api=True)
    if faulted is not None:
        return faulted
    refused = (bulk_version_error if bulk else rest_version_error)(version)
    if refused is not None:
        return refused
    if allowed is not None and request.method not in allowed and not (request.method == "HEAD" and "GET" in allowed):
        return method_not_allowed(request.method, allowed)
    rec = org.use_access_token(bearer(request))
    if rec is None:
        return data_error("INVALID_SESSION_ID", "Session expired or invalid", 401)
    used = org.count_api_request()
    if used is None:
        return data_error("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.", 403)
    settle_all(org)  # rows written by an ingest job that has finished meanwhile are visible
    return _Call(org, version[1:], rec, used)


async def data_api(request: Request) -> Response:
    """``/services/data/vNN.N/...``: the preamble (:func:`begin`: faults, the version, the method,
    the session, the API limit), then the resource."""
    parts = [p for p in request.path_params["rest"].split("/") if p]
    if not parts:  # "/services/data/" with a method the versions list does not serve
        faulted = await guard(org_of(request), "query", data_api=True)
        return faulted or method_not_allowed(request.method, ("GET",))
    allowed = _METHODS.get(parts[1], ("GET",)) if len(parts) == 2 else ("GET",)
    call = await begin(request, parts[0], allowed=allowed, bulk=parts[1:2] == ["jobs"])
    if isinstance(call, Response):
        return call
    return call.finish(await _dispatch(call, parts[1:], request))


def routes() -> list[Route]:
    """The REST API routes (root only)."""
    methods = ["GET", "HEAD", "POST", "PATCH", "PUT", "DELETE"]
    return [
        Route("/services/data", list_versions, methods=["GET", "HEAD"]),
        Route("/services/data/", list_versions, methods=["GET", "HEAD"]),
        Route("/services/data/{rest:path}", data_api, methods=methods),
    ]
