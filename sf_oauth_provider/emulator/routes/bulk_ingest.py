"""Bulk API 2.0 ingest jobs under ``/services/data/vNN.N/jobs/ingest`` (Bulk API 2.0 Developer
Guide, "Ingest Jobs"): create, upload CSV (``PUT …/batches``), close or abort (``PATCH``), job
info, list, delete, and the ``successfulResults`` / ``failedResults`` / ``unprocessedrecords``
CSVs. The job model and the record work are :mod:`..ingest`.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import ingest
from ..ingest import FINISHED, IngestJob, JobError
from ._common import data_error
from .data import RestCall, begin

__all__ = ["routes"]

#: Salesforce's limit for a job's data (150 MB of CSV)
MAX_UPLOAD_BYTES = 150 * 1024 * 1024
_RESULT_KINDS = ("successfulResults", "failedResults", "unprocessedrecords")
#: states from which a job may be deleted ("Delete a Job": UploadComplete, JobComplete, Aborted, Failed)
_DELETABLE = ("UploadComplete", *FINISHED)

Work = Callable[[RestCall], Awaitable[Response]]


def _job_error(exc: JobError) -> Response:
    return data_error(exc.code, exc.message, exc.status)


async def _run(request: Request, work: Work) -> Response:
    call = await begin(request, request.path_params["version"], bulk=True)
    if isinstance(call, Response):
        return call
    try:
        response = await work(call)
    except JobError as exc:
        response = _job_error(exc)
    return call.finish(response)


def _job(call: RestCall, request: Request) -> IngestJob:
    """The job named in the path, settled to the org clock; ``NOT_FOUND`` 404 otherwise."""
    with call.org.lock:
        job: IngestJob | None = call.org.ingest_jobs.get(request.path_params["job_id"])
        if job is None:
            raise JobError("NOT_FOUND", "The requested resource does not exist", 404)
        ingest.settle(call.org, job)
        return job


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"null")
    except (ValueError, UnicodeDecodeError):
        raise JobError("JSON_PARSER_ERROR", "The request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise JobError("JSON_PARSER_ERROR", "The request body must be a JSON object")
    return body


async def jobs(request: Request) -> Response:
    """``POST`` (create a job, 200 JobInfo in state ``Open``) / ``GET`` (list) ``…/jobs/ingest``."""

    async def work(call: RestCall) -> Response:
        if request.method == "POST":
            job = ingest.new_job(call.org, await _json(request), call.version, call.rec.user_id)
            return JSONResponse(job.info())
        ingest.settle_all(call.org)
        with call.org.lock:
            infos = [j.info() for j in call.org.ingest_jobs.values()]
        return JSONResponse({"done": True, "records": infos, "nextRecordsUrl": None})

    return await _run(request, work)


async def job(request: Request) -> Response:
    """``GET`` (info with counts), ``PATCH`` (``UploadComplete`` / ``Aborted``), ``DELETE`` (204)."""

    async def work(call: RestCall) -> Response:
        the_job = _job(call, request)
        if request.method == "GET":
            return JSONResponse(the_job.info(full=True))
        if request.method == "DELETE":
            with call.org.lock:
                if the_job.state not in _DELETABLE:
                    raise JobError("INVALIDJOBSTATE", f"Deleting a job in state {the_job.state} is not allowed", 409)
                call.org.ingest_jobs.pop(the_job.id, None)
            return Response(status_code=204)
        _set_state(call, the_job, (await _json(request)).get("state"))
        return JSONResponse(the_job.info())

    return await _run(request, work)


def _set_state(call: RestCall, job: IngestJob, wanted: Any) -> None:
    org = call.org
    with org.lock:
        if wanted == "UploadComplete":
            if job.state != "Open":
                raise JobError("INVALIDJOBSTATE", f"Closing a job in state {job.state} is not allowed", 409)
            job.state, job.closed_at = "UploadComplete", org.clock.now()
        elif wanted == "Aborted":
            if job.state in FINISHED:
                raise JobError("INVALIDJOBSTATE", f"Aborting a job in state {job.state} is not allowed", 409)
            job.state = "Aborted"
            job.unprocessed = ingest.unprocessed_rows(job)
        else:
            raise JobError("INVALIDJOBSTATE", f"Invalid state: {wanted}. Use UploadComplete or Aborted")
        job.modstamp = org.clock.now()


async def batches(request: Request) -> Response:
    """``PUT …/jobs/ingest/{id}/batches`` with a ``text/csv`` body: 201, no body."""

    async def work(call: RestCall) -> Response:
        the_job = _job(call, request)
        if the_job.state != "Open":
            raise JobError("INVALIDJOBSTATE", f"Uploading data to a job in state {the_job.state} is not allowed", 409)
        ctype = request.headers.get("content-type", "text/csv").split(";")[0].strip().lower()
        if ctype != "text/csv":
            raise JobError("INVALIDCONTENTTYPE", f"Unsupported content type {ctype}: use text/csv")
        chunks: list[bytes] = []
        size = sum(len(u) for u in the_job.uploads)  # the limit is for a job's data in total
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                raise JobError("INVALIDBATCH", "The job's data exceeds 150 MB", 413)
            chunks.append(chunk)
        text = b"".join(chunks).decode("utf-8", "replace")
        with call.org.lock:
            the_job.uploads.append(text)
        return Response(status_code=201)

    return await _run(request, work)


async def results(request: Request) -> Response:
    """``GET …/{id}/successfulResults|failedResults|unprocessedrecords``: CSV."""

    async def work(call: RestCall) -> Response:
        kind = request.path_params["kind"]
        if kind not in _RESULT_KINDS:
            raise JobError("NOT_FOUND", "The requested resource does not exist", 404)
        the_job = _job(call, request)
        with call.org.lock:
            text = ingest.results_csv(the_job, kind)
        return Response(text, media_type="text/csv")

    return await _run(request, work)


def routes() -> list[Route]:
    """The ingest routes (other ``/jobs`` paths fall through to the next modules)."""
    base = "/services/data/{version}/jobs/ingest"
    return [
        Route(base, jobs, methods=["GET", "POST"]),
        Route(base + "/", jobs, methods=["GET", "POST"]),
        Route(base + "/{job_id}", job, methods=["GET", "PATCH", "DELETE"]),
        Route(base + "/{job_id}/", job, methods=["GET", "PATCH", "DELETE"]),
        Route(base + "/{job_id}/batches", batches, methods=["PUT"]),
        Route(base + "/{job_id}/batches/", batches, methods=["PUT"]),
        Route(base + "/{job_id}/{kind}", results, methods=["GET"]),
        Route(base + "/{job_id}/{kind}/", results, methods=["GET"]),
    ]
