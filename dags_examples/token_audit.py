"""Daily OAuth token audit, with optional (dry-run-first) revocation of stale tokens.

``audit_tokens`` (``SalesforceTokenAuditOperator``) reads the org's ``OauthToken`` inventory,
introspects the tokens and writes JSON/CSV/Markdown reports (stale, over-scoped, inactive-user
tokens ...; tokens named by fingerprint only). When the audit found stale tokens and the DAG
param ``revoke_stale`` is true, ``revoke_stale_tokens`` revokes them by fingerprint — as a dry
run unless the param ``dry_run`` is false.

Runs unchanged against a real org: point the connection ``salesforce_oauth_default`` at it (the
user needs "Customize Application" to see every user's tokens). Output folder: DAG param
``output_dir``, else ``$SF_OAUTH_DEMO_OUTPUT``, else ``$AIRFLOW_HOME/sf_oauth_demo_output``;
each run writes into ``token_audit/<run id>/``.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param, task

from sf_oauth_provider.operators.audit import SalesforceTokenAuditOperator
from sf_oauth_provider.operators.revoke import SalesforceRevokeTokenOperator

__all__ = ["dag", "output_folder"]

CONN_ID = "salesforce_oauth_default"


def output_folder(param: str | None, name: str, run_id: str = "") -> str:
    """The folder a run writes into (created if missing); a Jinja macro of this DAG.

    :param param: the DAG param ``output_dir`` (empty: use the environment)
    :param name: sub-folder for this DAG
    :param run_id: the run, as a further sub-folder (made file-name safe)
    """
    base = param or os.environ.get("SF_OAUTH_DEMO_OUTPUT")
    if not base:
        base = os.path.join(os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow"), "sf_oauth_demo_output")
    folder = Path(base).expanduser() / name
    if run_id:
        folder = folder / re.sub(r"[^A-Za-z0-9._-]+", "_", run_id)
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder)


with DAG(
    dag_id="token_audit",
    description="Audit Salesforce OAuth tokens; optionally revoke stale ones (dry run by default)",
    schedule="@daily",
    start_date=datetime(2025, 1, 1),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    user_defined_macros={"output_folder": output_folder},
    params={
        "output_dir": Param(None, type=["null", "string"], description="Folder for the audit reports"),
        "revoke_stale": Param(False, type="boolean", description="Revoke the stale tokens the audit found"),
        "dry_run": Param(True, type="boolean", description="Report what would be revoked; revoke nothing"),
    },
    tags=["salesforce", "example", "security"],
) as dag:
    audit_tokens = SalesforceTokenAuditOperator(
        task_id="audit_tokens",
        salesforce_oauth_conn_id=CONN_ID,
        inventory=True,
        stale_after_days=90,
        report_dir="{{ output_folder(params.output_dir, 'token_audit', run_id) }}",
        fail_on_findings=False,
    )

    @task.short_circuit(ignore_downstream_trigger_rules=True)
    def stale_tokens_to_revoke(audit: dict[str, Any], params: dict[str, Any] | None = None) -> list[str]:
        """The stale tokens' fingerprints when ``revoke_stale`` is on; empty (skip) otherwise.

        :param audit: the audit's XCom (non-secret: counts, findings, fingerprints, report paths)
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
