"""Property tests: parsers and validation raise only the package's errors; fingerprints and masking.

``make test`` runs the same 300 examples per test every time (derandomized: a CI run is repeatable).
To search further, set ``SF_OAUTH_HYPOTHESIS=random`` (new examples each run) and
``SF_OAUTH_HYPOTHESIS_EXAMPLES=20000``; turn what it finds into a plain regression test.
"""

from __future__ import annotations

import json
import os
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sf_oauth_provider.client.config import OAuthConfig
from sf_oauth_provider.client.errors import SalesforceConfigError, SalesforceOAuthError
from sf_oauth_provider.client.masking import secret_forms
from sf_oauth_provider.client.responses import (
    Reply,
    error_for,
    parse_introspection,
    parse_revoke,
    parse_token_response,
)
from sf_oauth_provider.client.token import fingerprint

SETTINGS = settings(
    max_examples=int(os.environ.get("SF_OAUTH_HYPOTHESIS_EXAMPLES", "300")),
    derandomize=os.environ.get("SF_OAUTH_HYPOTHESIS") != "random",
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=20,
)
token_like = st.fixed_dictionaries(
    {},
    optional={
        "access_token": json_values | st.text(min_size=1, max_size=40),
        "instance_url": json_values | st.just("https://acme.my.salesforce.com"),
        "id": json_values,
        "issued_at": json_values | st.integers(min_value=0, max_value=10**14).map(str),
        "signature": json_values,
        "scope": json_values,
        "refresh_token": json_values,
        "error": json_values | st.sampled_from(["invalid_grant", "invalid_client", "rate_limit_exceeded"]),
        "error_description": json_values,
        "active": json_values,
        "exp": json_values,
    },
)
bodies = st.one_of(
    st.binary(max_size=300),
    token_like.map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
)
replies = st.builds(
    Reply,
    status_code=st.sampled_from([200, 201, 204, 301, 400, 401, 403, 404, 429, 500, 502, 503]) | st.integers(100, 599),
    content_type=st.sampled_from(["application/json", "text/html", "text/plain", ""]),
    body=bodies,
    truncated=st.booleans(),
)


@SETTINGS
@given(replies, st.none() | st.text(max_size=10))
def test_token_parser_raises_only_package_errors(reply, secret):
    try:
        token = parse_token_response(reply, session_timeout=7200, consumer_secret=secret)
    except SalesforceOAuthError as exc:
        assert exc.message and isinstance(exc.transient, bool)
    else:
        assert token.access_token and token.expires_at > token.issued_at


@SETTINGS
@given(replies)
def test_introspection_and_revoke_parsers_raise_only_package_errors(reply):
    for parse in (parse_introspection, parse_revoke):
        try:
            parse(reply)
        except SalesforceOAuthError:
            pass
    assert isinstance(error_for(reply, "x"), SalesforceOAuthError)


hosts = st.one_of(
    st.none(), st.text(max_size=40),
    st.sampled_from(["https://login.salesforce.com", "http://127.0.0.1:1", "https://acme.my.salesforce.com/x/",
                     "http://[::1", "https://:80", "login.salesforce.com:99999"]),
)
extras = st.dictionaries(
    st.sampled_from(["auth_flow", "username", "private_key", "jwt_key_file", "private_key_passphrase", "audience",
                     "refresh_token", "api_version", "session_timeout", "cache", "timeout", "ca_bundle",
                     "jwt_certificate", "token_cache", "private_key_path", "other"]),
    json_values | st.sampled_from(["jwt_bearer", "client_credentials", "refresh_token", "file", "63.0", "-----BEGIN PRIVATE KEY-----\nAA\n-----END PRIVATE KEY-----"]),
    max_size=8,
)


@SETTINGS
@given(hosts, st.none() | st.text(max_size=10), st.none() | st.text(max_size=10), extras, st.none() | st.integers(-5, 70000))
def test_config_validation_raises_only_config_errors(host, login, password, extra, port):
    try:
        OAuthConfig.from_connection_fields("c", host=host, login=login, password=password, extra=extra, port=port)
    except SalesforceConfigError as exc:
        assert exc.field and "'c'" in str(exc)


@SETTINGS
@given(st.text(min_size=1, max_size=200))
def test_fingerprint_is_stable_and_reveals_nothing(token):
    fp = fingerprint(token)
    assert fp == fingerprint(token)
    assert re.fullmatch(r"sha256:[0-9a-f]{12}", fp)
    if len(token) >= 12:
        assert token not in fp
    assert fingerprint(token + "x") != fp


@SETTINGS
@given(st.lists(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", min_size=16, max_size=64), min_size=2, max_size=6))
def test_masking_covers_every_form_of_a_multiline_secret(lines):
    pem = "-----BEGIN PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END PRIVATE KEY-----\n"
    forms = secret_forms(pem)
    for shown in (pem, pem.replace("\n", "\\n"), pem.replace("\n", " ").strip(), json.dumps(pem)[1:-1]):
        assert shown in forms or shown.strip() in forms
    for line in lines:
        assert line in forms  # a single line of the key in a log is masked too
    assert "".join(lines) in forms


def test_masking_redacts_through_airflow():
    from tests.airflow_compat import redact

    from sf_oauth_provider.hooks.salesforce_oauth import _mask
    from tests.keys import pem, rsa_key

    key = pem(rsa_key(1024, 7))
    _mask(key)
    line = key.splitlines()[5]
    for text in (key, key.replace("\n", "\\n"), key.replace("\n", " "), f"line {line} end"):
        assert not any(part in str(redact(text)) for part in (line,)), text[:40]
