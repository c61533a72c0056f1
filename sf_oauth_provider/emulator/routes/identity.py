"""Identity: ``/services/oauth2/userinfo`` and the identity URL ``/id/{org}/{user}``.
A bad token gets Salesforce's ``403 text/plain Bad_OAuth_Token``."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..state import Org, User
from ._common import Bases, bearer, guard, org_of

__all__ = ["routes"]


def _bad_token() -> Response:
    return PlainTextResponse("Bad_OAuth_Token", status_code=403)


def _user_urls(org: Org, bases: Bases, user: User) -> dict[str, str]:
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


def _user_facts(org: Org, bases: Bases, user: User) -> dict[str, Any]:
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
        "urls": _user_urls(org, bases, user),
    }


async def userinfo(request: Request) -> Response:
    """``GET|POST /services/oauth2/userinfo`` (OpenID Connect UserInfo)."""
    org = org_of(request)
    faulted = await guard(org, "userinfo")
    if faulted is not None:
        return faulted
    rec = org.use_access_token(bearer(request))
    if rec is None:
        return _bad_token()
    bases = Bases(request)
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
            **_user_facts(org, bases, user),
        }
    )


async def identity(request: Request) -> Response:
    """``GET|POST /id/{org_id}/{user_id}``: the identity service; another user's URL is ``Bad_Id``."""
    org = org_of(request)
    faulted = await guard(org, "identity")
    if faulted is not None:
        return faulted
    rec = org.use_access_token(bearer(request) or request.query_params.get("oauth_token"))
    if rec is None:
        return _bad_token()
    oid, uid = request.path_params["org_id"], request.path_params["user_id"]
    if oid[:15] != org.org_id[:15] or uid[:15] != rec.user_id[:15]:
        return PlainTextResponse("Bad_Id", status_code=403)
    bases = Bases(request)
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
            **_user_facts(org, bases, user),
        }
    )


def routes(prefix: str) -> list[Route]:
    """The identity routes under ``prefix`` (``""``, ``"/login"`` or ``"/test"``)."""
    return [
        Route(f"{prefix}/services/oauth2/userinfo", userinfo, methods=["GET", "POST"]),
        Route(f"{prefix}/id/{{org_id}}/{{user_id}}", identity, methods=["GET", "POST"]),
    ]
