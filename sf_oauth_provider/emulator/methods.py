"""One answer for an unserved method on a served path, as Salesforce gives it: ``405`` with
``[{"errorCode": "METHOD_NOT_ALLOWED", "message": "HTTP Method 'POST' not allowed. Allowed are
HEAD,GET"}]`` and an ``Allow`` header.

Every Starlette route declares its methods; a request with another method raises Starlette's 405
``HTTPException``, which :func:`install` turns into this answer for the whole app. The REST API,
one route over many resources, asks :func:`method_not_allowed` itself.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

__all__ = ["allowed_list", "install", "method_not_allowed"]

_ORDER = ("HEAD", "GET", "POST", "PUT", "PATCH", "DELETE")


def allowed_list(methods: Iterable[str]) -> list[str]:
    """``methods`` in Salesforce's order (``HEAD,GET`` first, as its messages list them); a GET
    resource also answers HEAD."""
    wanted = {m.upper() for m in methods}
    if "GET" in wanted:
        wanted.add("HEAD")
    return [m for m in _ORDER if m in wanted] + sorted(wanted - set(_ORDER))


def method_not_allowed(method: str, allowed: Iterable[str]) -> Response:
    """The 405 answer for ``method`` on a resource serving ``allowed``."""
    names = allowed_list(allowed)
    message = f"HTTP Method '{method}' not allowed. Allowed are {','.join(names)}"
    return JSONResponse(
        [{"errorCode": "METHOD_NOT_ALLOWED", "message": message}],
        status_code=405,
        headers={"Allow": ",".join(names)},
    )


async def _method_exception(request: Request, exc: Exception) -> Response:
    allow = getattr(exc, "headers", None) or {}
    return method_not_allowed(request.method, [m.strip() for m in allow.get("Allow", "").split(",") if m.strip()])


def install(app: Starlette) -> None:
    """Answer every route's unserved methods the Salesforce way (Starlette's other HTTP errors
    keep their default answer)."""
    app.add_exception_handler(405, _method_exception)
