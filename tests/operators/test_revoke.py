"""SalesforceRevokeTokenOperator against the emulator."""

from __future__ import annotations

import json

import pytest
from tests.airflow_compat import AirflowException, AirflowFailException

from sf_oauth_provider.client.token import fingerprint
from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook
from sf_oauth_provider.operators.audit import SalesforceTokenAuditOperator
from sf_oauth_provider.operators.revoke import SalesforceRevokeTokenOperator
from tests.operators.test_audit import all_secrets, assert_no_secret, context, output


def _live_fingerprints(org) -> set[str]:
    return {fingerprint(row.refresh_token) for row in org.oauth_token_rows()}


def _stale_from_audit(tmp_path) -> list[str]:
    audit = SalesforceTokenAuditOperator(task_id="audit", introspect_inventory=False, report_dir=str(tmp_path))
    return audit.execute(context())["stale_token_fingerprints"]


def test_audit_then_revoke_by_fingerprint_is_exact_and_idempotent(sf_connections, emulator, tmp_path, caplog, capfd):
    org = emulator.org
    stale = _stale_from_audit(tmp_path)
    expected = {fingerprint(t) for t in org.seed_facts["stale_delete_tokens"]}
    assert set(stale) == expected
    before = _live_fingerprints(org)

    ctx = context()
    op = SalesforceRevokeTokenOperator(task_id="revoke", token_fingerprints=stale)
    summary = op.execute(ctx)
    assert (summary["revoked"], summary["already_invalid"], summary["failed"]) == (len(stale), 0, 0)
    assert {i["fingerprint"] for i in summary["items"] if i["outcome"] == "revoked"} == expected
    assert all(i["app"] and i["user"] for i in summary["items"])
    assert _live_fingerprints(org) == before - expected  # exactly those rows are gone
    hook = SalesforceOAuthHook()
    for token in org.seed_facts["stale_delete_tokens"][:3]:
        assert hook.introspect(token, "refresh_token").active is False
    assert org.count("revoke") == len(stale)

    again = SalesforceRevokeTokenOperator(task_id="revoke", token_fingerprints=json.dumps(stale)).execute(context())
    assert (again["revoked"], again["already_invalid"], again["failed"]) == (0, len(stale), 0)
    assert org.count("revoke") == len(stale)  # nothing left to send

    logs = output(caplog, capfd)
    assert_no_secret([json.dumps(summary), json.dumps(again), logs], all_secrets(org))


def test_dry_run_changes_nothing(sf_connections, emulator, tmp_path):
    org = emulator.org
    stale = _stale_from_audit(tmp_path)
    before = _live_fingerprints(org)
    summary = SalesforceRevokeTokenOperator(
        task_id="revoke", token_fingerprints=stale, dry_run="{{ params.dry }}", max_revocations=3
    )
    summary.render_template_fields({"params": {"dry": True}})
    result = summary.execute(context())
    assert result["dry_run"] is True
    assert [i["outcome"] for i in result["items"]] == ["would_revoke"] * len(stale)
    assert (result["revoked"], result["already_invalid"], result["failed"]) == (0, 0, 0)
    assert org.count("revoke") == 0 and _live_fingerprints(org) == before


def test_cap_stops_an_oversize_request_before_any_revocation(sf_connections, emulator, tmp_path):
    org = emulator.org
    stale = _stale_from_audit(tmp_path)
    op = SalesforceRevokeTokenOperator(task_id="revoke", token_fingerprints=stale, max_revocations=len(stale) - 1)
    with pytest.raises(AirflowFailException, match=rf"Refusing to revoke {len(stale)} tokens.*max_revocations"):
        op.execute(context())
    assert org.count("revoke") == 0
    assert len(_live_fingerprints(org)) == org.seed_facts["oauth_token_count"]


def test_partial_failure_is_reported_item_by_item_after_every_item_was_tried(sf_connections, emulator, tmp_path):
    org = emulator.org
    stale = _stale_from_audit(tmp_path)
    # with one request at a time, the first item gets both 500s and exhausts its 2 tries
    org.set_faults("revoke", sequence=["500", "500"])
    ctx = context()
    op = SalesforceRevokeTokenOperator(
        task_id="revoke", token_fingerprints=stale, max_concurrency=1, retry_attempts=2, retry_backoff=0.01
    )
    with pytest.raises(AirflowException, match=r"1 of \d+ revocations failed") as info:
        op.execute(ctx)
    assert not isinstance(info.value, AirflowFailException)  # transient: Airflow may retry
    summary = ctx["ti"].xcom["return_value"]
    failed = [i for i in summary["items"] if i["outcome"] == "failed"]
    assert len(failed) == 1 and "HTTP 500" in failed[0]["error"]
    assert (summary["revoked"], summary["failed"]) == (len(stale) - 1, 1)
    assert org.count("revoke") == len(stale) + 1  # every item tried; the failed one twice
    assert _live_fingerprints(org) & set(stale) == {failed[0]["fingerprint"]}

    # the Airflow retry finishes the job
    retry = SalesforceRevokeTokenOperator(task_id="revoke", token_fingerprints=stale).execute(context())
    assert (retry["revoked"], retry["already_invalid"], retry["failed"]) == (1, len(stale) - 1, 0)


def test_raw_tokens_and_the_current_token(sf_connections, emulator, caplog, capfd):
    org = emulator.org
    raw = org.mint_tokens(3)
    hook = SalesforceOAuthHook()
    current = hook.get_token()
    grants_before = org.count("token", grant="jwt_bearer")

    op = SalesforceRevokeTokenOperator(
        task_id="revoke", tokens="{{ params.leaked | join(',') }}", revoke_current=True
    )
    op.render_template_fields({"params": {"leaked": raw + [raw[0]]}})
    summary = op.execute(context())
    assert [i["fingerprint"] for i in summary["items"]] == [fingerprint(t) for t in raw] + [current.fingerprint]
    assert summary["revoked"] == 4 and summary["failed"] == 0
    assert summary["items"][-1]["app"] == "connection salesforce_oauth_default"
    for token in raw + [current.access_token]:
        assert org.access_tokens[token].revoked

    # the revoked token left the cache: the next get_token fetches a new one
    fresh = SalesforceOAuthHook().get_token()
    assert fresh.fingerprint != current.fingerprint
    assert org.count("token", grant="jwt_bearer") == grants_before + 1

    again = SalesforceRevokeTokenOperator(task_id="revoke", tokens=raw).execute(context())
    assert again["already_invalid"] == 3 and again["revoked"] == 0
    logs = output(caplog, capfd)
    assert_no_secret([json.dumps(summary), json.dumps(again), logs], all_secrets(org))


def test_bad_input_fails_before_any_request(sf_connections, emulator):
    with pytest.raises(AirflowFailException, match="not fingerprints"):
        SalesforceRevokeTokenOperator(task_id="revoke", token_fingerprints=["sha256:nothex"]).execute(context())
    # a raw token pasted where fingerprints belong is refused without being echoed
    token = emulator.org.seed_facts["demo_refresh_token"]
    with pytest.raises(AirflowFailException, match=r"1 of 2 values .* \(items 2, counting from 1\)") as info:
        SalesforceRevokeTokenOperator(
            task_id="revoke", token_fingerprints=["sha256:000000000000", token]
        ).execute(context())
    assert token[:12].lower() not in str(info.value).lower()
    nothing = SalesforceRevokeTokenOperator(task_id="revoke", token_fingerprints="[]").execute(context())
    assert nothing == {"revoked": 0, "already_invalid": 0, "failed": 0, "dry_run": False, "items": []}
    assert emulator.org.count("revoke") == 0 and emulator.org.count("query") == 0


def test_unknown_fingerprint_counts_as_already_invalid(sf_connections, emulator):
    summary = SalesforceRevokeTokenOperator(
        task_id="revoke", token_fingerprints="sha256:000000000000"
    ).execute(context())
    assert summary["already_invalid"] == 1 and summary["items"][0]["outcome"] == "already_invalid"
    assert emulator.org.count("revoke") == 0


def test_permanent_connection_error_fails_without_retries(sf_connections, set_connection, emulator):
    conn = {**sf_connections["salesforce_oauth_cc"], "password": "wrong-secret-0000"}
    conn["extra"] = {**conn["extra"], "token_cache": "none"}
    set_connection("sf_bad", conn)
    op = SalesforceRevokeTokenOperator(
        task_id="revoke", salesforce_oauth_conn_id="sf_bad", token_fingerprints=["sha256:000000000000"]
    )
    with pytest.raises(AirflowFailException, match="invalid client credentials"):
        op.execute(context())
    assert emulator.org.count("token") == 1


def test_rendered_tokens_are_masked_before_airflow_stores_them(sf_connections, emulator):
    from airflow.sdk import DAG
    from tests.airflow_compat import redact
    from tests.airflow_compat import serialize_rendered_fields as _serialize_rendered_fields

    secret = emulator.org.mint_tokens(1)[0]
    with DAG("render_mask_revoke", schedule=None):
        op = SalesforceRevokeTokenOperator(task_id="revoke", tokens=["{{ params.leaked }}"])
    op.render_template_fields({"params": {"leaked": secret}})
    assert op.tokens == [secret]
    assert secret not in json.dumps(_serialize_rendered_fields(op))
    assert redact(f"revoking {secret}") == "revoking ***"


def test_connection_config_error_is_permanent(set_connection, cache_dir, emulator):
    set_connection("sf_no_user", {"conn_type": "salesforce_oauth", "host": emulator.login_url, "login": "3MVG9abc"})
    op = SalesforceRevokeTokenOperator(task_id="revoke", salesforce_oauth_conn_id="sf_no_user", tokens=["x" * 40])
    with pytest.raises(AirflowFailException, match="extra 'username' is required"):
        op.execute(context())
    assert emulator.org.count("revoke") == 0


def test_mapped_task_tokens_are_masked_when_rendered(emulator):
    """Mapped tasks render through ``_do_render_template_fields``, not ``render_template_fields``."""
    from airflow.sdk import DAG
    from tests.airflow_compat import redact

    secret = emulator.org.mint_tokens(1)[0]
    with DAG("render_mask_mapped", schedule=None, params={"leaked": secret}) as dag:
        mapped = SalesforceRevokeTokenOperator.partial(task_id="revoke").expand(tokens=[["{{ params.leaked }}"]])

    class TI:
        map_index = 0

    class DagRun:
        conf: dict = {}

    mapped.render_template_fields({"ti": TI(), "dag": dag, "task": mapped, "run_id": "r", "dag_run": DagRun()})
    assert redact(f"revoking {secret}") == "revoking ***"
