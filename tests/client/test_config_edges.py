"""Issue 11/12 edges of OAuthConfig: mistyped hosts, URI paths, renamed fields, cache key.

Each test here failed on the code before the fix it belongs to.
"""

from __future__ import annotations

import logging

import pytest

from sf_oauth_provider.client.config import OAuthConfig
from sf_oauth_provider.client.errors import SalesforceConfigError
from tests.keys import pem, rsa_key

KEY = pem(rsa_key())


def build(host="https://login.salesforce.com", *, schema=None, **extra) -> OAuthConfig:
    extra.setdefault("username", "u@example.com")
    if "private_key" not in extra and "jwt_key_file" not in extra and "private_key_path" not in extra:
        extra["private_key"] = KEY
    return OAuthConfig.from_connection_fields(
        "sf_prod", host=host, login="3MVG9key", password=None, extra=extra, schema=schema
    )


def refused(field: str, **kwargs) -> SalesforceConfigError:
    with pytest.raises(SalesforceConfigError) as info:
        build(**kwargs)
    assert info.value.field == field, str(info.value)
    assert "'sf_prod'" in str(info.value)
    return info.value


# ---- hosts --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "host",
    ["https//login.salesforce.com", "https:/login.salesforce.com", "https:login.salesforce.com",
     "http//127.0.0.1:8000", "htps://login.salesforce.com"],
)
def test_mistyped_scheme_is_refused(host):
    err = refused("host", host=host)
    assert host in str(err)
    assert "https://" in (err.hint or "")


@pytest.mark.parametrize(
    "host",
    ["https://login.salesforce.com@evil.com", "https://user:pw@acme.my.salesforce.com", "login.salesforce.com@evil.com"],
)
def test_userinfo_in_host_is_refused(host):
    """``https://login.salesforce.com@evil.com`` would connect to evil.com."""
    err = refused("host", host=host)
    assert "@" in str(err)


@pytest.mark.parametrize("host", ["http://[::1]evil", "https://[::1", "https://exa mple.com", "https://acme..my.salesforce.com"])
def test_malformed_host_is_refused_at_validation(host):
    refused("host", host=host)


def test_bracketed_loopback_still_works():
    assert build(host="http://[::1]:8123/login").host == "http://[::1]:8123/login"


def test_host_with_token_endpoint_pasted_is_refused():
    err = refused("host", host="https://acme.my.salesforce.com/services/oauth2/token")
    assert "/services/oauth2/token" in str(err) and "https://acme.my.salesforce.com" in (err.hint or "")


def test_uri_connection_path_is_not_silently_dropped():
    """``salesforce-oauth://key@127.0.0.1:8123/login`` puts ``login`` in ``schema``; Airflow's host
    then lacks the path, and the token would be requested from the wrong URL."""
    err = refused("schema", host="http://127.0.0.1:8123", schema="login")
    assert "/login" in str(err)
    assert "http://127.0.0.1:8123/login" in (err.hint or "")


# ---- renamed and unknown extras ----------------------------------------------------------------
def test_new_field_names(tmp_path):
    key_file = tmp_path / "k.pem"
    key_file.write_text(KEY)
    cfg = build(private_key=None, jwt_key_file=str(key_file), cache="memory")
    assert cfg.cache == "memory" and cfg.private_key is not None


def test_cache_defaults_to_auto_which_the_provider_resolves():
    # auto stays auto: the TokenProvider picks Redis when a URL is configured, else the file store
    assert build().cache == "auto"
    assert build(cache="AUTO").cache == "auto"
    assert build(cache="redis").cache == "redis"


def test_old_field_names_still_work_with_a_deprecation_warning(tmp_path, caplog):
    key_file = tmp_path / "k.pem"
    key_file.write_text(KEY)
    with caplog.at_level(logging.WARNING, logger="sf_oauth_provider"), pytest.warns(DeprecationWarning):
        cfg = build(private_key=None, private_key_path=str(key_file), token_cache="none")
    assert cfg.cache == "none" and cfg.private_key is not None
    text = caplog.text
    assert "'token_cache' is deprecated" in text and "'cache'" in text
    assert "'private_key_path' is deprecated" in text and "'jwt_key_file'" in text


def test_old_and_new_name_together_must_agree():
    refused("extra.cache", cache="memory", token_cache="file")


def test_unknown_extra_names_the_closest_known_field(caplog):
    with caplog.at_level(logging.WARNING, logger="sf_oauth_provider"):
        cfg = build(audiance="https://test.salesforce.com")
    assert "'audiance'" in caplog.text and "did you mean 'audience'" in caplog.text
    assert cfg.audience == "https://login.salesforce.com"


def test_unknown_extra_without_a_close_name(caplog):
    with caplog.at_level(logging.WARNING, logger="sf_oauth_provider"):
        build(colour="blue")
    assert "unknown extra 'colour'" in caplog.text and "did you mean" not in caplog.text


@pytest.mark.parametrize(("name", "says"), [
    ("consumer_key", "'login'"),
    ("consumer_secret", "'password'"),
    ("private_key_file_path", "'jwt_key_file'"),
    ("domain", "'host'"),
    ("sandbox", "https://test.salesforce.com"),
    ("is_sandbox", "https://test.salesforce.com"),
    ("version", "'api_version'"),
    ("instance_url", "'host'"),
    ("instance", "'host'"),
    ("security_token", "auth_flow"),
    ("organization_id", "not used"),
    ("client_id", "'login'"),
    ("proxies", "not supported"),
    ("extra__salesforce__domain", "'host'"),
    ("extra__salesforce__private_key", "'private_key'"),
])
def test_extras_of_the_salesforce_provider_name_their_replacement(caplog, name, says):
    """Migrating from apache-airflow-providers-salesforce: its extras were ignored with no hint."""
    with caplog.at_level(logging.WARNING, logger="sf_oauth_provider"):
        build(**{name: "value-not-shown-0123"})
    assert f"extra {name!r}" in caplog.text and "apache-airflow-providers-salesforce" in caplog.text
    assert says in caplog.text, caplog.text
    assert "value-not-shown-0123" not in caplog.text


def test_cache_mode_misspelt_is_refused_naming_the_modes():
    err = refused("extra.cache", cache="rediss")
    assert "auto" in str(err) and "redis" in str(err)


# ---- cache key ----------------------------------------------------------------------------------
def test_cache_key_covers_the_audience():
    """A connection with a wrong audience must not be handed the token another connection cached."""
    assert build().cache_key != build(audience="https://test.salesforce.com").cache_key


def test_cache_key_ignores_settings_that_do_not_shape_the_request():
    assert build().cache_key == build(timeout=5, api_version="60.0", cache="memory").cache_key


# ---- extras of the wrong JSON type (found by tests/reliability/test_properties.py) ---------------
@pytest.mark.parametrize("passphrase", [1, 1.5, True, ["pw"], {"pw": 1}])
def test_a_passphrase_that_is_not_a_string_names_the_field(passphrase) -> None:
    # a JSON number typed into the extras crashed with AttributeError ('int' has no 'encode')
    error = refused("extra.private_key_passphrase", private_key_passphrase=passphrase)
    assert "must be a string" in str(error)
