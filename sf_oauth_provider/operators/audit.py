"""SalesforceTokenAuditOperator: report which Salesforce OAuth tokens exist and which break policy."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from airflow.sdk import BaseOperator

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import Context

    from sf_oauth_provider.client.oauth import RetryPolicy
    from sf_oauth_provider.client.token import IntrospectionResult
    from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

__all__ = ["SalesforceTokenAuditOperator", "FINDING_KINDS"]

#: Every finding kind and what it means (also printed in ``audit.md``).
FINDING_KINDS: dict[str, str] = {
    "stale": "OauthToken not used (or, if never used, created) more than stale_after_days ago",
    "never_used": "OauthToken with UseCount 0 / no LastUsedDate",
    "inactive_user": "OauthToken of a deactivated user",
    "broad_scope": "token with the 'full' scope (default policy when allowed_scopes is not set)",
    "scope_not_allowed": "token with a scope outside allowed_scopes",
    "app_not_allowed": "token of a connected app not in allowed_apps (by name or consumer key)",
    "expiring": "token that expires within expiring_within",
    "approval_limit": "user with 5 or more approvals (refresh tokens) for one app: the next approval revokes the oldest",
    "auth_failed": "connection in conn_ids that cannot authenticate (permanent error)",
    "weak_key": "jwt_bearer connection whose RSA key is shorter than 2048 bits",
    "inactive_token": "raw token, connection token, or OauthToken of an active user that Salesforce says is not active",
}
_MAX_APPROVALS = 5
_MIN_KEY_BITS = 2048
_CSV_COLUMNS = (
    "kind", "detail", "source", "fingerprint", "app", "user", "user_active", "active", "scope",
    "created", "last_used", "use_count", "expires_at", "client_id", "conn_id", "auth_flow", "key",
)


_ENTRY_FIELDS = (
    "source", "fingerprint", "app", "user", "user_id", "user_active", "created", "last_used", "use_count",
    "active", "scope", "expires_at", "client_id", "conn_id", "auth_flow", "key", "key_bits", "auth_error",
)
_ENTRY_OUTPUT = tuple(f for f in _ENTRY_FIELDS if f not in ("user_id", "key_bits"))


class _Entry:
    """What the audit learned about one token or connection (never the token itself).

    ``source`` is ``inventory``, ``token`` or ``connection``; ``active`` is ``None`` when the
    token was not introspected. (A plain slotted class: a dataclass costs milliseconds at import.)
    """

    __slots__ = _ENTRY_FIELDS

    def __init__(self, source: str, fingerprint: str | None, **values: Any) -> None:
        self.source = source
        self.fingerprint = fingerprint
        for name in _ENTRY_FIELDS[2:]:
            setattr(self, name, values.pop(name, None))
        if values:
            raise TypeError(f"unknown entry fields: {', '.join(values)}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in _ENTRY_OUTPUT:
            value = getattr(self, name)
            out[name] = _iso(value) if isinstance(value, datetime) else value
        return out


class _Job:
    """One introspection to make; ``secret`` never leaves the operator (not in ``repr``)."""

    __slots__ = ("entry", "secret", "hint")

    def __init__(self, entry: _Entry, secret: str, hint: str) -> None:
        self.entry, self.secret, self.hint = entry, secret, hint

    def __repr__(self) -> str:
        return f"_Job({self.entry.fingerprint}, hint={self.hint!r})"


class SalesforceTokenAuditOperator(BaseOperator):
    """Audit Salesforce OAuth tokens and write a report: JSON, CSV and a Markdown summary.

    Sources (any combination):

    * ``inventory`` — every ``OauthToken`` row the connection's user can see (an admin with
      "Customize Application" sees all users'): app, user, user active, created, last used, use
      count; with ``introspect_inventory`` each row's DeleteToken is introspected (hint
      ``refresh_token``) for its scope and whether it is active;
    * ``tokens`` — raw tokens to introspect (templated; masked right after rendering, like the
      revocation operator's);
    * ``conn_ids`` — ``salesforce_oauth`` connections: can each authenticate (a real token
      exchange that bypasses the token cache; for ``refresh_token`` connections the cached path,
      so a rotated refresh token is never lost), what its token looks like (introspected when the connection has a consumer secret), and for
      ``jwt_bearer`` its RSA key size.

    Policy findings (``kind``; see :data:`FINDING_KINDS`): ``stale``, ``never_used``,
    ``inactive_user``, ``broad_scope`` (when ``allowed_scopes`` is not set, the ``full`` scope is
    flagged), ``scope_not_allowed`` (when it is set, any other scope is flagged — include
    ``refresh_token`` if you allow refresh tokens), ``app_not_allowed``, ``expiring``,
    ``approval_limit`` (one finding per user and app; its fingerprint is empty, the detail names
    the oldest token, which Salesforce revokes on the next approval), ``auth_failed``,
    ``weak_key``, ``inactive_token``. Salesforce reports an inactive user's tokens as not active
    without a scope, so their scope cannot be judged; they are flagged ``inactive_user``.

    Introspection runs on one async connection pool with at most ``max_concurrency`` requests in
    flight, logging progress about every 10 %. Introspections that still fail after the client's
    retries are listed under ``failed`` and the report is written anyway; the task fails only if
    *every* introspection failed (``AirflowException`` when transient, so Airflow retries).

    ``report_dir`` receives ``audit.json`` (everything), ``audit.csv`` (one row per token and
    finding; a token without findings has one row with an empty ``kind``) and ``audit.md`` (counts
    by finding and by app, then the findings table). Tokens are named by fingerprint: no raw token
    or DeleteToken is written, logged, or pushed. The return value / XCom is ``{"counts",
    "findings": [{"kind", "fingerprint", "app", "user", "detail", "source"}],
    "stale_token_fingerprints", "report_files", "failed"}``; feed ``stale_token_fingerprints`` to
    :class:`~sf_oauth_provider.operators.revoke.SalesforceRevokeTokenOperator`.

    :param salesforce_oauth_conn_id: connection that queries OauthToken and introspects (its
        connected app needs the consumer secret, and the "Introspect All Tokens" policy to see
        other apps' tokens)
    :param conn_ids: connections to check (templated)
    :param tokens: raw tokens to introspect (templated): a list, or one string holding a
        JSON/Python list or comma/whitespace-separated tokens
    :param inventory: audit the OauthToken rows
    :param stale_after_days: idle days after which an OauthToken is ``stale``
    :param expiring_within: flag tokens that expire within this (``timedelta`` or seconds)
    :param allowed_scopes: scopes a token may have; ``None``: only ``full`` is flagged
    :param allowed_apps: connected app names or consumer keys tokens may belong to
    :param report_dir: where to write the reports (templated); default
        ``$AIRFLOW_HOME/salesforce_token_audit/<dag_id>/<run_id>``
    :param fail_on_findings: fail the task (after writing the report) when there is any finding
    :param max_concurrency: introspection requests in flight (and connections in the pool)
    :param introspect_inventory: introspect every OauthToken row's DeleteToken
    :param retry_attempts: tries per request for a transient error (default: the hook's)
    :param retry_backoff: first backoff in seconds between those tries (default: the hook's)
    :param kwargs: other ``BaseOperator`` arguments
    """

    template_fields: Sequence[str] = ("salesforce_oauth_conn_id", "conn_ids", "tokens", "report_dir")
    ui_color = "#fdf1c7"

    def __init__(
        self,
        *,
        salesforce_oauth_conn_id: str = "salesforce_oauth_default",
        conn_ids: list[str] | str | None = None,
        tokens: list[str] | str | None = None,
        inventory: bool = True,
        stale_after_days: float = 90,
        expiring_within: timedelta | float | None = None,
        allowed_scopes: Sequence[str] | None = None,
        allowed_apps: Sequence[str] | None = None,
        report_dir: str | None = None,
        fail_on_findings: bool = False,
        max_concurrency: int = 16,
        introspect_inventory: bool = True,
        retry_attempts: int | None = None,
        retry_backoff: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if int(max_concurrency) < 1:
            raise ValueError("max_concurrency must be 1 or more")
        if float(stale_after_days) <= 0:
            raise ValueError("stale_after_days must be more than 0")
        if isinstance(allowed_scopes, str) or isinstance(allowed_apps, str):
            raise TypeError("allowed_scopes and allowed_apps must be lists of strings")
        self.salesforce_oauth_conn_id = salesforce_oauth_conn_id
        self.conn_ids = conn_ids
        self.tokens = tokens
        self.inventory = inventory
        self.stale_after_days = float(stale_after_days)
        self.expiring_within = (
            None if expiring_within is None
            else expiring_within if isinstance(expiring_within, timedelta)
            else timedelta(seconds=float(expiring_within))
        )
        self.allowed_scopes = None if allowed_scopes is None else list(allowed_scopes)
        self.allowed_apps = None if allowed_apps is None else list(allowed_apps)
        self.report_dir = report_dir
        self.fail_on_findings = fail_on_findings
        self.max_concurrency = int(max_concurrency)
        self.introspect_inventory = introspect_inventory
        self.retry_attempts = retry_attempts
        self.retry_backoff = retry_backoff

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

    def _mask_tokens(self) -> None:
        from sf_oauth_provider.operators._common import mask_secrets, parse_list

        try:
            mask_secrets(parse_list(self.tokens, "tokens"))
        except (TypeError, ValueError):
            pass  # execute() reports the bad value

    # ---- execution -----------------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        from sf_oauth_provider._compat import AirflowException, AirflowFailException

        from sf_oauth_provider.client.errors import SalesforceOAuthError
        from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook
        from sf_oauth_provider.client.oauth import RetryPolicy
        from sf_oauth_provider.operators._common import fail_if_permanent, parse_list

        try:  # raw tokens were masked when rendered; execute() masks them again before use
            raw_tokens = parse_list(self.tokens, "tokens")
            conn_ids = parse_list(self.conn_ids, "conn_ids")
        except (TypeError, ValueError) as exc:
            raise AirflowFailException(str(exc)) from None
        now = datetime.now(timezone.utc)
        retry = RetryPolicy.from_numbers(self.retry_attempts, self.retry_backoff)
        hook = SalesforceOAuthHook(self.salesforce_oauth_conn_id, retry=retry)

        entries: list[_Entry] = []
        jobs: list[_Job] = []
        failed: list[dict[str, Any]] = []
        # Order matters for speed: every new secret makes Airflow's masker recompile one pattern
        # holding all secrets, so the few connection secrets come first and the (possibly
        # thousands of) DeleteTokens and raw tokens are masked last, in bulk.
        try:
            introspect_inventory = self.inventory and self.introspect_inventory
            if raw_tokens or introspect_inventory:
                introspect_inventory = self._can_introspect(hook, bool(raw_tokens)) and introspect_inventory
            for conn_id in conn_ids:
                entries.append(self._check_connection(conn_id, retry, failed))
            if self.inventory:
                self._add_inventory(hook, entries, jobs, introspect_inventory)
        except SalesforceOAuthError as exc:
            fail_if_permanent(exc, f"Auditing with connection {self.salesforce_oauth_conn_id!r}")
            raise
        jobs += self._add_raw_tokens(raw_tokens, entries)

        failed += self._introspect_all(hook, jobs) if jobs else []
        findings, owners = self._evaluate(entries, now)
        report = self._report(entries, findings, failed, now, len(jobs))
        result = {
            "counts": report["counts"],
            "findings": findings,
            "stale_token_fingerprints": report["stale_token_fingerprints"],
            "report_files": self._write_reports(context, report, owners),
            "failed": failed,
        }
        self._log_summary(result)

        introspection_failures = [f for f in failed if f.get("introspection")]
        if jobs and len(introspection_failures) == len(jobs):
            from sf_oauth_provider.operators._common import push_return_value

            push_return_value(context, result)
            message = (
                f"Every one of the {len(jobs)} introspections failed (e.g. {introspection_failures[0]['error']}); "
                f"the report in {result['report_files']['md']} is incomplete"
            )
            if any(f.get("transient") for f in introspection_failures):
                raise AirflowException(message)
            raise AirflowFailException(message)
        if self.fail_on_findings and findings:
            from sf_oauth_provider.operators._common import push_return_value

            push_return_value(context, result)
            raise AirflowFailException(
                f"The audit found {len(findings)} findings ({_kinds_text(report['counts']['by_kind'])}); "
                f"see {result['report_files']['md']}"
            )
        return result

    # ---- sources -------------------------------------------------------------------------------
    def _can_introspect(self, hook: SalesforceOAuthHook, required: bool) -> bool:
        """Whether the connection can introspect (it needs the consumer secret)."""
        if hook.config.consumer_secret:
            return True
        if required:
            from sf_oauth_provider._compat import AirflowFailException

            raise AirflowFailException(
                f"Connection {self.salesforce_oauth_conn_id!r} has no consumer secret ('password'), which "
                "introspecting the given tokens requires — set the connected app's consumer secret"
            )
        self.log.warning(
            "Connection %r has no consumer secret: OauthToken rows are not introspected (no scope or activity)",
            self.salesforce_oauth_conn_id,
        )
        return False

    def _add_inventory(
        self, hook: SalesforceOAuthHook, entries: list[_Entry], jobs: list[_Job], introspect: bool
    ) -> None:
        from sf_oauth_provider.operators._common import query_inventory

        rows = query_inventory(hook)
        self.log.info("Read %s OauthToken rows", f"{len(rows):,}")
        for row in rows:
            entry = _Entry(
                source="inventory", fingerprint=row.fingerprint, app=row.app, user=row.username,
                user_id=row.user_id, user_active=row.user_active, created=row.created,
                last_used=row.last_used, use_count=row.use_count,
            )
            entries.append(entry)
            if introspect:
                jobs.append(_Job(entry, row.delete_token, "refresh_token"))

    @staticmethod
    def _add_raw_tokens(raw_tokens: list[str], entries: list[_Entry]) -> list[_Job]:
        from sf_oauth_provider.client.token import fingerprint
        from sf_oauth_provider.operators._common import mask_secrets

        mask_secrets(raw_tokens)
        jobs = []
        for token in raw_tokens:
            entry = _Entry(source="token", fingerprint=fingerprint(token))
            entries.append(entry)
            jobs.append(_Job(entry, token, "access_token"))
        return jobs

    def _check_connection(self, conn_id: str, retry: RetryPolicy | None, failed: list[dict[str, Any]]) -> _Entry:
        """Can the connection authenticate; its token, key and (when possible) introspection."""
        from sf_oauth_provider.client.errors import SalesforceOAuthError
        from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

        entry = _Entry(source="connection", fingerprint=None, conn_id=conn_id)
        hook = SalesforceOAuthHook(conn_id, retry=retry)
        try:
            config = hook.config
        except SalesforceOAuthError as exc:
            entry.auth_error = str(exc)
            return entry
        except Exception as exc:  # e.g. the connection does not exist
            entry.auth_error = f"Connection {conn_id!r} cannot be read ({type(exc).__name__})"
            return entry
        entry.auth_flow, entry.client_id, entry.user = config.auth_flow, config.consumer_key, config.username
        if config.private_key is not None:
            entry.key_bits = int(config.private_key.key_size)
            entry.key = f"RSA-{entry.key_bits}"
        try:
            self._probe_connection(hook, entry, failed)
        finally:
            hook.close()
        return entry

    def _probe_connection(self, hook: SalesforceOAuthHook, entry: _Entry, failed: list[dict[str, Any]]) -> None:
        """Get a token for the connection and introspect it; fills ``entry``."""
        from sf_oauth_provider.client.errors import SalesforceOAuthError

        config, conn_id = hook.config, hook.salesforce_oauth_conn_id
        try:
            if config.auth_flow == "refresh_token":
                # through the cache: with rotation on, an exchange outside it would kill the
                # refresh token the connection depends on
                token = hook.get_token()
            else:
                # a real exchange, not the shared cache: a token cached by another connection with
                # the same consumer key and user would hide a broken key or secret
                token = hook.client.fetch_token()
        except SalesforceOAuthError as exc:
            if exc.transient:
                self.log.warning("Connection %r: could not get a token (%s)", conn_id, exc)
                failed.append({"source": "connection", "conn_id": conn_id, "fingerprint": None,
                               "error": str(exc), "transient": True})
            else:
                self.log.warning("Connection %r cannot authenticate: %s", conn_id, exc)
                entry.auth_error = str(exc)
            return
        entry.fingerprint, entry.scope = token.fingerprint, token.scope
        entry.expires_at = datetime.fromtimestamp(token.expires_at, timezone.utc)
        if config.consumer_secret:
            try:
                _apply_introspection(entry, hook.introspect(token.access_token))
            except SalesforceOAuthError as exc:
                failed.append({"source": "connection", "conn_id": conn_id, "fingerprint": token.fingerprint,
                               "error": str(exc), "transient": exc.transient})
        self.log.info("Connection %r authenticates (%s, token %s)", conn_id, config.auth_flow, token.fingerprint)

    # ---- introspection -------------------------------------------------------------------------
    def _introspect_all(self, hook: SalesforceOAuthHook, jobs: list[_Job]) -> list[dict[str, Any]]:
        """Introspect every job on one connection pool; returns the failures."""
        import asyncio

        from sf_oauth_provider.client.errors import SalesforceAuthError, SalesforceConfigError, SalesforceOAuthError
        from sf_oauth_provider.operators._common import Progress, bounded_map, mask_secrets

        mask_secrets(job.secret for job in jobs)
        config, sink = hook.config, []
        progress = Progress(self.log, len(jobs), "introspected")
        abort: list[str] = []  # a refused client makes every further call fail the same way
        self.log.info("Introspecting %s tokens, %d at a time", f"{len(jobs):,}", self.max_concurrency)

        async def run() -> list[dict[str, Any] | None]:
            async with hook._async_client(config, sink, max_connections=self.max_concurrency) as client:

                async def one(job: _Job) -> dict[str, Any] | None:
                    if abort:
                        return _failure(job.entry, f"not introspected: {abort[0]}", transient=False)
                    try:
                        result = await client.introspect(job.secret, job.hint)
                    except SalesforceOAuthError as exc:
                        if isinstance(exc, (SalesforceAuthError, SalesforceConfigError)) and not abort:
                            abort.append(str(exc))
                        return _failure(job.entry, str(exc), transient=exc.transient)
                    _apply_introspection(job.entry, result)
                    return None

                return await bounded_map(jobs, one, self.max_concurrency, progress)

        try:
            outcomes = asyncio.run(run())
        finally:
            mask_secrets(sink)
        failures = [o for o in outcomes if o is not None]
        if failures:
            self.log.warning("%d of %d introspections failed; they are listed in the report", len(failures), len(jobs))
        return failures

    # ---- policy --------------------------------------------------------------------------------
    def _evaluate(self, entries: list[_Entry], now: datetime) -> tuple[list[dict[str, Any]], list[int | None]]:
        """The findings, and for each the index of the entry it is about (``None``: a group)."""
        findings: list[dict[str, Any]] = []
        owners: list[int | None] = []
        index = {id(e): i for i, e in enumerate(entries)}

        def add(kind: str, entry: _Entry, detail: str) -> None:
            findings.append({"kind": kind, "fingerprint": entry.fingerprint, "app": entry.app,
                             "user": entry.user, "detail": detail, "source": entry.source})
            owners.append(index[id(entry)])

        stale_after = timedelta(days=self.stale_after_days)
        allowed_scopes = None if self.allowed_scopes is None else set(self.allowed_scopes)
        allowed_apps = None if self.allowed_apps is None else set(self.allowed_apps)
        for e in entries:
            label = f"connection {e.conn_id!r}: " if e.source == "connection" else ""
            if e.auth_error:
                add("auth_failed", e, e.auth_error)
            if e.key_bits is not None and e.key_bits < _MIN_KEY_BITS:
                add("weak_key", e, f"{label}RSA key of {e.key_bits} bits; use {_MIN_KEY_BITS} bits or more")
            if e.source == "inventory":
                idle_since = e.last_used or e.created
                if idle_since is not None and now - idle_since > stale_after:
                    what = "last used" if e.last_used else "never used; created"
                    add("stale", e, f"{what} {(now - idle_since).days} days ago ({_iso(idle_since)})")
                if e.last_used is None or e.use_count == 0:
                    add("never_used", e, f"never used; created {_iso(e.created)}")
                if e.user_active is False:
                    add("inactive_user", e, f"user {e.user!r} is inactive")
            if e.active is False and (e.source != "inventory" or e.user_active):
                add("inactive_token", e, f"{label}Salesforce says the token is not active")
            if e.active:
                scopes = set((e.scope or "").split())
                if allowed_scopes is None:
                    if "full" in scopes:
                        add("broad_scope", e, f"{label}scope {e.scope!r} includes 'full'")
                elif scopes - allowed_scopes:
                    add("scope_not_allowed", e,
                        f"{label}scopes {' '.join(sorted(scopes - allowed_scopes))!r} are not in allowed_scopes")
                if self.expiring_within is not None and e.expires_at is not None:
                    left = e.expires_at - now
                    if left <= self.expiring_within:
                        add("expiring", e, f"{label}expires {_iso(e.expires_at)} (in {_duration(left)})")
            if allowed_apps is not None and (e.app or e.client_id):
                if e.app not in allowed_apps and e.client_id not in allowed_apps:
                    add("app_not_allowed", e, f"{label}app {e.app or e.client_id!r} is not in allowed_apps")
        groups = self._approval_limits(entries)
        return findings + groups, owners + [None] * len(groups)

    @staticmethod
    def _approval_limits(entries: list[_Entry]) -> list[dict[str, Any]]:
        groups: dict[tuple[str | None, str | None], list[_Entry]] = {}
        for e in entries:
            if e.source == "inventory":
                groups.setdefault((e.app, e.user_id or e.user), []).append(e)
        out = []
        for (app, _user), group in groups.items():
            if len(group) >= _MAX_APPROVALS:
                oldest = min(group, key=lambda x: x.created or datetime.max.replace(tzinfo=timezone.utc))
                out.append({
                    "kind": "approval_limit", "fingerprint": None, "app": app, "user": group[0].user,
                    "detail": f"{len(group)} approvals for this app (limit {_MAX_APPROVALS}); the next approval "
                              f"revokes the oldest, {oldest.fingerprint} (created {_iso(oldest.created)})",
                    "source": "inventory",
                })
        return out

    # ---- report --------------------------------------------------------------------------------
    def _report(
        self, entries: list[_Entry], findings: list[dict[str, Any]], failed: list[dict[str, Any]],
        now: datetime, introspections: int,
    ) -> dict[str, Any]:
        by_kind: dict[str, int] = {}
        for f in findings:
            by_kind[f["kind"]] = by_kind.get(f["kind"], 0) + 1
        by_app: dict[str, dict[str, int]] = {}
        for e in entries:
            if e.source != "connection":
                by_app.setdefault(e.app or e.client_id or "(unknown)", {"tokens": 0, "findings": 0})["tokens"] += 1
        for f in findings:
            if f["source"] != "connection":
                by_app.setdefault(f["app"] or "(unknown)", {"tokens": 0, "findings": 0})["findings"] += 1
        stale = sorted({f["fingerprint"] for f in findings if f["kind"] == "stale" and f["fingerprint"]})
        failed_introspections = sum(1 for f in failed if f.get("introspection"))
        counts = {
            "tokens": sum(1 for e in entries if e.source != "connection"),
            "inventory": sum(1 for e in entries if e.source == "inventory"),
            "raw_tokens": sum(1 for e in entries if e.source == "token"),
            "connections": sum(1 for e in entries if e.source == "connection"),
            "introspected": introspections - failed_introspections,
            "introspection_failed": failed_introspections,
            "failed": len(failed),
            "findings": len(findings),
            "by_kind": dict(sorted(by_kind.items())),
            "by_app": dict(sorted(by_app.items())),
        }
        return {
            "generated_at": _iso(now),
            "connection": self.salesforce_oauth_conn_id,
            "policy": {
                "stale_after_days": self.stale_after_days,
                "expiring_within_seconds": None if self.expiring_within is None
                else self.expiring_within.total_seconds(),
                "allowed_scopes": self.allowed_scopes,
                "allowed_apps": self.allowed_apps,
            },
            "counts": counts,
            "findings": findings,
            "stale_token_fingerprints": stale,
            "failed": failed,
            "tokens": [e.to_dict() for e in entries],
            "finding_kinds": FINDING_KINDS,
        }

    def _report_dir(self, context: Context) -> str:
        import os
        import re

        if self.report_dir:
            return str(self.report_dir)
        ti = context.get("ti") if hasattr(context, "get") else None
        dag_id = getattr(ti, "dag_id", None) or "adhoc"
        run_id = getattr(ti, "run_id", None) or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
        safe = [re.sub(r"[^A-Za-z0-9._-]+", "_", str(part)) for part in (dag_id, run_id)]
        return os.path.join(home, "salesforce_token_audit", *safe)

    def _write_reports(self, context: Context, report: dict[str, Any], owners: list[int | None]) -> dict[str, str]:
        import json
        import os

        directory = self._report_dir(context)
        os.makedirs(directory, exist_ok=True)
        paths = {name: os.path.join(directory, f"audit.{name}") for name in ("json", "csv", "md")}
        _write_atomic(paths["json"], json.dumps(report, indent=2, sort_keys=False, default=str) + "\n")
        _write_atomic(paths["csv"], _csv_text(report, owners))
        _write_atomic(paths["md"], _markdown(report))
        return paths

    def _log_summary(self, result: dict[str, Any]) -> None:
        counts = result["counts"]
        self.log.info(
            "Audit: %d tokens (%d OauthToken rows, %d raw tokens), %d connections, %d findings (%s); "
            "%d failed checks; report: %s",
            counts["tokens"], counts["inventory"], counts["raw_tokens"], counts["connections"],
            counts["findings"], _kinds_text(counts["by_kind"]) or "none", counts["failed"],
            result["report_files"]["md"],
        )


# ---- helpers -------------------------------------------------------------------------------------
def _apply_introspection(entry: _Entry, result: IntrospectionResult) -> None:
    entry.active = bool(result.active)
    if not result.active:
        return
    entry.scope = result.scope or entry.scope
    entry.client_id = result.client_id or entry.client_id
    entry.user = entry.user or result.username
    if result.exp:
        entry.expires_at = datetime.fromtimestamp(result.exp, timezone.utc)


def _failure(entry: _Entry, error: str, *, transient: bool) -> dict[str, Any]:
    return {"source": entry.source, "fingerprint": entry.fingerprint, "app": entry.app, "user": entry.user,
            "error": error, "transient": transient, "introspection": True}


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 0:
        return "the past"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds // 86400} days"


def _kinds_text(by_kind: dict[str, int]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in by_kind.items())


def _write_atomic(path: str, text: str) -> None:
    import os

    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _csv_text(report: dict[str, Any], owners: list[int | None]) -> str:
    """One row per token and finding (a token without findings: one row, empty ``kind``), then
    the group findings (``approval_limit``)."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    per_entry: dict[int, list[dict[str, Any]]] = {}
    for finding, owner in zip(report["findings"], owners):
        if owner is not None:
            per_entry.setdefault(owner, []).append(finding)
    for i, token in enumerate(report["tokens"]):
        for finding in per_entry.get(i) or [None]:
            row = dict(token)
            row["kind"], row["detail"] = (finding["kind"], finding["detail"]) if finding else ("", "")
            writer.writerow(row)
    for finding, owner in zip(report["findings"], owners):
        if owner is None:
            writer.writerow({k: finding.get(k) for k in ("kind", "detail", "source", "fingerprint", "app", "user")})
    return buf.getvalue()


def _md_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown(report: dict[str, Any]) -> str:
    counts = report["counts"]
    policy = report["policy"]
    lines = [
        "# Salesforce OAuth token audit",
        "",
        f"Generated {report['generated_at']} with connection `{report['connection']}`. "
        f"Stale after {policy['stale_after_days']:g} days; allowed scopes: "
        f"{', '.join(policy['allowed_scopes']) if policy['allowed_scopes'] is not None else 'any but full'}; "
        f"allowed apps: {', '.join(policy['allowed_apps']) if policy['allowed_apps'] is not None else 'any'}.",
        "",
        "## Summary",
        "",
        "| | count |",
        "|---|---:|",
        f"| tokens audited | {counts['tokens']:,} |",
        f"| OauthToken rows | {counts['inventory']:,} |",
        f"| raw tokens | {counts['raw_tokens']:,} |",
        f"| connections checked | {counts['connections']:,} |",
        f"| introspected | {counts['introspected']:,} |",
        f"| checks that failed | {counts['failed']:,} |",
        f"| findings | {counts['findings']:,} |",
        "",
        "## Findings by kind",
        "",
        "| finding | count | meaning |",
        "|---|---:|---|",
    ]
    for kind, meaning in FINDING_KINDS.items():
        if counts["by_kind"].get(kind):
            lines.append(f"| {kind} | {counts['by_kind'][kind]:,} | {_md_cell(meaning)} |")
    if not counts["by_kind"]:
        lines.append("| (none) | 0 | |")
    lines += ["", "## By app", "", "| app | tokens | findings |", "|---|---:|---:|"]
    for app, c in counts["by_app"].items():
        lines.append(f"| {_md_cell(app)} | {c['tokens']:,} | {c['findings']:,} |")
    if report["failed"]:
        lines += ["", "## Checks that failed (the audit is incomplete for these)", "",
                  "| source | fingerprint | connection | error |", "|---|---|---|---|"]
        for f in report["failed"]:
            lines.append(f"| {f['source']} | {_md_cell(f.get('fingerprint'))} | {_md_cell(f.get('conn_id'))} | "
                         f"{_md_cell(f['error'])} |")
    lines += ["", "## Findings", ""]
    if report["findings"]:
        lines += ["| finding | fingerprint | app | user | detail |", "|---|---|---|---|---|"]
        for f in report["findings"]:
            lines.append(f"| {f['kind']} | {_md_cell(f['fingerprint'])} | {_md_cell(f['app'])} | "
                         f"{_md_cell(f['user'])} | {_md_cell(f['detail'])} |")
    else:
        lines.append("No findings.")
    if report["stale_token_fingerprints"]:
        lines += ["", f"{len(report['stale_token_fingerprints']):,} stale tokens can be revoked with "
                  "SalesforceRevokeTokenOperator(token_fingerprints=...) — try dry_run=True first."]
    return "\n".join(lines) + "\n"
