"""The last permanent token error of each connection, kept beside its cached token.

The hook records it (message and hint only, already redacted by the client: never a secret) in
the file store's directory as ``<cache key>.last_error`` — 0600, written atomically through
:mod:`sf_oauth_provider.client.stores.safefs` — and clears it after the next token it hands out.
The status page reads it. Recording never fails a task: an unusable directory is skipped.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from sf_oauth_provider.client.stores.safefs import Rejected, read_private_file, write_private_file

__all__ = ["clear_last_error", "note_outcome", "read_last_error", "record_last_error"]

_SUFFIX = ".last_error"
_MAX_BYTES = 64 * 1024
_MAX_TEXT = 2000


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
    message = getattr(exc, "message", None) or type(exc).__name__
    record = {
        "at": time.time() if now is None else now,
        "error": type(exc).__name__,
        "code": getattr(exc, "error", None),
        "message": str(message)[:_MAX_TEXT],
        "hint": (str(getattr(exc, "hint", None))[:_MAX_TEXT] if getattr(exc, "hint", None) else None),
    }
    try:
        write_private_file(directory, _name(cache_key), json.dumps(record).encode(), fsync=False)
    except OSError:
        pass


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


def note_outcome(directory: Path | None, cache_key: str, exc: BaseException | None) -> None:
    """What the hook calls after each token request: a permanent error is recorded, a token
    handed out clears the record; a transient error (Salesforce down, a timeout) changes nothing.

    :param exc: the exception the request raised, or None when a token was handed out
    """
    if exc is None:
        if directory is not None and (directory / _name(cache_key)).exists():
            clear_last_error(directory, cache_key)
    elif _is_recorded(exc):
        record_last_error(directory, cache_key, exc)
