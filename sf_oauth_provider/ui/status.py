"""The status of every ``salesforce_oauth`` connection, as the status page shows it.

Read-only and offline: a row comes from the connection's settings and what its token stores hold
(the file store of this host, Redis when configured) — never a token request, so opening the page
costs no login. No secret leaves here: tokens appear by fingerprint, errors by their (redacted)
message and hint.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sf_oauth_provider._compat import conf
from sf_oauth_provider.client.errors import SalesforceOAuthError
from sf_oauth_provider.ui.last_error import read_recorded

if TYPE_CHECKING:
    from sf_oauth_provider.client.provider import TokenProvider
    from sf_oauth_provider.client.token import SalesforceToken

__all__ = ["connection_ids", "connection_status", "latest_audit", "page_status"]

#: a token with fewer seconds left than this is shown as "expiring" (the hook's default leeway)
LEEWAY = 300.0
_MAX_AUDIT_BYTES = 16 << 20


def _iso(epoch: float | None) -> str | None:
    if epoch is None or epoch <= 0:
        return None
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="seconds")


def connection_ids() -> list[str]:
    """The ``salesforce_oauth`` connection ids this process can list: environment variables, a
    local connections file, and the metadata DB (the API server can read it)."""
    from sf_oauth_provider.hooks import connection_lookup

    found, db_listed = connection_lookup.listable_connection_ids()
    ids = set(found)
    if not db_listed:
        try:
            ids |= connection_lookup._from_metastore()
        except Exception:  # noqa: BLE001 - no metadata DB here (plain Python): the others still list
            pass
    return sorted(ids)


def _stored(provider: TokenProvider) -> tuple[SalesforceToken | None, str | None]:
    """The newest entry of the shared layers (file, Redis) and the layer that holds it.

    Process memory is skipped: this process (the API server) never fetches tokens."""
    key = provider.config.cache_key
    best: tuple[SalesforceToken | None, str | None] = (None, None)
    for store in provider.cache.layers:
        if not store.shared:
            continue
        token = store.get(key)
        if token is not None and (best[0] is None or token.generation > best[0].generation):
            best = (token, store.name)
    return best


def _token_state(token: SalesforceToken | None, now: float) -> str:
    if token is None:
        return "no token cached"
    if token.marker:
        return f"refresh {token.marker.replace('_', ' ')}"
    if not token.access_token:
        return "refresh token only" if token.refresh_token else "invalidated"
    left = token.seconds_left(now)
    if left <= 0:
        return "expired"
    return "expiring" if left <= LEEWAY else "valid"


def _logins_this_hour(provider: TokenProvider) -> int | None:
    """Token requests of the connection's Salesforce user in the last hour, as the login budget
    counts them (the file or Redis ledger the tasks write; no request to Salesforce)."""
    try:
        return provider.budget.used().count
    except Exception:  # noqa: BLE001 - a page row never fails on a count it cannot read
        return None


def _budget_cap() -> int | None:
    """``[sf_oauth] login_budget_cap`` (ops-metrics adds it; 0 disables), when configured."""
    try:
        value = conf.get("sf_oauth", "login_budget_cap", fallback=None)
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _error_row(row: dict[str, Any], exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, SalesforceOAuthError):
        row["last_error"] = {"error": type(exc).__name__, "message": exc.message, "hint": exc.hint, "at": None}
    else:  # not ours: its text may hold anything, so only its kind
        row["last_error"] = {"error": type(exc).__name__, "message": "the connection could not be read",
                             "hint": "run `sf-oauth doctor " + row["conn_id"] + "`", "at": None}
    row["state"] = "misconfigured"
    return row


def connection_status(conn_id: str, now: float | None = None) -> dict[str, Any]:
    """One row of the page: token state (fingerprint, expiry, layer), last error with its hint,
    logins this hour against the budget. No secret, no request to Salesforce.

    :param conn_id: a ``salesforce_oauth`` connection id
    :param now: epoch seconds (default: the clock)
    """
    from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

    now = time.time() if now is None else now
    row: dict[str, Any] = {
        "conn_id": conn_id, "state": None, "auth_flow": None, "cache": None, "layer": None,
        "fingerprint": None, "expires_at": None, "expires_in_seconds": None, "last_error": None,
        "logins_this_hour": None, "login_budget_cap": _budget_cap(),
    }
    hook = SalesforceOAuthHook(conn_id)
    try:
        provider = hook.provider
        cache = provider.cache
    except Exception as exc:  # noqa: BLE001 - a broken connection is a row, not a broken page
        return _error_row(row, exc)
    token, layer = _stored(provider)
    row.update(auth_flow=provider.config.auth_flow, cache=cache.mode, state=_token_state(token, now), layer=layer)
    if token is not None and token.access_token:
        row.update(fingerprint=token.fingerprint, expires_at=_iso(token.expires_at),
                   expires_in_seconds=int(token.seconds_left(now)))
    last = read_recorded(cache, provider.config.cache_key)
    if last and token is not None and token.access_token and float(last.get("at") or 0) <= token.issued_at:
        last = None  # a token was issued after it (e.g. on another host): no longer the state
    if last:
        row["last_error"] = {k: last.get(k) for k in ("error", "message", "hint")} | {"at": _iso(last.get("at"))}
        if row["state"] == "no token cached":
            row["state"] = "failing"  # tasks get no token: the error says why
    row["logins_this_hour"] = _logins_this_hour(provider)
    return row


def audit_report_dir() -> Path | None:
    """``[sf_oauth] audit_report_dir``: the local folder an audit task writes its reports to."""
    value = conf.get("sf_oauth", "audit_report_dir", fallback=None)
    return Path(value).expanduser() if value else None


def latest_audit(directory: Path | None = None) -> dict[str, Any] | None:
    """The summary of ``audit.json`` in ``directory`` (default :func:`audit_report_dir`), or None.

    :returns: ``generated_at``, ``connection``, ``org_id``, ``summary`` (the counts) and whether an
        ``audit.html`` sits beside it; ``error`` instead when the file is not a report
    """
    directory = directory if directory is not None else audit_report_dir()
    if directory is None:
        return None
    path = directory / "audit.json"
    try:
        if path.stat().st_size > _MAX_AUDIT_BYTES:
            return {"error": f"{path} is larger than {_MAX_AUDIT_BYTES} bytes"}
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"error": f"no audit report in {directory} yet"}
    except (OSError, ValueError) as exc:
        return {"error": f"{path} is not readable as JSON ({type(exc).__name__})"}
    if not isinstance(report, dict) or not isinstance(report.get("summary"), dict):
        return {"error": f"{path} is not an audit report"}
    return {
        "generated_at": report.get("generated_at"), "connection": report.get("connection"),
        "org_id": report.get("org_id"), "summary": report["summary"],
        "html": (directory / "audit.html").is_file(),
    }


def page_status(now: float | None = None) -> dict[str, Any]:
    """Everything the page shows: one row per connection and the latest audit summary."""
    now = time.time() if now is None else now
    return {
        "generated_at": _iso(now),
        "connections": [connection_status(cid, now) for cid in connection_ids()],
        "audit": latest_audit(),
    }
