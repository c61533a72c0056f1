"""SalesforceTokenAuditOperator: report which Salesforce OAuth tokens exist and which break policy.

DAG files import this module: the audit's sources, rules, report and writers, the hook and the
client load when the task runs, read through their packages (``audit.rules``, ``hooks.``, ``core.``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Callable, Sequence, Union

from airflow.sdk import BaseNotifier, BaseOperator

from sf_oauth_provider import client as core
from sf_oauth_provider import hooks, operators, reporting
from sf_oauth_provider._compat import AirflowException, AirflowFailException
from sf_oauth_provider.client.errors import SalesforceOAuthError
from sf_oauth_provider.operators import audit
from sf_oauth_provider.operators._params import (
    RenderedFieldsMixin,
    as_bool,
    as_int,
    as_number,
    as_optional_list,
    is_template,
    parse_list,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["SalesforceTokenAuditOperator"]

#: What a notifier gets of each finding row (``audit_findings`` in its context)
_NOTIFIER_ROW_KEYS = ("id", "fingerprint", "kind", "kinds", "severity", "app", "user", "source", "conn_id", "new",
                      "revocable")

#: What ``on_findings`` accepts: a notifier, a callable receiving the summary, or a list of them.
FindingsCallback = Union["BaseNotifier", Callable[[dict[str, Any]], Any]]
#: report format → file name
REPORT_FILES = {
    "json": "audit.json", "csv": "audit.csv", "tokens_csv": "audit-tokens.csv", "md": "audit.md",
    "html": "audit.html",
}


@dataclass(frozen=True)
class _Settings:
    """The operator's parameters after rendering, converted and checked."""

    conn_ids: list[str]
    tokens: list[str]
    inventory: bool
    introspect_inventory: bool
    stale_after_days: float
    expiring_within: timedelta | None
    allowed_scopes: list[str] | None
    allowed_apps: list[str] | None
    fail_on_findings: bool
    max_concurrency: int
    certificate_warn_days: float


def _seconds(value: Any, what: str) -> timedelta | None:
    if value is None or (isinstance(value, str) and value.strip() in ("", "None", "null")):
        return None
    if isinstance(value, timedelta):
        return value
    return timedelta(seconds=as_number(value, what, minimum=0))


def _settings(op: SalesforceTokenAuditOperator) -> _Settings:
    """Convert every parameter; a ``ValueError``/``TypeError`` names the parameter."""
    return _Settings(
        conn_ids=parse_list(op.conn_ids, "conn_ids"),
        tokens=parse_list(op.tokens, "tokens"),
        inventory=as_bool(op.inventory, "inventory"),
        introspect_inventory=as_bool(op.introspect_inventory, "introspect_inventory"),
        stale_after_days=as_number(op.stale_after_days, "stale_after_days", above=0),
        expiring_within=_seconds(op.expiring_within, "expiring_within"),
        allowed_scopes=as_optional_list(op.allowed_scopes, "allowed_scopes"),
        allowed_apps=as_optional_list(op.allowed_apps, "allowed_apps"),
        fail_on_findings=as_bool(op.fail_on_findings, "fail_on_findings"),
        max_concurrency=as_int(op.max_concurrency, "max_concurrency", minimum=1),
        certificate_warn_days=as_number(op.certificate_warn_days, "certificate_warn_days", minimum=0),
    )


class SalesforceTokenAuditOperator(RenderedFieldsMixin, BaseOperator):
    """Audit Salesforce OAuth tokens and write a report a security reviewer acts on.

    Sources (any combination):

    * ``inventory`` — every ``OauthToken`` row the connection's user can see (an admin with
      "Customize Application" sees all users'): app, user, user active, created, last used, use
      count; with ``introspect_inventory`` each row's DeleteToken is introspected (hint
      ``refresh_token``) for its scope and whether it is active;
    * ``tokens`` — raw tokens to introspect (templated; masked right after rendering);
    * ``conn_ids`` — ``salesforce_oauth`` connections: can each authenticate (a real token
      exchange that bypasses the token cache; for ``refresh_token`` connections the cached path,
      so a rotated refresh token is never lost), its token (introspected when the connection has a
      consumer secret), its RSA key size, and its ``jwt_certificate`` (days until it expires,
      whether it matches the key).

    Findings (one function per kind in :mod:`~sf_oauth_provider.operators.audit.rules`, severities
    in :data:`~sf_oauth_provider.operators.audit.findings.FINDING_KINDS`): ``auth_failed``,
    ``certificate_mismatch``, ``certificate_expiry``, ``weak_key``, ``stale``, ``never_used``,
    ``inactive_user``, ``inactive_token``, ``broad_scope`` (the ``full`` scope, when
    ``allowed_scopes`` is not set), ``scope_not_allowed``, ``expiring``, ``app_not_allowed``,
    ``approval_limit``. A token that breaks several rules is one finding row listing every kind.

    ``report_dir`` (a local folder or any ``ObjectStoragePath`` URI) receives ``audit.json``
    (schema in the README, "Audit report schema"), ``audit.html`` (one self-contained page),
    ``audit.md``, ``audit.csv`` (one row per finding) and ``audit-tokens.csv`` (every token).
    Each finding says whether it is ``new``: absent from the report that was at the same location
    before this run. A local folder must be writable by this user only; files follow the process
    umask (0644 under umask 022, never writable by group or others) unless ``report_file_mode``
    sets an exact mode.

    The return value / XCom holds counts, report locations and fingerprints only (no usernames,
    app names or messages): ``{"schema_version", "counts", "report_files", "finding_fingerprints",
    "new_finding_fingerprints", "fingerprints_by_kind", "stale_token_fingerprints"}``; feed a list
    to :class:`~sf_oauth_provider.operators.revoke.SalesforceRevokeTokenOperator`.

    Introspection runs on one async connection pool with at most ``max_concurrency`` requests in
    flight. Introspections that still fail after the client's retries are listed in the report,
    which is written anyway; the task fails only if *every* introspection failed
    (``AirflowException`` when transient, so Airflow retries).

    :param salesforce_oauth_conn_id: connection that queries OauthToken and introspects (its
        connected app needs the consumer secret, and "Introspect All Tokens" to see other apps')
    :param conn_ids: connections to check (templated)
    :param tokens: raw tokens to introspect (templated): a list, or one string holding a
        JSON/Python list or comma/whitespace-separated tokens
    :param inventory: audit the OauthToken rows (templated)
    :param stale_after_days: idle days after which an OauthToken is ``stale`` (templated)
    :param expiring_within: flag tokens expiring within this (``timedelta`` or seconds; templated)
    :param allowed_scopes: scopes a token may have; ``None``: only ``full`` is flagged (templated)
    :param allowed_apps: connected app names or consumer keys tokens may belong to (templated)
    :param report_dir: folder or object storage URI for the reports (templated); default
        ``$AIRFLOW_HOME/salesforce_token_audit/<dag_id>/<task_id>`` — one stable place per task,
        so each run is compared with the last
    :param report_file_mode: exact permission bits of local report files, e.g. ``0o640``
        (default ``None``: 0644 less the process umask)
    :param fail_on_findings: fail the task (after writing the report) when there is any finding
        (templated)
    :param max_concurrency: introspection requests in flight (templated)
    :param introspect_inventory: introspect every OauthToken row's DeleteToken (templated)
    :param certificate_warn_days: report a ``jwt_certificate`` that expires within this many days
        (templated; severity rises as the expiry nears)
    :param on_findings: called when the audit has findings, after the reports are written: an
        Airflow notifier (``BaseNotifier``; it gets the task context with the summary as
        ``audit_summary``, so its templates can use ``{{ audit_summary.counts.findings }}``, and the
        finding rows with app and user as ``audit_findings``: values from Salesforce, to escape
        for the notifier's format, e.g. with :func:`sf_oauth_provider.reporting.text_cell`), or a
        callable receiving the summary (the XCom value), or a list of them
    :param retry_attempts: tries per request for a transient error (default: the hook's)
    :param retry_backoff: first backoff in seconds between those tries (default: the hook's)
    :param kwargs: other ``BaseOperator`` arguments
    """

    template_fields: Sequence[str] = (
        "salesforce_oauth_conn_id", "conn_ids", "tokens", "report_dir", "inventory", "stale_after_days",
        "expiring_within", "allowed_scopes", "allowed_apps", "fail_on_findings", "max_concurrency",
        "introspect_inventory", "certificate_warn_days",
    )
    ui_color = "#fdf1c7"

    def __init__(
        self,
        *,
        salesforce_oauth_conn_id: str = "salesforce_oauth_default",
        conn_ids: list[str] | str | None = None,
        tokens: list[str] | str | None = None,
        inventory: bool | str = True,
        stale_after_days: float | str = 90,
        expiring_within: timedelta | float | str | None = None,
        allowed_scopes: Sequence[str] | str | None = None,
        allowed_apps: Sequence[str] | str | None = None,
        report_dir: str | os.PathLike[str] | None = None,
        report_file_mode: int | None = None,
        fail_on_findings: bool | str = False,
        max_concurrency: int | str = 16,
        introspect_inventory: bool | str = True,
        certificate_warn_days: float | str = 60,
        on_findings: FindingsCallback | Sequence[FindingsCallback] | None = None,
        retry_attempts: int | None = None,
        retry_backoff: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.salesforce_oauth_conn_id = salesforce_oauth_conn_id
        self.conn_ids = conn_ids
        self.tokens = tokens
        self.inventory = inventory
        self.stale_after_days = stale_after_days
        self.expiring_within = expiring_within
        self.allowed_scopes = allowed_scopes
        self.allowed_apps = allowed_apps
        self.report_dir = report_dir
        self.report_file_mode = None if report_file_mode is None else int(report_file_mode)
        self.fail_on_findings = fail_on_findings
        self.max_concurrency = max_concurrency
        self.introspect_inventory = introspect_inventory
        self.certificate_warn_days = certificate_warn_days
        if on_findings is None:
            self.on_findings: list[FindingsCallback] = []
        elif isinstance(on_findings, (list, tuple)):
            self.on_findings = list(on_findings)
        else:
            self.on_findings = [on_findings]  # type: ignore[list-item]
        self.retry_attempts = retry_attempts
        self.retry_backoff = retry_backoff
        if self.report_file_mode is not None and self.report_file_mode & ~0o777:
            raise ValueError(f"report_file_mode must be permission bits such as 0o640, got {report_file_mode!r}")
        if not any(is_template(v) for v in (conn_ids, tokens, stale_after_days, expiring_within, allowed_scopes,
                                             allowed_apps, inventory, fail_on_findings, max_concurrency,
                                             introspect_inventory, certificate_warn_days)):
            _settings(self)  # a wrong literal fails when the DAG is parsed, not at 3 am

    # ---- masking -------------------------------------------------------------------------------
    def after_render(self) -> None:
        """Mask the raw tokens before Airflow stores the rendered fields."""
        try:
            operators._common.mask_secrets(parse_list(self.tokens, "tokens"))
        except (TypeError, ValueError):
            pass  # execute() reports the bad value

    # ---- execution -----------------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        try:
            s = _settings(self)
        except (TypeError, ValueError) as exc:
            raise AirflowFailException(f"Task {self.task_id!r}: {exc}") from None
        now = datetime.now(timezone.utc)
        policy = audit.rules.Policy(
            now=now, stale_after=timedelta(days=s.stale_after_days),
            allowed_scopes=None if s.allowed_scopes is None else frozenset(s.allowed_scopes),
            allowed_apps=None if s.allowed_apps is None else frozenset(s.allowed_apps),
            expiring_within=s.expiring_within, certificate_warn_days=s.certificate_warn_days,
        )
        try:  # before any Salesforce call: a bad location must not cost an audit
            folder = reporting.ReportFolder(self._report_dir(context), "report_dir", self.report_file_mode)
            folder.prepare()
        except reporting.ReportLocationError as exc:
            raise AirflowFailException(str(exc)) from None

        retry = core.oauth.RetryPolicy.from_numbers(self.retry_attempts, self.retry_backoff)
        hook = hooks.SalesforceOAuthHook(self.salesforce_oauth_conn_id, retry=retry)
        collector = audit.sources.Collector(hook, self.log, s.max_concurrency)
        meta = audit.report.AuditMeta(connection=self.salesforce_oauth_conn_id)
        try:
            # Order matters for speed: every new secret makes Airflow's masker recompile one
            # pattern, so the few connection secrets come first, DeleteTokens and raw tokens last.
            try:
                collector.secrets.update(x for x in hook.config.secrets if x)
                introspect_inventory = s.inventory and s.introspect_inventory
                if s.tokens or introspect_inventory:
                    introspect_inventory = self._can_introspect(hook, bool(s.tokens)) and introspect_inventory
                for conn_id in s.conn_ids:
                    collector.add_connection(conn_id, retry, now)
                if s.inventory:
                    collector.add_inventory(introspect_inventory)
                meta.org_id, meta.instance_url = self._org(hook, required=s.inventory)
            except SalesforceOAuthError as exc:
                operators._common.fail_if_permanent(exc, f"Auditing with connection {self.salesforce_oauth_conn_id!r}")
                raise
            collector.add_raw_tokens(s.tokens)
            collector.introspect_all()
        finally:
            hook.close()
        meta.introspections, meta.failed = len(collector.jobs), collector.failed

        findings = audit.rules.evaluate(collector.records, policy)
        report = audit.report.build_report(collector.records, findings, policy, meta, previous=self._previous(folder))
        result = audit.report.xcom_value(report, self._write(folder, report))
        self._log_summary(result)
        notify_error = self._notify(context, result, report["findings"]) if result["counts"]["findings"] else None

        failures = [f for f in collector.failed if f.get("introspection")]
        if collector.jobs and len(failures) == len(collector.jobs):
            operators._common.push_return_value(context, result)
            message = (f"Every one of the {len(collector.jobs)} introspections failed (e.g. {failures[0]['error']}); "
                       f"the report in {result['report_files']['html']} is incomplete")
            if any(f.get("transient") for f in failures):
                raise AirflowException(message)
            raise AirflowFailException(message)
        if notify_error is not None:
            operators._common.push_return_value(context, result)
            raise AirflowException(f"The audit report was written, but a notifier failed: {notify_error}")
        if s.fail_on_findings and result["counts"]["findings"]:
            operators._common.push_return_value(context, result)
            kinds = ", ".join(f"{n} {k}" for k, n in result["counts"]["by_kind"].items())
            raise AirflowFailException(
                f"The audit found {result['counts']['findings']} findings ({kinds}); "
                f"see {result['report_files']['html']}"
            )
        return result

    # ---- steps ---------------------------------------------------------------------------------
    def _can_introspect(self, hook: Any, required: bool) -> bool:
        """Whether the connection can introspect (it needs the consumer secret)."""
        if hook.config.consumer_secret:
            return True
        if required:
            raise AirflowFailException(
                f"Connection {self.salesforce_oauth_conn_id!r} has no consumer secret ('password'), which "
                "introspecting the given tokens requires — set the connected app's consumer secret"
            )
        self.log.warning(
            "Connection %r has no consumer secret: OauthToken rows are not introspected (no scope or activity)",
            self.salesforce_oauth_conn_id,
        )
        return False

    def _org(self, hook: Any, required: bool) -> tuple[str | None, str | None]:
        """The org id and instance URL, from the connection's (usually cached) token."""
        try:
            token = hook.get_token()
        except SalesforceOAuthError as exc:
            if required:
                raise
            self.log.warning("Connection %r: no token, so the report names no org (%s)",
                             self.salesforce_oauth_conn_id, exc)
            return None, None
        return token.org_id, token.instance_url

    def _report_dir(self, context: Context) -> Any:
        if self.report_dir:
            return self.report_dir
        ti = context.get("ti") if hasattr(context, "get") else None
        dag_id = getattr(ti, "dag_id", None) or "adhoc"
        home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
        safe = [re.sub(r"[^A-Za-z0-9._-]+", "_", str(part)) for part in (dag_id, self.task_id)]
        return os.path.join(home, "salesforce_token_audit", *safe)

    def _previous(self, folder: Any) -> dict[str, Any] | None:
        """The report at the same location before this run (``None``: none, or unreadable)."""
        text = folder.read_text(REPORT_FILES["json"])
        if text is None:
            return None
        try:
            previous = json.loads(text)
        except ValueError:
            self.log.warning("The previous audit.json in %s is not JSON: every finding counts as new", folder)
            return None
        return previous if isinstance(previous, dict) else None

    def _write(self, folder: Any, report: dict[str, Any]) -> dict[str, str]:
        """Write every format; ``audit.json`` last, so a failed run never becomes the baseline."""
        texts = {
            "csv": audit.render.findings_csv(report), "tokens_csv": audit.render.tokens_csv(report),
            "md": audit.render.markdown(report), "html": audit.render.html_page(report),
            "json": json.dumps(report, indent=2, default=str) + "\n",
        }
        files = {fmt: folder.write_text(REPORT_FILES[fmt], text) for fmt, text in texts.items()}
        return {fmt: files[fmt] for fmt in REPORT_FILES}

    def _notify(self, context: Context, summary: dict[str, Any], findings: list[dict[str, Any]]) -> str | None:
        """Call every ``on_findings`` target; returns the first failure's description.

        A notifier also gets ``audit_findings``: the report's rows with app and user, which the
        XCom-sized summary leaves out (they stay in the task's memory, never in XCom).
        """

        rows = [{k: row.get(k) for k in _NOTIFIER_ROW_KEYS} for row in findings]
        error = None
        for target in self.on_findings:
            try:
                if isinstance(target, BaseNotifier):
                    ctx = dict(context) if hasattr(context, "keys") else {}
                    ctx["audit_summary"] = summary
                    ctx["audit_findings"] = rows
                    target(ctx)
                else:
                    target(summary)
            except Exception as exc:  # a broken notifier must not hide the report; the task fails below
                self.log.exception("Notifier %r failed", target)
                error = error or f"{type(target).__name__}: {type(exc).__name__}"
        return error

    def _log_summary(self, result: dict[str, Any]) -> None:
        c = result["counts"]
        self.log.info(
            "Audit: %d tokens (%d OauthToken rows, %d raw tokens), %d connections, %d findings (%d new; %s); "
            "%d failed checks; report: %s",
            c["tokens"], c["inventory"], c["raw_tokens"], c["connections"], c["findings"], c["new_findings"],
            ", ".join(f"{n} {s}" for s, n in c["by_severity"].items() if n) or "none", c["failed"],
            result["report_files"]["html"],
        )
