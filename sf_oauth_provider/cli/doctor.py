"""``sf-oauth doctor``: every check of a connection, in order, each with what it found and the fix.

The checks are data (:data:`~sf_oauth_provider.cli.doctor_checks.CHECKS`): a name, what it needs
to have passed before, and a function of the :class:`DoctorContext` returning a :class:`Result`.
A check whose prerequisite failed is shown as skipped, naming it. Nothing secret is printed: tokens
appear as fingerprints, Salesforce's answers are redacted by the client.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:
    from sf_oauth_provider.client.config import OAuthConfig
    from sf_oauth_provider.client.errors import SalesforceConfigError
    from sf_oauth_provider.client.token import SalesforceToken

__all__ = ["Check", "Result", "DoctorContext", "run_checks", "render", "as_json", "SYMBOLS"]

#: status → what a person sees
SYMBOLS = {"ok": "✓", "fail": "✗", "skip": "–", "n/a": "–"}


@dataclass(frozen=True)
class Result:
    """What one check found.

    :param status: ``ok``, ``fail``, ``skip`` (a prerequisite failed) or ``n/a`` (does not apply)
    :param detail: what was found (never a secret)
    :param fix: what to change, when it failed (or a note when it passed)
    """

    status: str
    detail: str
    fix: str | None = None

    @property
    def passed(self) -> bool:
        return self.status in ("ok", "n/a")


def ok(detail: str, note: str | None = None) -> Result:
    return Result("ok", detail, note)


def fail(detail: str, fix: str | None) -> Result:
    return Result("fail", detail, fix)


def not_applicable(detail: str) -> Result:
    return Result("n/a", detail)


@dataclass(frozen=True)
class Check:
    """One named check.

    :param name: short id (``key``, ``token``): JSON key and what later checks name in ``needs``
    :param title: what a person reads
    :param run: the check
    :param needs: checks that must have passed first (else this one is skipped)
    """

    name: str
    title: str
    run: Callable[[DoctorContext], Result]
    needs: tuple[str, ...] = ()


@dataclass
class DoctorContext:
    """What the checks learn, shared from one to the next."""

    conn_id: str
    hook: Any
    conn: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    config: OAuthConfig | None = None
    config_error: SalesforceConfigError | None = None
    token: SalesforceToken | None = None
    #: the server's ``Date`` and this host's clock when it answered (epoch seconds)
    server_date: float | None = None
    local_time: float | None = None
    redis_url: str | None = None
    now: Callable[[], float] = time.time


def _secrets_of(ctx: DoctorContext) -> list[str]:
    """The connection's secret values, as a last guard on what the checks say (a validation
    message quotes the field it refuses, and a host may carry ``user:password@``)."""
    from urllib.parse import urlsplit

    conn = ctx.conn
    found = [getattr(conn, "password", None) or ""]
    found += [str(ctx.extra.get(name) or "") for name in ("refresh_token", "private_key_passphrase")]
    found += [line for line in str(ctx.extra.get("private_key") or "").replace("\\n", "\n").splitlines()
              if len(line) > 16]
    try:
        found.append(urlsplit(str(getattr(conn, "host", "") or "")).password or "")
    except ValueError:
        pass
    if ctx.token is not None:
        found += [ctx.token.access_token, ctx.token.refresh_token or ""]
    return sorted({s for s in found if len(s) >= 6}, key=len, reverse=True)


def _redacted(result: Result, secrets: list[str]) -> Result:
    def clean(text: str | None) -> str | None:
        for secret in secrets:
            text = text.replace(secret, "[redacted]") if text else text
        return text

    return Result(result.status, clean(result.detail) or "", clean(result.fix))


def run_checks(ctx: DoctorContext, checks: Sequence[Check]) -> list[tuple[Check, Result]]:
    """Run ``checks`` in order; a check whose prerequisite did not pass is skipped, naming it.
    The connection's secrets are replaced by ``[redacted]`` wherever a check quoted one."""
    done: dict[str, Result] = {}
    results: list[tuple[Check, Result]] = []
    titles = {c.name: c.title for c in checks}
    for check in checks:
        blocked = [name for name in check.needs if name in done and not done[name].passed]
        if blocked:
            result = Result("skip", f"skipped: needs '{titles[blocked[0]]}', which failed")
        else:
            try:
                result = check.run(ctx)
            except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
                from sf_oauth_provider.client.errors import SalesforceOAuthError

                said = str(exc) if isinstance(exc, SalesforceOAuthError) else type(exc).__name__
                result = fail(f"the check could not run: {said}", getattr(exc, "hint", None))
        done[check.name] = result
        results.append((check, result))
    secrets = _secrets_of(ctx)
    return [(check, _redacted(result, secrets)) for check, result in results]


def render(conn_id: str, results: list[tuple[Check, Result]]) -> str:
    """The human report: one table row per check, its fix below it."""
    from sf_oauth_provider.cli.output import table, terminal_width

    rows = []
    for check, result in results:
        detail = result.detail
        if result.fix:
            detail += f"\n  {'fix' if result.status == 'fail' else 'note'}: {result.fix}"
        rows.append({"s": SYMBOLS[result.status], "check": check.title, "detail": detail})
    failed = sum(1 for _, r in results if r.status == "fail")
    skipped = sum(1 for _, r in results if r.status == "skip")
    verdict = ("all checks passed" if not failed else f"{failed} check(s) failed" + (
        f", {skipped} skipped" if skipped else ""))
    head = f"sf-oauth doctor: connection {conn_id!r}"
    shown = table(rows, [("s", ""), ("check", "check"), ("detail", "result")], wrap_last=terminal_width())
    return "\n".join([head, "", shown, "", verdict])


def as_json(conn_id: str, results: list[tuple[Check, Result]]) -> dict[str, Any]:
    return {
        "connection": conn_id,
        "ok": all(r.passed for _, r in results),
        "checks": [{"name": c.name, "title": c.title, "status": r.status, "detail": r.detail, "fix": r.fix}
                   for c, r in results],
    }
