"""Helpers the revocation and audit operators use when a task runs (no Airflow task logic here).

What lives here: reading the ``OauthToken`` inventory, masking raw tokens and DeleteTokens in
bulk, redacting text from Salesforce, running per-token Salesforce calls with bounded
concurrency, and turning client errors into Airflow outcomes. The operator modules, which DAG
files import, read this module as ``operators._common`` when a task runs; parameter parsing,
which runs when a DAG file is parsed, is in :mod:`._params`.
"""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, Sequence, TypeVar

from sf_oauth_provider._compat import AirflowFailException
from sf_oauth_provider.client.errors import retry_may_help
from sf_oauth_provider.client.masking import secret_forms
from sf_oauth_provider.client.token import fingerprint
from sf_oauth_provider.masking import mask_secrets

if TYPE_CHECKING:
    import logging

    from airflow.sdk import Context

    from sf_oauth_provider.client.errors import SalesforceOAuthError
    from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

__all__ = [
    "INVENTORY_SOQL",
    "InventoryRow",
    "MAX_MESSAGE_CHARS",
    "Progress",
    "bounded_map",
    "fail_if_permanent",
    "mask_secrets",
    "parse_sf_datetime",
    "push_return_value",
    "query_inventory",
    "redact_secrets",
]

T = TypeVar("T")
R = TypeVar("R")

#: Every OauthToken column the operators read. ``DeleteToken`` is a credential (it revokes the
#: token): it is masked as soon as it is read and never leaves the operator.
INVENTORY_SOQL = (
    "SELECT AppName, UserId, User.Username, User.IsActive, CreatedDate, LastUsedDate, UseCount, DeleteToken "
    "FROM OauthToken"
)


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


# ---- text from Salesforce ---------------------------------------------------------------------
#: Strings that look like credentials whatever we know about them: a Salesforce access token
#: (``00D…!…``), a JWT, or a long run of base64/hex characters holding letters and digits.
_TOKEN_LIKE = re.compile(
    r"00D[A-Za-z0-9]{12,15}![A-Za-z0-9._~+/=-]+"
    r"|eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"
    r"|(?<![A-Za-z0-9+/=_-])(?=[A-Za-z0-9+/=_-]*[0-9])(?=[A-Za-z0-9+/=_-]*[A-Za-z])[A-Za-z0-9+/=_-]{32,}"
)
#: Messages are cut to this many characters before they go into reports.
MAX_MESSAGE_CHARS = 2000


def redact_secrets(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` (e.g. an error message quoting Salesforce) with known secrets and anything that
    looks like a token replaced by ``***`` — before it reaches a report or XCom.

    A server may echo what it was sent (the consumer secret, an assertion) in its
    ``error_description``; the secrets masker only protects logs.

    :param text: the message
    :param secrets: the secrets known to the caller (consumer secret, tokens, DeleteTokens, ...)
    """
    out = str(text)[:MAX_MESSAGE_CHARS]
    forms = {form for secret in secrets for form in secret_forms(secret) if len(form) >= 5}
    for form in sorted(forms, key=len, reverse=True):
        out = out.replace(form, "***")
    return _TOKEN_LIKE.sub("***", out)


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
    if not retry_may_help(exc):
        raise AirflowFailException(f"{what} failed: {exc}") from exc


def push_return_value(context: Context | dict[str, Any], value: Any) -> None:
    """Push ``value`` as the task's return value before the task fails (Airflow only pushes the
    return value of a task that succeeds)."""
    ti = context.get("ti") if hasattr(context, "get") else None
    if ti is not None:
        ti.xcom_push(key="return_value", value=value)
