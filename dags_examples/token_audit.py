"""Daily OAuth token audit, with optional (dry-run-first) revocation of stale tokens.

``audit_tokens`` (``SalesforceTokenAuditOperator``) reads the org's ``OauthToken`` inventory,
introspects the tokens and writes ``audit.html`` (open it in a browser), ``audit.json``,
``audit.md`` and ``audit.csv`` (stale, over-scoped, inactive-user tokens ... with severities;
tokens named by fingerprint only). Every run writes to the same folder, so each report marks what
is ``new`` since the last one. When the audit has findings, ``AuditSummaryNotifier`` — a notifier
that needs no external service — writes ``audit-summary.txt`` beside the report and logs it; swap
in any Airflow notifier (Slack, SMTP, …) and use ``{{ audit_summary.counts.findings }}`` in its
templates. When the audit found stale tokens and the DAG param ``revoke_stale`` is true,
``revoke_stale_tokens`` revokes them by fingerprint — as a dry run unless the param ``dry_run`` is
false.

Runs unchanged against a real org: point the connection ``salesforce_oauth_default`` at it (the
user needs "Customize Application" to see every user's tokens). Output: DAG param
``output_dir`` (a folder or an object storage URI such as ``s3://aws_default@bucket/audits``),
else ``$SF_OAUTH_DEMO_OUTPUT``, else ``$AIRFLOW_HOME/sf_oauth_demo_output``; the reports go to
``token_audit/`` under it.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, BaseNotifier, Param, task

from sf_oauth_provider.operators.audit import SalesforceTokenAuditOperator
from sf_oauth_provider.operators.revoke import SalesforceRevokeTokenOperator

__all__ = ["AuditSummaryNotifier", "dag", "output_location"]

CONN_ID = "salesforce_oauth_default"


def output_location(param: str | None, name: str) -> str:
    """The folder or object storage URI the reports go to; a Jinja macro of this DAG.

    :param param: the DAG param ``output_dir`` (empty: use the environment)
    :param name: sub-folder for this DAG
    """
    base = param or os.environ.get("SF_OAUTH_DEMO_OUTPUT")
    if not base:
        base = os.path.join(os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow"), "sf_oauth_demo_output")
    if "://" in base:
        return base.rstrip("/") + "/" + name
    return os.path.join(os.path.expanduser(base), name)


class AuditSummaryNotifier(BaseNotifier):
    """Writes a few lines about the audit (``audit-summary.txt``) into ``location`` and logs them.

    Receives the audit's summary (its XCom value) as ``context["audit_summary"]``: counts, report
    locations and fingerprints; and the finding rows as ``context["audit_findings"]``, whose app
    and user names come from Salesforce (and may be chosen by an attacker): each goes through
    ``text_cell`` — one line, links defanged, formula starts neutralised.

    :param location: folder or object storage URI (templated)
    """

    template_fields = ("location",)

    def __init__(self, location: str) -> None:
        super().__init__()
        self.location = location

    def notify(self, context: dict[str, Any]) -> None:
        """Write and log the summary.

        :param context: the task context with ``audit_summary``
        """
        from sf_oauth_provider.reporting import ReportFolder, text_cell

        summary = context["audit_summary"]
        counts = summary["counts"]
        rows = {row["fingerprint"]: row for row in context.get("audit_findings") or [] if row.get("fingerprint")}
        severities = ", ".join(f"{n} {s}" for s, n in counts["by_severity"].items() if n) or "none"

        def described(fp: str) -> str:
            row = rows.get(fp)
            if row is None:
                return f"new: {fp}"
            return (f"new: {fp} — {row['severity']} {' '.join(row['kinds'])}; app '{text_cell(row['app'])}', "
                    f"user '{text_cell(row['user'])}'")

        lines = [
            f"Salesforce token audit: {counts['findings']} findings ({counts['new_findings']} new, "
            f"{counts['resolved_findings']} resolved) in {counts['tokens']} tokens; by severity: {severities}",
            f"Report: {summary['report_files']['html']}",
            *(described(fp) for fp in summary["new_finding_fingerprints"]),
        ]
        ReportFolder(self.location, "location").write_text("audit-summary.txt", "\n".join(lines) + "\n")
        self.log.info("%s", lines[0])


with DAG(
    dag_id="token_audit",
    description="Audit Salesforce OAuth tokens; optionally revoke stale ones (dry run by default)",
    schedule="@daily",
    start_date=datetime(2025, 1, 1),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    user_defined_macros={"output_location": output_location},
    params={
        "output_dir": Param(None, type=["null", "string"], description="Folder or object storage URI for the reports"),
        "stale_after_days": Param(90, type="integer", minimum=1, description="Idle days after which a token is stale"),
        "revoke_stale": Param(False, type="boolean", description="Revoke the stale tokens the audit found"),
        "dry_run": Param(True, type="boolean", description="Report what would be revoked; revoke nothing"),
    },
    tags=["salesforce", "example", "security"],
) as dag:
    audit_tokens = SalesforceTokenAuditOperator(
        task_id="audit_tokens",
        salesforce_oauth_conn_id=CONN_ID,
        inventory=True,
        stale_after_days="{{ params.stale_after_days }}",
        report_dir="{{ output_location(params.output_dir, 'token_audit') }}",
        fail_on_findings=False,
        on_findings=AuditSummaryNotifier(location="{{ output_location(params.output_dir, 'token_audit') }}"),
    )

    @task.short_circuit(ignore_downstream_trigger_rules=True)
    def stale_tokens_to_revoke(audit: dict[str, Any], params: dict[str, Any] | None = None) -> list[str]:
        """The stale tokens' fingerprints when ``revoke_stale`` is on; empty (skip) otherwise.

        :param audit: the audit's XCom (counts, report locations, fingerprints)
        :param params: the DAG params (injected by Airflow)
        """
        if not (params or {}).get("revoke_stale"):
            return []
        return list(audit.get("stale_token_fingerprints") or [])

    revoke_stale_tokens = SalesforceRevokeTokenOperator(
        task_id="revoke_stale_tokens",
        salesforce_oauth_conn_id=CONN_ID,
        token_fingerprints=stale_tokens_to_revoke(audit_tokens.output),
        dry_run="{{ params.dry_run }}",
        max_revocations=100,
    )
