"""The audit report as a reviewer uses it: what is new since the last run, where the report goes,
who is told, and parameters that come from templates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import BaseNotifier
from tests.airflow_compat import AirflowFailException

from sf_oauth_provider.client.token import fingerprint
from sf_oauth_provider.operators.audit import SalesforceTokenAuditOperator
from tests.operators.test_audit import context, report_of


def audit(report_dir: Any, **kwargs: Any) -> dict[str, Any]:
    return SalesforceTokenAuditOperator(
        task_id="audit", report_dir=report_dir, introspect_inventory=False, **kwargs
    ).execute(context())


def test_second_run_marks_nothing_new_and_a_new_stale_token_is_exactly_new(sf_connections, emulator, tmp_path):
    first = report_of(audit(str(tmp_path)))
    assert first["previous"] is None and all(row["new"] for row in first["findings"])

    second = report_of(audit(str(tmp_path)))
    assert second["previous"] == {"generated_at": first["generated_at"]}
    assert [row["id"] for row in second["findings"] if row["new"]] == []
    assert second["summary"]["new_findings"] == 0 and second["summary"]["resolved_findings"] == 0

    org = emulator.org
    token = org.mint_tokens(1, app="Tableau", user="analyst@demo.example", kind="refresh")[0]
    org.approvals[token].created = org.clock.now() - 200 * 86400  # approved 200 days ago, never used
    third = audit(str(tmp_path))
    report = report_of(third)
    assert [row["fingerprint"] for row in report["findings"] if row["new"]] == [fingerprint(token)]
    assert third["new_finding_fingerprints"] == [fingerprint(token)]
    assert "Compared with the audit of" in Path(third["report_files"]["html"]).read_text(encoding="utf-8")

    org.revoke_token(token)
    fourth = report_of(audit(str(tmp_path)))
    assert [r["fingerprint"] for r in fourth["resolved"]] == [fingerprint(token)]


def test_reports_to_a_file_uri(sf_connections, emulator, tmp_path):
    result = audit(f"file://{tmp_path}/audits")
    assert set(Path(p).name for p in result["report_files"].values()) >= {"audit.json", "audit.html"}
    assert json.loads((tmp_path / "audits" / "audit.json").read_text())["summary"]["tokens"] == 50


def test_reports_to_object_storage(sf_connections, emulator, memory_store):
    from airflow.sdk import ObjectStoragePath

    result = audit("memory://audit-bucket/salesforce/prod")
    # universal-pathlib as pinned with Airflow 3.0 renders the memory filesystem's rooted paths as
    # memory:///…; later releases as memory://…: the same object either way
    assert result["report_files"]["json"].replace(":///", "://") == "memory://audit-bucket/salesforce/prod/audit.json"
    stored = ObjectStoragePath(result["report_files"]["json"])
    assert json.loads(stored.read_text())["summary"]["inventory"] == 50
    again = audit(ObjectStoragePath("memory://audit-bucket/salesforce/prod"))  # compared with what is stored
    assert again["counts"]["new_findings"] == 0 and again["counts"]["findings"] > 0


def test_an_object_store_airflow_cannot_reach_is_a_clear_error(sf_connections, emulator):
    with pytest.raises(AirflowFailException, match="report_dir 'nosuchfs://bucket/x'.*no object storage for 'nosuchfs'"):
        audit("nosuchfs://bucket/x")
    assert emulator.org.count("query") == 0


class SummarySink(BaseNotifier):
    """A notifier needing no external service: keeps what it was sent."""

    template_fields = ("title",)

    def __init__(self, title: str) -> None:
        super().__init__()
        self.title = title
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def notify(self, context: dict[str, Any]) -> None:
        self.sent.append((self.title, context["audit_summary"]))


def test_notifiers_receive_the_summary(sf_connections, emulator, tmp_path):
    notifier = SummarySink("{{ audit_summary.counts.findings }} findings")
    calls: list[dict[str, Any]] = []
    result = audit(str(tmp_path), on_findings=[notifier, calls.append])
    (title, summary), = notifier.sent
    assert summary == result == calls[0]
    assert title == f"{result['counts']['findings']} findings"  # the notifier's template saw the summary


def test_a_failing_notifier_fails_the_task_after_the_report(sf_connections, emulator, tmp_path):
    def broken(summary: dict[str, Any]) -> None:
        raise ConnectionError("chat service down")

    from tests.airflow_compat import AirflowException

    with pytest.raises(AirflowException, match="notifier failed"):
        audit(str(tmp_path), on_findings=broken)
    assert (tmp_path / "audit.html").exists()


def test_templated_parameters_are_converted(sf_connections, emulator, tmp_path):
    from airflow.sdk import DAG

    with DAG("templated_audit", schedule=None, params={"days": "30", "scopes": '["api", "refresh_token"]'}):
        op = SalesforceTokenAuditOperator(
            task_id="audit", report_dir=str(tmp_path), stale_after_days="{{ params.days }}",
            allowed_scopes="{{ params.scopes }}", fail_on_findings="{{ 'false' }}", max_concurrency="{{ 4 }}",
            introspect_inventory="{{ params.get('introspect', 'no') }}",
        )
    op.render_template_fields({"params": {"days": "30", "scopes": '["api", "refresh_token"]'}})
    report = report_of(op.execute(context()))
    assert report["policy"]["stale_after_days"] == 30 and report["policy"]["allowed_scopes"] == ["api", "refresh_token"]
    assert report["summary"]["introspected"] == 0


@pytest.mark.parametrize("param, value", [
    ("stale_after_days", "ninety"), ("stale_after_days", "0"), ("max_concurrency", "2.5"),
    ("fail_on_findings", "maybe"), ("expiring_within", "soon"),
])
def test_a_rendered_value_that_cannot_be_converted_names_the_parameter(sf_connections, emulator, tmp_path, param, value):
    op = SalesforceTokenAuditOperator(task_id="audit", report_dir=str(tmp_path), **{param: "{{ params.v }}"})
    op.render_template_fields({"params": {"v": value}})
    with pytest.raises(AirflowFailException, match=f"'{param}' must be"):
        op.execute(context())
    assert emulator.org.count("query") == 0  # refused before any Salesforce call


def test_a_literal_that_cannot_be_converted_fails_at_parse_time():
    with pytest.raises(ValueError, match="'stale_after_days' must be more than 0"):
        SalesforceTokenAuditOperator(task_id="audit", stale_after_days=0)
