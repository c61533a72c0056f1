"""SalesforceOAuthHook against the emulator over loopback: flows, errors, retries, cache, expiry."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sf_oauth_provider.client import errors as E
from sf_oauth_provider.client.oauth import RetryPolicy
from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook
from tests.airflow_compat import airflow_drops_connections_with_a_broken_extra

FAST = RetryPolicy(attempts=3, initial_backoff=0.01, max_backoff=0.05, max_total=10)
ROOT = Path(__file__).resolve().parents[2]


def hook(conn_id: str = "salesforce_oauth_default", **kwargs) -> SalesforceOAuthHook:
    return SalesforceOAuthHook(conn_id, retry=kwargs.pop("retry", FAST), **kwargs)


# ---- the three flows ---------------------------------------------------------------------------
def test_jwt_bearer_flow(emulator, sf_connections):
    tok = hook().get_token()
    assert tok.instance_url == emulator.base_url
    assert tok.org_id and tok.org_id.startswith("00D") and tok.user_id.startswith("005")
    # the connection has the consumer secret: expiry comes from introspection
    assert tok.expires_at_source == "introspection"
    assert abs(tok.expires_at - (emulator.org.clock.now() + emulator.org.settings.session_timeout)) < 5
    assert tok.access_token in emulator.org.issued_tokens()
    assert emulator.org.count("token", grant="jwt_bearer") == 1
    assert hook().userinfo()["preferred_username"] == emulator.org.demo.jwt_username


def test_client_credentials_flow(emulator, sf_connections):
    h = hook("salesforce_oauth_cc")
    tok = h.get_token()
    assert tok.access_token in emulator.org.issued_tokens()
    assert h.userinfo()["preferred_username"] == emulator.org.demo.cc_username
    assert emulator.org.count("token", grant="client_credentials") == 1


def output(caplog, capfd) -> str:
    """Everything logged: stdlib records and what Airflow's structlog printed."""
    out, err = capfd.readouterr()
    return "\n".join([caplog.text, out, err])


def test_refresh_token_flow_keeps_rotated_token(emulator, sf_connections, caplog, capfd):
    caplog.set_level(logging.INFO)
    h = hook("salesforce_oauth_refresh")
    first = h.get_token()
    assert first.refresh_token and first.refresh_token != emulator.org.demo.refresh_token  # rotation is on
    assert "rotated the refresh token" in output(caplog, capfd)
    # the old refresh token is dead at Salesforce; the next refresh must use the rotated one
    second = hook("salesforce_oauth_refresh").get_token(force_refresh=True)
    assert second.access_token != first.access_token
    assert emulator.org.count("token", grant="refresh_token") == 2
    assert "rotated the refresh token" in output(caplog, capfd)


def test_query_follows_next_records_url(emulator, sf_connections):
    emulator.org.settings.page_size = 7
    rows = hook().query("SELECT Id, Name FROM Account")
    assert len(rows) == emulator.org.count("query") * 0 + len({r["Id"] for r in rows})
    assert emulator.org.count("query") == -(-len(rows) // 7)  # one request per page
    assert len(rows) > 7


def test_get_conn_is_an_authenticated_client(emulator, sf_connections):
    with hook().get_conn() as http:
        response = http.get("/services/data/v63.0/query", params={"q": "SELECT Id FROM User LIMIT 1"})
    assert response.status_code == 200 and response.json()["totalSize"] == 1


# ---- Salesforce errors: class, hint, one request ----------------------------------------------
def _jwt_conn(sf_connections, **changes):
    conn = json.loads(json.dumps(sf_connections["salesforce_oauth_default"]))
    extra = changes.pop("extra", {})
    conn.update(changes)
    conn["extra"].update(extra)
    return conn


@pytest.mark.parametrize(
    ("change", "cls", "error", "hint"),
    [
        ({"extra": {"username": "analyst@demo.example"}}, E.SalesforceAuthError, "invalid_grant", "pre-authorize"),
        ({"extra": {"username": "nobody@demo.example"}}, E.SalesforceAuthError, "invalid_grant", "username"),
        ({"extra": {"audience": "https://test.salesforce.com"}}, E.SalesforceAuthError, "invalid_grant", "audience"),
        ({"login": "3MVG9UnknownConsumerKey"}, E.SalesforceAuthError, "invalid_client_id", "consumer key"),
    ],
)
def test_permanent_errors_make_exactly_one_request(emulator, sf_connections, set_connection, change, cls, error, hint):
    set_connection("sf_bad", _jwt_conn(sf_connections, **change))
    with pytest.raises(E.SalesforceOAuthError) as info:
        hook("sf_bad").get_token()
    assert type(info.value) is cls and info.value.error == error and hint in info.value.hint
    assert not info.value.transient
    assert emulator.org.count("token") == 1


def test_wrong_private_key_is_invalid_assertion(emulator, sf_connections, set_connection):
    from tests.keys import pem, rsa_key

    set_connection("sf_bad", _jwt_conn(sf_connections, extra={"jwt_key_file": None, "private_key": pem(rsa_key())}))
    with pytest.raises(E.SalesforceAuthError) as info:
        hook("sf_bad").get_token()
    assert info.value.error_description == "invalid assertion" and "certificate" in info.value.hint
    assert emulator.org.count("token") == 1


def test_admin_approval_required(emulator, sf_connections, set_connection):
    conn = _jwt_conn(sf_connections, login=emulator.org.demo.admin_only_consumer_key,
                     password=emulator.org.demo.admin_only_consumer_secret)
    set_connection("sf_bad", conn)
    with pytest.raises(E.SalesforceAuthError) as info:
        hook("sf_bad").get_token()
    assert info.value.error == "invalid_app_access" and "admin approval" in info.value.hint


@pytest.mark.parametrize(
    ("conn_change", "error", "hint"),
    [
        ({"password": "wrong-secret"}, "invalid_client", "consumer secret"),
        ("login_base", "invalid_grant", "My Domain"),
        ("broken_app", "invalid_grant", "Run As"),
    ],
)
def test_client_credentials_errors(emulator, sf_connections, set_connection, conn_change, error, hint):
    conn = dict(sf_connections["salesforce_oauth_cc"])
    if conn_change == "login_base":
        conn["host"] = emulator.login_url
    elif conn_change == "broken_app":
        conn.update(login=emulator.org.demo.broken_cc_consumer_key, password=emulator.org.demo.broken_cc_consumer_secret)
    else:
        conn.update(conn_change)
    set_connection("sf_bad", conn)
    with pytest.raises(E.SalesforceAuthError) as info:
        hook("sf_bad").get_token()
    assert info.value.error == error and hint in info.value.hint
    assert emulator.org.count("token") == 1


def test_dead_refresh_token(emulator, sf_connections, set_connection):
    conn = json.loads(json.dumps(sf_connections["salesforce_oauth_refresh"]))
    conn["extra"]["refresh_token"] = "5Aep861NotARealRefreshToken"
    set_connection("sf_bad", conn)
    with pytest.raises(E.SalesforceAuthError) as info:
        hook("sf_bad").get_token()
    # asked before it is sent (a retired refresh token must never be sent: DESIGN §5)
    assert "configured refresh token as no longer active" in str(info.value)
    assert "re-authorise" in info.value.hint
    assert emulator.org.count("token") == 0


def test_config_error_makes_no_request(emulator, sf_connections, set_connection):
    set_connection("sf_bad", _jwt_conn(sf_connections, extra={"username": ""}))
    with pytest.raises(E.SalesforceConfigError) as info:
        hook("sf_bad").get_token()
    assert info.value.field == "extra.username"
    assert emulator.org.count("token") == 0


def test_invalid_extra_json_names_the_field(emulator, set_connection, cache_dir):
    os.environ  # connection given as URI-less JSON with a broken extra string
    set_connection("sf_bad", {"conn_type": "salesforce_oauth", "host": emulator.login_url, "login": "k",
                              "extra": "{not json"})
    if airflow_drops_connections_with_a_broken_extra():
        from airflow.exceptions import AirflowNotFoundException

        with pytest.raises(AirflowNotFoundException, match="connection 'sf_bad', field 'extra'"):
            hook("sf_bad").config
        return
    with pytest.raises(E.SalesforceConfigError) as info:
        hook("sf_bad").config
    assert info.value.field == "extra"


# ---- transient errors: retried within the bound -------------------------------------------------
def test_transient_errors_are_retried_then_succeed(emulator, sf_connections):
    emulator.org.set_faults("token", sequence=[{"kind": "json503"}, {"kind": "html503"}])
    tok = hook().get_token()
    assert tok.access_token in emulator.org.issued_tokens()
    assert emulator.org.count("token") == 3


@pytest.mark.parametrize("kind", ["500", "html503", "reset", "429"])
def test_transient_errors_stop_after_the_bound(emulator, sf_connections, kind):
    emulator.org.set_faults("token", sequence=[{"kind": kind}] * 5)
    with pytest.raises(E.SalesforceTransientError) as info:
        hook().get_token()
    assert info.value.transient
    assert emulator.org.count("token") == 3


def test_timeout_is_transient(emulator, sf_connections, set_connection):
    conn = _jwt_conn(sf_connections, extra={"timeout": 0.3})
    set_connection("sf_slow", conn)
    emulator.org.set_faults("token", sequence=[{"kind": "latency", "seconds": 1.0}])
    tok = hook("sf_slow").get_token()  # first try times out, the second succeeds
    assert tok.access_token in emulator.org.issued_tokens()
    assert emulator.org.count("token") == 2


# ---- cache: one request for many processes ------------------------------------------------------
def _procs(mode: str, count: int, cache_dir: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "tests.helpers.token_procs", mode, str(count)],
        cwd=ROOT, env=dict(os.environ, SF_OAUTH_CACHE_DIR=str(cache_dir)),
        capture_output=True, text=True, timeout=240,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_twenty_processes_one_after_another_make_one_request(emulator, sf_connections, cache_dir):
    result = _procs("sequential", 20, cache_dir)
    assert result["failures"] == [] and len(result["fingerprints"]) == 20
    assert len(set(result["fingerprints"])) == 1
    assert emulator.org.count("token") == 1


def test_sixteen_processes_at_once_on_a_cold_cache_make_one_request(emulator, sf_connections, cache_dir):
    result = _procs("together", 16, cache_dir)
    assert result["failures"] == [] and len(result["fingerprints"]) == 16
    assert len(set(result["fingerprints"])) == 1
    assert emulator.org.count("token") == 1


def test_cache_file_is_private_and_encrypted(emulator, sf_connections, cache_dir):
    tok = hook().get_token()
    files = [p for p in cache_dir.iterdir() if p.is_file()]
    assert files
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert tok.access_token.encode() not in path.read_bytes()
        assert tok.access_token.split("!")[1][:20].encode() not in path.read_bytes()


def test_corrupt_cache_file_still_yields_a_token(emulator, sf_connections, cache_dir, caplog, capfd):
    first = hook().get_token()
    for path in cache_dir.glob("*.token"):
        path.write_bytes(b"\x00garbage" * 10)
    from sf_oauth_provider.client import cache as cache_mod

    cache_mod._MEMORY.clear()  # forget the in-process copy, as a new task process would
    caplog.set_level(logging.WARNING)
    second = hook().get_token()
    assert second.access_token != first.access_token
    assert "rebuilt" in output(caplog, capfd)


def test_wrong_fernet_key_still_yields_a_token(emulator, sf_connections, cache_dir, monkeypatch, caplog, capfd):
    from cryptography.fernet import Fernet

    from sf_oauth_provider.client import cache as cache_mod

    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", Fernet.generate_key().decode())
    hook().get_token()
    cache_mod._MEMORY.clear()
    (cache_dir / ".cache.key").unlink()  # the other key is gone too: the file is foreign now
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", Fernet.generate_key().decode())
    caplog.set_level(logging.WARNING)
    assert hook().get_token().access_token in emulator.org.issued_tokens()
    assert emulator.org.count("token") == 2
    assert "rebuilt" in output(caplog, capfd)


def test_unwritable_cache_dir_still_yields_a_token(emulator, sf_connections, tmp_path, monkeypatch, caplog, capfd):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("SF_OAUTH_CACHE_DIR", str(blocker / "cache"))
    caplog.set_level(logging.WARNING)
    assert hook().get_token().access_token in emulator.org.issued_tokens()
    assert "memory" in output(caplog, capfd)


# ---- expiry, leeway, dead tokens ----------------------------------------------------------------
def test_token_within_leeway_is_refreshed(emulator, sf_connections):
    emulator.org.settings.session_timeout = 200  # shorter than the 300 s leeway
    first = hook().get_token()
    assert first.expires_at_source == "introspection"
    second = hook().get_token()
    assert second.access_token != first.access_token
    assert emulator.org.count("token") == 2


def test_fresh_token_is_reused(emulator, sf_connections):
    first = hook().get_token()
    assert hook().get_token().access_token == first.access_token
    assert emulator.org.count("token") == 1


def test_session_timeout_used_without_consumer_secret(emulator, sf_connections, set_connection):
    conn = _jwt_conn(sf_connections, password=None, extra={"session_timeout": 900})
    set_connection("sf_nosecret", conn)
    tok = hook("sf_nosecret").get_token()
    assert tok.expires_at_source == "session_timeout"
    assert 895 < tok.expires_at - tok.issued_at <= 900
    assert emulator.org.count("introspect") == 0


def test_expired_session_refreshes_once_and_retries_once(emulator, sf_connections):
    # A short session, and a clock jump short enough that our JWTs (exp = now + 180 s) stay valid.
    emulator.org.settings.session_timeout = 60
    h = hook(leeway=5)
    first = h.get_token()
    emulator.org.clock.advance(90)  # Salesforce lets the session die
    rows = h.query("SELECT Id FROM Account LIMIT 1")
    assert len(rows) == 1
    assert emulator.org.count("token") == 2
    assert h.get_token().access_token != first.access_token


def test_revoked_token_in_use_refreshes_once(emulator, sf_connections):
    h = hook()
    tok = h.get_token()
    emulator.org.revoke_token(tok.access_token)
    assert h.userinfo()["preferred_username"] == emulator.org.demo.jwt_username  # 403 Bad_OAuth_Token → refresh
    with h.get_conn() as http:  # the httpx.Auth path: 401 → refresh → retry
        emulator.org.revoke_token(h.get_token().access_token)
        assert http.get("/services/data/v63.0/query", params={"q": "SELECT Id FROM User LIMIT 1"}).status_code == 200
    assert emulator.org.count("token") == 3


# ---- revoke, introspect, test_connection ---------------------------------------------------------
def test_revoke_is_idempotent_and_purges_cache(emulator, sf_connections):
    h = hook()
    tok = h.get_token()
    assert h.introspect(tok.access_token).active
    assert h.revoke(tok.access_token) is True
    assert h.revoke(tok.access_token) is False
    assert not h.introspect(tok.access_token).active
    assert h.get_token().access_token != tok.access_token


def test_test_connection(emulator, sf_connections, set_connection):
    ok, message = hook().test_connection()
    assert ok and emulator.org.demo.jwt_username in message
    set_connection("sf_bad", _jwt_conn(sf_connections, extra={"username": "analyst@demo.example"}))
    ok, message = hook("sf_bad").test_connection()
    assert not ok and "pre-authorize" in message


def test_the_test_button_keeps_a_rotated_refresh_token(emulator, sf_connections):
    """Pressing Test after a task rotated the refresh token must not send the retired one
    (Salesforce would revoke the live one and the next task would fail with invalid_grant)."""
    conn_id = "salesforce_oauth_refresh"
    hook(conn_id).get_token()  # a task: the refresh token rotates
    ok, message = hook(conn_id).test_connection()
    assert ok, message
    assert hook(conn_id).get_token(force_refresh=True).access_token  # the next task still refreshes
    org = emulator.org
    assert not any(appr.successor is not None and appr.successor.revoked for appr in org.approvals.values())


def test_the_test_button_fails_on_a_wrong_consumer_secret(emulator, sf_connections, set_connection):
    """A JWT connection authenticates without its secret; the secret is used later (introspection,
    revocation, audits): a wrong one must fail the test, naming the field."""
    set_connection("sf_wrong_secret", dict(sf_connections["salesforce_oauth_default"], password="not-the-secret"))
    ok, message = hook("sf_wrong_secret").test_connection()
    assert not ok
    assert "password" in message and "not-the-secret" not in message


async def test_async_methods(emulator, sf_connections):
    h = hook()
    tok = await h.aget_token()
    assert (await h.aintrospect(tok.access_token)).active
    assert (await h.auserinfo())["preferred_username"] == emulator.org.demo.jwt_username
    assert (await hook().aget_token()).access_token == tok.access_token  # the same cache as the sync path
    assert emulator.org.count("token") == 1


# ---- no secret in any output, with DEBUG logging everywhere ------------------------------------
def test_no_secret_in_debug_output(emulator, sf_connections, set_connection, caplog, capfd):
    for name in ("sf_oauth_provider", "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    h = hook()
    h.get_token()
    h.userinfo()
    h.query("SELECT Id, Name FROM Account LIMIT 3")
    hook("salesforce_oauth_cc").get_token()
    hook("salesforce_oauth_refresh").get_token()
    emulator.org.set_faults("token", sequence=[{"kind": "html503"}])
    hook().get_token(force_refresh=True)
    set_connection("sf_bad", _jwt_conn(sf_connections, extra={"username": "analyst@demo.example"}))
    with pytest.raises(E.SalesforceAuthError) as info:
        hook("sf_bad").get_token()
    text = "\n".join([output(caplog, capfd), str(info.value), repr(info.value)])
    demo = emulator.org.demo
    key_body = "".join(demo.jwt_private_key_pem.splitlines()[1:-1])
    secrets = emulator.org.issued_tokens() + [
        demo.jwt_consumer_secret, demo.cc_consumer_secret, demo.refresh_consumer_secret, demo.refresh_token, key_body[:40],
    ]
    assert "HTTP Request" in caplog.text or "POST" in caplog.text  # the logs really were captured
    for secret in secrets:
        assert secret and secret not in text
    assert "eyJ" not in text  # no JWT assertion (base64 of '{"')


def test_wrong_key_is_not_handed_the_cached_token(emulator, sf_connections, set_connection):
    """The cache key includes the credentials: knowing the consumer key and username is not enough."""
    from tests.keys import pem, rsa_key

    hook().get_token()
    set_connection("sf_bad", _jwt_conn(sf_connections, extra={"jwt_key_file": None, "private_key": pem(rsa_key())}))
    with pytest.raises(E.SalesforceAuthError, match="invalid assertion"):
        hook("sf_bad").get_token()
    assert emulator.org.count("token") == 2


# ---- issue 11: the cache must not hide configuration mistakes ----------------------------------
def test_wrong_audience_is_not_handed_another_connections_cached_token(emulator, sf_connections, set_connection):
    """Before the audience was part of the cache key, the wrong connection got the good one's
    token and broke hours later, when that token expired."""
    good = hook().get_token()
    wrong = json.loads(json.dumps(sf_connections["salesforce_oauth_default"]))
    wrong["extra"]["audience"] = "https://wrong.example.com"
    set_connection("sf_wrong_aud", wrong)
    with pytest.raises(E.SalesforceOAuthError) as info:
        hook("sf_wrong_aud").get_token()
    assert info.value.error == "invalid_grant" and "audience" in str(info.value)
    assert hook().get_token().access_token == good.access_token  # the good one still hits the cache
    assert emulator.org.count("token", grant="jwt_bearer") == 2


# ---- introspect takes a token object; query_iter pages lazily; the token stays on its origin ----
def test_introspect_accepts_a_token_object(emulator, sf_connections):
    h = hook()
    tok = h.get_token()
    by_object, by_string = h.introspect(tok), h.introspect(tok.access_token)
    assert by_object == by_string and by_object.active and by_object.username == emulator.org.demo.jwt_username


async def test_aintrospect_accepts_a_token_object(emulator, sf_connections):
    h = hook()
    tok = await h.aget_token()
    info = await h.aintrospect(tok)
    assert info.active and info.username == emulator.org.demo.jwt_username


def test_query_iter_reads_one_page_at_a_time(emulator, sf_connections):
    emulator.org.settings.page_size = 7
    h = hook()
    rows = h.query_iter("SELECT Id, Name FROM Account")
    first = [next(rows) for _ in range(7)]
    assert emulator.org.count("query") == 1  # the second page is not asked before it is needed
    rest = list(rows)
    assert len(first) + len(rest) > 7
    assert [r["Id"] for r in first + rest] == [r["Id"] for r in h.query("SELECT Id, Name FROM Account")]


def test_query_iter_refreshes_an_expired_session_once(emulator, sf_connections):
    emulator.org.settings.page_size = 7
    h = hook()
    rows = h.query_iter("SELECT Id FROM Account")
    next(rows)
    emulator.org.revoke_token(h.get_token().access_token)  # the session dies mid-query
    assert len(list(rows)) > 6  # the next page came with a new token
    assert emulator.org.count("token") == 2


def _plain_http_token():
    from sf_oauth_provider.client.token import SalesforceToken

    return SalesforceToken(access_token="00Dxx0000000001!AQplainhttp", instance_url="http://acme.my.salesforce.com",
                           id_url=None, issued_at=0, expires_at=4e9)


def test_plain_http_instance_url_is_refused(emulator, sf_connections, monkeypatch):
    import socket

    h = hook()
    monkeypatch.setattr(h, "get_token", lambda *a, **k: _plain_http_token())  # a cache or server that lies
    resolved: list[str] = []
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: resolved.append(host) or [])
    with pytest.raises(E.SalesforceProtocolError) as info:
        h.query("SELECT Id FROM Account")
    assert "'salesforce_oauth_default'" in str(info.value) and "not https" in str(info.value)
    with pytest.raises(E.SalesforceProtocolError):
        h.get_conn()
    assert resolved == []  # nothing was even looked up, let alone sent


def test_a_connection_of_the_salesforce_provider_says_how_to_migrate(set_connection, cache_dir):
    set_connection("sf_old", {"conn_type": "salesforce", "login": "integration@acme.com", "password": "pw-0123456",
                              "extra": {"consumer_key": "3MVG9", "private_key_file_path": "/keys/sf.key"}})
    with pytest.raises(E.SalesforceConfigError) as info:
        hook("sf_old").config  # noqa: B018
    assert info.value.field == "conn_type"
    assert "Migrating from apache-airflow-providers-salesforce" in str(info.value)
