"""OAuth 2.0 endpoints: token (JWT bearer, client credentials, refresh token), introspection,
revocation, OpenID discovery and JWKS. Served under the root, ``/login`` and ``/test``."""

from __future__ import annotations

from typing import Any

import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..state import ConnectedApp, Org, sign_identity
from ._common import Bases, basic_auth, finish, guard, oauth_error, org_of, read_form, secret_ok

__all__ = ["JWT_GRANT", "routes"]

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_GRANTS = {JWT_GRANT: "jwt_bearer", "client_credentials": "client_credentials", "refresh_token": "refresh_token"}


def _issued_ms(now: float) -> str:
    return str(int(now * 1000))


def _rate_limited() -> JSONResponse:
    return oauth_error("rate_limit_exceeded", "LOGIN_RATE_EXCEEDED: too many logins for this user in the last hour")


def _client(request: Request, form: dict[str, str]) -> tuple[str | None, str | None]:
    cid, secret = basic_auth(request)
    if cid is None:
        cid, secret = form.get("client_id"), form.get("client_secret")
    return cid, secret


def _verified_app(org: Org, assertion: str) -> tuple[ConnectedApp | None, dict[str, Any] | None, Response | None]:
    """The issuing app and the claims of a correctly signed RS256 assertion, or an error."""
    invalid = oauth_error("invalid_grant", "invalid assertion")
    try:
        header = jwt.get_unverified_header(assertion)
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None, None, invalid
    iss = claims.get("iss")
    app = org.app_by_key(iss if isinstance(iss, str) else None)
    if app is None:
        return None, None, oauth_error("invalid_client_id", "client identifier invalid")
    key = app.public_key() if app.jwt_enabled else None
    if key is None or header.get("alg") != "RS256":
        return None, None, invalid
    try:
        jwt.decode(
            assertion,
            key,
            algorithms=["RS256"],
            options={"verify_exp": False, "verify_aud": False, "verify_iat": False, "verify_nbf": False},
        )
    except jwt.PyJWTError:
        return None, None, invalid
    return app, claims, None


def _jwt_grant(org: Org, bases: Bases, form: dict[str, str]) -> Response:
    app, claims, error = _verified_app(org, form.get("assertion", ""))
    if error is not None:
        return error
    assert app is not None and claims is not None
    aud = claims.get("aud")
    auds = aud if isinstance(aud, list) else [aud]
    allowed = bases.allowed_audiences()
    if not any(isinstance(a, str) and a.rstrip("/") in allowed for a in auds):
        return oauth_error("invalid_grant", "audience is invalid")
    exp = claims.get("exp")
    if isinstance(exp, str) and exp.isdigit():
        exp = int(exp)  # Salesforce accepts a string of digits (simple-salesforce sends one)
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        return oauth_error("invalid_grant", "invalid assertion")
    # Only an exp in the past is refused: Salesforce takes one far ahead (the Salesforce CLI
    # signs epoch milliseconds), whatever its docs say about 3 minutes.
    if exp < org.clock.now() - org.settings.jwt_skew:
        return oauth_error("invalid_grant", "expired authorization code")
    sub = claims.get("sub")
    with org.lock:
        user = org.user_by_username(sub if isinstance(sub, str) else None)
        if user is None or not user.is_active:
            return oauth_error("invalid_grant", "invalid user")
        if user.id not in app.approved_user_ids:
            if app.admin_approved_only:
                return oauth_error("invalid_app_access", "user is not admin approved to access this app")
            return oauth_error("invalid_grant", "user hasn't approved this consumer")
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


def _cc_grant(org: Org, request: Request, bases: Bases, form: dict[str, str]) -> Response:
    if bases.kind != "root":
        return oauth_error("invalid_grant", "request not supported on this domain")
    cid, secret = _client(request, form)
    with org.lock:
        app = org.app_by_key(cid)
        if app is None:
            return oauth_error("invalid_client_id", "client identifier invalid")
        if not secret_ok(app, secret):
            return oauth_error("invalid_client", "invalid client credentials")
        user = org.users.get(app.run_as_user_id or "")
        if not app.cc_enabled or user is None:
            return oauth_error("invalid_grant", "no client credentials user enabled")
        if not user.is_active:
            return oauth_error("invalid_grant", "invalid user")
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


def _refresh_grant(org: Org, request: Request, bases: Bases, form: dict[str, str]) -> Response:
    cid, secret = _client(request, form)
    expired = oauth_error("invalid_grant", "expired access/refresh token")
    with org.lock:
        app = org.app_by_key(cid)
        if app is None:
            return oauth_error("invalid_client_id", "client identifier invalid")
        if secret is not None and not secret_ok(app, secret):
            return oauth_error("invalid_client", "invalid client credentials")
        appr = org.approvals.get(form.get("refresh_token", ""))
        if appr is not None and appr.successor is not None and appr.app_key == app.consumer_key:
            # Refresh token rotation: replaying a retired refresh token revokes the one it was
            # rotated into, with its access tokens (Salesforce Help, "Refresh Token Rotation").
            org.revoke_successor(appr)
            return expired
        if not org.approval_valid(appr):
            return expired
        assert appr is not None
        if appr.app_key != app.consumer_key:
            return oauth_error("invalid_client_id", "client identifier invalid")
        user = org.users.get(appr.user_id)
        if user is None or not user.is_active:
            return oauth_error("invalid_grant", "inactive user")
        if not org.check_login_rate(user):
            return _rate_limited()
        appr.use_count += 1
        appr.last_used = org.clock.now()
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
        {"scope": rec.scope, "instance_url": bases.root, "id": id_url, "token_type": "Bearer", "issued_at": issued}
    )
    return JSONResponse(body)


async def token(request: Request) -> Response:
    """``POST /services/oauth2/token``: every answer, errors included, is marked uncacheable
    (RFC 6749 §5.1, as Salesforce does)."""
    org = org_of(request)
    form = await read_form(request)
    grant = _GRANTS.get(form.get("grant_type", ""), "other")
    after: list[dict[str, Any]] = []
    response = await guard(org, "token", grant=grant, after=after)
    if response is None:
        bases = Bases(request)
        if grant == "jwt_bearer":
            response = _jwt_grant(org, bases, form)
        elif grant == "client_credentials":
            response = _cc_grant(org, request, bases, form)
        elif grant == "refresh_token":
            response = _refresh_grant(org, request, bases, form)
        else:
            response = oauth_error("unsupported_grant_type", "grant type not supported")
        response = await finish(after, response)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def _introspect_access(org: Org, bases: Bases, caller: ConnectedApp, tok: str, now: float) -> dict[str, Any] | None:
    rec = org.access_tokens.get(tok)
    if rec is None or not org.access_token_valid(rec, now):
        return None
    if rec.app_key != caller.consumer_key and not caller.introspect_all:
        return None
    user = org.users[rec.user_id]
    return {
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


def _introspect_refresh(org: Org, bases: Bases, caller: ConnectedApp, tok: str, now: float) -> dict[str, Any] | None:
    appr = org.approvals.get(tok)
    if appr is None or not org.approval_valid(appr, now):
        return None
    if appr.app_key != caller.consumer_key and not caller.introspect_all:
        return None
    user = org.users[appr.user_id]
    if not user.is_active:
        return None
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
    return body


async def introspect(request: Request) -> Response:
    """``POST /services/oauth2/introspect`` (RFC 7662)."""
    org = org_of(request)
    form = await read_form(request)
    faulted = await guard(org, "introspect")
    if faulted is not None:
        return faulted
    bases = Bases(request)
    cid, secret = _client(request, form)
    with org.lock:
        caller = org.app_by_key(cid)
        if caller is None or not secret_ok(caller, secret):
            return oauth_error("invalid_client", "invalid client credentials", 401)
        tok = form.get("token", "")
        now = org.clock.now()
        lookups = (_introspect_access, _introspect_refresh)
        if form.get("token_type_hint") == "refresh_token":
            lookups = lookups[::-1]
        for lookup in lookups:
            body = lookup(org, bases, caller, tok, now)
            if body is not None:
                return JSONResponse(body)
    return JSONResponse({"active": False})


async def revoke(request: Request) -> Response:
    """``POST /services/oauth2/revoke`` (form ``token``) or ``GET ?token=`` (RFC 7009)."""
    org = org_of(request)
    form = await read_form(request) if request.method == "POST" else {}
    faulted = await guard(org, "revoke")
    if faulted is not None:
        return faulted
    tok = form.get("token") or request.query_params.get("token")
    if not tok:
        return oauth_error("unsupported_token_type", "unsupported token type")
    if org.revoke_token(tok):
        return Response(status_code=200)
    return oauth_error("invalid_token", "invalid token")


#: Salesforce's published scopes (the ``scopes_supported`` of login.salesforce.com's discovery
#: document; Salesforce Help, "OAuth Tokens and Scopes")
SCOPES = [
    "address", "api", "cdp_api", "cdp_calculated_insight_api", "cdp_identityresolution_api",
    "cdp_ingest_api", "cdp_profile_api", "cdp_query_api", "cdp_segment_api", "chatbot_api", "content",
    "custom_permissions", "eclair_api", "einstein_gpt_api", "email", "forgot_password", "full", "id",
    "interaction_api", "lightning", "offline_access", "openid", "pardot_api", "phone", "profile",
    "pwdless_login_api", "refresh_token", "sfap_api", "user_registration_api", "visualforce", "wave_api",
    "web",
]
#: the claims userinfo answers (see :mod:`.identity`)
CLAIMS = [
    "active", "address", "email", "email_verified", "family_name", "given_name", "is_app_installed",
    "language", "locale", "name", "nickname", "organization_id", "phone_number", "phone_number_verified",
    "photos", "picture", "preferred_username", "profile", "sub", "updated_at", "urls", "user_id",
    "user_type", "zoneinfo",
]


async def openid_config(request: Request) -> Response:
    """``/.well-known/openid-configuration`` with the keys and values of Salesforce's document
    (OpenID Connect Discovery 1.0), on each of the three hosts; endpoints point at this host.
    ``private_key_jwt`` client authentication and dynamic registration are not served, so not
    advertised; ``authorization_endpoint`` stays, as the field is required."""
    faulted = await guard(org_of(request), "openid")
    if faulted is not None:
        return faulted
    b = Bases(request).request_base
    return JSONResponse(
        {
            "issuer": b,
            "authorization_endpoint": f"{b}/services/oauth2/authorize",
            "token_endpoint": f"{b}/services/oauth2/token",
            "revocation_endpoint": f"{b}/services/oauth2/revoke",
            "userinfo_endpoint": f"{b}/services/oauth2/userinfo",
            "jwks_uri": f"{b}/id/keys",
            "introspection_endpoint": f"{b}/services/oauth2/introspect",
            "scopes_supported": SCOPES,
            "response_types_supported": ["code", "token", "token id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "display_values_supported": ["page", "popup", "touch"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials", JWT_GRANT],
            "claims_supported": CLAIMS,
        }
    )


async def jwks(request: Request) -> Response:
    """``/id/keys``: the emulator's signing key."""
    org = org_of(request)
    faulted = await guard(org, "openid")
    if faulted is not None:
        return faulted
    return JSONResponse({"keys": [org.server_jwk]})


def routes(prefix: str) -> list[Route]:
    """The OAuth routes under ``prefix`` (``""``, ``"/login"`` or ``"/test"``)."""
    return [
        Route(f"{prefix}/services/oauth2/token", token, methods=["POST"]),
        Route(f"{prefix}/services/oauth2/introspect", introspect, methods=["POST"]),
        Route(f"{prefix}/services/oauth2/revoke", revoke, methods=["GET", "POST"]),
        Route(f"{prefix}/.well-known/openid-configuration", openid_config, methods=["GET"]),
        Route(f"{prefix}/id/keys", jwks, methods=["GET"]),
    ]
