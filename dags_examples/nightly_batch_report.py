"""Nightly batch report: yesterday's closed-won Opportunities as CSV and a Markdown summary.

``wait_for_token`` (deferrable ``SalesforceTokenSensor``) makes sure the connection's token is
alive with time to spare, without holding a worker slot while Salesforce is down;
``closed_won_report`` runs one SOQL query through ``SalesforceOAuthHook`` (the token comes from
the host's shared cache) and writes the files; ``revoke_current_token`` optionally revokes the
token at the end (DAG param ``revoke_current``, default false), so a nightly job leaves no live
session behind.

Runs unchanged against a real org: point the connection ``salesforce_oauth_default`` at it.
Output folder: DAG param ``output_dir``, else ``$SF_OAUTH_DEMO_OUTPUT``, else
``$AIRFLOW_HOME/sf_oauth_demo_output``. XCom holds only file paths and counts.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param, task

from sf_oauth_provider.operators.revoke import SalesforceRevokeTokenOperator
from sf_oauth_provider.sensors.token import SalesforceTokenSensor

__all__ = ["CLOSED_WON_YESTERDAY_SOQL", "dag", "output_folder"]

CONN_ID = "salesforce_oauth_default"
CLOSED_WON_YESTERDAY_SOQL = (
    "SELECT Id, Name, Amount, CloseDate, Account.Name FROM Opportunity "
    "WHERE StageName = 'Closed Won' AND CloseDate = YESTERDAY"
)
# How often the triggerer re-checks the token while Salesforce is unavailable.
POKE_INTERVAL = float(os.environ.get("SF_OAUTH_DEMO_POKE_INTERVAL", "60"))


def output_folder(param: str | None, name: str) -> Path:
    """The folder this DAG writes into (created if missing).

    :param param: the DAG param ``output_dir`` (empty: use the environment)
    :param name: sub-folder for this DAG
    """
    base = param or os.environ.get("SF_OAUTH_DEMO_OUTPUT")
    if not base:
        base = os.path.join(os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow"), "sf_oauth_demo_output")
    folder = Path(base).expanduser() / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


with DAG(
    dag_id="nightly_batch_report",
    description="Yesterday's closed-won Opportunities from Salesforce as CSV + Markdown",
    schedule="@daily",
    start_date=datetime(2025, 1, 1),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    params={
        "output_dir": Param(None, type=["null", "string"], description="Folder for the report files"),
        "revoke_current": Param(
            False, type="boolean", description="Revoke the connection's current token at the end"
        ),
    },
    tags=["salesforce", "example"],
) as dag:
    wait_for_token = SalesforceTokenSensor(
        task_id="wait_for_token",
        salesforce_oauth_conn_id=CONN_ID,
        min_remaining=timedelta(minutes=10),
        deferrable=True,
        poke_interval=POKE_INTERVAL,
        timeout=6 * 3600,
    )

    @task
    def closed_won_report(params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Query yesterday's closed-won deals; write CSV + Markdown; return paths and counts.

        :param params: the DAG params (injected by Airflow)
        """
        import csv

        from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

        params = params or {}
        records = SalesforceOAuthHook(salesforce_oauth_conn_id=CONN_ID).query(CLOSED_WON_YESTERDAY_SOQL)
        rows = [
            {
                "Id": r.get("Id"),
                "Name": r.get("Name"),
                "Amount": r.get("Amount"),
                "CloseDate": r.get("CloseDate"),
                "AccountName": (r.get("Account") or {}).get("Name"),
            }
            for r in records
        ]
        day = max((r["CloseDate"] for r in rows if r["CloseDate"]), default=None) or (
            datetime.now(timezone.utc).date() - timedelta(days=1)
        ).isoformat()
        folder = output_folder(params.get("output_dir"), "nightly_batch_report")
        csv_path = folder / f"closed_won_{day}.csv"
        md_path = folder / f"closed_won_{day}.md"
        with csv_path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=["Id", "Name", "Amount", "CloseDate", "AccountName"])
            writer.writeheader()
            writer.writerows(rows)
        total = sum(float(r["Amount"] or 0) for r in rows)
        top = sorted(rows, key=lambda r: float(r["Amount"] or 0), reverse=True)[:5]
        lines = [
            f"# Closed-won opportunities, {day}",
            "",
            f"- Deals: {len(rows)}",
            f"- Total amount: {total:,.2f}",
            "",
            "## Top deals",
            "",
            "| Opportunity | Account | Amount |",
            "|---|---|---:|",
            *(f"| {r['Name']} | {r['AccountName'] or ''} | {float(r['Amount'] or 0):,.2f} |" for r in top),
            "",
        ]
        md_path.write_text("\n".join(lines), encoding="utf-8")
        return {
            "csv_path": str(csv_path),
            "summary_path": str(md_path),
            "opportunities": len(rows),
            "total_amount": total,
        }

    @task.short_circuit(ignore_downstream_trigger_rules=True)
    def revoke_requested(params: dict[str, Any] | None = None) -> bool:
        """Continue to the revocation only when the DAG param ``revoke_current`` is true.

        :param params: the DAG params (injected by Airflow)
        """
        return bool((params or {}).get("revoke_current"))

    revoke_current_token = SalesforceRevokeTokenOperator(
        task_id="revoke_current_token",
        salesforce_oauth_conn_id=CONN_ID,
        revoke_current=True,
        dry_run=False,
    )

    wait_for_token >> closed_won_report() >> revoke_requested() >> revoke_current_token
