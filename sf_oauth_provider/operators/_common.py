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
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, Sequence, TypeVar

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
    "RenderedFieldsMixin",
    "as_bool",
    "as_int",
    "as_number",
    "as_optional_list",
    "is_unset",
    "bounded_map",
    "fail_if_permanent",
    "is_template",
    "mask_secrets",
    "parse_fingerprints",
    "parse_list",
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
FINGERPRINT_RE = re.compile(r"^sha256:[0-9a-f]{12}$")


def mask_secrets(values: Iterable[str | None]) -> None:
    """:func:`sf_oauth_provider.masking.mask_secrets`, imported on first use: the operator
    modules import this module when a DAG file is parsed, the masking module pulls in the client.

    :param values: secrets to register with Airflow's secrets masker
    """
    from sf_oauth_provider.masking import mask_secrets as mask

    mask(values)


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


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def as_bool(value: Any, what: str) -> bool:
    """A boolean from a (possibly rendered) template value; anything else is an error.

    Empty strings and ``None`` are errors, not ``False``: a template that rendered to nothing
    (``{{ params.dry_run }}`` with no such param) must never switch a safety flag off.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    shown = "empty" if isinstance(value, str) and not value.strip() else f"{value!r}"
    raise ValueError(f"{what!r} must be true or false, got {shown}")


def is_unset(value: Any) -> bool:
    """``None``, or a template that rendered to nothing: an optional parameter left unset."""
    return value is None or (isinstance(value, str) and not value.strip())


def as_number(value: Any, what: str, *, minimum: float | None = None, above: float | None = None) -> float:
    """A number from a (possibly rendered) template value, e.g. ``"90"`` → ``90.0``.

    :param value: the value (a number or a string holding one)
    :param what: the parameter name, for the error message
    :param minimum: smallest allowed value
    :param above: the value must be more than this
    """
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str) and value.strip():
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or math.isnan(number) or math.isinf(number):
        raise ValueError(f"{what!r} must be a number, got {value!r}")
    if minimum is not None and number < minimum:
        raise ValueError(f"{what!r} must be {minimum:g} or more, got {value!r}")
    if above is not None and number <= above:
        raise ValueError(f"{what!r} must be more than {above:g}, got {value!r}")
    return number


def as_int(value: Any, what: str, *, minimum: int | None = None) -> int:
    """A whole number from a (possibly rendered) template value, e.g. ``"16"`` → ``16``.

    :param value: the value
    :param what: the parameter name, for the error message
    :param minimum: smallest allowed value
    """
    try:
        number = as_number(value, what)
    except ValueError:
        raise ValueError(f"{what!r} must be a whole number, got {value!r}") from None
    if number != int(number):
        raise ValueError(f"{what!r} must be a whole number, got {value!r}")
    if minimum is not None and number < minimum:
        raise ValueError(f"{what!r} must be {minimum} or more, got {value!r}")
    return int(number)


def as_optional_list(value: Any, what: str) -> list[str] | None:
    """``None`` (the parameter is not set), or a list of strings as :func:`parse_list` reads it.

    A rendered ``"None"`` or an empty string also mean "not set".

    :param value: the value
    :param what: the parameter name, for the error message
    """
    if value is None or (isinstance(value, str) and value.strip() in ("", "None", "null")):
        return None
    return parse_list(value, what)


def is_template(value: Any) -> bool:
    """Whether ``value`` is a Jinja template that Airflow renders before ``execute()``."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


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
    from sf_oauth_provider.client.masking import secret_forms

    out = str(text)[:MAX_MESSAGE_CHARS]
    forms = {form for secret in secrets for form in secret_forms(secret) if len(form) >= 5}
    for form in sorted(forms, key=len, reverse=True):
        out = out.replace(form, "***")
    return _TOKEN_LIKE.sub("***", out)


class RenderedFieldsMixin:
    """Calls :meth:`after_render` as soon as Airflow has rendered the operator's template fields.

    Both rendering paths go through ``_do_render_template_fields`` (``render_template_fields``
    and the one mapped tasks use), so raw tokens can be masked there, before Airflow stores or
    shows the rendered values. Put it before ``BaseOperator`` in the bases.
    """

    def _do_render_template_fields(
        self, parent: Any, template_fields: Iterable[str], context: Context, jinja_env: Any, seen_oids: set[int]
    ) -> None:
        super()._do_render_template_fields(parent, template_fields, context, jinja_env, seen_oids)  # type: ignore[misc]
        if parent is self:
            self.after_render()

    def after_render(self) -> None:
        """Runs after the template fields are rendered (e.g. to mask raw tokens)."""


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
    from sf_oauth_provider.client.errors import retry_may_help

    if not retry_may_help(exc):
        from sf_oauth_provider._compat import AirflowFailException

        raise AirflowFailException(f"{what} failed: {exc}") from exc


def push_return_value(context: Context | dict[str, Any], value: Any) -> None:
    """Push ``value`` as the task's return value before the task fails (Airflow only pushes the
    return value of a task that succeeds)."""
    ti = context.get("ti") if hasattr(context, "get") else None
    if ti is not None:
        ti.xcom_push(key="return_value", value=value)
