"""Starlette application speaking the Salesforce OAuth / identity / query wire protocol.

One server plays three hosts: its root is the org's My Domain and instance URL, ``/login``
plays ``https://login.salesforce.com`` and ``/test`` plays ``https://test.salesforce.com``.
OAuth endpoints answer under all three; the data API only under the root. The admin API lives
under ``/__emulator/`` and answers loopback clients only.

Error wording (``error`` / ``error_description``, HTTP 400 unless noted):

* token, any flow: ``unsupported_grant_type`` / ``grant type not supported``;
  ``rate_limit_exceeded`` / ``LOGIN_RATE_EXCEEDED: too many logins for this user in the last hour``
* jwt-bearer: ``invalid_client_id`` / ``client identifier invalid`` (unknown ``iss``);
  ``invalid_grant`` / ``invalid assertion`` (malformed JWT, non-RS256, bad signature, app without
  certificate, missing ``exp``, ``exp`` more than ``max_jwt_lifetime + jwt_skew`` ahead);
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
* data API: 401 ``INVALID_SESSION_ID``; 400 ``MALFORMED_QUERY`` / ``INVALID_TYPE`` /
  ``INVALID_FIELD`` / ``INVALID_QUERY_FILTER_OPERATOR`` / ``INVALID_QUERY_LOCATOR``; 404 ``NOT_FOUND``
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import re
import secrets
import string
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qsl

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .soql import SoqlError, build_tables, execute, parse
from .state import AccessTokenRecord, ConnectedApp, Org, User, sign_identity

__all__ = ["MAINTENANCE_HTML", "build_app"]

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_GRANTS = {JWT_GRANT: "jwt_bearer", "client_credentials": "client_credentials", "refresh_token": "refresh_token"}
_VERSION_RE = re.compile(r"^v(\d+\.\d)$")
_LOOPBACK = {"127.0.0.1", "::1"}
_MAX_CURSORS = 500

MAINTENANCE_HTML = """<!DOCTYPE html>
<html><head><title>Salesforce - Maintenance</title></head>
<body><div id="content"><h1>Down for Maintenance</h1>
<p>Salesforce is temporarily unavailable due to scheduled maintenance. We apologize for the
inconvenience. Please check <a href="https://status.salesforce.com">Salesforce Trust</a>
for more information.</p></div></body></html>
"""


class _Bases:
    """The three base URLs as seen by one request."""

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
        if self.kind == "test":
            return {"https://test.salesforce.com"}
        return {"https://login.salesforce.com", self.root}

    def id_url(self, org: Org, user: User) -> str:
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


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def _data_error(code: str, message: str, status: int) -> JSONResponse:
    return JSONResponse([{"message": message, "errorCode": code}], status_code=status)


def _fault_response(fault: dict[str, Any], data_api: bool) -> Response | None:
    kind = fault["kind"]
    if kind == "json503":
        if data_api:
            return _data_error("SERVER_UNAVAILABLE", "Service Unavailable", 503)
        return _oauth_error("server_error", "Service Unavailable", 503)
    if kind == "html503":
        return HTMLResponse(MAINTENANCE_HTML, status_code=503)
    if kind == "500":
        if data_api:
            return _data_error("UNKNOWN_EXCEPTION", "An unexpected error occurred. Please try again.", 500)
        return _oauth_error("server_error", "Internal Server Error", 500)
    if kind == "429":
        if data_api:
            return _data_error("REQUEST_LIMIT_EXCEEDED", "rate limit exceeded", 429)
        return _oauth_error("rate_limit_exceeded", "rate limit exceeded", 429)
    if kind == "reset":
        return _ResetResponse()
    return None  # latency handled by the caller


async def _read_form(request: Request) -> dict[str, str]:
    body = await request.body()
    out: dict[str, str] = {}
    for k, v in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        out.setdefault(k, v)
    return out


def _basic_auth(request: Request) -> tuple[str | None, str | None]:
    header = request.headers.get("authorization", "")
    if header[:6].lower() != "basic ":
        return None, None
    try:
        decoded = base64.b64decode(header[6:].strip()).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    cid, sep, secret = decoded.partition(":")
    return (cid, secret) if sep else (None, None)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("bearer", "oauth") and value.strip():
        return value.strip()
    return None


def _secret_ok(app: ConnectedApp, secret: str | None) -> bool:
    return secret is not None and hmac.compare_digest(secret.encode(), app.consumer_secret.encode())


def _issued_ms(now: float) -> str:
    return str(int(now * 1000))


def build_app(org: Org) -> Starlette:
    """Build the ASGI app serving ``org``."""

    async def guard(endpoint: str, data_api: bool = False, grant: str | None = None) -> Response | None:
        org.record_request(endpoint, grant)
        fault, latency = org.next_fault(endpoint)
        if fault is not None and fault["kind"] == "latency":
            latency += fault["seconds"]
        if latency > 0:
            await asyncio.sleep(latency)
        return _fault_response(fault, data_api) if fault is not None else None

    # ------------------------------------------------------------------ token
    def jwt_grant(bases: _Bases, form: dict[str, str]) -> Response:
        assertion = form.get("assertion", "")
        invalid = _oauth_error("invalid_grant", "invalid assertion")
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            return invalid
        iss = claims.get("iss")
        app = org.app_by_key(iss if isinstance(iss, str) else None)
        if app is None:
            return _oauth_error("invalid_client_id", "client identifier invalid")
        key = app.public_key() if app.jwt_enabled else None
        if key is None or header.get("alg") != "RS256":
            return invalid
        try:
            jwt.decode(
                assertion,
                key,
                algorithms=["RS256"],
                options={"verify_exp": False, "verify_aud": False, "verify_iat": False, "verify_nbf": False},
            )
        except jwt.PyJWTError:
            return invalid
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        allowed = bases.allowed_audiences()
        if not any(isinstance(a, str) and a.rstrip("/") in allowed for a in auds):
            return _oauth_error("invalid_grant", "audience is invalid")
        exp = claims.get("exp")
        if isinstance(exp, str) and exp.isdigit():
            exp = int(exp)  # Salesforce accepts a string of digits (simple-salesforce sends one)
        if isinstance(exp, bool) or not isinstance(exp, (int, float)):
            return invalid
        now = org.clock.now()
        settings = org.settings
        if exp < now - settings.jwt_skew:
            return _oauth_error("invalid_grant", "expired authorization code")
        if exp > now + settings.max_jwt_lifetime + settings.jwt_skew:
            return invalid
        sub = claims.get("sub")
        with org.lock:
            user = org.user_by_username(sub if isinstance(sub, str) else None)
            if user is None or not user.is_active:
                return _oauth_error("invalid_grant", "invalid user")
            if user.id not in app.approved_user_ids:
                if app.admin_approved_only:
                    return _oauth_error("invalid_app_access", "user is not admin approved to access this app")
                return _oauth_error("invalid_grant", "user hasn't approved this consumer")
            if not org.check_login_rate(user):
                return _rate_limited()
            rec = org.issue_access_token(app, user, app.scope)
        return JSONResponse(
            {
                "access_token": rec.token,
                "scope": rec.scope,
                "instance_url": bases.root,
                "id": bases.id_url(org, user),
                "token_type": "Bearer",
            }
        )

    def _rate_limited() -> JSONResponse:
        return _oauth_error(
            "rate_limit_exceeded", "LOGIN_RATE_EXCEEDED: too many logins for this user in the last hour"
        )

    def _client(request: Request, form: dict[str, str]) -> tuple[str | None, str | None]:
        cid, secret = _basic_auth(request)
        if cid is None:
            cid, secret = form.get("client_id"), form.get("client_secret")
        return cid, secret

    def cc_grant(request: Request, bases: _Bases, form: dict[str, str]) -> Response:
        if bases.kind != "root":
            return _oauth_error("invalid_grant", "request not supported on this domain")
        cid, secret = _client(request, form)
        with org.lock:
            app = org.app_by_key(cid)
            if app is None:
                return _oauth_error("invalid_client_id", "client identifier invalid")
            if not _secret_ok(app, secret):
                return _oauth_error("invalid_client", "invalid client credentials")
            user = org.users.get(app.run_as_user_id or "")
            if not app.cc_enabled or user is None:
                return _oauth_error("invalid_grant", "no client credentials user enabled")
            if not user.is_active:
                return _oauth_error("invalid_grant", "invalid user")
            if not org.check_login_rate(user):
                return _rate_limited()
            rec = org.issue_access_token(app, user, app.scope)
        issued = _issued_ms(rec.issued_at)
        id_url = bases.id_url(org, user)
        return JSONResponse(
            {
                "access_token": rec.token,
                "signature": sign_identity(app.consumer_secret, id_url, issued),
                "scope": rec.scope,
                "instance_url": bases.root,
                "id": id_url,
                "token_type": "Bearer",
                "issued_at": issued,
            }
        )

    def refresh_grant(request: Request, bases: _Bases, form: dict[str, str]) -> Response:
        cid, secret = _client(request, form)
        with org.lock:
            app = org.app_by_key(cid)
            if app is None:
                return _oauth_error("invalid_client_id", "client identifier invalid")
            if secret is not None and not _secret_ok(app, secret):
                return _oauth_error("invalid_client", "invalid client credentials")
            appr = org.approvals.get(form.get("refresh_token", ""))
            if not org.approval_valid(appr):
                return _oauth_error("invalid_grant", "expired access/refresh token")
            assert appr is not None
            if appr.app_key != app.consumer_key:
                return _oauth_error("invalid_client_id", "client identifier invalid")
            user = org.users.get(appr.user_id)
            if user is None or not user.is_active:
                return _oauth_error("invalid_grant", "inactive user")
            if not org.check_login_rate(user):
                return _rate_limited()
            now = org.clock.now()
            appr.use_count += 1
            appr.last_used = now
            rec = org.issue_access_token(app, user, appr.scope, parent_refresh=appr.refresh_token)
            new_refresh = org.rotate_approval(appr) if app.rotate_refresh_tokens else None
        issued = _issued_ms(rec.issued_at)
        id_url = bases.id_url(org, user)
        body: dict[str, Any] = {"access_token": rec.token}
        if new_refresh:
            body["refresh_token"] = new_refresh
        if secret is not None:
            body["signature"] = sign_identity(app.consumer_secret, id_url, issued)
        body.update(
            {
                "scope": rec.scope,
                "instance_url": bases.root,
                "id": id_url,
                "token_type": "Bearer",
                "issued_at": issued,
            }
        )
        return JSONResponse(body)

    async def token(request: Request) -> Response:
        form = await _read_form(request)
        grant = _GRANTS.get(form.get("grant_type", ""), "other")
        faulted = await guard("token", grant=grant)
        if faulted is not None:
            return faulted
        bases = _Bases(request)
        if grant == "jwt_bearer":
            return jwt_grant(bases, form)
        if grant == "client_credentials":
            return cc_grant(request, bases, form)
        if grant == "refresh_token":
            return refresh_grant(request, bases, form)
        return _oauth_error("unsupported_grant_type", "grant type not supported")

    # ------------------------------------------------------------------ introspect / revoke
    async def introspect(request: Request) -> Response:
        form = await _read_form(request)
        faulted = await guard("introspect")
        if faulted is not None:
            return faulted
        bases = _Bases(request)
        cid, secret = _client(request, form)
        with org.lock:
            caller = org.app_by_key(cid)
            if caller is None or not _secret_ok(caller, secret):
                return _oauth_error("invalid_client", "invalid client credentials", 401)
            tok = form.get("token", "")
            now = org.clock.now()
            order = ("refresh", "access") if form.get("token_type_hint") == "refresh_token" else ("access", "refresh")
            for kind in order:
                if kind == "access":
                    rec = org.access_tokens.get(tok)
                    if rec is None or not org.access_token_valid(rec, now):
                        continue
                    if rec.app_key != caller.consumer_key and not caller.introspect_all:
                        continue
                    user = org.users[rec.user_id]
                    return JSONResponse(
                        {
                            "active": True,
                            "scope": rec.scope,
                            "client_id": rec.app_key,
                            "username": user.username,
                            "sub": bases.id_url(org, user),
                            "token_type": "access_token",
                            "exp": int(rec.last_used + org.settings.session_timeout),
                            "iat": int(rec.issued_at),
                            "nbf": int(rec.issued_at),
                        }
                    )
                else:
                    appr = org.approvals.get(tok)
                    if appr is None or not org.approval_valid(appr, now):
                        continue
                    if appr.app_key != caller.consumer_key and not caller.introspect_all:
                        continue
                    user = org.users[appr.user_id]
                    if not user.is_active:
                        continue
                    body: dict[str, Any] = {
                        "active": True,
                        "scope": appr.scope,
                        "client_id": appr.app_key,
                        "username": user.username,
                        "sub": bases.id_url(org, user),
                        "token_type": "refresh_token",
                        "iat": int(appr.created),
                        "nbf": int(appr.created),
                    }
                    app = org.apps.get(appr.app_key)
                    if app is not None and app.refresh_token_ttl is not None:
                        body["exp"] = int(appr.created + app.refresh_token_ttl)
                    return JSONResponse(body)
        return JSONResponse({"active": False})

    async def revoke(request: Request) -> Response:
        form = await _read_form(request) if request.method == "POST" else {}
        faulted = await guard("revoke")
        if faulted is not None:
            return faulted
        tok = form.get("token") or request.query_params.get("token")
        if not tok:
            return _oauth_error("unsupported_token_type", "unsupported token type")
        if org.revoke_token(tok):
            return Response(status_code=200)
        return _oauth_error("invalid_token", "invalid token")

    # ------------------------------------------------------------------ identity
    def bad_token() -> Response:
        return PlainTextResponse("Bad_OAuth_Token", status_code=403)

    def user_urls(bases: _Bases, user: User) -> dict[str, str]:
        root = bases.root
        o15 = org.org_id[:15]
        return {
            "enterprise": f"{root}/services/Soap/c/{{version}}/{o15}",
            "metadata": f"{root}/services/Soap/m/{{version}}/{o15}",
            "partner": f"{root}/services/Soap/u/{{version}}/{o15}",
            "rest": f"{root}/services/data/v{{version}}/",
            "sobjects": f"{root}/services/data/v{{version}}/sobjects/",
            "search": f"{root}/services/data/v{{version}}/search/",
            "query": f"{root}/services/data/v{{version}}/query/",
            "recent": f"{root}/services/data/v{{version}}/recent/",
            "profile": f"{root}/{user.id}",
            "custom_domain": root,
        }

    def user_facts(bases: _Bases, user: User) -> dict[str, Any]:
        """What userinfo and the identity URL both say about a user."""
        return {
            "user_id": user.id,
            "organization_id": org.org_id,
            "email": user.email,
            "email_verified": True,
            "active": user.is_active,
            "user_type": "STANDARD",
            "language": "en_US",
            "locale": "en_US",
            "utcOffset": -28800000,
            "is_app_installed": True,
            "urls": user_urls(bases, user),
        }

    async def userinfo(request: Request) -> Response:
        faulted = await guard("userinfo")
        if faulted is not None:
            return faulted
        rec = org.use_access_token(_bearer(request))
        if rec is None:
            return bad_token()
        bases = _Bases(request)
        user = org.users[rec.user_id]
        return JSONResponse(
            {
                "sub": bases.id_url(org, user),
                "preferred_username": user.username,
                "nickname": user.username.split("@")[0],
                "name": user.name,
                "given_name": user.first_name,
                "family_name": user.last_name,
                "zoneinfo": user.timezone,
                "profile": f"{bases.root}/{user.id}",
                **user_facts(bases, user),
            }
        )

    async def identity(request: Request) -> Response:
        faulted = await guard("identity")
        if faulted is not None:
            return faulted
        tok = _bearer(request) or request.query_params.get("oauth_token")
        rec: AccessTokenRecord | None = org.use_access_token(tok)
        if rec is None:
            return bad_token()
        oid, uid = request.path_params["org_id"], request.path_params["user_id"]
        if oid[:15] != org.org_id[:15] or uid[:15] != rec.user_id[:15]:
            return PlainTextResponse("Bad_Id", status_code=403)
        bases = _Bases(request)
        user = org.users[rec.user_id]
        return JSONResponse(
            {
                "id": bases.id_url(org, user),
                "asserted_user": True,
                "username": user.username,
                "nick_name": user.username.split("@")[0],
                "display_name": user.name,
                "first_name": user.first_name,
                "last_name": user.last_name,
                "timezone": user.timezone,
                **user_facts(bases, user),
            }
        )

    async def openid_config(request: Request) -> Response:
        faulted = await guard("openid")
        if faulted is not None:
            return faulted
        b = _Bases(request).request_base
        return JSONResponse(
            {
                "issuer": b,
                "authorization_endpoint": f"{b}/services/oauth2/authorize",
                "token_endpoint": f"{b}/services/oauth2/token",
                "revocation_endpoint": f"{b}/services/oauth2/revoke",
                "introspection_endpoint": f"{b}/services/oauth2/introspect",
                "userinfo_endpoint": f"{b}/services/oauth2/userinfo",
                "jwks_uri": f"{b}/id/keys",
                "response_types_supported": ["code", "token", "token id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["id", "api", "web", "full", "refresh_token", "openid", "profile", "email"],
                "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic", "private_key_jwt"],
                "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials", JWT_GRANT],
                "claims_supported": ["active", "email", "name", "preferred_username", "sub", "user_id", "organization_id"],
            }
        )

    async def jwks(request: Request) -> Response:
        faulted = await guard("openid")
        if faulted is not None:
            return faulted
        return JSONResponse({"keys": [org.server_jwk]})

    # ------------------------------------------------------------------ data API
    def _version(request: Request) -> str | None:
        m = _VERSION_RE.match(request.path_params["version"])
        return m.group(1) if m else None

    def _page(version: str, locator: str, records: list[dict[str, Any]], offset: int) -> dict[str, Any]:
        size = max(1, org.settings.page_size)
        chunk = records[offset : offset + size]
        done = offset + size >= len(records)
        body: dict[str, Any] = {"totalSize": len(records), "done": done, "records": chunk}
        if not done:
            body["nextRecordsUrl"] = f"/services/data/v{version}/query/{locator}-{offset + size}"
        return body

    async def data_request(request: Request) -> Response | tuple[str, AccessTokenRecord]:
        """What every query request goes through: faults, the API version, the session.
        Returns the error response, or the version and the caller's token."""
        faulted = await guard("query", data_api=True)
        if faulted is not None:
            return faulted
        version = _version(request)
        if version is None:
            return _data_error("NOT_FOUND", "The requested resource does not exist", 404)
        rec = org.use_access_token(_bearer(request))
        if rec is None:
            return _data_error("INVALID_SESSION_ID", "Session expired or invalid", 401)
        return version, rec

    async def query(request: Request) -> Response:
        checked = await data_request(request)
        if isinstance(checked, Response):
            return checked
        version, rec = checked
        q = request.query_params.get("q")
        if not q:
            return _data_error("MALFORMED_QUERY", "A query string has to be specified", 400)
        try:
            parsed = parse(q, org.clock.now())
            viewer = org.users[rec.user_id]
            total, records = execute(parsed, build_tables(org, viewer), version)
        except SoqlError as exc:
            return _data_error(exc.error_code, exc.message, 400)
        if parsed.count_only:
            return JSONResponse({"totalSize": total, "done": True, "records": []})
        locator = "01g" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(15))
        body = _page(version, locator, records, 0)
        if not body["done"]:
            with org.lock:
                org.cursors[locator] = (rec.user_id, records)
                while len(org.cursors) > _MAX_CURSORS:
                    org.cursors.pop(next(iter(org.cursors)))
        return JSONResponse(body)

    async def query_more(request: Request) -> Response:
        checked = await data_request(request)
        if isinstance(checked, Response):
            return checked
        version, rec = checked
        locator, _, off = request.path_params["locator"].rpartition("-")
        with org.lock:
            cursor = org.cursors.get(locator)
        if cursor is None or not off.isdigit() or cursor[0] != rec.user_id:
            return _data_error("INVALID_QUERY_LOCATOR", "invalid query locator", 400)
        return JSONResponse(_page(version, locator, cursor[1], int(off)))

    # ------------------------------------------------------------------ admin API
    def admin(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def wrapped(request: Request) -> Response:
            host = request.client.host if request.client else ""
            if host not in _LOOPBACK:
                return JSONResponse({"error": "forbidden", "message": "admin API is loopback-only"}, status_code=403)
            try:
                return await handler(request)
            except (KeyError, ValueError, TypeError, json.JSONDecodeError) as exc:
                return JSONResponse({"error": "bad_request", "message": str(exc)}, status_code=400)

        return wrapped

    async def _json(request: Request) -> dict[str, Any]:
        body = await request.body()
        if not body:
            return {}
        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        return data

    async def a_counters(request: Request) -> Response:
        return JSONResponse(org.counters())

    async def a_counters_reset(request: Request) -> Response:
        org.reset_counters()
        return JSONResponse(org.counters())

    async def a_faults(request: Request) -> Response:
        if request.method == "POST":
            d = await _json(request)
            org.set_faults(
                d.get("endpoint", "*"),
                sequence=d.get("sequence"),
                rate=float(d.get("rate", 0.0)),
                kinds=d.get("kinds"),
                latency=float(d.get("latency", 0.0)),
            )
        elif request.method == "DELETE":
            org.clear_faults()
        return JSONResponse(org.faults())

    async def a_tokens(request: Request) -> Response:
        return JSONResponse({"tokens": org.issued_tokens()})

    async def a_mint(request: Request) -> Response:
        d = await _json(request)
        toks = org.mint_tokens(
            int(d.get("n", 1)),
            app=d.get("app"),
            user=d.get("user"),
            kind=d.get("kind", "access"),
            scope=d.get("scope"),
            enforce_limit=bool(d.get("enforce_limit", False)),
        )
        return JSONResponse({"tokens": toks})

    async def a_clock(request: Request) -> Response:
        if request.method == "POST":
            d = await _json(request)
            if "now" in d:
                org.clock.set(float(d["now"]))
            if "advance" in d:
                org.clock.advance(float(d["advance"]))
        return JSONResponse({"now": org.clock.now(), "offset": org.clock.offset})

    async def a_settings(request: Request) -> Response:
        if request.method == "POST":
            d = await _json(request)
            apps = d.pop("apps", {}) or {}
            with org.lock:
                org.settings.update(d)
                for ref, values in apps.items():
                    app = org.app_by_name_or_key(ref)
                    for k, v in values.items():
                        if k not in ("rotate_refresh_tokens", "introspect_all", "refresh_token_ttl"):
                            raise KeyError(f"unknown app setting {k!r}")
                        setattr(app, k, v)
        return JSONResponse(
            {
                **org.settings.as_dict(),
                "apps": {
                    a.name: {
                        "rotate_refresh_tokens": a.rotate_refresh_tokens,
                        "introspect_all": a.introspect_all,
                        "refresh_token_ttl": a.refresh_token_ttl,
                    }
                    for a in org.apps.values()
                },
            }
        )

    async def a_reset(request: Request) -> Response:
        org.reset()
        return JSONResponse({"ok": True})

    async def a_info(request: Request) -> Response:
        root = f"{request.url.scheme}://{request.url.netloc}"
        with org.lock:
            apps = [
                {
                    "name": a.name,
                    "consumer_key": a.consumer_key,
                    "flows": [
                        f
                        for f, on in (
                            ("jwt_bearer", a.jwt_enabled),
                            ("client_credentials", a.cc_enabled),
                            ("refresh_token", a.refresh_enabled),
                        )
                        if on
                    ],
                }
                for a in org.apps.values()
            ]
            users = [{"username": u.username, "id": u.id, "active": u.is_active} for u in org.users.values()]
        return JSONResponse(
            {
                "base_url": root,
                "login_url": root + "/login",
                "test_url": root + "/test",
                "org_id": org.org_id,
                "seed": org.seed,
                "demo": org.demo.public_summary(),
                "apps": apps,
                "users": users,
                "settings": org.settings.as_dict(),
            }
        )

    routes: list[Route] = []
    for prefix in ("", "/login", "/test"):
        routes += [
            Route(f"{prefix}/services/oauth2/token", token, methods=["POST"]),
            Route(f"{prefix}/services/oauth2/introspect", introspect, methods=["POST"]),
            Route(f"{prefix}/services/oauth2/revoke", revoke, methods=["GET", "POST"]),
            Route(f"{prefix}/services/oauth2/userinfo", userinfo, methods=["GET", "POST"]),
            Route(f"{prefix}/.well-known/openid-configuration", openid_config, methods=["GET"]),
            Route(f"{prefix}/id/keys", jwks, methods=["GET"]),
            Route(f"{prefix}/id/{{org_id}}/{{user_id}}", identity, methods=["GET", "POST"]),
        ]
    routes += [
        Route("/services/data/{version}/query", query, methods=["GET"]),
        Route("/services/data/{version}/query/{locator}", query_more, methods=["GET"]),
        Route("/__emulator/counters", admin(a_counters), methods=["GET"]),
        Route("/__emulator/counters/reset", admin(a_counters_reset), methods=["POST"]),
        Route("/__emulator/faults", admin(a_faults), methods=["GET", "POST", "DELETE"]),
        Route("/__emulator/tokens", admin(a_tokens), methods=["GET"]),
        Route("/__emulator/tokens/mint", admin(a_mint), methods=["POST"]),
        Route("/__emulator/clock", admin(a_clock), methods=["GET", "POST"]),
        Route("/__emulator/settings", admin(a_settings), methods=["GET", "POST"]),
        Route("/__emulator/reset", admin(a_reset), methods=["POST"]),
        Route("/__emulator/info", admin(a_info), methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    app.state.org = org
    return app
