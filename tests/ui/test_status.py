"""The status page's data against the emulator: what the stores hold after real token requests,
the last permanent error with its hint, the latest audit's counts — and never a secret."""

from __future__ import annotations

import json

import pytest

from sf_oauth_provider.client import errors as E
from sf_oauth_provider.client.oauth import RetryPolicy
from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook
from sf_oauth_provider.operators.audit import SalesforceTokenAuditOperator
from sf_oauth_provider.ui import status
from tests.operators.test_audit import all_secrets, assert_no_secret, context

FAST = RetryPolicy(attempts=2, initial_backoff=0.01, max_backoff=0.02, max_total=5)


def row_of(conn_id: str, now: float | None = None) -> dict:
    return status.connection_status(conn_id, now)


def test_rows_follow_what_tasks_cached(emulator, sf_connections):
    page = status.page_status()
    assert [r["conn_id"] for r in page["connections"]] == sorted(sf_connections)
    before = row_of("salesforce_oauth_default")
    assert before["state"] == "no token cached" and before["fingerprint"] is None
    assert before["auth_flow"] == "jwt_bearer" and before["last_error"] is None
    assert before["logins_this_hour"] == 0
    requests = emulator.org.count("token")

    token = SalesforceOAuthHook("salesforce_oauth_default", retry=FAST).get_token()  # a task's request
    row = row_of("salesforce_oauth_default")
    assert row["state"] == "valid"
    assert row["fingerprint"] == token.fingerprint
    assert row["layer"] == "file" and row["cache"] == "file"
    assert abs(row["expires_in_seconds"] - token.seconds_left()) <= 2
    # the page asked Salesforce nothing: one request, the task's
    assert emulator.org.count("token") == requests + 1
    assert row["logins_this_hour"] == 1  # the login budget's count, from the task's file ledger
    # near and past expiry, as the clock moves
    assert row_of("salesforce_oauth_default", now=token.expires_at - 60)["state"] == "expiring"
    assert row_of("salesforce_oauth_default", now=token.expires_at + 1)["state"] == "expired"


def test_a_permanent_error_shows_with_its_hint_until_a_token_is_handed_out(
    emulator, sf_connections, set_connection
):
    conn = sf_connections["salesforce_oauth_default"]
    set_connection("salesforce_oauth_default", {**conn, "extra": {**conn["extra"], "username": "nobody@example.com"}})
    with pytest.raises(E.SalesforceAuthError) as info:
        SalesforceOAuthHook("salesforce_oauth_default", retry=FAST).get_token()
    row = row_of("salesforce_oauth_default")
    assert row["state"] == "failing"
    assert row["last_error"]["error"] == "SalesforceAuthError"
    assert row["last_error"]["message"] == info.value.message and info.value.hint
    assert row["last_error"]["hint"] == info.value.hint and row["last_error"]["at"]
    assert conn["password"] not in json.dumps(row)

    set_connection("salesforce_oauth_default", conn)  # fixed
    SalesforceOAuthHook("salesforce_oauth_default", retry=FAST).get_token()
    assert row_of("salesforce_oauth_default")["last_error"] is None


async def test_the_triggers_async_path_records_and_clears_too(emulator, sf_connections, set_connection):
    conn = sf_connections["salesforce_oauth_default"]
    set_connection("salesforce_oauth_default", {**conn, "extra": {**conn["extra"], "username": "nobody@example.com"}})
    with pytest.raises(E.SalesforceAuthError):
        await SalesforceOAuthHook("salesforce_oauth_default", retry=FAST).aget_token()
    assert row_of("salesforce_oauth_default")["last_error"]["error"] == "SalesforceAuthError"
    set_connection("salesforce_oauth_default", conn)
    await SalesforceOAuthHook("salesforce_oauth_default", retry=FAST).aget_token()
    assert row_of("salesforce_oauth_default")["last_error"] is None


def test_salesforce_being_down_is_not_a_last_error(emulator, sf_connections):
    emulator.org.set_faults("token", rate=1.0, kinds=["json503"])
    with pytest.raises(E.SalesforceTransientError):
        SalesforceOAuthHook("salesforce_oauth_default", retry=FAST).get_token()
    row = row_of("salesforce_oauth_default")
    assert row["last_error"] is None and row["state"] == "no token cached"


def test_a_misconfigured_connection_is_a_row_naming_the_fix(emulator, sf_connections, set_connection):
    conn = sf_connections["salesforce_oauth_default"]
    extra = {k: v for k, v in conn["extra"].items() if k != "username"}
    set_connection("sf_no_user", {**conn, "extra": extra})
    row = row_of("sf_no_user")
    assert row["state"] == "misconfigured"
    assert "username" in row["last_error"]["message"]
    assert conn["password"] not in json.dumps(row)
    assert "sf_no_user" in [r["conn_id"] for r in status.page_status()["connections"]]


def test_no_secret_in_the_page_data(emulator, sf_connections, set_connection):
    for conn_id in sf_connections:
        SalesforceOAuthHook(conn_id, retry=FAST).get_token()
    conn = sf_connections["salesforce_oauth_default"]
    set_connection("sf_wrong_user", {**conn, "extra": {**conn["extra"], "username": "nobody@example.com"}})
    with pytest.raises(E.SalesforceAuthError):
        SalesforceOAuthHook("sf_wrong_user", retry=FAST).get_token()
    page = json.dumps(status.page_status())
    assert {r["state"] for r in status.page_status()["connections"]} >= {"valid"}
    assert_no_secret([page], all_secrets(emulator.org))


def test_latest_audit_summary_from_the_configured_folder(emulator, sf_connections, tmp_path, monkeypatch):
    assert status.latest_audit() is None  # not configured
    folder = tmp_path / "audit"
    monkeypatch.setenv("AIRFLOW__SF_OAUTH__AUDIT_REPORT_DIR", str(folder))
    assert "no audit report" in status.latest_audit()["error"]
    result = SalesforceTokenAuditOperator(task_id="audit", report_dir=str(folder)).execute(context())
    audit = status.latest_audit()
    assert audit["summary"] == result["counts"]
    assert audit["html"] is True and audit["connection"] == "salesforce_oauth_default"
    assert audit["summary"]["findings"] > 0  # the seeded org has findings
    (folder / "audit.json").write_text("not json")
    assert "not readable as JSON" in status.latest_audit()["error"]


def test_a_token_another_host_cached_in_redis(emulator, sf_connections, redis_url, tmp_path, monkeypatch):
    monkeypatch.setenv("SF_OAUTH_CACHE_DIR", str(tmp_path / "worker-host"))
    token = SalesforceOAuthHook("salesforce_oauth_default", retry=FAST).get_token()
    monkeypatch.setenv("SF_OAUTH_CACHE_DIR", str(tmp_path / "api-server-host"))  # its file store is empty
    row = row_of("salesforce_oauth_default")
    assert (row["state"], row["layer"], row["cache"]) == ("valid", "redis", "redis")
    assert row["fingerprint"] == token.fingerprint
    assert redis_url not in json.dumps(row)


def test_loading_the_plugin_imports_no_web_stack(tmp_path):
    """The scheduler and every task runner load plugins: ours must not pull FastAPI and Airflow's
    API security into them (about 2 s); the API server builds the app on its first request."""
    import os
    import subprocess
    import sys

    heavy = ("fastapi", "airflow.api_fastapi.core_api.security", "sf_oauth_provider.ui.status")
    # what the plugin adds to what Airflow's plugin manager already imported (3.0 imports fastapi)
    code = ("import sys, airflow.plugins_manager; before = set(sys.modules); "
            "import sf_oauth_provider.plugins as p; "
            f"print(sorted(m for m in {heavy!r} if m in set(sys.modules) - before)); "
            "print(p.SalesforceOAuthPlugin.fastapi_apps[0]['url_prefix'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "AIRFLOW_HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["[]", "/sf-oauth"]


def test_a_permanent_error_on_another_host_shows_through_redis(
    emulator, sf_connections, set_connection, redis_url, tmp_path, monkeypatch
):
    conn = sf_connections["salesforce_oauth_default"]
    set_connection("salesforce_oauth_default", {**conn, "extra": {**conn["extra"], "username": "nobody@example.com"}})
    monkeypatch.setenv("SF_OAUTH_CACHE_DIR", str(tmp_path / "worker-a"))
    with pytest.raises(E.SalesforceAuthError) as info:
        SalesforceOAuthHook("salesforce_oauth_default", retry=FAST).get_token()
    monkeypatch.setenv("SF_OAUTH_CACHE_DIR", str(tmp_path / "api-server-host"))
    row = row_of("salesforce_oauth_default")
    assert row["state"] == "failing" and row["last_error"]["hint"] == info.value.hint
    import redis

    client = redis.Redis.from_url(redis_url)
    (name,) = client.keys("*:last_error")
    raw = client.get(name)
    assert raw.startswith(b"gAAAAA") and b"invalid" not in raw  # Fernet-sealed like the token entries
    assert 0 < client.ttl(name) <= 7 * 86400

    # fixed, and a task on a third host gets a token: the error is history everywhere
    set_connection("salesforce_oauth_default", conn)
    monkeypatch.setenv("SF_OAUTH_CACHE_DIR", str(tmp_path / "worker-c"))
    token = SalesforceOAuthHook("salesforce_oauth_default", retry=FAST).get_token()
    monkeypatch.setenv("SF_OAUTH_CACHE_DIR", str(tmp_path / "api-server-host"))
    row = row_of("salesforce_oauth_default")
    assert (row["state"], row["fingerprint"], row["last_error"]) == ("valid", token.fingerprint, None)
