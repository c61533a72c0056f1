"""The last permanent token error of each connection, kept beside its cached token.

The hook records it (message and hint only, already redacted by the client: never a secret) in
the file store's directory as ``<cache key>.last_error`` — 0600, written atomically through
:mod:`sf_oauth_provider.client.stores.safefs` — and, when the connection uses Redis, under the
token's Redis key plus ``:last_error`` (sealed with the same per-connection key as the token,
kept a week), so an API server on another host sees it too. The next token handed out clears
both. The status page reads them. Recording never fails a task: an unusable store is skipped.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sf_oauth_provider.client.stores.safefs import Rejected, read_private_file, write_private_file

if TYPE_CHECKING:
    from sf_oauth_provider.client.cache import TokenCache

__all__ = ["REDIS_SUFFIX", "clear_last_error", "note_outcome", "read_last_error", "read_recorded", "record_last_error"]

_SUFFIX = ".last_error"
#: after the token's Redis key: the sealed last-error record
REDIS_SUFFIX = ":last_error"
_MAX_BYTES = 64 * 1024
_MAX_TEXT = 2000
_REDIS_TTL = 7 * 86400


def _name(cache_key: str) -> str:
    return cache_key + _SUFFIX


def record_last_error(directory: Path | None, cache_key: str, exc: BaseException, now: float | None = None) -> None:
    """Keep ``exc`` as the connection's last error.

    :param directory: the file store's directory (None: no file store, nothing kept)
    :param cache_key: the connection's cache key
    :param exc: a :class:`~sf_oauth_provider.client.errors.SalesforceOAuthError` (its ``message``
        and ``hint``, which the client redacted) or any exception (its class name only)
    """
    if directory is None:
        return
    try:
        write_private_file(directory, _name(cache_key), json.dumps(_record(exc, now)).encode(), fsync=False)
    except OSError:
        pass


def _record(exc: BaseException, now: float | None = None) -> dict[str, Any]:
    message = getattr(exc, "message", None) or type(exc).__name__
    hint = getattr(exc, "hint", None)
    return {
        "at": time.time() if now is None else now,
        "error": type(exc).__name__,
        "code": getattr(exc, "error", None),
        "message": str(message)[:_MAX_TEXT],
        "hint": str(hint)[:_MAX_TEXT] if hint else None,
    }


def clear_last_error(directory: Path | None, cache_key: str) -> None:
    """Forget the last error (a token was handed out since)."""
    if directory is None:
        return
    try:
        (directory / _name(cache_key)).unlink()
    except OSError:
        pass


def read_last_error(directory: Path | None, cache_key: str) -> dict[str, Any] | None:
    """The recorded last error, or None (none, unreadable, or not this user's file)."""
    if directory is None:
        return None
    try:
        data = read_private_file(directory / _name(cache_key), _MAX_BYTES, "last error")
    except (Rejected, OSError):
        return None
    if not data:
        return None
    try:
        record = json.loads(data)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _is_recorded(exc: BaseException) -> bool:
    from sf_oauth_provider.client.errors import SalesforcePermanentError

    return isinstance(exc, SalesforcePermanentError)


def _redis_layers(cache: TokenCache) -> list[Any]:
    return [store for store in cache.layers if store.name == "redis"]


def _redis_note(store: Any, cache_key: str, exc: BaseException | None) -> None:
    try:
        client, name = store._sync(), store._name(cache_key) + REDIS_SUFFIX
        if exc is None:
            client.delete(name)
        else:
            sealed = store._fernet(cache_key).encrypt(json.dumps(_record(exc)).encode())
            client.set(name, sealed, ex=_REDIS_TTL)
    except Exception:  # noqa: BLE001 - Redis down or refusing: the file record still stands
        pass


def _redis_read(store: Any, cache_key: str) -> dict[str, Any] | None:
    try:
        sealed = store._sync().get(store._name(cache_key) + REDIS_SUFFIX)
        record = json.loads(store._fernet(cache_key).decrypt(sealed)) if sealed else None
    except Exception:  # noqa: BLE001 - unreachable, or sealed for other credentials: nothing to show
        return None
    return record if isinstance(record, dict) else None


def note_outcome(cache: TokenCache, cache_key: str, exc: BaseException | None) -> None:
    """What the hook calls after each token request: a permanent error is recorded, a token
    handed out clears the record; a transient error (Salesforce down, a timeout) changes nothing.

    :param cache: the connection's token cache (its file directory and Redis layer)
    :param exc: the exception the request raised, or None when a token was handed out
    """
    directory = cache.cache_dir
    if exc is None:
        if directory is not None and (directory / _name(cache_key)).exists():
            clear_last_error(directory, cache_key)
            for store in _redis_layers(cache):
                _redis_note(store, cache_key, None)
    elif _is_recorded(exc):
        record_last_error(directory, cache_key, exc)
        for store in _redis_layers(cache):
            _redis_note(store, cache_key, exc)


def read_recorded(cache: TokenCache, cache_key: str) -> dict[str, Any] | None:
    """The newest last error of the file store and Redis, or None."""
    found = [r for r in [read_last_error(cache.cache_dir, cache_key),
                         *(_redis_read(s, cache_key) for s in _redis_layers(cache))] if r]
    return max(found, key=lambda r: float(r.get("at") or 0)) if found else None
