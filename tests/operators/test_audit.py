"""SalesforceTokenAuditOperator against the emulator."""

from __future__ import annotations

import csv
import json
import logging
import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterable

import pytest
from tests.airflow_compat import AirflowFailException

from sf_oauth_provider.client.token import fingerprint
from sf_oauth_provider.operators.audit import FINDING_KINDS, SalesforceTokenAuditOperator
from tests.keys import pem, rsa_key


# ---- helpers (also used by test_revoke.py) ---------------------------------------------------

class FakeTI:
    """Records ``xcom_push`` calls (the only TaskInstance method the operators use)."""

    dag_id = "test_dag"
    run_id = "manual__2025-01-01T00:00:00+00:00"

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def context() -> dict[str, Any]:
    """What a task's context holds that the operators read (Airflow 3.0's notifiers need ``dag``)."""
    from airflow.sdk import DAG

    return {"ti": FakeTI(), "dag": DAG("operator_tests", schedule=None)}


def all_secrets(org: Any) -> list[str]:
    """Every token the org ever issued (DeleteTokens included) and every consumer secret."""
    secrets = list(org.issued_tokens())
    secrets += [app.consumer_secret for app in org.apps.values()]
    secrets.append(org.demo.jwt_private_key_pem.splitlines()[1])  # a line of the private key
    return [s for s in secrets if s]


def assert_no_secret(texts: Iterable[str], secrets: Iterable[str]) -> None:
    """Fail naming the secret's kind, never printing it."""
    blob = "\n".join(texts)
    for secret in secrets:
        assert secret not in blob, f"a secret (length {len(secret)}, starts {secret[:4]!r}) leaked"


def output(caplog: Any, capfd: Any) -> str:
    """Everything logged so far (structlog writes to the captured stdout)."""
    out, err = capfd.readouterr()
    return "\n".join([caplog.text, out, err])


def read_all(paths: Iterable[str | Path]) -> list[str]:
    return [Path(p).read_text(encoding="utf-8") for p in paths]


def _fps(tokens) -> set[str]:
    return {fingerprint(t) for t in tokens}


def report_of(result: dict) -> dict:
    """The audit.json the run wrote."""
    return json.loads(Path(result["report_files"]["json"]).read_text(encoding="utf-8"))


def by_kind(report: dict) -> dict[str, list[dict]]:
    """Every reason of every finding row, by kind (rows combine the kinds of one token)."""
    out: dict[str, list[dict]] = {}
    for row in report["findings"]:
        for reason in row["reasons"]:
            out.setdefault(reason["kind"], []).append({**row, **reason})
    return out


def _kind(report: dict, kind: str) -> set[str]:
    return {f["fingerprint"] for f in by_kind(report).get(kind, [])}


def test_audit_of_seeded_org_finds_exactly_the_seeded_facts(sf_connections, emulator, tmp_path, caplog, capfd):
    org = emulator.org
    facts = org.seed_facts
    ctx = context()
    op = SalesforceTokenAuditOperator(task_id="audit", report_dir=str(tmp_path / "report"))
    with caplog.at_level(logging.INFO):
        result = op.execute(ctx)

    inactive = set(facts["inactive_user_delete_tokens"])
    report = report_of(result)
    assert _kind(report, "stale") == _fps(facts["stale_delete_tokens"])
    assert set(result["stale_token_fingerprints"]) == _fps(facts["stale_delete_tokens"])
    assert _kind(report, "inactive_user") == _fps(inactive)
    assert _kind(report, "never_used") == _fps(facts["never_used_delete_tokens"])
    # Salesforce answers {"active": false} for an inactive user's token, so its scope is unknown;
    # those tokens are flagged inactive_user instead.
    assert _kind(report, "broad_scope") == _fps(set(facts["full_scope_delete_tokens"]) - inactive)
    assert _fps(set(facts["full_scope_delete_tokens"]) - inactive)  # the check is not vacuous
    limits = by_kind(report)["approval_limit"]
    assert [(f["user"], f["app"]) for f in limits] == [
        (lim["username"], lim["app"]) for lim in facts["approval_limit"]
    ]
    assert not _kind(report, "inactive_token")  # every active user's row introspects as active
    assert result["counts"]["inventory"] == facts["oauth_token_count"]
    assert result["counts"]["introspected"] == facts["oauth_token_count"]
    assert result["counts"]["failed"] == 0 and report["failed"] == []
    assert set(by_kind(report)) <= set(FINDING_KINDS)
    # severities: an offboarded user's token is high, a stale one medium, a never-used one low
    severity = {row["fingerprint"]: row["severity"] for row in report["findings"]}
    assert {severity[fingerprint(t)] for t in inactive} == {"high"}
    assert {severity[fingerprint(t)] for t in facts["full_scope_delete_tokens"]} == {"high"}
    only_stale = _fps(facts["stale_delete_tokens"]) - _fps(inactive) - _fps(facts["full_scope_delete_tokens"])
    assert only_stale and {severity[fp] for fp in only_stale} == {"medium"}
    assert [row["severity"] for row in report["findings"]] == sorted(
        (row["severity"] for row in report["findings"]), key=["critical", "high", "medium", "low", "info"].index
    )
    # one row per token: a stale, never-used token of an inactive user is one finding with three kinds
    assert len({row["id"] for row in report["findings"]}) == len(report["findings"])
    assert max(len(row["kinds"]) for row in report["findings"]) >= 3

    files = result["report_files"]
    assert {Path(p).name for p in files.values()} == {
        "audit.json", "audit.csv", "audit-tokens.csv", "audit.md", "audit.html"
    }
    assert report["summary"] == result["counts"] and report["schema_version"] == 2
    assert report["org_id"] == org.org_id and report["instance_url"] == emulator.base_url
    assert len(report["tokens"]) == facts["oauth_token_count"]
    with open(files["csv"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(report["findings"]) == result["counts"]["findings"]  # clean tokens are not in it
    with open(files["tokens_csv"], newline="") as fh:
        assert len(list(csv.DictReader(fh))) == facts["oauth_token_count"]
    apps = {a["app"]: a for a in report["apps"]}
    assert apps["Salesforce Mobile"]["users"] >= 1 and sum(a["tokens"] for a in apps.values()) == 50
    md = Path(files["md"]).read_text()
    assert "## Findings by kind" in md and "| stale " in md and "## By app" in md and "Legacy ETL" in md

    # no secret anywhere: reports, XCom/return value, logs
    logs = output(caplog, capfd)
    assert_no_secret(read_all(files.values()) + [json.dumps(result), logs], all_secrets(org))
    assert "introspected 50/50 tokens" in logs
    assert ctx["ti"].xcom == {}  # a successful task's value is pushed by Airflow from the return


@pytest.mark.filterwarnings("ignore:The RSA key is 1024 bits long")
def test_policy_options_and_connection_checks(sf_connections, set_connection, emulator, tmp_path):
    org = emulator.org
    weak = dict(sf_connections["salesforce_oauth_default"])
    weak["extra"] = {**weak["extra"], "private_key": pem(rsa_key(1024))}
    del weak["extra"]["jwt_key_file"]
    set_connection("sf_weak", weak)
    set_connection("sf_bad_secret", {**sf_connections["salesforce_oauth_cc"], "password": "wrong-secret-0000"})
    extra_token = org.mint_tokens(1, app="Tableau", user="analyst@demo.example", scope="api web")[0]
    dead_token = org.mint_tokens(1)[0]
    org.revoke_token(dead_token)

    op = SalesforceTokenAuditOperator(
        task_id="audit",
        conn_ids=[
            "salesforce_oauth_default", "salesforce_oauth_cc", "salesforce_oauth_refresh",
            "sf_weak", "sf_bad_secret", "sf_missing",
        ],
        tokens=f"{extra_token}, {dead_token}",
        inventory=False,
        allowed_scopes=["api", "id", "refresh_token"],
        allowed_apps=["Airflow Integration", "Airflow Client Credentials"],
        expiring_within=timedelta(hours=3),
        report_dir=str(tmp_path),
    )
    result = op.execute(context())
    kinds = by_kind(report_of(result))

    assert {f["fingerprint"] for f in kinds["inactive_token"]} == {fingerprint(dead_token)}
    assert {f["fingerprint"] for f in kinds["scope_not_allowed"]} == {fingerprint(extra_token)}
    assert "'web'" in kinds["scope_not_allowed"][0]["detail"]
    assert fingerprint(extra_token) in {f["fingerprint"] for f in kinds["app_not_allowed"]}
    assert [f["detail"] for f in kinds["weak_key"]] == [
        "connection 'sf_weak': RSA key of 1024 bits; use 2048 bits or more"
    ]
    failed_auth = " ".join(f["detail"] for f in kinds["auth_failed"])
    assert "sf_weak" in failed_auth or "invalid assertion" in failed_auth
    assert "invalid client credentials" in failed_auth and "sf_missing" in failed_auth
    assert len(kinds["auth_failed"]) == 3
    # session timeout 2 h < 3 h: the working connections' tokens and the extra token are expiring
    assert fingerprint(extra_token) in {f["fingerprint"] for f in kinds["expiring"]}
    assert result["counts"]["connections"] == 6 and result["counts"]["raw_tokens"] == 2
    assert not any(f["detail"].startswith("connection 'salesforce_oauth_refresh'") for f in kinds["auth_failed"])
    assert "broad_scope" not in kinds  # allowed_scopes replaces the default 'full' rule
    texts = read_all(result["report_files"].values()) + [json.dumps(result)]
    assert_no_secret(texts, all_secrets(org) + ["wrong-secret-0000"])

    # auditing the rotating refresh-token connection again still works (its refresh token survived)
    again = SalesforceTokenAuditOperator(
        task_id="audit", conn_ids=["salesforce_oauth_refresh"], inventory=False, report_dir=str(tmp_path / "2")
    ).execute(context())
    assert again["counts"]["findings"] == 0 and again["counts"]["failed"] == 0


def test_the_audit_keeps_the_refresh_token_a_task_rotated(sf_connections, emulator, tmp_path):
    """Every token request goes through the token provider: after a task rotated the refresh
    token, the audit's real exchange uses the rotated one, and the task after it still refreshes."""
    from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

    SalesforceOAuthHook("salesforce_oauth_refresh").get_token()
    result = SalesforceTokenAuditOperator(
        task_id="audit", conn_ids=["salesforce_oauth_refresh"], inventory=False, report_dir=str(tmp_path)
    ).execute(context())
    assert result["counts"]["findings"] == 0 and result["counts"]["failed"] == 0
    assert SalesforceOAuthHook("salesforce_oauth_refresh").get_token(force_refresh=True).access_token
    assert not any(a.successor is not None and a.successor.revoked for a in emulator.org.approvals.values())


def test_fail_on_findings_fails_after_the_report_is_written(sf_connections, emulator, tmp_path):
    ctx = context()
    op = SalesforceTokenAuditOperator(
        task_id="audit", fail_on_findings=True, introspect_inventory=False, report_dir=str(tmp_path)
    )
    with pytest.raises(AirflowFailException, match=r"found \d+ findings .*stale"):
        op.execute(ctx)
    assert (tmp_path / "audit.md").exists() and (tmp_path / "audit.csv").exists()
    pushed = ctx["ti"].xcom["return_value"]
    assert pushed["counts"]["findings"] > 0 and pushed["counts"]["introspected"] == 0
    assert emulator.org.count("introspect") <= 1  # only the hook's expiry check of its new token


def test_transient_introspection_failures_are_listed_and_the_report_still_written(
    sf_connections, emulator, tmp_path
):
    from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

    org = emulator.org
    SalesforceOAuthHook().get_token()  # cached now: the faults below hit only the audit's calls
    # every try of the first token fails (3 tries), the rest succeed
    org.set_faults("introspect", sequence=["500", "json503", "500"])
    op = SalesforceTokenAuditOperator(
        task_id="audit", max_concurrency=1, retry_attempts=3, retry_backoff=0.01, report_dir=str(tmp_path)
    )
    result = op.execute(context())
    failed = report_of(result)["failed"]
    assert len(failed) == 1 and failed[0]["transient"] is True
    assert result["counts"]["introspection_failed"] == 1
    assert result["counts"]["introspected"] == org.seed_facts["oauth_token_count"] - 1
    assert "Checks that failed" in (tmp_path / "audit.md").read_text()


def test_every_introspection_failing_permanently_fails_the_task(sf_connections, set_connection, emulator, tmp_path):
    conn = {**sf_connections["salesforce_oauth_default"], "password": "not-the-secret-123"}
    set_connection("sf_wrong_secret", conn)
    ctx = context()
    op = SalesforceTokenAuditOperator(
        task_id="audit", salesforce_oauth_conn_id="sf_wrong_secret", report_dir=str(tmp_path)
    )
    with pytest.raises(AirflowFailException, match="introspections failed"):
        op.execute(ctx)
    # a refused client stops the batch: at most the first wave (16 in flight) + the hook's expiry check
    assert emulator.org.count("introspect") <= 1 + 16 < emulator.org.seed_facts["oauth_token_count"]
    assert (tmp_path / "audit.json").exists()
    assert ctx["ti"].xcom["return_value"]["counts"]["introspection_failed"] == emulator.org.seed_facts[
        "oauth_token_count"
    ]


def test_raw_tokens_need_a_consumer_secret(sf_connections, set_connection, emulator, tmp_path):
    conn = dict(sf_connections["salesforce_oauth_default"])
    conn.pop("password")
    set_connection("sf_no_secret", conn)
    op = SalesforceTokenAuditOperator(
        task_id="audit", salesforce_oauth_conn_id="sf_no_secret", tokens=["x" * 40], inventory=False,
        report_dir=str(tmp_path),
    )
    with pytest.raises(AirflowFailException, match="consumer secret"):
        op.execute(context())


def test_five_thousand_token_audit_with_progress(sf_connections, emulator, tmp_path, caplog, capfd):
    tokens = emulator.org.mint_tokens(5000)
    # The emulator serves from a thread of this process (one GIL): 4 in flight is its sweet spot
    # here; throughput against the default of 16 is measured by benchmarks/, not by tests.
    op = SalesforceTokenAuditOperator(
        task_id="audit", tokens=tokens, inventory=False, report_dir=str(tmp_path), max_concurrency=4
    )
    with caplog.at_level(logging.INFO):
        result = op.execute(context())
    assert result["counts"]["raw_tokens"] == 5000
    assert result["counts"]["introspected"] == 5000 and result["counts"]["failed"] == 0
    assert emulator.org.count("introspect") >= 5000
    # (3.0 also echoes stdlib records through structlog: each line is captured twice there)
    progress = list(dict.fromkeys(re.findall(r"introspected ([\d,]+)/5,000 tokens", output(caplog, capfd))))
    assert progress[:2] == ["500", "1,000"] and progress[-1] == "5,000" and len(progress) == 10
    # the tokens were registered with the masker (in bulk)
    from tests.airflow_compat import redact

    assert redact(f"x {tokens[1234]} y") == "x *** y"
    assert tokens[0] not in (tmp_path / "audit.csv").read_text()


def test_rendered_tokens_are_masked_before_airflow_stores_them(sf_connections, emulator):
    from airflow.sdk import DAG
    from tests.airflow_compat import redact
    from tests.airflow_compat import serialize_rendered_fields as _serialize_rendered_fields

    secret = emulator.org.mint_tokens(1)[0]
    with DAG("render_mask_audit", schedule=None):
        op = SalesforceTokenAuditOperator(task_id="audit", tokens="{{ params.leaked }}", inventory=False)
    op.render_template_fields({"params": {"leaked": secret}})
    assert op.tokens == secret
    assert secret not in json.dumps(_serialize_rendered_fields(op))
    assert redact(f"token={secret}!") == "token=***!"


def test_xcom_holds_counts_locations_and_fingerprints_only(sf_connections, emulator, tmp_path):
    result = SalesforceTokenAuditOperator(task_id="audit", report_dir=str(tmp_path)).execute(context())
    pushed = json.dumps(result)
    users = [u.username for u in emulator.org.users.values()]
    apps = [a.name for a in emulator.org.apps.values()]
    assert not [name for name in users + apps if name in pushed]  # no personal data, no attacker text
    assert set(result) == {
        "schema_version", "counts", "report_files", "finding_fingerprints", "new_finding_fingerprints",
        "fingerprints_by_kind", "stale_token_fingerprints",
    }
    assert set(result["fingerprints_by_kind"]["inactive_user"]) == _fps(
        emulator.org.seed_facts["inactive_user_delete_tokens"]
    )
    assert len(pushed) < 6000, len(pushed)  # was 12.7 KB for the 50 seeded tokens
