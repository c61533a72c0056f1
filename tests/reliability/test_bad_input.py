"""Bad input catalogue: malformed connections and server replies each give their documented error.

Connections go through the hook (as a task would read them); replies that the emulator cannot
produce (malformed bodies) are served to the real client through ``httpx.MockTransport``.
"""

from __future__ import annotations

import json

import httpx
import pytest

from sf_oauth_provider.client import errors as E
from sf_oauth_provider.client.config import OAuthConfig
from sf_oauth_provider.client.oauth import RetryPolicy, SalesforceOAuthClient
from sf_oauth_provider.data import rest
from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook
from tests.airflow_compat import airflow_drops_connections_with_a_broken_extra
from tests.keys import ec_pem, pem, rsa_key


def _public_pem() -> str:
    from cryptography.hazmat.primitives import serialization

    return rsa_key().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def _jwt(**extra):
    base = {"auth_flow": "jwt_bearer", "username": "u@example.com", "private_key": pem(rsa_key())}
    base.update(extra)
    return {"conn_type": "salesforce_oauth", "host": "https://login.salesforce.com", "login": "3MVG9k", "extra": base}


def _with(conn: dict, **fields) -> dict:
    return {**conn, **fields}


KEY = pem(rsa_key())
# (id, connection, field the error must name, word the message must contain)
CONNECTIONS = [
    ("no-consumer-key", _with(_jwt(), login=None), "login", "Consumer Key"),
    ("blank-consumer-key", _with(_jwt(), login="   "), "login", "Consumer Key"),
    ("no-host", _with(_jwt(), host=None), "host", "host"),
    ("ftp-host", _with(_jwt(), host="ftp://login.salesforce.com"), "host", "https"),
    ("plain-http-remote", _with(_jwt(), host="http://acme.my.salesforce.com"), "host", "http"),
    ("host-with-query", _with(_jwt(), host="https://acme.my.salesforce.com/?x=1"), "host", "query"),
    ("host-without-name", _with(_jwt(), host="https://"), "host", "host"),
    ("unknown-flow", _jwt(auth_flow="password"), "extra.auth_flow", "jwt_bearer"),
    ("flow-not-string", _jwt(auth_flow=123), "extra.auth_flow", "string"),
    ("jwt-no-username", _jwt(username=None), "extra.username", "username"),
    ("username-is-list", _jwt(username=["a"]), "extra.username", "string"),
    ("jwt-no-key", _jwt(private_key=None), "extra.private_key", "private_key"),
    ("key-path-missing", _jwt(private_key=None, jwt_key_file="/nonexistent/k.pem"), "extra.jwt_key_file", "cannot be read"),
    ("key-path-is-dir", _jwt(private_key=None, jwt_key_file="/"), "extra.jwt_key_file", "cannot be read"),
    ("key-garbage", _jwt(private_key="not a key at all"), "extra.private_key", "PEM"),
    ("key-truncated", _jwt(private_key=KEY[: len(KEY) // 2] + "\n-----END PRIVATE KEY-----"), "extra.private_key", "PEM"),
    ("key-ec", _jwt(private_key=ec_pem()), "extra.private_key", "RSA"),
    ("key-public", _jwt(private_key=_public_pem()), "extra.private_key", "PEM private key"),
    ("key-encrypted-no-pass", _jwt(private_key=pem(rsa_key(), "pw")), "extra.private_key_passphrase", "passphrase"),
    ("key-wrong-pass", _jwt(private_key=pem(rsa_key(), "pw"), private_key_passphrase="nope"), "extra.private_key_passphrase", "passphrase"),
    ("key-pass-not-needed", _jwt(private_key_passphrase="pw"), "extra.private_key_passphrase", "not encrypted"),
    ("cc-on-login", _with(_jwt(auth_flow="client_credentials"), password="s"), "host", "My Domain"),
    ("cc-on-test", _with(_jwt(auth_flow="client_credentials"), password="s", host="https://test.salesforce.com"), "host", "My Domain"),
    ("cc-no-secret", _with(_jwt(auth_flow="client_credentials"), host="https://acme.my.salesforce.com"), "password", "Consumer Secret"),
    ("refresh-no-token", _jwt(auth_flow="refresh_token"), "extra.refresh_token", "refresh_token"),
    ("session-timeout-text", _jwt(session_timeout="2h"), "extra.session_timeout", "number"),
    ("session-timeout-negative", _jwt(session_timeout=-5), "extra.session_timeout", "between"),
    ("timeout-zero", _jwt(timeout=0), "extra.timeout", "between"),
    ("cache-mode-unknown", _jwt(cache="disk"), "extra.cache", "redis"),
    ("api-version-bad", _jwt(api_version="latest"), "extra.api_version", "63.0"),
    ("audience-not-url", _jwt(audience="login.salesforce.com"), "extra.audience", "URL"),
    ("extra-not-json", _with(_jwt(), extra="{oops"), "extra", "JSON"),
    ("extra-a-list", _with(_jwt(), extra=json.dumps([1, 2])), "extra", "object"),
    ("wrong-conn-type", _with(_jwt(), conn_type="http"), "conn_type", "salesforce_oauth"),
]


@pytest.mark.parametrize(("conn", "field", "word"), [c[1:] for c in CONNECTIONS], ids=[c[0] for c in CONNECTIONS])
def test_malformed_connection(conn, field, word, set_connection, cache_dir):
    conn = dict(conn)
    if isinstance(conn.get("extra"), dict):
        conn["extra"] = {k: v for k, v in conn["extra"].items() if v is not None}
    set_connection("sf_case", conn)
    if field == "extra" and airflow_drops_connections_with_a_broken_extra():
        from airflow.exceptions import AirflowNotFoundException

        with pytest.raises(AirflowNotFoundException, match="connection 'sf_case', field 'extra'"):
            SalesforceOAuthHook("sf_case").get_token()
        return
    with pytest.raises(E.SalesforceOAuthError) as info:
        SalesforceOAuthHook("sf_case").get_token()
    err = info.value
    assert isinstance(err, E.SalesforceConfigError), repr(err)
    assert err.field == field, str(err)
    assert word.lower() in str(err).lower()
    assert "'sf_case'" in str(err)


GOOD = {"access_token": "00Dxx0000000001!AQfake", "instance_url": "https://acme.my.salesforce.com",
        "id": "https://login.salesforce.com/id/00Dxx0000000001AAA/005xx0000000001AAA", "token_type": "Bearer"}
# (id, endpoint, status, headers, body, expected class, word the message must contain)
REPLIES = [
    ("token-200-empty", "token", 200, {}, b"", E.SalesforceUnavailableError, "HTTP 200"),
    # a 200 page, a 404 or garbage on the token host is not Salesforce: permanent, names the host
    ("token-200-html", "token", 200, {"content-type": "text/html"}, b"<html><title>Login</title></html>", E.SalesforceHostError, "HTML"),
    ("token-200-no-access-token", "token", 200, {}, json.dumps({"instance_url": "x"}).encode(), E.SalesforceUnavailableError, "access_token"),
    ("token-200-array", "token", 200, {}, b"[]", E.SalesforceUnavailableError, "access_token"),
    ("token-200-bad-issued-at", "token", 200, {}, json.dumps({**GOOD, "issued_at": "soon"}).encode(), E.SalesforceUnavailableError, "issued_at"),
    ("token-200-bad-signature", "token", 200, {}, json.dumps({**GOOD, "issued_at": "1715712000000", "signature": "AAAA"}).encode(), E.SalesforceAuthError, "signature"),
    ("token-200-invalid-utf8", "token", 200, {}, b"\xff\xfe\x00garbage", E.SalesforceHostError, "HTTP 200"),
    ("token-400-json", "token", 400, {}, json.dumps({"error": "invalid_grant", "error_description": "audience is invalid"}).encode(), E.SalesforceAuthError, "audience is invalid"),
    ("token-400-text", "token", 400, {"content-type": "text/plain"}, b"Bad Request", E.SalesforceUnavailableError, "HTTP 400"),
    ("token-400-error-not-string", "token", 400, {}, json.dumps({"error": 5}).encode(), E.SalesforceUnavailableError, "HTTP 400"),
    ("token-302-redirect", "token", 302, {"location": "https://example.invalid/"}, b"", E.SalesforceUnavailableError, "HTTP 302"),
    ("token-404-html", "token", 404, {"content-type": "text/html"}, b"<html>Not Found</html>", E.SalesforceHostError, "no OAuth token endpoint at https://acme.my.salesforce.com/services/oauth2/token"),
    ("introspect-404-text", "introspect", 404, {}, b"Not Found", E.SalesforceHostError, "no OAuth introspect endpoint"),
    ("userinfo-200-html", "userinfo", 200, {"content-type": "text/html"}, b"<html>hi</html>", E.SalesforceHostError, "not a Salesforce answer"),
    ("token-429", "token", 429, {}, b"slow down", E.SalesforceRateLimitError, "429"),
    ("token-500-json", "token", 500, {}, json.dumps({"error": "server_error", "error_description": "boom"}).encode(), E.SalesforceUnavailableError, "boom"),
    ("token-503-html", "token", 503, {"content-type": "text/html"}, b"<html><title>Maintenance</title></html>", E.SalesforceUnavailableError, "Maintenance"),
    ("token-oversized", "token", 200, {}, b"{" + b" " * (5 * 1024 * 1024), E.SalesforceUnavailableError, "oversized"),
    ("introspect-401", "introspect", 401, {}, json.dumps({"error": "invalid_client", "error_description": "invalid client credentials"}).encode(), E.SalesforceAuthError, "invalid client"),
    ("introspect-active-string", "introspect", 200, {}, json.dumps({"active": "true"}).encode(), E.SalesforceUnavailableError, "active"),
    # out-of-range numbers are the package's error, never OverflowError/ValueError
    ("introspect-exp-1e400", "introspect", 200, {}, b'{"active": true, "exp": 1e400}', E.SalesforceUnavailableError, "'exp'"),
    ("introspect-exp-1e20", "introspect", 200, {}, b'{"active": true, "exp": 1e20}', E.SalesforceUnavailableError, "'exp'"),
    ("introspect-exp-nan", "introspect", 200, {}, b'{"active": true, "exp": NaN}', E.SalesforceUnavailableError, "'exp'"),
    ("introspect-exp-negative", "introspect", 200, {}, b'{"active": true, "exp": -1}', E.SalesforceUnavailableError, "'exp'"),
    ("introspect-iat-huge-string", "introspect", 200, {}, b'{"active": true, "iat": "' + b"9" * 400 + b'"}', E.SalesforceUnavailableError, "'iat'"),
    ("token-200-issued-at-huge", "token", 200, {}, json.dumps({**GOOD, "issued_at": "9" * 400}).encode(), E.SalesforceUnavailableError, "issued_at"),
    ("token-200-issued-at-inf", "token", 200, {}, json.dumps({**GOOD})[:-1].encode() + b', "issued_at": 1e400}', E.SalesforceUnavailableError, "issued_at"),
    ("userinfo-403-bad-token", "userinfo", 403, {"content-type": "text/plain"}, b"Bad_OAuth_Token", E.SalesforceSessionExpired, "Bad_OAuth_Token"),
    ("userinfo-200-list", "userinfo", 200, {}, b"[1]", E.SalesforceUnavailableError, "userinfo"),
    ("revoke-400-unsupported", "revoke", 400, {}, json.dumps({"error": "unsupported_token_type", "error_description": "x"}).encode(), E.SalesforceRequestError, "unsupported_token_type"),
    ("query-400-malformed", "query", 400, {}, json.dumps([{"errorCode": "MALFORMED_QUERY", "message": "unexpected token: FORM"}]).encode(), E.SalesforceRequestError, "MALFORMED_QUERY"),
    ("query-401-session", "query", 401, {}, json.dumps([{"errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid"}]).encode(), E.SalesforceSessionExpired, "INVALID_SESSION_ID"),
    ("query-200-no-records", "query", 200, {}, json.dumps({"totalSize": 0}).encode(), E.SalesforceUnavailableError, "records"),
]


def _client(status: int, headers: dict, body: bytes) -> SalesforceOAuthClient:
    config = OAuthConfig.from_connection_fields(
        "sf_case", host="https://acme.my.salesforce.com", login="3MVG9k", password="secret",
        extra={"auth_flow": "client_credentials"},
    )
    transport = httpx.MockTransport(lambda request: httpx.Response(status, headers=headers, content=body))
    return SalesforceOAuthClient(config, http=httpx.Client(transport=transport),
                                 retry=RetryPolicy(attempts=1, initial_backoff=0.001, max_backoff=0.001))


@pytest.mark.parametrize(("endpoint", "status", "headers", "body", "cls", "word"), [r[1:] for r in REPLIES], ids=[r[0] for r in REPLIES])
def test_malformed_reply(endpoint, status, headers, body, cls, word):
    from sf_oauth_provider.client.token import SalesforceToken

    client = _client(status, headers, body)
    token = SalesforceToken(access_token="00Dxx!AQfake", instance_url="https://acme.my.salesforce.com", id_url=None,
                            issued_at=0, expires_at=1)
    calls = {
        "token": client.fetch_token,
        "introspect": lambda: client.introspect("00Dxx!AQfake"),
        "userinfo": lambda: client.userinfo("00Dxx!AQfake"),
        "revoke": lambda: client.revoke("00Dxx!AQfake"),
        "query": lambda: rest.query(client, token, "SELECT Id FROM Account"),
    }
    with pytest.raises(E.SalesforceOAuthError) as info:
        calls[endpoint]()
    assert type(info.value) is cls, repr(info.value)
    assert word in str(info.value)
    assert "AQfake" not in str(info.value)
    assert str(info.value).startswith("Connection 'sf_case': ")  # every client error names its connection


def test_catalogue_is_large_enough():
    assert len(CONNECTIONS) + len(REPLIES) >= 30
