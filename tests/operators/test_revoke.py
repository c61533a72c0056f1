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
    op = SalesforceRevokeTokenOperator(task_id="revoke", token_fingerprints=stale, dry_run=False)
    summary = op.execute(ctx)
    assert (summary["revoked"], summary["already_invalid"], summary["failed"]) == (len(stale), 0, 0)
    assert {i["fingerprint"] for i in summary["items"] if i["outcome"] == "revoked"} == expected
    assert all(i["app"] and "user" not in i for i in summary["items"])  # no personal data in XCom
    usernames = {org.users[row.user_id].username for row in org.oauth_token_rows()}
    assert not [u for u in usernames if u in json.dumps(summary)]
    assert _live_fingerprints(org) == before - expected  # exactly those rows are gone
    hook = SalesforceOAuthHook()
    for token in org.seed_facts["stale_delete_tokens"][:3]:
        assert hook.introspect(token, "refresh_token").active is False
    assert org.count("revoke") == len(stale)

    # a second run finds none of them: they are not_found (revoked, or a typo), and that fails
    # unless the caller says a missing token is fine
    again = SalesforceRevokeTokenOperator(
        task_id="revoke", token_fingerprints=json.dumps(stale), dry_run=False, fail_on_not_found=False
    ).execute(context())
    assert (again["revoked"], again["not_found"], again["failed"]) == (0, len(stale), 0)
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
    op = SalesforceRevokeTokenOperator(
        task_id="revoke", token_fingerprints=stale, max_revocations=len(stale) - 1, dry_run=False
    )
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
        task_id="revoke", token_fingerprints=stale, max_concurrency=1, retry_attempts=2, retry_backoff=0.01,
        dry_run=False,
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

    # the Airflow retry revokes what is left; the rows revoked by the first try are gone now, and
    # the task says so instead of calling them a success
    ctx = context()
    with pytest.raises(AirflowFailException, match=rf"{len(stale) - 1} of {len(stale)} fingerprints match no token"):
        SalesforceRevokeTokenOperator(task_id="revoke", token_fingerprints=stale, dry_run=False).execute(ctx)
    retry = ctx["ti"].xcom["return_value"]
    assert (retry["revoked"], retry["not_found"], retry["failed"]) == (1, len(stale) - 1, 0)
    assert not _live_fingerprints(org) & set(stale)


def test_raw_tokens_and_the_current_token(sf_connections, emulator, caplog, capfd):
    org = emulator.org
    raw = org.mint_tokens(3)
    hook = SalesforceOAuthHook()
    current = hook.get_token()
    grants_before = org.count("token", grant="jwt_bearer")

    op = SalesforceRevokeTokenOperator(
        task_id="revoke", tokens="{{ params.leaked | join(',') }}", revoke_current=True, dry_run=False
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

    again = SalesforceRevokeTokenOperator(task_id="revoke", tokens=raw, dry_run=False).execute(context())
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
    assert nothing == {"revoked": 0, "already_invalid": 0, "not_found": 0, "failed": 0, "dry_run": True, "items": []}
    assert emulator.org.count("revoke") == 0 and emulator.org.count("query") == 0


def test_unknown_fingerprint_is_not_found_and_fails_the_task(sf_connections, emulator, tmp_path):
    """In an emergency a mistyped fingerprint must not look like success (it was 'already_invalid')."""
    org = emulator.org
    stale = _stale_from_audit(tmp_path)
    ctx = context()
    op = SalesforceRevokeTokenOperator(task_id="revoke", token_fingerprints=[stale[0], "sha256:000000000000"], dry_run=False)
    with pytest.raises(AirflowFailException, match=r"1 of 2 fingerprints match no token: sha256:000000000000") as info:
        op.execute(ctx)
    assert "fail_on_not_found" in str(info.value)
    summary = ctx["ti"].xcom["return_value"]
    assert [i["outcome"] for i in summary["items"]] == ["not_found", "revoked"]
    assert (summary["revoked"], summary["not_found"], summary["already_invalid"]) == (1, 1, 0)
    assert org.count("revoke") == 1  # the real one was still revoked


def test_not_found_can_be_accepted_explicitly(sf_connections, emulator):
    summary = SalesforceRevokeTokenOperator(
        task_id="revoke", token_fingerprints="sha256:000000000000", dry_run=False, fail_on_not_found="{{ params.strict }}"
    )
    summary.render_template_fields({"params": {"strict": False}})
    result = summary.execute(context())
    assert result["not_found"] == 1 and result["items"][0]["outcome"] == "not_found"
    assert emulator.org.count("revoke") == 0


def test_dry_run_is_the_default(sf_connections, emulator, tmp_path):
    stale = _stale_from_audit(tmp_path)
    result = SalesforceRevokeTokenOperator(task_id="revoke", token_fingerprints=stale).execute(context())
    assert result["dry_run"] is True and result["revoked"] == 0
    assert emulator.org.count("revoke") == 0


@pytest.mark.parametrize("value", [None, "", "  ", "maybe", "{{ params.dry }}", 2, [True]])
def test_unrecognisable_dry_run_is_an_error_never_a_real_revocation(sf_connections, emulator, tmp_path, value):
    """An empty template (``{{ params.dry }}`` with no such param renders '') used to mean
    'revoke for real'."""
    stale = _stale_from_audit(tmp_path)
    if not isinstance(value, str):  # a plain value is checked when the DAG file is parsed
        with pytest.raises(ValueError, match="'dry_run' must be true or false"):
            SalesforceRevokeTokenOperator(task_id="revoke", token_fingerprints=stale, dry_run=value)
        return
    op = SalesforceRevokeTokenOperator(task_id="revoke", token_fingerprints=stale, dry_run=value)
    if value == "{{ params.dry }}":
        op.render_template_fields({"params": {}})
    with pytest.raises(AirflowFailException, match="'dry_run' must be true or false"):
        op.execute(context())
    assert emulator.org.count("revoke") == 0


def test_parameters_are_templated_and_typed(sf_connections, emulator, tmp_path):
    stale = _stale_from_audit(tmp_path)
    op = SalesforceRevokeTokenOperator(
        task_id="revoke", token_fingerprints=stale, dry_run="{{ params.dry }}",
        max_revocations="{{ params.cap }}", revoke_current="{{ params.current }}",
        max_concurrency="{{ params.conc }}",
    )
    assert {"max_revocations", "revoke_current", "max_concurrency", "fail_on_not_found"} <= set(op.template_fields)
    op.render_template_fields({"params": {"dry": "false", "cap": str(len(stale) - 1), "current": "no", "conc": "2"}})
    with pytest.raises(AirflowFailException, match="max_revocations"):
        op.execute(context())
    assert emulator.org.count("revoke") == 0


@pytest.mark.parametrize(
    ("param", "value", "message"),
    [("max_revocations", "many", "'max_revocations' must be a whole number"),
     ("max_revocations", "-1", "'max_revocations' must be 0 or more"),
     ("max_concurrency", "0", "'max_concurrency' must be 1 or more"),
     ("revoke_current", "perhaps", "'revoke_current' must be true or false"),
     ("retry_attempts", "x", "'retry_attempts' must be a whole number")],
)
def test_a_rendered_value_that_cannot_be_converted_names_the_parameter(sf_connections, emulator, param, value, message):
    op = SalesforceRevokeTokenOperator(task_id="revoke", token_fingerprints="sha256:000000000000", **{param: "{{ params.v }}"})
    op.render_template_fields({"params": {"v": value}})
    with pytest.raises(AirflowFailException, match=message):
        op.execute(context())
    assert emulator.org.count("revoke") == 0 and emulator.org.count("query") == 0


def test_permanent_connection_error_fails_without_retries(sf_connections, set_connection, emulator):
    conn = {**sf_connections["salesforce_oauth_cc"], "password": "wrong-secret-0000"}
    conn["extra"] = {**conn["extra"], "cache": "none"}
    set_connection("sf_bad", conn)
    op = SalesforceRevokeTokenOperator(
        task_id="revoke", salesforce_oauth_conn_id="sf_bad", token_fingerprints=["sha256:000000000000"], dry_run=False
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
