"""Record DML under ``/services/data/vNN.N/sobjects`` (REST API Developer Guide, "Working with
Records"): create (``POST …/sobjects/{type}``), update and delete (``PATCH`` / ``DELETE
…/sobjects/{type}/{id}``), and upsert / delete by external id (``PATCH`` / ``DELETE
…/sobjects/{type}/{field}/{value}``). ``GET`` on these paths falls through to ``data.py``
(describe, retrieve). The record work itself is :mod:`..records`.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import records
from ..records import DmlError, ObjectSpec
from ..soql import find_table
from .data import RestCall, begin, retrieve

__all__ = ["routes"]

_MAX_BODY = 1024 * 1024
#: API version from which an upsert that updates answers ``200 {…, "created": false}`` (before: 204)
_UPSERT_BODY_VERSION = 46.0


def _error(exc: DmlError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > _MAX_BODY:
        raise DmlError("JSON_PARSER_ERROR", "The request body is too large", [], 413)
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise DmlError(
            "JSON_PARSER_ERROR", "Unexpected character: expected a valid value (JSON String, Number, Array, "
            "Object or token 'null', 'true' or 'false') at [line:1, column:1]",
        ) from None
    if not isinstance(body, dict):
        kind = "START_ARRAY" if isinstance(body, list) else "VALUE"
        raise DmlError(
            "JSON_PARSER_ERROR",
            f"Cannot deserialize instance of sObject from {kind} value or request may be missing a required "
            "field at [line:1, column:1]",
        )
    return body


def _spec(call: RestCall, name: str, verb: str) -> ObjectSpec:
    """The DML spec of ``name``: 404 for an object the org does not have, ``INVALID_TYPE_FOR_OPERATION``
    for one DML may not touch (``User``, ``Organization``, …)."""
    table = find_table(call.tables(), name)
    if table is None:
        raise DmlError("NOT_FOUND", "The requested resource does not exist", [], 404)
    spec = records.spec_of(table.name)
    if spec is None:
        raise DmlError("INVALID_TYPE_FOR_OPERATION", f"entity type cannot be {verb}: {table.name}")
    return spec


async def _run(request: Request, work: Callable[[RestCall], Any]) -> Response:
    call = await begin(request, request.path_params["version"])
    if isinstance(call, Response):
        return call
    try:
        response = await work(call)
    except DmlError as exc:
        response = _error(exc)
    return call.finish(response)


async def create(request: Request) -> Response:
    """``POST …/sobjects/{type}``: 201 ``{"id", "success": true, "errors": []}``."""

    async def work(call: RestCall) -> Response:
        spec = _spec(call, request.path_params["sobject"], "inserted")
        record_id = records.insert(call.org, spec, await _json_body(request))
        return JSONResponse({"id": record_id, "success": True, "errors": []}, status_code=201)

    return await _run(request, work)


async def by_id(request: Request) -> Response:
    """``PATCH`` (update) / ``DELETE`` ``…/sobjects/{type}/{id}``: 204 with no body."""

    async def work(call: RestCall) -> Response:
        if request.method == "PATCH":
            spec = _spec(call, request.path_params["sobject"], "updated")
            records.update(call.org, spec, request.path_params["record_id"], await _json_body(request))
        else:
            spec = _spec(call, request.path_params["sobject"], "deleted")
            records.delete(call.org, spec, request.path_params["record_id"])
        return Response(status_code=204)

    return await _run(request, work)


async def by_external_id(request: Request) -> Response:
    """``PATCH`` (upsert) / ``DELETE`` ``…/sobjects/{type}/{field}/{value}``."""

    async def work(call: RestCall) -> Response:
        field_name, value = request.path_params["field"], request.path_params["value"]
        if request.method == "GET":
            return _get_by_external_id(call, request, field_name, value)
        if request.method == "DELETE":
            spec = _spec(call, request.path_params["sobject"], "deleted")
            matches = records.find_by_external_id(call.org, spec, field_name, value)
            if not matches:
                raise DmlError("NOT_FOUND", "The requested resource does not exist", [], 404)
            if len(matches) > 1:
                return _multiple(call, spec, matches)
            records.delete(call.org, spec, matches[0]["Id"])
            return Response(status_code=204)
        spec = _spec(call, request.path_params["sobject"], "upserted")
        body = await _json_body(request)
        try:
            record_id, created = records.upsert(call.org, spec, field_name, value, body)
        except DmlError as exc:
            if exc.status != 300:
                raise
            return _multiple(call, spec, records.find_by_external_id(call.org, spec, field_name, value))
        return _upsert_answer(call, record_id, created)

    return await _run(request, work)


def _get_by_external_id(call: RestCall, request: Request, field_name: str, value: str) -> Response:
    """``GET …/sobjects/{type}/{field}/{value}``: the record, as retrieve by id answers it."""
    table = find_table(call.tables(), request.path_params["sobject"])
    spec = records.spec_of(table.name) if table is not None else None
    if table is None or spec is None:
        raise DmlError("NOT_FOUND", "The requested resource does not exist", [], 404)
    matches = records.find_by_external_id(call.org, spec, field_name, value)
    if len(matches) > 1:
        return _multiple(call, spec, matches)
    if not matches:
        raise DmlError("NOT_FOUND", "The requested resource does not exist", [], 404)
    return retrieve(call, table, matches[0]["Id"], request)


def _multiple(call: RestCall, spec: ObjectSpec, matches: list[dict[str, Any]]) -> Response:
    """300 Multiple Choices: the URLs of the matching records."""
    urls = [f"/services/data/v{call.version}/sobjects/{spec.name}/{r['Id']}" for r in matches]
    return JSONResponse(urls, status_code=300)


def _upsert_answer(call: RestCall, record_id: str, created: bool) -> Response:
    new_shape = float(call.version) >= _UPSERT_BODY_VERSION
    body: dict[str, Any] = {"id": record_id, "success": True, "errors": []}
    if new_shape:
        body["created"] = created
    if created:
        return JSONResponse(body, status_code=201)
    return JSONResponse(body) if new_shape else Response(status_code=204)


def routes() -> list[Route]:
    """The DML routes; ``GET`` on the same paths is answered by ``data.py``'s catch-all."""
    base = "/services/data/{version}/sobjects/{sobject}"
    return [
        Route(base, create, methods=["POST"]),
        Route(base + "/", create, methods=["POST"]),
        Route(base + "/{record_id}", by_id, methods=["PATCH", "DELETE"]),
        Route(base + "/{field}/{value}", by_external_id, methods=["GET", "HEAD", "PATCH", "DELETE"]),
    ]
