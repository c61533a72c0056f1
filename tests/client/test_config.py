"""OAuthConfig validation: every bad setting is refused before any request, naming the field."""

from __future__ import annotations

import pytest

from sf_oauth_provider.client.config import LOGIN_AUDIENCE, TEST_AUDIENCE, OAuthConfig
from sf_oauth_provider.client.errors import SalesforceConfigError
from tests.keys import ec_pem, pem, rsa_key


def build(host="https://login.salesforce.com", login="3MVG9key", password=None, **extra) -> OAuthConfig:
    extra.setdefault("username", "u@example.com")
    if "private_key" not in extra and "jwt_key_file" not in extra and extra.get("auth_flow", "jwt_bearer") == "jwt_bearer":
        extra["private_key"] = pem(rsa_key())
    return OAuthConfig.from_connection_fields("sf_prod", host=host, login=login, password=password, extra=extra)


def refused(field: str, **kwargs) -> SalesforceConfigError:
    with pytest.raises(SalesforceConfigError) as info:
        build(**kwargs)
    err = info.value
    assert err.field == field, str(err)
    assert "'sf_prod'" in str(err)
    assert not err.transient
    return err


def test_jwt_defaults():
    cfg = build()
    assert cfg.auth_flow == "jwt_bearer"
    assert cfg.audience == LOGIN_AUDIENCE
    assert cfg.token_url == "https://login.salesforce.com/services/oauth2/token"
    assert cfg.cache == "auto" and cfg.session_timeout == 7200 and cfg.timeout == 30
    assert "BEGIN" not in repr(cfg)


@pytest.mark.parametrize(
    ("host", "audience"),
    [
        ("https://test.salesforce.com", TEST_AUDIENCE),
        ("https://acme--uat.sandbox.my.salesforce.com", TEST_AUDIENCE),
        ("https://acme.my.salesforce.com", LOGIN_AUDIENCE),
        ("login.salesforce.com", LOGIN_AUDIENCE),
    ],
)
def test_default_audience_follows_host(host, audience):
    assert build(host=host).audience == audience


def test_explicit_audience_and_path_prefix_kept():
    cfg = build(host="http://127.0.0.1:8123/login/", audience="https://test.salesforce.com")
    assert cfg.host == "http://127.0.0.1:8123/login"
    assert cfg.audience == TEST_AUDIENCE


def test_missing_consumer_key():
    err = refused("login", login="  ")
    assert "Consumer Key" in str(err)


def test_jwt_needs_username():
    refused("extra.username", username="")


def test_jwt_needs_a_key():
    err = refused("extra.private_key", private_key="")
    assert "jwt_key_file" in str(err)


def test_unreadable_key_path(tmp_path):
    refused("extra.jwt_key_file", jwt_key_file=str(tmp_path / "missing.pem"))


def test_a_jwt_key_file_over_1_mib_is_refused_naming_the_field(tmp_path):
    path = tmp_path / "huge.pem"
    path.write_text(pem(rsa_key()) + "#" * (1024 * 1024))  # a real key, then more than 1 MiB of anything
    err = refused("extra.jwt_key_file", private_key=None, jwt_key_file=str(path))
    assert "1 MiB" in str(err) and "jwt_key_file" in str(err)


def test_a_jwt_key_file_that_never_ends_is_refused_after_1_mib():
    err = refused("extra.jwt_key_file", private_key=None, jwt_key_file="/dev/zero")  # read() alone would never end
    assert "1 MiB" in str(err)


def test_a_pasted_private_key_over_1_mib_is_refused_naming_the_field():
    err = refused("extra.private_key", private_key=pem(rsa_key()) + "#" * (1024 * 1024))
    assert "1 MiB" in str(err)


_CRAFTED_PEM = r"""
import sys
from sf_oauth_provider.client.assertion import normalize_pem
from sf_oauth_provider.client.config import OAuthConfig
from sf_oauth_provider.client.errors import SalesforceConfigError

block = "-----BEGIN A-----"
crafted = block * (1024 * 1024 // len(block) - 1)  # just under the 1 MiB cap
assert normalize_pem(block * (4 * 1024 * 1024 // len(block))).startswith(block)  # 4 MiB, no cap: linear anyway
try:
    OAuthConfig.from_connection_fields("sf_prod", host="https://login.salesforce.com", login="k", password=None,
                                       extra={"username": "u@example.com", "private_key": crafted})
except SalesforceConfigError as exc:
    print(exc.field)
"""


def test_a_crafted_pem_is_refused_in_linear_time():
    """1 MiB of repeated BEGIN lines: refused at once (the backtracking regex took ~23 s for 272 KB,
    minutes for 1 MiB). The bound is generous: a linear parse takes milliseconds."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _CRAFTED_PEM], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "extra.private_key"


def test_garbage_key():
    refused("extra.private_key", private_key="-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----")


def test_non_rsa_key():
    err = refused("extra.private_key", private_key=ec_pem())
    assert "RSA" in str(err)


def test_wrong_passphrase():
    refused("extra.private_key_passphrase", private_key=pem(rsa_key(), "right"), private_key_passphrase="wrong")


def test_encrypted_key_without_passphrase():
    refused("extra.private_key_passphrase", private_key=pem(rsa_key(), "right"))


def test_encrypted_key_with_passphrase_loads():
    assert build(private_key=pem(rsa_key(), "right"), private_key_passphrase="right").private_key is not None


def test_key_from_file(tmp_path):
    path = tmp_path / "k.pem"
    path.write_text(pem(rsa_key()))
    assert build(jwt_key_file=str(path)).private_key.key_size == 2048


@pytest.mark.parametrize(
    "mangle",
    [
        lambda p: p.replace("\n", "\\n"),  # JSON-escaped newlines, as pasted into extra
        lambda p: p.replace("\n", " "),  # newlines turned into spaces by a web form
        lambda p: p.replace("\n", "\r\n"),
        lambda p: '"' + p.strip() + '"',
    ],
)
def test_flattened_pem_tolerated(mangle):
    assert build(private_key=mangle(pem(rsa_key()))).private_key is not None


def test_flattened_traditional_encrypted_pem_tolerated():
    text = pem(rsa_key(), "pw", traditional=True).replace("\n", " ")
    assert build(private_key=text, private_key_passphrase="pw").private_key is not None


@pytest.mark.parametrize("host", ["https://login.salesforce.com", "https://test.salesforce.com"])
def test_client_credentials_refused_on_generic_login_hosts(host):
    err = refused("host", host=host, password="s", auth_flow="client_credentials")
    assert "My Domain" in str(err)


def test_client_credentials_needs_secret():
    refused("password", host="https://acme.my.salesforce.com", auth_flow="client_credentials")


def test_client_credentials_on_my_domain():
    cfg = build(host="https://acme.my.salesforce.com", password="s", auth_flow="client_credentials")
    assert cfg.subject == "app"


@pytest.mark.parametrize("host", ["http://acme.my.salesforce.com", "http://10.1.2.3:8080"])
def test_plain_http_only_for_loopback(host):
    err = refused("host", host=host)
    assert "https" in str(err)


@pytest.mark.parametrize("host", ["http://localhost:1234", "http://127.0.0.5:80", "http://[::1]:9"])
def test_plain_http_allowed_on_loopback(host):
    assert build(host=host).host.startswith("http://")


def test_missing_host():
    refused("host", host="")


def test_unknown_auth_flow():
    err = refused("extra.auth_flow", auth_flow="password")
    assert "jwt_bearer" in str(err)


def test_refresh_flow_needs_token():
    refused("extra.refresh_token", auth_flow="refresh_token")


@pytest.mark.parametrize(
    ("name", "value"),
    [("session_timeout", "two hours"), ("timeout", -1), ("cache", "disk"), ("api_version", "latest"),
     ("username", 42)],
)
def test_bad_extras(name, value):
    refused(f"extra.{name}", **{name: value})


def test_cache_key_separates_identities():
    a = build()
    assert a.cache_key == build().cache_key
    assert a.cache_key != build(username="other@example.com").cache_key
    assert a.cache_key != build(login="3MVG9other").cache_key
    assert a.cache_key != build(host="https://test.salesforce.com").cache_key


def test_cache_key_depends_on_the_credentials():
    """A connection with a wrong secret or key must not be handed another connection's token."""
    key = pem(rsa_key())
    a = build(private_key=key, password="right")
    assert a.cache_key == build(private_key=key, password="right").cache_key
    assert a.cache_key != build(private_key=key, password="wrong").cache_key
    assert a.cache_key != build(private_key=pem(rsa_key(2048, 1)), password="right").cache_key
    assert "right" not in a.credential_digest and "right" not in repr(a)


def test_refresh_token_not_in_cache_key_or_repr():
    cfg = build(auth_flow="refresh_token", refresh_token="5Aep861SECRETVALUE")
    assert "SECRETVALUE" not in repr(cfg) and "SECRETVALUE" not in cfg.cache_key + cfg.subject
