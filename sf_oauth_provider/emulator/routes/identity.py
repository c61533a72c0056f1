"""Identity: ``/services/oauth2/userinfo`` and the identity URL ``/id/{org}/{user}`` (Salesforce
Help, "Identity URLs" and "UserInfo Endpoint"), with every field Salesforce returns.

The identity URL takes ``version`` (a number like ``64.0`` or ``latest``: the ``{version}``
placeholder of ``urls`` is replaced; without it the placeholder stays) and ``format`` (``json``,
``xml``; also ``urlencoded``), or an ``Accept`` header (``application/json``, ``application/xml``,
``application/x-www-form-urlencoded``, ``*/*`` = JSON, a list read left to right). A bad token
gets Salesforce's ``403 text/plain Bad_OAuth_Token``.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from urllib.parse import urlencode
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..state import Org, User
from ..versions import LATEST_VERSION
from ._common import Bases, bearer, guard, org_of

__all__ = ["routes"]

_VERSION_RE = re.compile(r"^\d{1,3}\.\d$")
_FORMATS = {
    "application/json": "json",
    "application/xml": "xml",
    "application/x-www-form-urlencoded": "urlencoded",
    "*/*": "json",
}


def _bad_token() -> Response:
    return PlainTextResponse("Bad_OAuth_Token", status_code=403)


def _user_urls(org: Org, bases: Bases, user: User) -> dict[str, str]:
    root = bases.root
    o15 = org.org_id[:15]
    data = f"{root}/services/data/v{{version}}"
    return {
        "enterprise": f"{root}/services/Soap/c/{{version}}/{o15}",
        "metadata": f"{root}/services/Soap/m/{{version}}/{o15}",
        "partner": f"{root}/services/Soap/u/{{version}}/{o15}",
        "rest": f"{data}/",
        "sobjects": f"{data}/sobjects/",
        "search": f"{data}/search/",
        "query": f"{data}/query/",
        "recent": f"{data}/recent/",
        "tooling_soap": f"{root}/services/Soap/T/{{version}}/{o15}",
        "tooling_rest": f"{data}/tooling/",
        "profile": f"{root}/{user.id}",
        "feeds": f"{data}/chatter/feeds",
        "groups": f"{data}/chatter/groups",
        "users": f"{data}/chatter/users",
        "feed_items": f"{data}/chatter/feed-items",
        "feed_elements": f"{data}/chatter/feed-elements",
        "custom_domain": root,
    }


def _utc_offset_ms(tz: str, now: float) -> int:
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        return 0
    offset = dt.datetime.fromtimestamp(now, zone).utcoffset() or dt.timedelta(0)
    return int(offset.total_seconds() * 1000)


def _photos(bases: Bases) -> dict[str, str]:
    return {"picture": f"{bases.root}/profilephoto/005/F", "thumbnail": f"{bases.root}/profilephoto/005/T"}


def _user_facts(org: Org, bases: Bases, user: User) -> dict[str, Any]:
    """What userinfo and the identity URL both say about a user."""
    return {
        "user_id": user.id,
        "organization_id": org.org_id,
        "email": user.email,
        "email_verified": True,
        "photos": _photos(bases),
        "urls": _user_urls(org, bases, user),
        "active": user.is_active,
        "user_type": user.user_type,
        "language": "en_US",
        "locale": "en_US",
        "utcOffset": _utc_offset_ms(user.timezone, org.clock.now()),
        "is_app_installed": True,
    }


def _modified() -> str:
    """The user's last modification: the seeded users are never edited, so one fixed moment
    (2025-01-15 12:00 UTC) in Salesforce's ``2025-01-15T12:00:00Z`` shape."""
    return dt.datetime(2025, 1, 15, 12, 0, tzinfo=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


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
    facts = _user_facts(org, bases, user)
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
            "picture": facts["photos"]["picture"],
            "address": {"country": "US"},
            "is_salesforce_integration_user": False,
            "updated_at": _modified(),
            **facts,
        }
    )


def _identity_body(org: Org, bases: Bases, user: User) -> dict[str, Any]:
    return {
        "id": bases.id_url(org, user),
        "asserted_user": True,
        "username": user.username,
        "nick_name": user.username.split("@")[0],
        "display_name": user.name,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "timezone": user.timezone,
        "addr_street": None,
        "addr_city": None,
        "addr_state": None,
        "addr_country": "US",
        "addr_zip": None,
        "mobile_phone": None,
        "mobile_phone_verified": False,
        "is_lightning_login_user": False,
        "status": {"created_date": None, "body": None},
        "last_modified_date": _modified(),
        **_user_facts(org, bases, user),
    }


def _wanted_format(request: Request) -> str:
    """``json``/``xml``/``urlencoded`` from ``format`` or ``Accept`` (JSON for anything else)."""
    fmt = (request.query_params.get("format") or "").lower()
    if fmt in ("json", "xml", "urlencoded"):
        return fmt
    accept = request.headers.get("accept", "")
    for item in (a.split(";")[0].strip().lower() for a in accept.split(",")):
        if item in _FORMATS:
            return _FORMATS[item]
    return "json"  # no usable Accept: JSON, as Salesforce answers a bare request


def _as_xml(body: dict[str, Any]) -> str:
    def el(name: str, value: Any) -> str:
        if value is None:
            return f'<{name} xsi:nil="true"/>'
        if isinstance(value, dict):
            return f"<{name}>{''.join(el(k, v) for k, v in value.items())}</{name}>"
        text = str(value).lower() if isinstance(value, bool) else str(value)
        return f"<{name}>{escape(text)}</{name}>"

    inner = "".join(el(k, v) for k, v in body.items())
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<user xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">{inner}</user>'
    )


def _as_form(body: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for k, v in body.items():
        if isinstance(v, dict):
            out += _as_form(v, f"{prefix}{k}.")
        else:
            out.append((prefix + k, "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)))
    return out


def _render(body: dict[str, Any], fmt: str) -> Response:
    if fmt == "xml":
        return Response(_as_xml(body), media_type="application/xml")
    if fmt == "urlencoded":
        return Response(urlencode(_as_form(body)), media_type="application/x-www-form-urlencoded")
    return JSONResponse(body)


def _with_version(body: dict[str, Any], version: str | None) -> dict[str, Any]:
    """``urls`` with ``{version}`` replaced (``latest`` = the newest version); unchanged for a
    missing or malformed ``version``."""
    if version == "latest":
        version = f"{LATEST_VERSION}.0"
    if version is None or not _VERSION_RE.match(version):
        return body
    body["urls"] = {k: v.replace("{version}", version) for k, v in body["urls"].items()}
    return body


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
    fmt = _wanted_format(request)
    body = _identity_body(org, Bases(request), org.users[rec.user_id])
    return _render(_with_version(body, request.query_params.get("version")), fmt)


def routes(prefix: str) -> list[Route]:
    """The identity routes under ``prefix`` (``""``, ``"/login"`` or ``"/test"``)."""
    return [
        Route(f"{prefix}/services/oauth2/userinfo", userinfo, methods=["GET", "POST"]),
        Route(f"{prefix}/id/{{org_id}}/{{user_id}}", identity, methods=["GET", "POST"]),
    ]
