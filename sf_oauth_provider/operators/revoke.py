"""SalesforceRevokeTokenOperator: revoke Salesforce OAuth tokens safely (cap, dry run, idempotent)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Sequence

from airflow.sdk import BaseOperator

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import Context

    from sf_oauth_provider.client.errors import SalesforceOAuthError
    from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

__all__ = ["SalesforceRevokeTokenOperator"]

#: outcome of one item
REVOKED, ALREADY_INVALID, FAILED, WOULD_REVOKE = "revoked", "already_invalid", "failed", "would_revoke"


class _Target:
    """One token to revoke. ``secret`` (a raw token or a DeleteToken) never leaves the operator
    and is not in ``repr``. (A plain slotted class: a dataclass costs milliseconds at import.)"""

    __slots__ = ("secret", "fingerprint", "app", "user", "current", "raw")

    def __init__(
        self, secret: str, fingerprint: str, app: str | None = None, user: str | None = None,
        current: bool = False, raw: bool = False,
    ) -> None:
        self.secret, self.fingerprint, self.app, self.user = secret, fingerprint, app, user
        self.current, self.raw = current, raw

    def __repr__(self) -> str:
        return f"_Target({self.fingerprint}, app={self.app!r}, user={self.user!r})"


class SalesforceRevokeTokenOperator(BaseOperator):
    """Revoke Salesforce OAuth tokens: raw tokens, OauthToken rows by fingerprint, or the
    connection's own cached token.

    Safe by default:

    * **cap** — when more than ``max_revocations`` tokens would be revoked the task fails before
      revoking anything (a wrong fingerprint list must not wipe an org);
    * **dry run** — ``dry_run=True`` resolves everything and reports ``would_revoke`` items
      without revoking (the cap is not enforced, a warning says when a real run would be refused);
    * **idempotent** — a token Salesforce already considers invalid counts as ``already_invalid``,
      and so does a wanted fingerprint that no OauthToken row has any more (revoked earlier, or
      never existed), so a re-run after a partial failure only retries what is left;
    * **every item is attempted** — transient errors are retried per item by the client's retry
      policy; if an item still fails, the task fails *after* the summary is logged and pushed to
      XCom (``AirflowFailException`` when every failure is permanent, else ``AirflowException``
      so Airflow retries).

    The return value / XCom is ``{"revoked", "already_invalid", "failed", "dry_run", "items":
    [{"fingerprint", "outcome", "app", "user", "error"?, "detail"?}]}`` — tokens are named by
    fingerprint; no raw token or DeleteToken is ever logged, returned or pushed.

    Raw ``tokens`` are a template field, and rendered template fields are stored in the metadata
    DB and shown in the UI. They are registered with the secrets masker right after rendering
    (``render_template_fields`` is overridden), so the values Airflow stores and logs are
    redacted; Airflow also hides any field whose name contains ``token`` by name. Pass raw tokens
    through a template (``{{ var.value.leaked_token }}``, a secrets backend) or an upstream XCom —
    a literal string in DAG code ends up in the serialized DAG.

    :param salesforce_oauth_conn_id: the ``salesforce_oauth`` connection used to query and revoke
    :param tokens: raw access or refresh tokens to revoke (templated): a list, or one string
        holding a JSON/Python list or comma/whitespace-separated tokens
    :param token_fingerprints: fingerprints of OauthToken rows (e.g. an audit's
        ``stale_token_fingerprints``), templated; each is matched against
        ``fingerprint(DeleteToken)`` of the OauthToken rows and revoked through that DeleteToken
    :param revoke_current: also revoke the connection's own cached access token (and purge it
        from the token cache); done last, after the other items
    :param dry_run: report what would be revoked, revoke nothing (templated)
    :param max_revocations: refuse (before revoking anything) when more tokens than this would be
        revoked
    :param max_concurrency: revocation requests in flight at once (one connection pool)
    :param retry_attempts: tries per request for a transient error (default: the hook's)
    :param retry_backoff: first backoff in seconds between those tries (default: the hook's)
    :param kwargs: other ``BaseOperator`` arguments
    """

    template_fields: Sequence[str] = ("salesforce_oauth_conn_id", "tokens", "token_fingerprints", "dry_run")
    ui_color = "#f9d6d5"

    def __init__(
        self,
        *,
        salesforce_oauth_conn_id: str = "salesforce_oauth_default",
        tokens: list[str] | str | None = None,
        token_fingerprints: list[str] | str | None = None,
        revoke_current: bool = False,
        dry_run: bool | str = False,
        max_revocations: int = 100,
        max_concurrency: int = 8,
        retry_attempts: int | None = None,
        retry_backoff: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if int(max_revocations) < 0:
            raise ValueError("max_revocations must be 0 or more")
        if int(max_concurrency) < 1:
            raise ValueError("max_concurrency must be 1 or more")
        self.salesforce_oauth_conn_id = salesforce_oauth_conn_id
        self.tokens = tokens
        self.token_fingerprints = token_fingerprints
        self.revoke_current = revoke_current
        self.dry_run = dry_run
        self.max_revocations = int(max_revocations)
        self.max_concurrency = int(max_concurrency)
        self.retry_attempts = retry_attempts
        self.retry_backoff = retry_backoff
        if _looks_literal(tokens):
            self.log.warning(
                "%s: 'tokens' holds literal values; they are stored in the serialized DAG. Pass raw tokens "
                "through a template such as {{ var.value.<name> }} or a secrets backend instead",
                self.task_id,
            )

    # ---- masking -------------------------------------------------------------------------------
    def render_template_fields(self, context: Context, jinja_env: jinja2.Environment | None = None) -> None:
        """Render, then mask the raw tokens before Airflow stores the rendered fields."""
        super().render_template_fields(context, jinja_env)
        self._mask_tokens()

    def _do_render_template_fields(
        self, parent: Any, template_fields: Iterable[str], context: Context, jinja_env: jinja2.Environment,
        seen_oids: set[int],
    ) -> None:
        """The rendering step mapped tasks call directly (bypassing :meth:`render_template_fields`):
        mask there too."""
        super()._do_render_template_fields(parent, template_fields, context, jinja_env, seen_oids)
        if parent is self:
            self._mask_tokens()

    def _mask_tokens(self) -> list[str]:
        from sf_oauth_provider.operators._common import mask_secrets, parse_list

        try:
            raw = parse_list(self.tokens, "tokens")
        except (TypeError, ValueError):
            return []  # execute() reports the bad value
        mask_secrets(raw)
        return raw

    # ---- execution -----------------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        from sf_oauth_provider._compat import AirflowFailException

        from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook
        from sf_oauth_provider.client.oauth import RetryPolicy
        from sf_oauth_provider.operators._common import as_bool, parse_fingerprints, parse_list

        self._mask_tokens()
        try:
            raw_tokens = parse_list(self.tokens, "tokens")
            wanted = parse_fingerprints(self.token_fingerprints)
            dry_run = as_bool(self.dry_run, "dry_run")
        except (TypeError, ValueError) as exc:
            raise AirflowFailException(str(exc)) from None

        summary = _summary([], dry_run)
        if not raw_tokens and not wanted and not self.revoke_current:
            self.log.info("Nothing to revoke: no tokens, no fingerprints and revoke_current is off")
            return summary

        hook = SalesforceOAuthHook(
            self.salesforce_oauth_conn_id, retry=RetryPolicy.from_numbers(self.retry_attempts, self.retry_backoff)
        )
        try:
            return self._revoke(context, hook, raw_tokens, wanted, dry_run)
        finally:
            hook.close()

    def _revoke(
        self, context: Context, hook: SalesforceOAuthHook, raw_tokens: list[str], wanted: list[str], dry_run: bool
    ) -> dict[str, Any]:
        from sf_oauth_provider._compat import AirflowFailException

        from sf_oauth_provider.client.errors import SalesforceOAuthError

        try:
            hook.config  # noqa: B018 — validate the connection first (a config error is permanent)
            targets, unmatched = self._resolve(hook, raw_tokens, wanted)
        except SalesforceOAuthError as exc:
            from sf_oauth_provider.operators._common import fail_if_permanent

            fail_if_permanent(exc, "Finding the tokens to revoke")
            raise

        items = [
            {"fingerprint": fp, "outcome": ALREADY_INVALID, "app": None, "user": None,
             "detail": "no OauthToken row has this fingerprint (already revoked, or never existed)"}
            for fp in unmatched
        ]
        if dry_run:
            if len(targets) > self.max_revocations:
                self.log.warning(
                    "Dry run: %d tokens would be revoked, more than max_revocations=%d; a real run would be refused",
                    len(targets), self.max_revocations,
                )
            for t in targets:
                self.log.info("Dry run: would revoke %s (app %r, user %r)", t.fingerprint, t.app, t.user)
            items += [self._item(t, WOULD_REVOKE) for t in targets]
            return self._finish(context, _summary(items, dry_run=True))

        if len(targets) > self.max_revocations:
            raise AirflowFailException(
                f"Refusing to revoke {len(targets)} tokens: more than max_revocations={self.max_revocations}. "
                f"Nothing was revoked. If revoking {len(targets)} tokens is intended, set max_revocations "
                f"to {len(targets)} or more (try dry_run=True first)"
            )

        self.log.info("Revoking %d tokens (%d already gone)", len(targets), len(unmatched))
        items += self._revoke_all(hook, targets)
        summary = self._finish(context, _summary(items, dry_run=False))
        failures = [i for i in items if i["outcome"] == FAILED]
        if failures:
            from sf_oauth_provider._compat import AirflowException

            message = (
                f"{len(failures)} of {len(targets)} revocations failed "
                f"({summary['revoked']} revoked, {summary['already_invalid']} already invalid); "
                f"failed: {', '.join(i['fingerprint'] for i in failures[:20])}"
            )
            if all(i.get("permanent") for i in failures):
                raise AirflowFailException(message + " — the errors are permanent; retrying will not help")
            raise AirflowException(message + " — a retry revokes only what is left")
        return summary

    def _resolve(
        self, hook: SalesforceOAuthHook, raw_tokens: list[str], wanted: list[str]
    ) -> tuple[list[_Target], list[str]]:
        """Targets to revoke (raw tokens, matched OauthToken rows, the current token) and the
        wanted fingerprints no row has."""
        from sf_oauth_provider.client.token import fingerprint
        from sf_oauth_provider.operators._common import query_inventory

        targets: dict[str, _Target] = {}
        for token in raw_tokens:
            targets.setdefault(fingerprint(token), _Target(token, fingerprint(token), raw=True))
        unmatched: list[str] = []
        if wanted:
            rows = query_inventory(hook)
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
                    targets.setdefault(row.fingerprint, _Target(row.delete_token, row.fingerprint, row.app, row.username))
        if self.revoke_current:
            token = hook.get_token()
            config = hook.config
            targets.pop(token.fingerprint, None)  # revoked last, through the hook (purges the cache)
            targets[token.fingerprint] = _Target(
                token.access_token, token.fingerprint, user=config.username, current=True,
                app=f"connection {config.conn_id}",
            )
        return list(targets.values()), unmatched

    def _revoke_all(self, hook: SalesforceOAuthHook, targets: list[_Target]) -> list[dict[str, Any]]:
        """Revoke every target; one item per target, in order."""
        import asyncio

        from sf_oauth_provider.operators._common import Progress, bounded_map, mask_secrets

        batch = [t for t in targets if not t.current]
        current = [t for t in targets if t.current]
        results: dict[str, dict[str, Any]] = {}
        if batch:
            config, sink = hook.config, []
            progress = Progress(self.log, len(batch), "revoked")

            async def run() -> list[dict[str, Any]]:
                async with hook._async_client(config, sink, max_connections=self.max_concurrency) as client:

                    async def one(target: _Target) -> dict[str, Any]:
                        return await self._attempt(target, client.revoke(target.secret))

                    return await bounded_map(batch, one, self.max_concurrency, progress)

            try:
                for target, item in zip(batch, asyncio.run(run())):
                    results[target.fingerprint] = item
            finally:
                mask_secrets(sink)
            for target in batch:  # a revoked raw token must not stay in this host's token cache
                if target.raw and results[target.fingerprint]["outcome"] != FAILED:
                    hook.invalidate_token(access_token=target.secret)
        for target in current:
            results[target.fingerprint] = self._attempt_sync(target, lambda t=target: hook.revoke(t.secret))
        return [results[t.fingerprint] for t in targets]

    async def _attempt(self, target: _Target, call: Any) -> dict[str, Any]:
        from sf_oauth_provider.client.errors import SalesforceOAuthError

        try:
            revoked = await call
        except SalesforceOAuthError as exc:
            return self._failed(target, exc)
        return self._done(target, revoked)

    def _attempt_sync(self, target: _Target, call: Any) -> dict[str, Any]:
        from sf_oauth_provider.client.errors import SalesforceOAuthError

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
        return {"fingerprint": target.fingerprint, "outcome": outcome, "app": target.app, "user": target.user}

    def _finish(self, context: Context, summary: dict[str, Any]) -> dict[str, Any]:
        self.log.info(
            "Revocation summary: %d revoked, %d already invalid, %d failed%s",
            summary["revoked"], summary["already_invalid"], summary["failed"],
            f", {sum(1 for i in summary['items'] if i['outcome'] == WOULD_REVOKE)} would be revoked (dry run)"
            if summary["dry_run"] else "",
        )
        from sf_oauth_provider.operators._common import push_return_value

        if summary["failed"]:
            push_return_value(context, summary)
        return summary


def _summary(items: list[dict[str, Any]], dry_run: bool) -> dict[str, Any]:
    count = {o: sum(1 for i in items if i["outcome"] == o) for o in (REVOKED, ALREADY_INVALID, FAILED)}
    return {
        "revoked": count[REVOKED],
        "already_invalid": count[ALREADY_INVALID],
        "failed": count[FAILED],
        "dry_run": dry_run,
        "items": items,
    }


def _looks_literal(tokens: Any) -> bool:
    """True when ``tokens`` holds plain strings rather than templates or an XComArg."""
    values = [tokens] if isinstance(tokens, str) else tokens if isinstance(tokens, (list, tuple)) else []
    return any(isinstance(v, str) and v.strip() and "{{" not in v and "{%" not in v for v in values)
