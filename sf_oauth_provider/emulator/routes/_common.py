"""What every route module shares: the org of a request, the three base URLs, request parsing,
Salesforce-shaped error bodies and the fault/latency guard."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import Receive, Scope, Send

from ..model import AFTER_WORK_FAULTS, ConnectedApp, User
from ..state import Org

__all__ = [
    "MAINTENANCE_HTML",
    "Bases",
    "basic_auth",
    "bearer",
    "data_error",
    "guard",
    "oauth_error",
    "org_of",
    "read_form",
    "secret_ok",
]

MAINTENANCE_HTML = """<!DOCTYPE html>
<html><head><title>Salesforce - Maintenance</title></head>
<body><div id="content"><h1>Down for Maintenance</h1>
<p>Salesforce is temporarily unavailable due to scheduled maintenance. We apologize for the
inconvenience. Please check <a href="https://status.salesforce.com">Salesforce Trust</a>
for more information.</p></div></body></html>
"""


def org_of(request: Request) -> Org:
    """The org this app serves (set by :func:`~sf_oauth_provider.emulator.app.build_app`)."""
    org: Org = request.app.state.org
    return org


class Bases:
    """The three base URLs as seen by one request: the root (My Domain / instance URL), and the
    ``/login`` and ``/test`` prefixes that play login.salesforce.com and test.salesforce.com."""

    def __init__(self, request: Request) -> None:
        self.root = f"{request.url.scheme}://{request.url.netloc}"
        path = request.url.path
        if path.startswith("/test/"):
            self.kind = "test"
        elif path.startswith("/login/"):
            self.kind = "login"
        else:
            self.kind = "root"
        self.login_base = self.root + ("/test" if self.kind == "test" else "/login")
        self.request_base = self.root + ("" if self.kind == "root" else "/" + self.kind)

    def allowed_audiences(self) -> set[str]:
        """JWT ``aud`` values this base accepts: its real-world login host and its own URL
        (a client aimed at ``<root>/login`` derives ``aud`` from the host it logs in to)."""
        if self.kind == "test":
            return {"https://test.salesforce.com", self.root + "/test"}
        return {"https://login.salesforce.com", self.root + "/login", self.root}

    def id_url(self, org: Org, user: User) -> str:
        """The identity URL of ``user``."""
        return f"{self.login_base}/id/{org.org_id}/{user.id}"


class _ResetResponse(Response):
    """Starts a response, then drops the connection (the client sees a transport error)."""

    def __init__(self) -> None:
        super().__init__(content=b"")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"acc', "more_body": True})
        # returning without completing makes uvicorn close the transport mid-body


def oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    """An OAuth error body ``{"error", "error_description"}``."""
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def data_error(code: str, message: str, status: int) -> JSONResponse:
    """A REST API error body ``[{"message", "errorCode"}]``."""
    return JSONResponse([{"message": message, "errorCode": code}], status_code=status)


def _fault_response(fault: dict[str, Any], data_api: bool) -> Response | None:
    kind = fault["kind"]
    if kind == "json503":
        if data_api:
            return data_error("SERVER_UNAVAILABLE", "Service Unavailable", 503)
        return oauth_error("server_error", "Service Unavailable", 503)
    if kind == "html503":
        return HTMLResponse(MAINTENANCE_HTML, status_code=503)
    if kind == "500":
        if data_api:
            return data_error("UNKNOWN_EXCEPTION", "An unexpected error occurred. Please try again.", 500)
        return oauth_error("server_error", "Internal Server Error", 500)
    if kind == "429":
        if data_api:
            # the REST API says "over the limit" with 403, not 429 (REST API Developer Guide,
            # "Status Codes and Error Responses")
            return data_error("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.", 403)
        return oauth_error("rate_limit_exceeded", "rate limit exceeded", 429)
    if kind in ("reset", "stall", "drop"):
        return _ResetResponse()
    return None  # latency handled by the caller


async def guard(
    org: Org, endpoint: str, data_api: bool = False, grant: str | None = None,
    after: list[dict[str, Any]] | None = None,
) -> Response | None:
    """Count the request, apply planned latency, and return the planned fault response (if any).

    :param after: where a route that can do its work before failing (``late``, ``drop``: the
        request is processed, then its answer is late or lost) receives such a fault, to pass to
        :func:`finish`; without it, those faults act before the work (like ``latency``/``reset``)
    """
    org.record_request(endpoint, grant)
    fault, latency = org.next_fault(endpoint)
    if fault is not None and fault["kind"] in ("latency", "stall"):
        latency += fault["seconds"]
    elif fault is not None and fault["kind"] in AFTER_WORK_FAULTS:
        if after is not None:
            after.append(fault)
            fault = None
        elif fault["kind"] == "late":
            latency += fault["seconds"]
    if latency > 0:
        await asyncio.sleep(latency)
    return _fault_response(fault, data_api) if fault is not None else None


async def finish(after: list[dict[str, Any]], response: Response) -> Response:
    """Apply the after-the-work faults :func:`guard` handed over: the work is done (a grant
    issued, a refresh token rotated), and then the answer arrives late or never."""
    for fault in after:
        if fault["kind"] == "late":
            await asyncio.sleep(fault["seconds"])
        elif fault["kind"] == "drop":
            return _ResetResponse()
    return response


async def read_form(request: Request) -> dict[str, str]:
    """The form body (first value of each name wins)."""
    body = await request.body()
    out: dict[str, str] = {}
    for k, v in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        out.setdefault(k, v)
    return out


def basic_auth(request: Request) -> tuple[str | None, str | None]:
    """``(client_id, client_secret)`` from an HTTP Basic header, or ``(None, None)``."""
    header = request.headers.get("authorization", "")
    if header[:6].lower() != "basic ":
        return None, None
    try:
        decoded = base64.b64decode(header[6:].strip()).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    cid, sep, secret = decoded.partition(":")
    return (cid, secret) if sep else (None, None)


def bearer(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` (or ``OAuth``) header."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("bearer", "oauth") and value.strip():
        return value.strip()
    return None


def secret_ok(app: ConnectedApp, secret: str | None) -> bool:
    """Constant-time check of a consumer secret."""
    return secret is not None and hmac.compare_digest(secret.encode(), app.consumer_secret.encode())
