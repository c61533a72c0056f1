"""Reading Salesforce replies: success shapes, every DESIGN §4 error, and bodies that are not Salesforce's."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from sf_oauth_provider.client import errors as E
from sf_oauth_provider.client.responses import (
    MAX_BODY_BYTES,
    Reply,
    parse_introspection,
    parse_revoke,
    parse_token_response,
    safe_excerpt,
)

ID_URL = "https://login.salesforce.com/id/00D5g000004xxxxEAA/0055g00000AxxxxAAA"
TOKEN = "00D5g000004xxxx!AR8AQ" + "x" * 80


def reply(status: int, body, content_type="application/json") -> Reply:
    raw = body if isinstance(body, bytes) else (json.dumps(body) if not isinstance(body, str) else body).encode()
    return Reply(status, content_type, raw)


def sign(secret: str, issued_at: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), (ID_URL + issued_at).encode(), hashlib.sha256).digest()).decode()


def test_jwt_success_has_no_issued_at():
    tok = parse_token_response(
        reply(200, {"access_token": TOKEN, "scope": "api id", "instance_url": "https://acme.my.salesforce.com/",
                    "id": ID_URL, "token_type": "Bearer"}),
        session_timeout=7200, now=1_000_000.0,
    )
    assert tok.issued_at == 1_000_000.0 and tok.expires_at == 1_007_200.0
    assert tok.instance_url == "https://acme.my.salesforce.com"
    assert tok.org_id == "00D5g000004xxxxEAA" and tok.user_id == "0055g00000AxxxxAAA"
    assert TOKEN not in repr(tok) and TOKEN not in str(tok) and tok.fingerprint in repr(tok)


def test_issued_at_epoch_millis_and_signature_verified():
    issued = "1715712000000"
    body = {"access_token": TOKEN, "instance_url": "https://a.my.salesforce.com", "id": ID_URL,
            "issued_at": issued, "signature": sign("s3cret", issued)}
    tok = parse_token_response(reply(200, body), session_timeout=600, consumer_secret="s3cret", now=1715712005.0)
    assert tok.issued_at == 1715712000.0 and tok.expires_at == 1715712600.0
    with pytest.raises(E.SalesforceAuthError) as info:
        parse_token_response(reply(200, body), session_timeout=600, consumer_secret="other", now=1715712005.0)
    assert "consumer secret" in info.value.hint


# Every error of DESIGN §4: (error, description) -> class, and a hint that says what to change.
SALESFORCE_ERRORS = [
    ("invalid_grant", "user hasn't approved this consumer", E.SalesforceAuthError, "pre-authorize"),
    ("invalid_grant", "audience is invalid", E.SalesforceAuthError, "audience"),
    ("invalid_grant", "expired authorization code", E.SalesforceAuthError, "clock"),
    ("invalid_grant", "invalid assertion", E.SalesforceAuthError, "certificate"),
    ("invalid_app_access", "user is not admin approved to access this app", E.SalesforceAuthError, "admin approval"),
    ("invalid_client_id", "client identifier invalid", E.SalesforceAuthError, "consumer key"),
    ("invalid_client", "invalid client credentials", E.SalesforceAuthError, "consumer secret"),
    ("invalid_grant", "request not supported on this domain", E.SalesforceAuthError, "My Domain"),
    ("invalid_grant", "no client credentials user enabled", E.SalesforceAuthError, "Run As"),
    ("unsupported_grant_type", "grant type not supported", E.SalesforceAuthError, "auth_flow"),
    ("invalid_grant", "expired access/refresh token", E.SalesforceAuthError, "refresh token"),
    ("rate_limit_exceeded", "LOGIN_RATE_EXCEEDED", E.SalesforceLoginRateLimitError, "3,600"),
]


@pytest.mark.parametrize(("error", "description", "cls", "hint"), SALESFORCE_ERRORS)
def test_salesforce_errors_have_class_and_hint(error, description, cls, hint):
    with pytest.raises(E.SalesforceOAuthError) as info:
        parse_token_response(reply(400, {"error": error, "error_description": description}), session_timeout=7200)
    err = info.value
    assert type(err) is cls
    assert err.error == error and err.error_description == description and err.status_code == 400
    assert hint in err.hint
    assert description in str(err)
    assert err.transient is (cls is E.SalesforceRateLimitError)


@pytest.mark.parametrize(
    ("status", "body", "ctype", "cls", "shows"),
    [
        (503, "<html><head><title>Down For Maintenance</title></head><body>back soon</body></html>", "text/html",
         E.SalesforceUnavailableError, "Down For Maintenance"),
        (500, "", "text/plain", E.SalesforceUnavailableError, "empty body"),
        (502, "upstream connect error", "text/plain", E.SalesforceUnavailableError, "upstream"),
        (200, "{not json", "application/json", E.SalesforceUnavailableError, "HTTP 200"),
        (200, json.dumps({"access_token": TOKEN}), "application/json", E.SalesforceUnavailableError, "instance_url"),
        (200, json.dumps([1, 2]), "application/json", E.SalesforceUnavailableError, "instance_url"),
        (429, "Too Many Requests", "text/plain", E.SalesforceRateLimitError, "429"),
        (503, json.dumps({"error": "server_error", "error_description": "Service Unavailable"}), "application/json",
         E.SalesforceUnavailableError, "Service Unavailable"),
    ],
)
def test_unreadable_bodies_are_transient(status, body, ctype, cls, shows):
    with pytest.raises(E.SalesforceOAuthError) as info:
        parse_token_response(Reply(status, ctype, body.encode()), session_timeout=7200)
    assert type(info.value) is cls and info.value.transient
    assert shows in str(info.value)


def test_oversized_body_is_transient():
    with pytest.raises(E.SalesforceUnavailableError, match="oversized"):
        parse_token_response(Reply(200, "application/json", b"{" * 10, truncated=True), session_timeout=1)
    assert MAX_BODY_BYTES >= 1 << 20


def test_excerpt_hides_token_like_strings():
    text = safe_excerpt(f"<html><body>token {TOKEN} and key {'A' * 50}</body></html>")
    assert TOKEN not in text and "A" * 50 not in text and "[redacted]" in text


def test_introspection_shapes():
    active = parse_introspection(reply(200, {"active": True, "scope": "id api", "client_id": "3MVG9", "username": "u@x.com",
                                             "sub": ID_URL, "token_type": "access_token", "exp": 1715719200,
                                             "iat": 1715712000, "nbf": 1715712000}))
    assert active.active and active.exp == 1715719200 and active.user_id == "0055g00000AxxxxAAA"
    assert parse_introspection(reply(200, {"active": False})) == parse_introspection(reply(200, {"active": False}))
    with pytest.raises(E.SalesforceUnavailableError):
        parse_introspection(reply(200, {"active": "yes"}))
    with pytest.raises(E.SalesforceAuthError):
        parse_introspection(reply(401, {"error": "invalid_client", "error_description": "invalid client credentials"}))


def test_revoke_outcomes():
    assert parse_revoke(reply(200, b"")) is True
    assert parse_revoke(reply(400, {"error": "invalid_token", "error_description": "invalid token"})) is False
    assert parse_revoke(Reply(400, "text/plain", b"error=invalid_token")) is False
    with pytest.raises(E.SalesforceRequestError):
        parse_revoke(reply(400, {"error": "unsupported_token_type", "error_description": "x"}))
    with pytest.raises(E.SalesforceUnavailableError):
        parse_revoke(reply(503, "<html>maintenance</html>", "text/html"))


def test_rest_errors():
    from sf_oauth_provider.client.responses import parse_json_reply

    with pytest.raises(E.SalesforceSessionExpired):
        parse_json_reply(reply(401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]), "query")
    with pytest.raises(E.SalesforceRequestError, match="MALFORMED_QUERY"):
        parse_json_reply(reply(400, [{"message": "unexpected token", "errorCode": "MALFORMED_QUERY"}]), "query")
    with pytest.raises(E.SalesforceSessionExpired):
        parse_json_reply(Reply(403, "text/plain", b"Bad_OAuth_Token"), "userinfo request")


def test_errors_pickle_round_trip():
    import pickle

    err = E.SalesforceAuthError("m", error="invalid_grant", error_description="d", status_code=400, hint="h")
    back = pickle.loads(pickle.dumps(err))
    assert (type(back), back.error, back.hint, str(back)) == (type(err), "invalid_grant", "h", str(err))
    cfg = pickle.loads(pickle.dumps(E.SalesforceConfigError("bad", field="login", hint="x")))
    assert cfg.field == "login" and cfg.hint == "x"


@pytest.mark.timeout(20)  # the old backtracking regexes took about an hour on this page
def test_excerpt_of_a_hostile_4_mib_page_is_bounded_and_correct():
    page = b"<html><head><title>Service Unavailable</title></head><body>Down for maintenance " + (
        b"<script>" * (4 * 1024 * 1024 // 8)
    )
    text = safe_excerpt(page)
    assert text == "Service Unavailable Down for maintenance"
    err = E.SalesforceOAuthError  # the whole error path reads the same page
    from sf_oauth_provider.client.responses import error_for

    made = error_for(Reply(503, "text/html", page), "token request")
    assert isinstance(made, err) and made.transient
    assert "Service Unavailable Down for maintenance" in str(made) and len(str(made)) < 1000


def test_excerpt_drops_scripts_styles_and_unclosed_tags():
    page = ("<HTML><Title>Maintenance</Title><STYLE>p{}</STYLE><script type='x'>var a = '<b>';</script>"
            "<p>Back <b>soon</b></p><img src='x' onerror='alert(1)'")
    assert safe_excerpt(page) == "Maintenance Back soon"


def test_errors_name_their_connection_once():
    err = E.SalesforceUnavailableError("Salesforce is down", hint="wait")
    assert err.for_connection("sf_prod") is err and err.for_connection("other") is err
    assert str(err) == "Connection 'sf_prod': Salesforce is down — wait"
    import pickle

    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) and again.conn_id == "sf_prod"


def test_one_retry_predicate():
    expired = E.SalesforceSessionExpired("expired")
    assert E.retry_may_help(expired)  # a later try, with a new token, may pass
    assert not E.retry_may_help(expired, same_request=True)  # the same bearer token never will
    assert E.retry_may_help(E.SalesforceConnectionError("reset"), same_request=True)
    assert not E.retry_may_help(E.SalesforceHostError("typo"))
    assert not E.retry_may_help(E.SalesforceConfigError("bad"))
    assert not E.retry_may_help(ValueError("not ours"))


# ---- the login rate limit (3,600 logins per user per rolling hour) ------------------------------
@pytest.mark.parametrize("body", [
    {"error": "rate_limit_exceeded", "error_description": "LOGIN_RATE_EXCEEDED: too many logins for this user"},
    {"error": "rate_limit_exceeded", "error_description": "rate limit exceeded"},  # Salesforce's documented 400
    {"error": "invalid_grant", "error_description": "LOGIN_RATE_EXCEEDED"},
])
def test_the_login_rate_limit_is_permanent_and_says_when_the_hour_frees_up(body):
    from datetime import datetime, timezone

    now = datetime(2026, 12, 5, 14, 20, 30, tzinfo=timezone.utc).timestamp()
    with pytest.raises(E.SalesforceLoginRateLimitError) as info:
        parse_token_response(reply(400, body), session_timeout=7200, now=now)
    err = info.value
    assert not E.retry_may_help(err) and not err.transient and isinstance(err, E.SalesforcePermanentError)
    assert err.frees_up_at == now + 3600
    assert "15:20 UTC" in str(err) and "3,600" in err.hint  # at the latest an hour after this refusal
    assert "Login History" in err.hint
    again = __import__("pickle").loads(__import__("pickle").dumps(err))
    assert str(again) == str(err) and again.frees_up_at == err.frees_up_at


@pytest.mark.parametrize(("status", "body"), [
    (429, {"error": "rate_limit_exceeded", "error_description": "rate limit exceeded"}),  # throttling, not logins
    (429, "Too Many Requests"),
])
def test_other_rate_limits_on_the_token_endpoint_stay_transient(status, body):
    with pytest.raises(E.SalesforceRateLimitError) as info:
        parse_token_response(reply(status, body, "application/json" if isinstance(body, dict) else "text/plain"),
                             session_timeout=7200)
    assert E.retry_may_help(info.value)


def test_the_data_apis_request_limit_stays_transient():
    with pytest.raises(E.SalesforceRateLimitError) as info:
        parse_introspection(reply(403, [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}]))
    assert E.retry_may_help(info.value)


# ---- the instance URL the token is bound to ------------------------------------------------------
@pytest.mark.parametrize("instance_url", [
    "http://acme.my.salesforce.com", "http://10.0.0.5:8080", "ftp://acme.my.salesforce.com", "acme.my.salesforce.com",
    "https://", "javascript:alert(1)",
])
def test_an_instance_url_the_bearer_token_must_not_go_to_is_refused(instance_url):
    body = {"access_token": TOKEN, "instance_url": instance_url, "id": ID_URL}
    with pytest.raises(E.SalesforceProtocolError) as info:
        parse_token_response(reply(200, body), session_timeout=7200)
    err = info.value
    assert "instance_url" in str(err) and not E.retry_may_help(err)
    assert TOKEN not in str(err) and TOKEN not in repr(err.__context__)


@pytest.mark.parametrize("instance_url", ["https://acme.my.salesforce.com", "http://127.0.0.1:8443",
                                          "http://localhost:9000", "http://[::1]:9000"])
def test_https_and_loopback_http_instance_urls_are_accepted(instance_url):
    body = {"access_token": TOKEN, "instance_url": instance_url, "id": ID_URL}
    assert parse_token_response(reply(200, body), session_timeout=7200).instance_url == instance_url
