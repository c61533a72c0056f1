"""SalesforceRevokeTokenOperator: revoke Salesforce OAuth tokens safely (cap, dry run, idempotent).

DAG files import this module: the hook, the client and the run-time helpers load when a task first
uses them, read through their packages (``hooks.``, ``core.``, ``operators._common.``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from airflow.sdk import BaseOperator

from sf_oauth_provider import client as core
from sf_oauth_provider import hooks, operators
from sf_oauth_provider._compat import AirflowException, AirflowFailException
from sf_oauth_provider.client.errors import SalesforceOAuthError
from sf_oauth_provider.operators._params import (
    RenderedFieldsMixin,
    as_bool,
    as_int,
    as_number,
    is_unset,
    parse_fingerprints,
    parse_list,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

__all__ = ["SalesforceRevokeTokenOperator"]

#: outcome of one item
REVOKED, ALREADY_INVALID, NOT_FOUND, FAILED, WOULD_REVOKE = (
    "revoked", "already_invalid", "not_found", "failed", "would_revoke"
)


@dataclass(frozen=True)
class _Settings:
    """The operator's parameters after rendering, converted and checked."""

    dry_run: bool
    revoke_current: bool
    fail_on_not_found: bool
    max_revocations: int
    max_concurrency: int
    retry_attempts: int | None
    retry_backoff: float | None


@dataclass
class _Target:
    """One token to revoke. ``secret`` (a raw token or a DeleteToken) never leaves the operator
    and is not in ``repr``."""

    secret: str = field(repr=False)
    fingerprint: str
    app: str | None = None
    user: str | None = None
    current: bool = False
    raw: bool = False


class SalesforceRevokeTokenOperator(RenderedFieldsMixin, BaseOperator):
    """Revoke Salesforce OAuth tokens: raw tokens, OauthToken rows by fingerprint, or the
    connection's own cached token.

    Safe by default:

    * **cap** — when more than ``max_revocations`` tokens would be revoked the task fails before
      revoking anything (a wrong fingerprint list must not wipe an org);
    * **dry run by default** — ``dry_run=True`` (the default) resolves everything and reports
      ``would_revoke`` items without revoking (the cap is not enforced, a warning says when a real
      run would be refused). Set ``dry_run=False`` to revoke. A ``dry_run`` that is empty,
      ``None`` or not a recognisable boolean fails the task: it never means "revoke";
    * **nothing missing looks like success** — a wanted fingerprint that matches no OauthToken
      row is ``not_found`` (a typo, or a token revoked earlier): after every other item is done,
      the task fails naming those fingerprints, unless ``fail_on_not_found=False``;
    * **idempotent** — a raw token Salesforce already considers invalid counts as
      ``already_invalid``;
    * **every item is attempted** — transient errors are retried per item by the client's retry
      policy; if an item still fails, the task fails *after* the summary is logged and pushed to
      XCom (``AirflowFailException`` when every failure is permanent, else ``AirflowException``
      so Airflow retries).

    The return value / XCom is ``{"revoked", "already_invalid", "not_found", "failed", "dry_run",
    "items": [{"fingerprint", "outcome", "app", "error"?, "detail"?}]}`` — tokens are
    named by fingerprint; no raw token or DeleteToken is ever logged, returned or pushed. It is
    pushed before the task fails, so a failed run's XCom says what was done.

    Raw ``tokens`` are a template field, and rendered template fields are stored in the metadata
    DB and shown in the UI. They are registered with the secrets masker right after rendering (both
    rendering paths, mapped tasks included, go through :class:`RenderedFieldsMixin`), so the
    values Airflow stores and logs are redacted;
    Airflow also hides any field whose name contains ``token`` by name. Pass raw tokens
    through a template (``{{ var.value.leaked_token }}``, a secrets backend) or an upstream XCom —
    a literal string in DAG code ends up in the serialized DAG.

    :param salesforce_oauth_conn_id: the ``salesforce_oauth`` connection used to query and revoke
    :param tokens: raw access or refresh tokens to revoke (templated): a list, or one string
        holding a JSON/Python list or comma/whitespace-separated tokens
    :param token_fingerprints: fingerprints of OauthToken rows (e.g. an audit's
        ``stale_token_fingerprints``), templated; each is matched against
        ``fingerprint(DeleteToken)`` of the OauthToken rows and revoked through that DeleteToken
    :param revoke_current: also revoke the connection's own cached access token (and purge it
        from the token cache, keeping a rotated refresh token); done last (templated)
    :param dry_run: report what would be revoked, revoke nothing; default ``True`` (templated)
    :param fail_on_not_found: fail the task when a wanted fingerprint matches no token; default
        ``True`` (templated)
    :param max_revocations: refuse (before revoking anything) when more tokens than this would be
        revoked; default 100 (templated)
    :param max_concurrency: revocation requests in flight at once (one connection pool); default 8
        (templated)
    :param retry_attempts: tries per request for a transient error (default: the hook's; templated)
    :param retry_backoff: first backoff in seconds between those tries (default: the hook's;
        templated)
    :param kwargs: other ``BaseOperator`` arguments

    Every templated flag and number is converted after rendering: a value that cannot be
    converted fails the task naming the parameter, before any request.
    """

    template_fields: Sequence[str] = (
        "salesforce_oauth_conn_id", "tokens", "token_fingerprints", "dry_run", "revoke_current",
        "fail_on_not_found", "max_revocations", "max_concurrency", "retry_attempts", "retry_backoff",
    )
    ui_color = "#f9d6d5"

    def __init__(
        self,
        *,
        salesforce_oauth_conn_id: str = "salesforce_oauth_default",
        tokens: list[str] | str | None = None,
        token_fingerprints: list[str] | str | None = None,
        revoke_current: bool | str = False,
        dry_run: bool | str = True,
        fail_on_not_found: bool | str = True,
        max_revocations: int | str = 100,
        max_concurrency: int | str = 8,
        retry_attempts: int | str | None = None,
        retry_backoff: float | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.salesforce_oauth_conn_id = salesforce_oauth_conn_id
        self.tokens = tokens
        self.token_fingerprints = token_fingerprints
        self.revoke_current = revoke_current
        # shadows BaseOperator.dry_run(), which renders templates for `airflow tasks render`-style
        # dry runs; nothing in Airflow 3 calls it on a task, and the parameter name is public API
        self.dry_run = dry_run  # type: ignore[method-assign,assignment]
        self.fail_on_not_found = fail_on_not_found
        self.max_revocations = max_revocations
        self.max_concurrency = max_concurrency
        self.retry_attempts = retry_attempts
        self.retry_backoff = retry_backoff
        if not any(isinstance(v, str) for v in (revoke_current, dry_run, fail_on_not_found, max_revocations,
                                                   max_concurrency, retry_attempts, retry_backoff)):
            self._settings()  # plain values: a bad one fails when the DAG is parsed
        if _looks_literal(tokens):
            self.log.warning(
                "%s: 'tokens' holds literal values; they are stored in the serialized DAG. Pass raw tokens "
                "through a template such as {{ var.value.<name> }} or a secrets backend instead",
                self.task_id,
            )

    # ---- masking -------------------------------------------------------------------------------
    def after_render(self) -> None:
        """Mask the raw tokens right after rendering, before Airflow stores the rendered fields."""
        self._mask_tokens()

    def _mask_tokens(self) -> list[str]:
        try:
            raw = parse_list(self.tokens, "tokens")
        except (TypeError, ValueError):
            return []  # execute() reports the bad value
        operators._common.mask_secrets(raw)
        return raw

    def _settings(self) -> _Settings:
        """The rendered parameters, converted (``ValueError`` naming the parameter)."""
        return _Settings(
            dry_run=as_bool(self.dry_run, "dry_run"),
            revoke_current=as_bool(self.revoke_current, "revoke_current"),
            fail_on_not_found=as_bool(self.fail_on_not_found, "fail_on_not_found"),
            max_revocations=as_int(self.max_revocations, "max_revocations", minimum=0),
            max_concurrency=as_int(self.max_concurrency, "max_concurrency", minimum=1),
            retry_attempts=None if is_unset(self.retry_attempts)
            else as_int(self.retry_attempts, "retry_attempts", minimum=1),
            retry_backoff=None if is_unset(self.retry_backoff)
            else as_number(self.retry_backoff, "retry_backoff", minimum=0),
        )

    # ---- execution -----------------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        self._mask_tokens()
        try:
            settings = self._settings()
            raw_tokens = parse_list(self.tokens, "tokens")
            wanted = parse_fingerprints(self.token_fingerprints)
        except (TypeError, ValueError) as exc:
            raise AirflowFailException(f"{self.task_id}: {exc}") from None

        if not raw_tokens and not wanted and not settings.revoke_current:
            self.log.info("Nothing to revoke: no tokens, no fingerprints and revoke_current is off")
            return _summary([], settings.dry_run)

        hook = hooks.SalesforceOAuthHook(
            self.salesforce_oauth_conn_id,
            retry=core.oauth.RetryPolicy.from_numbers(settings.retry_attempts, settings.retry_backoff),
        )
        try:
            return self._revoke(context, hook, raw_tokens, wanted, settings)
        finally:
            hook.close()

    def _revoke(
        self, context: Context, hook: SalesforceOAuthHook, raw_tokens: list[str], wanted: list[str], settings: _Settings
    ) -> dict[str, Any]:
        try:
            hook.config  # noqa: B018 — validate the connection first (a config error is permanent)
            targets, unmatched = self._resolve(hook, raw_tokens, wanted, settings.revoke_current)
        except SalesforceOAuthError as exc:
            operators._common.fail_if_permanent(exc, "Finding the tokens to revoke")
            raise

        items = [
            {"fingerprint": fp, "outcome": NOT_FOUND, "app": None,
             "detail": "no OauthToken row has this fingerprint (a typo, or a token revoked earlier)"}
            for fp in unmatched
        ]
        for fp in unmatched:
            self.log.warning("%s matches no OauthToken row (a typo, or a token revoked earlier)", fp)
        if settings.dry_run:
            if len(targets) > settings.max_revocations:
                self.log.warning(
                    "Dry run: %d tokens would be revoked, more than max_revocations=%d; a real run would be refused",
                    len(targets), settings.max_revocations,
                )
            for t in targets:
                self.log.info("Dry run: would revoke %s (app %r, user %r)", t.fingerprint, t.app, t.user)
            items += [self._item(t, WOULD_REVOKE) for t in targets]
            summary = self._finish(context, _summary(items, dry_run=True))
            self._fail_on_not_found(context, summary, settings, len(wanted))
            return summary

        if len(targets) > settings.max_revocations:
            raise AirflowFailException(
                f"Refusing to revoke {len(targets)} tokens: more than max_revocations={settings.max_revocations}. "
                f"Nothing was revoked. If revoking {len(targets)} tokens is intended, set max_revocations "
                f"to {len(targets)} or more (try dry_run=True first)"
            )

        self.log.info("Revoking %d tokens (%d fingerprints match no token)", len(targets), len(unmatched))
        items += self._revoke_all(hook, targets, settings.max_concurrency)
        summary = self._finish(context, _summary(items, dry_run=False))
        failures = [i for i in items if i["outcome"] == FAILED]
        if failures:
            message = (
                f"{len(failures)} of {len(targets)} revocations failed "
                f"({summary['revoked']} revoked, {summary['already_invalid']} already invalid, "
                f"{summary['not_found']} not found); "
                f"failed: {', '.join(str(i['fingerprint']) for i in failures[:20])}"
            )
            if all(i.get("permanent") for i in failures):
                raise AirflowFailException(message + " — the errors are permanent; retrying will not help")
            raise AirflowException(message + " — a retry revokes only what is left")
        self._fail_on_not_found(context, summary, settings, len(wanted))
        return summary

    def _fail_on_not_found(self, context: Context, summary: dict[str, Any], settings: _Settings, wanted: int) -> None:
        missing = [i["fingerprint"] for i in summary["items"] if i["outcome"] == NOT_FOUND]
        if not missing or not settings.fail_on_not_found:
            return
        operators._common.push_return_value(context, summary)
        shown = ", ".join(missing[:20]) + (", ..." if len(missing) > 20 else "")
        done = "would be revoked (dry run)" if settings.dry_run else "revoked"
        count = sum(1 for i in summary["items"] if i["outcome"] in (REVOKED, WOULD_REVOKE))
        raise AirflowFailException(
            f"{len(missing)} of {wanted} fingerprints match no token: {shown}. Everything else was done "
            f"({count} {done}). Check them against the latest audit report (a typo, or a token revoked "
            "earlier — e.g. by an earlier try of this task); set fail_on_not_found=False to accept missing tokens"
        )

    def _resolve(
        self, hook: SalesforceOAuthHook, raw_tokens: list[str], wanted: list[str], revoke_current: bool
    ) -> tuple[list[_Target], list[str]]:
        """Targets to revoke (raw tokens, matched OauthToken rows, the current token) and the
        wanted fingerprints no row has."""
        targets: dict[str, _Target] = {}
        for token in raw_tokens:
            targets.setdefault(core.fingerprint(token), _Target(token, core.fingerprint(token), raw=True))
        unmatched: list[str] = []
        if wanted:
            rows = operators.inventory.query_inventory(hook)
            by_fp: dict[str, list[Any]] = {}
            for row in rows:
                by_fp.setdefault(row.fingerprint, []).append(row)
            self.log.info("Matched %d of %d fingerprints against %d OauthToken rows",
                          sum(1 for fp in wanted if fp in by_fp), len(wanted), len(rows))
            for fp in wanted:
                matches = by_fp.get(fp)
                if not matches:
                    unmatched.append(fp)
                    continue
                for row in matches:
                    targets.setdefault(
                        row.fingerprint, _Target(row.delete_token, row.fingerprint, row.app, row.username)
                    )
        if revoke_current:
            current = hook.get_token()
            config = hook.config
            targets.pop(current.fingerprint, None)  # revoked last, through the hook (purges the cache)
            targets[current.fingerprint] = _Target(
                current.access_token, current.fingerprint, user=config.username, current=True,
                app=f"connection {config.conn_id}",
            )
        return list(targets.values()), unmatched

    def _revoke_all(self, hook: SalesforceOAuthHook, targets: list[_Target], concurrency: int) -> list[dict[str, Any]]:
        """Revoke every target; one item per target, in order."""
        batch = [t for t in targets if not t.current]
        current = [t for t in targets if t.current]
        results: dict[str, dict[str, Any]] = {}
        if batch:
            progress = operators._common.Progress(self.log, len(batch), "revoked")

            async def run() -> list[dict[str, Any]]:
                async with hook.async_client(max_connections=concurrency) as client:

                    async def one(target: _Target) -> dict[str, Any]:
                        return await self._attempt(target, client.revoke(target.secret))

                    return await operators._common.bounded_map(batch, one, concurrency, progress)

            for target, item in zip(batch, asyncio.run(run()), strict=True):
                results[target.fingerprint] = item
            for target in batch:  # a revoked raw token must not stay in this host's token cache
                if target.raw and results[target.fingerprint]["outcome"] != FAILED:
                    hook.invalidate_token(access_token=target.secret)
        for target in current:
            results[target.fingerprint] = self._attempt_sync(target, lambda t=target: hook.revoke(t.secret))
        return [results[t.fingerprint] for t in targets]

    async def _attempt(self, target: _Target, call: Any) -> dict[str, Any]:
        try:
            revoked = await call
        except SalesforceOAuthError as exc:
            return self._failed(target, exc)
        return self._done(target, revoked)

    def _attempt_sync(self, target: _Target, call: Any) -> dict[str, Any]:
        try:
            revoked = call()
        except SalesforceOAuthError as exc:
            return self._failed(target, exc)
        return self._done(target, revoked)

    def _done(self, target: _Target, revoked: bool) -> dict[str, Any]:
        if revoked:
            self.log.info("Revoked %s (app %r, user %r)", target.fingerprint, target.app, target.user)
            return self._item(target, REVOKED)
        self.log.info("%s was already invalid (app %r, user %r)", target.fingerprint, target.app, target.user)
        return self._item(target, ALREADY_INVALID)

    def _failed(self, target: _Target, exc: SalesforceOAuthError) -> dict[str, Any]:
        self.log.error("Could not revoke %s (app %r, user %r): %s", target.fingerprint, target.app, target.user, exc)
        item = self._item(target, FAILED)
        item["error"] = str(exc)
        item["permanent"] = not exc.transient
        return item

    @staticmethod
    def _item(target: _Target, outcome: str) -> dict[str, Any]:
        # no username: XCom holds no personal data (the log line of each item names the user)
        return {"fingerprint": target.fingerprint, "outcome": outcome, "app": target.app}

    def _finish(self, context: Context, summary: dict[str, Any]) -> dict[str, Any]:
        self.log.info(
            "Revocation summary: %d revoked, %d already invalid, %d not found, %d failed%s",
            summary["revoked"], summary["already_invalid"], summary["not_found"], summary["failed"],
            f", {sum(1 for i in summary['items'] if i['outcome'] == WOULD_REVOKE)} would be revoked (dry run)"
            if summary["dry_run"] else "",
        )
        if summary["failed"]:
            operators._common.push_return_value(context, summary)
        return summary


def _summary(items: list[dict[str, Any]], dry_run: bool) -> dict[str, Any]:
    count = {o: sum(1 for i in items if i["outcome"] == o) for o in (REVOKED, ALREADY_INVALID, NOT_FOUND, FAILED)}
    return {
        "revoked": count[REVOKED],
        "already_invalid": count[ALREADY_INVALID],
        "not_found": count[NOT_FOUND],
        "failed": count[FAILED],
        "dry_run": dry_run,
        "items": items,
    }


def _looks_literal(tokens: Any) -> bool:
    """True when ``tokens`` holds plain strings rather than templates or an XComArg."""
    values = [tokens] if isinstance(tokens, str) else tokens if isinstance(tokens, (list, tuple)) else []
    return any(isinstance(v, str) and v.strip() and "{{" not in v and "{%" not in v for v in values)
