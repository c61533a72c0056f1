"""Helpers shared by the revocation and audit operators (no Airflow task logic here).

What lives here: reading the ``OauthToken`` inventory, fingerprint parsing and matching,
masking raw tokens and DeleteTokens in bulk, parsing list-like template values, running
per-token Salesforce calls with bounded concurrency, and turning client errors into Airflow
outcomes. Heavy imports (the hook, httpx) happen inside functions so that importing an
operator module stays cheap for DAG parsing.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Sequence, TypeVar

from sf_oauth_provider.masking import mask_secrets

if TYPE_CHECKING:
    import logging

    from airflow.sdk import Context

    from sf_oauth_provider.client.errors import SalesforceOAuthError
    from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

__all__ = [
    "INVENTORY_SOQL",
    "FINGERPRINT_RE",
    "InventoryRow",
    "Progress",
    "as_bool",
    "bounded_map",
    "fail_if_permanent",
    "mask_secrets",
    "parse_fingerprints",
    "parse_list",
    "parse_sf_datetime",
    "push_return_value",
    "query_inventory",
]

T = TypeVar("T")
R = TypeVar("R")

#: Every OauthToken column the operators read. ``DeleteToken`` is a credential (it revokes the
#: token): it is masked as soon as it is read and never leaves the operator.
INVENTORY_SOQL = (
    "SELECT AppName, UserId, User.Username, User.IsActive, CreatedDate, LastUsedDate, UseCount, DeleteToken "
    "FROM OauthToken"
)
FINGERPRINT_RE = re.compile(r"^sha256:[0-9a-f]{12}$")


# ---- parsing template values -----------------------------------------------------------------
def parse_list(value: Any, what: str) -> list[str]:
    """A list of non-empty strings from a template field, duplicates removed, order kept.

    Accepts ``None``, a list/tuple/set of strings, or one string holding a JSON or Python list
    (what ``{{ ti.xcom_pull(...) }}`` renders to) or items separated by commas/whitespace.
    Error messages never quote the values (they may be tokens).

    :param value: the rendered field
    :param what: the field name, for error messages
    """
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        if text[0] in "[(":
            parsed = _parse_sequence_literal(text)
            if parsed is None:
                raise ValueError(f"{what!r} looks like a list but cannot be parsed as JSON or a Python literal")
            return parse_list(parsed, what)
        return list(dict.fromkeys(p for p in re.split(r"[\s,]+", text) if p))
    if isinstance(value, (list, tuple, set, frozenset)):
        out: list[str] = []
        for item in value:
            if item is None:
                continue
            if not isinstance(item, str):
                raise TypeError(f"{what!r} must hold strings, got an item of type {type(item).__name__}")
            if item.strip():
                out.append(item.strip())
        return list(dict.fromkeys(out))
    raise TypeError(f"{what!r} must be a list of strings or a string, got {type(value).__name__}")


def _parse_sequence_literal(text: str) -> list[Any] | None:
    try:
        parsed = json.loads(text)
    except ValueError:
        import ast

        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
    return list(parsed) if isinstance(parsed, (list, tuple)) else None


def parse_fingerprints(value: Any) -> list[str]:
    """Validated token fingerprints (``sha256:`` + 12 lowercase hex), duplicates removed.

    A malformed fingerprint fails the whole request: a typo must not silently revoke nothing.
    """
    fps = [fp.lower() for fp in parse_list(value, "token_fingerprints")]
    bad = [i for i, fp in enumerate(fps, 1) if not FINGERPRINT_RE.match(fp)]
    if bad:
        # positions only: a raw token pasted here by mistake must not end up in the message
        shown = ", ".join(str(i) for i in bad[:10]) + (", ..." if len(bad) > 10 else "")
        raise ValueError(
            f"{len(bad)} of {len(fps)} values in 'token_fingerprints' are not fingerprints like "
            f"'sha256:0123456789ab' (items {shown}, counting from 1)"
        )
    return list(dict.fromkeys(fps))


def as_bool(value: Any, what: str) -> bool:
    """A boolean from a (possibly rendered) template value."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "0", "no", "off", ""):
        return False
    if isinstance(value, int):
        return bool(value)
    raise ValueError(f"{what!r} must be true or false, got {value!r}")


def parse_sf_datetime(value: Any) -> datetime | None:
    """Salesforce's ``2024-05-14T12:00:00.000+0000`` (or ISO 8601) as an aware UTC datetime."""
    if not value or not isinstance(value, str):
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            return datetime.strptime(value, fmt).astimezone(timezone.utc)
        except ValueError:
            pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


# ---- the OauthToken inventory ----------------------------------------------------------------
@dataclass(frozen=True)
class InventoryRow:
    """One ``OauthToken`` row; ``repr()`` never shows the DeleteToken.

    :param delete_token: the credential that revokes this token (a secret)
    :param fingerprint: ``fingerprint(delete_token)``, the row's public name
    """

    delete_token: str = field(repr=False)
    fingerprint: str
    app: str | None
    user_id: str | None
    username: str | None
    user_active: bool | None
    created: datetime | None
    last_used: datetime | None
    use_count: int | None


def query_inventory(hook: SalesforceOAuthHook) -> list[InventoryRow]:
    """Every ``OauthToken`` row the connection's user can see (all users' rows for an admin with
    "Customize Application"), DeleteTokens masked before anything else happens."""
    from sf_oauth_provider.client.token import fingerprint

    records = hook.query(INVENTORY_SOQL)
    mask_secrets(r.get("DeleteToken") for r in records)
    rows: list[InventoryRow] = []
    for rec in records:
        delete_token = rec.get("DeleteToken")
        if not delete_token:
            continue
        user = rec.get("User") or {}
        use_count = rec.get("UseCount")
        rows.append(
            InventoryRow(
                delete_token=delete_token,
                fingerprint=fingerprint(delete_token),
                app=rec.get("AppName"),
                user_id=rec.get("UserId"),
                username=user.get("Username"),
                user_active=user.get("IsActive"),
                created=parse_sf_datetime(rec.get("CreatedDate")),
                last_used=parse_sf_datetime(rec.get("LastUsedDate")),
                use_count=int(use_count) if isinstance(use_count, (int, float)) else None,
            )
        )
    return rows


# ---- running many calls ----------------------------------------------------------------------
class Progress:
    """Logs ``"<verb> 2,000/5,000 tokens"`` about every 10 % of ``total``."""

    def __init__(self, log: logging.Logger | Any, total: int, verb: str) -> None:
        self.log = log
        self.total = total
        self.verb = verb
        self.done = 0
        self.step = max(1, math.ceil(total / 10))

    def tick(self) -> None:
        self.done += 1
        if self.done % self.step == 0 or self.done == self.total:
            self.log.info("%s %s/%s tokens", self.verb, f"{self.done:,}", f"{self.total:,}")


async def bounded_map(
    items: Sequence[T], call: Callable[[T], Awaitable[R]], concurrency: int, progress: Progress | None = None
) -> list[R]:
    """``call`` on every item, at most ``concurrency`` at a time; results in input order.

    ``call`` should turn expected failures into results: an exception it raises stops the batch.
    """
    semaphore = asyncio.Semaphore(max(1, concurrency))

    async def one(item: T) -> R:
        async with semaphore:
            result = await call(item)
        if progress is not None:
            progress.tick()
        return result

    return list(await asyncio.gather(*(one(item) for item in items)))


def fail_if_permanent(exc: SalesforceOAuthError, what: str) -> None:
    """Raise ``AirflowFailException`` (no Airflow retries) for a permanent error; return for a
    transient one so the caller re-raises it and Airflow retries.

    :param what: what was attempted, e.g. ``"Reading the OauthToken inventory"``
    """
    if not exc.transient:
        from sf_oauth_provider._compat import AirflowFailException

        raise AirflowFailException(f"{what} failed: {exc}") from exc


def push_return_value(context: Context | dict[str, Any], value: Any) -> None:
    """Push ``value`` as the task's return value before the task fails (Airflow only pushes the
    return value of a task that succeeds)."""
    ti = context.get("ti") if hasattr(context, "get") else None
    if ti is not None:
        ti.xcom_push(key="return_value", value=value)
