"""Starlette application speaking the Salesforce OAuth / identity / query wire protocol.

One server plays three hosts: its root is the org's My Domain and instance URL, ``/login``
plays ``https://login.salesforce.com`` and ``/test`` plays ``https://test.salesforce.com``.
OAuth endpoints answer under all three; the data API only under the root. The admin API lives
under ``/__emulator/`` and answers loopback clients only (see :mod:`.routes.admin`).

Error wording (``error`` / ``error_description``, HTTP 400 unless noted):

* token, any flow: ``unsupported_grant_type`` / ``grant type not supported``;
  ``rate_limit_exceeded`` / ``LOGIN_RATE_EXCEEDED: too many logins for this user in the last hour``
* jwt-bearer: ``invalid_client_id`` / ``client identifier invalid`` (unknown ``iss``);
  ``invalid_grant`` / ``invalid assertion`` (malformed JWT, non-RS256, bad signature, app without
  certificate, missing or non-numeric ``exp``; an ``exp`` far ahead is accepted, as Salesforce does);
  ``invalid_grant`` / ``audience is invalid``; ``invalid_grant`` / ``expired authorization code``
  (``exp`` older than ``jwt_skew``); ``invalid_grant`` / ``invalid user`` (unknown or inactive
  ``sub``); ``invalid_app_access`` / ``user is not admin approved to access this app``;
  ``invalid_grant`` / ``user hasn't approved this consumer``
* client_credentials: ``invalid_grant`` / ``request not supported on this domain`` (via /login or
  /test); ``invalid_client_id`` / ``client identifier invalid``; ``invalid_client`` /
  ``invalid client credentials``; ``invalid_grant`` / ``no client credentials user enabled``
* refresh_token: ``invalid_client_id`` / ``client identifier invalid`` (unknown client or token of
  another app); ``invalid_client`` / ``invalid client credentials`` (wrong secret);
  ``invalid_grant`` / ``expired access/refresh token``; ``invalid_grant`` / ``inactive user``
* introspect: 401 ``invalid_client`` / ``invalid client credentials``; else 200 (``active``)
* revoke: 400 ``invalid_token`` / ``invalid token``; 400 ``unsupported_token_type`` /
  ``unsupported token type`` (no token given)
* userinfo / identity: 403 ``text/plain`` ``Bad_OAuth_Token``; identity URL of another user or
  org: 403 ``Bad_Id``
* refresh_token: replaying a refresh token that rotation retired also revokes its successor
* data API: 401 ``INVALID_SESSION_ID``; 400 ``MALFORMED_QUERY`` / ``INVALID_TYPE`` /
  ``INVALID_FIELD`` / ``INVALID_QUERY_FILTER_OPERATOR`` / ``INVALID_QUERY_LOCATOR``; 403
  ``REQUEST_LIMIT_EXCEEDED``; 404 ``NOT_FOUND``; 410 for a retired API version; 405
  ``METHOD_NOT_ALLOWED`` with ``Allow`` for an unserved method on any served path (:mod:`.methods`)

The routes live in :mod:`.routes` (one module per service); this module assembles them.
"""

from __future__ import annotations

from email.utils import formatdate

from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .methods import install as install_method_answers
from .routes import all_routes
from .routes._common import MAINTENANCE_HTML
from .state import Org

__all__ = ["MAINTENANCE_HTML", "build_app"]


class OrgClockDate:
    """Every response's ``Date`` header is the org clock (uvicorn's own is turned off): Salesforce
    dates its answers by its own clock, and clients measure their clock skew from it."""

    def __init__(self, app: ASGIApp, org: Org) -> None:
        self.app = app
        self.org = org

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def dated(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"date"]
                headers.append((b"date", formatdate(self.org.clock.now(), usegmt=True).encode("ascii")))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, dated)


def build_app(org: Org) -> Starlette:
    """Build the ASGI app serving ``org`` (handlers find it as ``request.app.state.org``)."""
    app = Starlette(routes=all_routes())
    app.router.redirect_slashes = False  # Salesforce answers /query/ itself; it never redirects
    app.state.org = org
    install_method_answers(app)
    app.add_middleware(OrgClockDate, org=org)
    return app
