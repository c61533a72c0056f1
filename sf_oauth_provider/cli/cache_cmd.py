"""``sf-oauth cache list`` and ``sf-oauth cache purge``: the token stores of this host and of Redis.

Entries are named by connection where this process can list the connection (a Redis entry can
only be read with its connection's credentials). Purging takes each store's refresh lock, so it
is safe while tasks run; it keeps the newest refresh token unless asked not to.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Iterable

from sf_oauth_provider.cli.env import file_store, hook_for, known_configs, redis_url
from sf_oauth_provider.cli.output import iso, table

if TYPE_CHECKING:
    from sf_oauth_provider.client.config import OAuthConfig
    from sf_oauth_provider.client.token import SalesforceToken

__all__ = ["cache_entries", "purge", "render_entries", "render_purge", "REFRESH_WARNING"]

_LOCK_TIMEOUT = 30.0
REFRESH_WARNING = (
    "WARNING: --include-refresh deletes the newest refresh token of each purged connection. A connection on "
    "auth_flow refresh_token whose token Salesforce rotated cannot log in again with the one in its extras: the "
    "next run needs a fresh authorisation (authorise again and store the new refresh token in extra "
    "'refresh_token'). jwt_bearer and client_credentials connections just log in again."
)
MEMORY_NOTE = ("process memory of running tasks is not reachable from here: a task that holds a purged token keeps "
               "it until it expires or Salesforce refuses it, then fetches a new one")


def _row(conn: str, key: str, layer: str, token: SalesforceToken | None, note: str | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"connection": conn, "key": key, "layer": layer, "fingerprint": None, "expires_at": None,
                           "expired": None, "has_refresh": None, "generation": None, "note": note}
    if token is not None:
        live = bool(token.access_token)
        row.update(fingerprint=token.fingerprint if live else None, expires_at=iso(token.expires_at) if live else None,
                   expired=(token.seconds_left(time.time()) <= 0) if live else None,
                   has_refresh=bool(token.refresh_token), generation=token.generation,
                   note=note or (token.marker and f"records: {token.marker}") or (None if live else "refresh only"))
    return row


def _redis_store(url: str, config: OAuthConfig) -> Any:
    from sf_oauth_provider.client.stores.redis import RedisStore

    return RedisStore(url, config)


def cache_entries() -> tuple[list[dict[str, Any]], list[str]]:
    """Every entry of the file store and of Redis (no secret), and warnings about stores that
    could not be read."""
    configs = known_configs()
    rows: list[dict[str, Any]] = []
    warnings: list[str] = []
    try:
        store = file_store()
    except Exception as exc:  # noqa: BLE001 - Rejected, OSError: report and go on with Redis
        warnings.append(f"file store: {getattr(exc, 'message', None) or type(exc).__name__}")
    else:
        for key in store.keys():
            config = configs.get(key)
            token = store.get(key)
            rows.append(_row(config.conn_id if config else "?", key, "file", token,
                             None if token else "unreadable (foreign key or corrupt): rebuilt on next use"))
    url = redis_url()
    if url:
        rows += _redis_rows(url, configs, warnings)
    return rows, warnings


def _redis_rows(url: str, configs: dict[str, OAuthConfig], warnings: list[str]) -> list[dict[str, Any]]:
    from sf_oauth_provider.client.stores.redis import redacted_url
    from sf_oauth_provider.client.stores.redis_admin import entry_keys, redis_client

    rows: list[dict[str, Any]] = []
    client = redis_client(url)
    try:
        keys = entry_keys(client)
    except Exception as exc:  # noqa: BLE001 - redis errors, OSError
        warnings.append(f"Redis at {redacted_url(url)}: {type(exc).__name__}")
        return rows
    finally:
        client.close()
    for key in keys:
        config = configs.get(key)
        if config is None:
            rows.append(_row("?", key, "redis", None, "connection not known here: encrypted with its credentials"))
            continue
        store = _redis_store(url, config)
        try:
            rows.append(_row(config.conn_id, key, "redis", store.get(key)))
        finally:
            store.close()
    return rows


def render_entries(rows: list[dict[str, Any]], warnings: Iterable[str]) -> str:
    shown = [{**r, "key": r["key"][:12], "has_refresh": {True: "yes", False: "no"}.get(r["has_refresh"], ""),
              "expired": {True: "yes", False: "no"}.get(r["expired"], "")} for r in rows]
    text = table(shown, [("connection", "connection"), ("key", "key"), ("layer", "layer"),
                         ("fingerprint", "fingerprint"), ("expires_at", "expires"), ("expired", "expired"),
                         ("has_refresh", "refresh token"), ("note", "note")]) if rows else "no cached tokens"
    return "\n".join([text, *(f"warning: {w}" for w in warnings)])


# ---- purge ---------------------------------------------------------------------------------------
def _purge_one(store: Any, key: str, include_refresh: bool, remove) -> str:
    """Purge ``key`` from ``store`` under its lock; what happened."""
    with store.lock(key, _LOCK_TIMEOUT) as held:
        if not held:
            return "busy: a refresh held the lock too long; left alone, try again"
        current = store.get(key)
        if current is None:
            return "no entry"
        if include_refresh:
            remove()
            return "removed (refresh token included)" if current.refresh_token else "removed"
        if not current.access_token:
            return "refresh token kept (no access token to drop)"
        store.invalidate(key, None)
        return "access token dropped, refresh token kept" if current.refresh_token else "removed"


def purge(conn_id: str | None, include_refresh: bool) -> tuple[list[dict[str, Any]], list[str]]:
    """Purge one connection's entries (``conn_id``) or every entry (None) from the file store and
    Redis, with the last error the status page shows. :returns: one row per entry and layer, and notes."""
    from sf_oauth_provider.ui.last_error import clear_last_error
    configs = known_configs()
    wanted: set[str] | None = None
    if conn_id is not None:
        config = hook_for(conn_id).config
        configs[config.cache_key] = config
        wanted = {config.cache_key}
    rows: list[dict[str, Any]] = []
    notes = [MEMORY_NOTE]
    try:
        store = file_store()
    except Exception as exc:  # noqa: BLE001 - Rejected, OSError
        notes.append(f"file store not purged: {getattr(exc, 'message', None) or type(exc).__name__}")
    else:
        for key in sorted(wanted if wanted is not None else set(store.keys())):
            name = configs[key].conn_id if key in configs else "?"
            outcome = _purge_one(store, key, include_refresh, lambda k=key: store.remove(k))
            if not outcome.startswith("busy"):  # a fresh start: the status page's "last error" goes too
                clear_last_error(store.directory, key)
            rows.append({"connection": name, "key": key, "layer": "file", "outcome": outcome})
    url = redis_url()
    if url:
        rows += _purge_redis(url, configs, wanted, include_refresh, notes)
    return rows, notes


def _purge_redis(url: str, configs: dict[str, OAuthConfig], wanted: set[str] | None, include_refresh: bool,
                 notes: list[str]) -> list[dict[str, Any]]:
    from sf_oauth_provider.client.stores.redis import KEY_PREFIX, redacted_url
    from sf_oauth_provider.client.stores.redis_admin import entry_keys, redis_client, remove_entry
    from sf_oauth_provider.ui.last_error import REDIS_SUFFIX as LAST_ERROR_SUFFIX

    client = redis_client(url)
    rows: list[dict[str, Any]] = []
    try:
        keys = set(entry_keys(client))
        for key in sorted(keys if wanted is None else wanted & keys):
            config = configs.get(key)
            if config is None:
                rows.append({"connection": "?", "key": key, "layer": "redis",
                             "outcome": "left alone: connection not known here, so its refresh token cannot be kept "
                                        "(name the connection, or see --include-refresh)"}
                            if not include_refresh else
                            {"connection": "?", "key": key, "layer": "redis",
                             "outcome": _removed(remove_entry(client, key, lock_timeout=_LOCK_TIMEOUT))})
                continue
            store = _redis_store(url, config)
            try:
                outcome = _purge_one(store, key, include_refresh, lambda k=key: remove_entry(client, k))
            finally:
                store.close()
            if not outcome.startswith("busy"):
                client.delete(KEY_PREFIX + key + LAST_ERROR_SUFFIX)
            rows.append({"connection": config.conn_id, "key": key, "layer": "redis", "outcome": outcome})
    except Exception as exc:  # noqa: BLE001 - redis errors, OSError
        notes.append(f"Redis at {redacted_url(url)} not purged: {type(exc).__name__}")
    finally:
        client.close()
    return rows


def _removed(outcome: bool | None) -> str:
    return {True: "removed", False: "no entry", None: "busy: a refresh held the lock too long; left alone"}[outcome]


def render_purge(rows: list[dict[str, Any]], notes: Iterable[str]) -> str:
    shown = [{**r, "key": r["key"][:12]} for r in rows]
    text = table(shown, [("connection", "connection"), ("key", "key"), ("layer", "layer"), ("outcome", "outcome")]) \
        if rows else "nothing cached to purge"
    return "\n".join([text, *(f"note: {n}" for n in notes)])
