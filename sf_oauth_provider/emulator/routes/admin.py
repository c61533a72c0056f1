"""The emulator's own admin API under ``/__emulator/``: counters, faults, tokens, clock,
settings, bulk (planned query job failures), synthetic (large objects), reset, info.

Only a program on this machine may use it, and not a web page that this machine's browser
happens to show: requests from a non-loopback peer, for a host name other than the emulator's
own (DNS rebinding), with a foreign ``Origin`` (CSRF), or with a body that is not
``application/json`` (what HTML forms and ``no-cors`` fetches send) are refused.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._common import org_of

__all__ = ["routes"]

_LOOPBACK_PEERS = {"127.0.0.1", "::1"}
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
_DEFAULT_PORTS = {"http": 80, "https": 443}

Handler = Callable[[Request], Awaitable[Response]]


def _refuse(status: int, error: str, message: str) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status)


def _own_hosts(request: Request) -> set[str]:
    """The ``Host`` values that name this server: a loopback name with the listening port."""
    server = request.scope.get("server") or ("", None)
    port = server[1] or _DEFAULT_PORTS.get(request.url.scheme)  # in-process ASGI: None for the default
    hosts = {f"{name}:{port}" for name in _LOOPBACK_NAMES}
    if port == _DEFAULT_PORTS.get(request.url.scheme):
        hosts.update(_LOOPBACK_NAMES)
    return hosts


async def _refusal(request: Request) -> Response | None:
    peer = request.client.host if request.client else ""
    if peer not in _LOOPBACK_PEERS:
        return _refuse(403, "forbidden", "the admin API answers loopback clients only")
    own = _own_hosts(request)
    host = request.headers.get("host", "").lower()
    if host not in own:
        return _refuse(403, "forbidden", "the admin API answers only for 127.0.0.1, localhost or [::1] with its port")
    origin = request.headers.get("origin")
    if origin is not None and origin.lower() not in {f"{request.url.scheme}://{h}" for h in own}:
        return _refuse(403, "forbidden", "the admin API refuses cross-origin requests")
    if request.method in ("POST", "PUT", "PATCH", "DELETE"):
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = await request.body()
        if ctype != "application/json" and (ctype or body):
            return _refuse(415, "unsupported_media_type", "send the admin API a JSON body (application/json)")
    return None


def _admin(handler: Handler) -> Handler:
    async def wrapped(request: Request) -> Response:
        refused = await _refusal(request)
        if refused is not None:
            return refused
        try:
            return await handler(request)
        except (KeyError, ValueError, TypeError, json.JSONDecodeError) as exc:
            return _refuse(400, "bad_request", str(exc))

    return wrapped


async def _json(request: Request) -> dict[str, Any]:
    body = await request.body()
    if not body:
        return {}
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    return data


async def counters(request: Request) -> Response:
    """``GET counters``."""
    return JSONResponse(org_of(request).counters())


async def counters_reset(request: Request) -> Response:
    """``POST counters/reset``."""
    org = org_of(request)
    org.reset_counters()
    return JSONResponse(org.counters())


async def faults(request: Request) -> Response:
    """``GET|POST|DELETE faults``."""
    org = org_of(request)
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


async def tokens(request: Request) -> Response:
    """``GET tokens``: every token issued, for leak scans."""
    return JSONResponse({"tokens": org_of(request).issued_tokens()})


async def mint(request: Request) -> Response:
    """``POST tokens/mint``."""
    d = await _json(request)
    toks = org_of(request).mint_tokens(
        int(d.get("n", 1)),
        app=d.get("app"),
        user=d.get("user"),
        kind=d.get("kind", "access"),
        scope=d.get("scope"),
        enforce_limit=bool(d.get("enforce_limit", False)),
    )
    return JSONResponse({"tokens": toks})


async def clock(request: Request) -> Response:
    """``GET|POST clock`` (``{"now": epoch}`` / ``{"advance": seconds}``)."""
    org = org_of(request)
    if request.method == "POST":
        d = await _json(request)
        if "now" in d:
            org.clock.set(float(d["now"]))
        if "advance" in d:
            org.clock.advance(float(d["advance"]))
    return JSONResponse({"now": org.clock.now(), "offset": org.clock.offset})


_APP_SETTINGS = ("rotate_refresh_tokens", "introspect_all", "refresh_token_ttl", "admin_approved_only")


async def settings(request: Request) -> Response:
    """``GET|POST settings`` (org settings, and per-app ``apps: {name: {...}}``)."""
    org = org_of(request)
    if request.method == "POST":
        d = await _json(request)
        apps = d.pop("apps", {}) or {}
        with org.lock:
            org.settings.update(d)
            for ref, values in apps.items():
                app = org.app_by_name_or_key(ref)
                for k, v in values.items():
                    if k not in _APP_SETTINGS:
                        raise KeyError(f"unknown app setting {k!r}")
                    setattr(app, k, v)
    return JSONResponse(
        {
            **org.settings.as_dict(),
            "apps": {a.name: {k: getattr(a, k) for k in _APP_SETTINGS} for a in org.apps.values()},
        }
    )


async def bulk(request: Request) -> Response:
    """``GET|POST bulk``: ``{"fail_next_query_job": "errorMessage"}`` makes the next Bulk API 2.0
    query job end ``Failed`` with that message (what a query that times out on Salesforce does);
    ``null`` cancels it. The processing time is the ``bulk_query_delay`` setting."""
    store = org_of(request).bulk_query
    if request.method == "POST":
        d = await _json(request)
        if "fail_next_query_job" in d:
            message = d["fail_next_query_job"]
            if message is not None and not isinstance(message, str):
                raise ValueError("fail_next_query_job is a message (string) or null")
            store.fail_next = message
    return JSONResponse({"fail_next_query_job": store.fail_next, "query_jobs": len(store.jobs)})


async def synthetic(request: Request) -> Response:
    """``GET|POST synthetic`` (``{"object": "Opportunity", "rows": n}``; ``rows: 0`` removes
    them): ``n`` records made on demand after the seeded ones, until the next reset."""
    org = org_of(request)
    if request.method == "POST":
        d = await _json(request)
        org.synthetic.configure(str(d["object"]), d["rows"], org.clock.now())
    return JSONResponse(org.synthetic.summary())


async def reset(request: Request) -> Response:
    """``POST reset``: back to the seeded state."""
    org_of(request).reset()
    return JSONResponse({"ok": True})


async def info(request: Request) -> Response:
    """``GET info``: URLs, apps, users, settings (no secrets)."""
    org = org_of(request)
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


def routes() -> list[Route]:
    """The admin routes."""
    return [
        Route("/__emulator/counters", _admin(counters), methods=["GET"]),
        Route("/__emulator/counters/reset", _admin(counters_reset), methods=["POST"]),
        Route("/__emulator/faults", _admin(faults), methods=["GET", "POST", "DELETE"]),
        Route("/__emulator/tokens", _admin(tokens), methods=["GET"]),
        Route("/__emulator/tokens/mint", _admin(mint), methods=["POST"]),
        Route("/__emulator/clock", _admin(clock), methods=["GET", "POST"]),
        Route("/__emulator/settings", _admin(settings), methods=["GET", "POST"]),
        Route("/__emulator/bulk", _admin(bulk), methods=["GET", "POST"]),
        Route("/__emulator/synthetic", _admin(synthetic), methods=["GET", "POST"]),
        Route("/__emulator/reset", _admin(reset), methods=["POST"]),
        Route("/__emulator/info", _admin(info), methods=["GET"]),
    ]
