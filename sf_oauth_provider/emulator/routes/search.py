"""SOSL over REST: ``GET …/search?q=FIND {…}`` and ``GET|POST …/parameterizedSearch`` (REST API
Developer Guide, "Search", "Parameterized Search"). Both answer ``{"searchRecords": [...]}``;
errors are the REST error list (``MALFORMED_SEARCH``, ``INVALID_SEARCH``, ``INVALID_TYPE``,
``INVALID_FIELD``). Called by :mod:`.data` after the session and API-limit checks."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..soql import SoqlError, Table
from ..sosl import GROUPS, OVERALL_LIMIT, ObjectSpec, SearchPlan, SoslError, parse_sosl, run_search
from ._common import data_error

__all__ = ["answer"]


def _int(value: Any, name: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise SoslError("INVALID_SEARCH", f"{name} must be a number: {value!r}") from None
    if n < 0:
        raise SoslError("INVALID_SEARCH", f"{name} must not be negative: {n}")
    return n


def _fields(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value or "")


def _parameterized_plan(params: dict[str, Any]) -> SearchPlan:
    """A plan from parameterizedSearch's query parameters or JSON body (same names: ``q``,
    ``fields``, ``sobject`` / ``sobjects``, ``in``, ``overallLimit``, ``defaultLimit``)."""
    q = params.get("q")
    if not isinstance(q, str) or not q.strip():
        raise SoslError("MALFORMED_SEARCH", "Missing required parameter: q")
    group = str(params.get("in") or "ALL").upper()
    if group not in GROUPS:
        raise SoslError("INVALID_SEARCH", f"invalid value for parameter 'in': {params.get('in')}")
    default_fields = _fields(params.get("fields")) or "Id"
    default_limit = params.get("defaultLimit")
    objects = []
    for spec in params.get("sobjects") or []:
        name = spec.get("name") if isinstance(spec, dict) else None
        if not isinstance(name, str):
            raise SoslError("INVALID_SEARCH", "each entry of 'sobjects' needs a 'name'")
        limit = spec.get("limit", default_limit)
        soql = f"SELECT {_fields(spec.get('fields')) or default_fields} FROM {name}"
        objects.append(ObjectSpec(name, soql + (f" LIMIT {_int(limit, 'limit')}" if limit is not None else "")))
    limit = params.get("overallLimit")
    return SearchPlan(q, group, objects, OVERALL_LIMIT if limit is None else _int(limit, "overallLimit"))


def _query_params(request: Request) -> dict[str, Any]:
    qp = request.query_params
    out: dict[str, Any] = {k: qp[k] for k in ("q", "fields", "in", "overallLimit", "defaultLimit") if k in qp}
    out["sobjects"] = [
        {"name": n, "fields": qp.get(f"{n}.fields"), "limit": qp.get(f"{n}.limit")}
        for n in qp.getlist("sobject")
    ]
    for spec in out["sobjects"]:
        if spec["limit"] is None:
            del spec["limit"]
    return out


async def _body_params(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise SoslError("JSON_PARSER_ERROR", "The request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise SoslError("JSON_PARSER_ERROR", "The request body must be a JSON object")
    return body


async def answer(resource: str, tables: dict[str, Table], version: str, request: Request, now: float) -> Response:
    """The answer of ``search`` or ``parameterizedSearch`` for one authenticated call."""
    try:
        if resource == "search":
            q = request.query_params.get("q")
            if not q:
                raise SoslError("MALFORMED_SEARCH", "No search term found. The search term must be enclosed in braces.")
            plan = parse_sosl(q)
        elif request.method == "POST":
            plan = _parameterized_plan(await _body_params(request))
        else:
            plan = _parameterized_plan(_query_params(request))
        records = run_search(plan, tables, version, now)
    except SoqlError as exc:
        return data_error(exc.error_code, exc.message, 400)
    return JSONResponse({"searchRecords": records})
