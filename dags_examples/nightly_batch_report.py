"""Nightly batch report: the run's changed Opportunities extracted in bulk, and its closed-won
deals as CSV with a Markdown summary.

``wait_for_token`` (deferrable ``SalesforceTokenSensor``) makes sure the connection's token is
alive with time to spare, without holding a worker slot while Salesforce is down;
``extract_changed_opportunities`` (deferrable ``SalesforceBulkQueryOperator``) extracts every
Opportunity whose ``SystemModstamp`` falls in the run's window as a Bulk API 2.0 query job — the
way to move millions of rows: the job runs in Salesforce while the task waits in the triggerer,
then the CSV streams to the output folder (or object storage) and appears under its final name
only when complete; ``closed_won_report`` runs one small SOQL query through ``SalesforceOAuthHook``
(REST, the token from the host's shared cache) and writes a summary a person reads; ``revoke_current_token`` optionally revokes the
token at the end (DAG param ``revoke_current``, default false), so a nightly job leaves no live
session behind.

**Which days:** the DAG run's data interval (UTC dates, end exclusive), so reruns and backfills
fetch their own days. A run whose interval has no width — Airflow 3's ``@daily`` runs, a manual
trigger, ``airflow dags test nightly_batch_report 2026-11-25`` — reports the day before its
logical date (here 2026-11-24). Files are named by that window: ``closed_won_2026-11-24.csv``,
``opportunities_changed_2026-11-24.csv``.

Runs unchanged against a real org: point the connection ``salesforce_oauth_default`` at it.
Output: DAG param ``output_dir`` (a folder or an object storage URI such as
``s3://aws_default@bucket/reports``), else ``$SF_OAUTH_DEMO_OUTPUT``, else
``$AIRFLOW_HOME/sf_oauth_demo_output``. XCom holds only file locations, the window and counts.
"""

from __future__ import annotations

import os
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from airflow.sdk import DAG, Param, task

from sf_oauth_provider.operators.bulk import SalesforceBulkQueryOperator
from sf_oauth_provider.operators.revoke import SalesforceRevokeTokenOperator
from sf_oauth_provider.sensors.token import SalesforceTokenSensor

__all__ = ["changed_soql", "closed_won_soql", "dag", "extract_location", "output_location", "report_window"]

CONN_ID = "salesforce_oauth_default"
# How often the triggerer re-checks the token while Salesforce is unavailable.
POKE_INTERVAL = float(os.environ.get("SF_OAUTH_DEMO_POKE_INTERVAL", "60"))
TOP_DEALS = 5


def output_location(param: str | None, name: str) -> str:
    """The folder or object storage URI this DAG writes into.

    :param param: the DAG param ``output_dir`` (empty: use the environment)
    :param name: sub-folder for this DAG
    """
    base = param or os.environ.get("SF_OAUTH_DEMO_OUTPUT")
    if not base:
        base = os.path.join(os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow"), "sf_oauth_demo_output")
    if "://" in base:
        return base.rstrip("/") + "/" + name
    return os.path.join(os.path.expanduser(base), name)


def report_window(
    start: datetime | None, end: datetime | None, logical_date: datetime | None, now: datetime | None = None
) -> tuple[date, date]:
    """The days to report, ``(first, end)`` with ``end`` exclusive (UTC dates).

    :param start: the run's data interval start
    :param end: the run's data interval end
    :param logical_date: the run's logical date (``None`` for a run triggered without one)
    :param now: fallback for a run with neither (default: the wall clock)
    """
    if start is not None and end is not None and end > start:
        first = start.astimezone(timezone.utc).date()
        end_utc = end.astimezone(timezone.utc)
        last = end_utc.date() if end_utc.time() == time(0) else end_utc.date() + timedelta(days=1)
        return first, last
    anchor = (logical_date or end or now or datetime.now(timezone.utc)).astimezone(timezone.utc).date()
    return anchor - timedelta(days=1), anchor


def closed_won_soql(first: date, end: date) -> str:
    """The query for closed-won deals with ``first <= CloseDate < end``."""
    return (
        "SELECT Id, Name, Amount, CloseDate, Account.Name FROM Opportunity "
        f"WHERE StageName = 'Closed Won' AND CloseDate >= {first.isoformat()} AND CloseDate < {end.isoformat()}"
    )


def changed_soql(start: datetime | None, end: datetime | None, logical_date: datetime | None) -> str:
    """The Bulk extract's query: Opportunities whose ``SystemModstamp`` is in the run's window
    (SOQL datetime literals, UTC; a template macro, so the rendered SOQL shows in the UI)."""
    first, last = report_window(start, end, logical_date)
    return (
        "SELECT Id, Name, StageName, Amount, CloseDate, Account.Name, SystemModstamp FROM Opportunity "
        f"WHERE SystemModstamp >= {first.isoformat()}T00:00:00Z AND SystemModstamp < {last.isoformat()}T00:00:00Z"
    )


def extract_location(output_dir: str | None, start: datetime | None, end: datetime | None,
                     logical_date: datetime | None) -> str:
    """Where the Bulk extract of the run's window goes (a template macro)."""
    label = _window_label(*report_window(start, end, logical_date))
    return output_location(output_dir, "nightly_batch_report").rstrip("/") + f"/opportunities_changed_{label}.csv"


def _window_label(first: date, end: date) -> str:
    last = end - timedelta(days=1)
    return first.isoformat() if first == last else f"{first.isoformat()}_to_{last.isoformat()}"


with DAG(
    dag_id="nightly_batch_report",
    description="Closed-won Opportunities of the run's days from Salesforce as CSV + Markdown",
    schedule="@daily",
    start_date=datetime(2025, 1, 1),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    params={
        "output_dir": Param(None, type=["null", "string"], description="Folder or object storage URI for the files"),
        "currency": Param("USD", type="string", description="The org's corporate currency (Setup → Company Information)"),
        "revoke_current": Param(
            False, type="boolean", description="Revoke the connection's current token at the end"
        ),
    },
    tags=["salesforce", "example"],
    user_defined_macros={"changed_soql": changed_soql, "extract_location": extract_location},
) as dag:
    wait_for_token = SalesforceTokenSensor(
        task_id="wait_for_token",
        salesforce_oauth_conn_id=CONN_ID,
        min_remaining=timedelta(minutes=10),
        deferrable=True,
        poke_interval=POKE_INTERVAL,
        timeout=6 * 3600,
    )

    extract_changed_opportunities = SalesforceBulkQueryOperator(
        task_id="extract_changed_opportunities",
        salesforce_oauth_conn_id=CONN_ID,
        soql="{{ changed_soql(data_interval_start, data_interval_end, logical_date) }}",
        destination="{{ extract_location(params.output_dir, data_interval_start, data_interval_end, logical_date) }}",
        deferrable=True,
        poll_interval=POKE_INTERVAL / 12,
        timeout=4 * 3600,
    )

    @task
    def closed_won_report(
        params: dict[str, Any] | None = None,
        data_interval_start: datetime | None = None,
        data_interval_end: datetime | None = None,
        logical_date: datetime | None = None,
    ) -> dict[str, Any]:
        """Query the window's closed-won deals; write CSV + Markdown; return locations and counts.

        :param params: the DAG params (injected by Airflow)
        :param data_interval_start: injected by Airflow
        :param data_interval_end: injected by Airflow
        :param logical_date: injected by Airflow
        """
        from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook
        from sf_oauth_provider.reporting import ReportFolder, csv_text, md_cell

        params = params or {}
        currency = str(params.get("currency") or "USD")
        first, end = report_window(data_interval_start, data_interval_end, logical_date)
        soql = closed_won_soql(first, end)
        hook = SalesforceOAuthHook(salesforce_oauth_conn_id=CONN_ID)
        try:
            token = hook.get_token()
            records = hook.query(soql)
        finally:
            hook.close()
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
        label = _window_label(first, end)
        folder = ReportFolder(output_location(params.get("output_dir"), "nightly_batch_report"), "output_dir")
        # names and accounts come from Salesforce: csv_text neutralises formula-like cells
        csv_location = folder.write_text(
            f"closed_won_{label}.csv", csv_text(rows, ["Id", "Name", "Amount", "CloseDate", "AccountName"])
        )
        total = sum(float(r["Amount"] or 0) for r in rows)
        top = sorted(rows, key=lambda r: float(r["Amount"] or 0), reverse=True)[:TOP_DEALS]
        last = end - timedelta(days=1)
        window = first.isoformat() if first == last else f"{first.isoformat()} to {last.isoformat()}"
        generated = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        from tabulate import tabulate

        table = tabulate(
            [[md_cell(r["Name"]), md_cell(r["AccountName"] or ""), f"{float(r['Amount'] or 0):,.2f}"] for r in top],
            headers=["Opportunity", "Account", f"Amount ({md_cell(currency)})"], tablefmt="github",
            disable_numparse=True, colalign=("left", "left", "right"),
        )
        lines = [
            f"# Closed-won opportunities, {window}",
            "",
            f"- Org: {md_cell(token.org_id)} ({md_cell(token.instance_url)})",
            f"- Window: CloseDate {window} (UTC days)",
            f"- Generated: {generated}",
            f"- Currency: {md_cell(currency)}",
            f"- Deals: {len(rows)}",
            f"- Total amount: {md_cell(currency)} {total:,.2f}",
            "",
            f"## Top {len(top)} of {len(rows)} deals",
            "",
            table if top else "No deals in this window.",
            "",
        ]
        summary_location = folder.write_text(f"closed_won_{label}.md", "\n".join(lines))
        return {
            "csv_path": csv_location,
            "summary_path": summary_location,
            "window": {"start": first.isoformat(), "end": end.isoformat()},
            "soql": soql,
            "currency": currency,
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

    report = closed_won_report()
    wait_for_token >> [extract_changed_opportunities, report]
    [extract_changed_opportunities, report] >> revoke_requested() >> revoke_current_token
