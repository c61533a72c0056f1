"""The identity service's full shape: every field of userinfo and the identity URL, the identity
URL's ``version`` and ``format`` parameters (and ``Accept``), and OpenID discovery with the keys
Salesforce publishes, on all three hosts."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import parse_qsl

import pytest

from sf_oauth_provider.emulator import RunningEmulator

from ._util import HTTP, jwt_token

IDENTITY_FIELDS = {
    "id", "asserted_user", "user_id", "organization_id", "username", "nick_name", "display_name", "email",
    "email_verified", "first_name", "last_name", "timezone", "photos", "addr_street", "addr_city", "addr_state",
    "addr_country", "addr_zip", "mobile_phone", "mobile_phone_verified", "is_lightning_login_user", "status",
    "urls", "active", "user_type", "language", "locale", "utcOffset", "last_modified_date", "is_app_installed",
}
USERINFO_FIELDS = {
    "sub", "user_id", "organization_id", "preferred_username", "nickname", "name", "email", "email_verified",
    "given_name", "family_name", "zoneinfo", "photos", "profile", "picture", "address",
    "is_salesforce_integration_user", "urls", "active", "user_type", "language", "locale", "utcOffset",
    "updated_at", "is_app_installed",
}
URL_KEYS = {
    "enterprise", "metadata", "partner", "rest", "sobjects", "search", "query", "recent", "tooling_soap",
    "tooling_rest", "profile", "feeds", "groups", "users", "feed_items", "feed_elements", "custom_domain",
}


@pytest.fixture
def login(emulator: RunningEmulator) -> dict:
    return jwt_token(emulator)


def _identity(login: dict, **params: str):
    headers = {"Authorization": f"Bearer {login['access_token']}"}
    accept = params.pop("accept", None)
    if accept:
        headers["Accept"] = accept
    return HTTP.get(login["id"], params=params, headers=headers)


def test_identity_url_has_every_field(emulator: RunningEmulator, login: dict) -> None:
    r = _identity(login)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == IDENTITY_FIELDS
    assert set(body["urls"]) == URL_KEYS
    assert set(body["photos"]) == {"picture", "thumbnail"} and set(body["status"]) == {"created_date", "body"}
    assert body["user_type"] == "STANDARD" and body["is_lightning_login_user"] is False
    assert body["mobile_phone"] is None and body["addr_country"] == "US"
    assert body["last_modified_date"].endswith("Z") and "T" in body["last_modified_date"]
    # integration user's time zone is America/Los_Angeles: -8 h or -7 h (DST) in ms, by the org clock
    assert body["timezone"] == "America/Los_Angeles" and body["utcOffset"] in (-28800000, -25200000)
    assert body["urls"]["rest"] == f"{emulator.base_url}/services/data/v{{version}}/"
    assert body["urls"]["custom_domain"] == emulator.base_url


def test_userinfo_has_every_field(emulator: RunningEmulator, login: dict) -> None:
    for base in (emulator.base_url, emulator.login_url, emulator.test_url):
        r = HTTP.get(f"{base}/services/oauth2/userinfo", headers={"Authorization": f"Bearer {login['access_token']}"})
        body = r.json()
        assert set(body) == USERINFO_FIELDS
        assert body["picture"] == body["photos"]["picture"] and body["address"] == {"country": "US"}
        assert body["is_salesforce_integration_user"] is False and set(body["urls"]) == URL_KEYS


@pytest.mark.parametrize(("version", "shown"), [("64.0", "64.0"), ("latest", "68.0"), ("31.0", "31.0")])
def test_version_parameter_fills_the_placeholder(
    emulator: RunningEmulator, login: dict, version: str, shown: str
) -> None:
    urls = _identity(login, version=version).json()["urls"]
    assert urls["rest"] == f"{emulator.base_url}/services/data/v{shown}/"
    assert urls["partner"] == f"{emulator.base_url}/services/Soap/u/{shown}/{emulator.org.org_id[:15]}"
    assert not any("{version}" in u for u in urls.values())
    # the filled URL answers
    r = HTTP.get(urls["rest"], headers={"Authorization": f"Bearer {login['access_token']}"})
    assert r.status_code == 200 and "query" in r.json()


def test_malformed_version_keeps_the_placeholder(login: dict) -> None:
    assert "{version}" in _identity(login, version="sixty").json()["urls"]["rest"]


def test_format_xml(login: dict) -> None:
    for r in (_identity(login, format="xml"), _identity(login, accept="application/xml")):
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
        root = ET.fromstring(r.content)
        assert root.tag == "user"
        assert root.findtext("username") == "integration@demo.example"
        assert root.findtext("urls/rest").endswith("/services/data/v{version}/")
        assert root.findtext("asserted_user") == "true"
        nil = root.find("mobile_phone")
        assert nil is not None and nil.get("{http://www.w3.org/2001/XMLSchema-instance}nil") == "true"


def test_format_urlencoded_and_accept_negotiation(login: dict) -> None:
    r = _identity(login, format="urlencoded")
    assert r.headers["content-type"].startswith("application/x-www-form-urlencoded")
    form = dict(parse_qsl(r.text, keep_blank_values=True))
    assert form["username"] == "integration@demo.example" and form["urls.rest"].endswith("/v{version}/")
    r = _identity(login, accept="application/x-www-form-urlencoded")
    assert dict(parse_qsl(r.text))["username"] == "integration@demo.example"
    # a list is read left to right; */* is JSON; format wins over Accept
    r = _identity(login, accept="text/html, application/xml;q=0.9, application/json")
    assert r.headers["content-type"].startswith("application/xml")
    assert _identity(login, accept="*/*").json()["username"] == "integration@demo.example"
    assert _identity(login, format="json", accept="application/xml").json()["asserted_user"] is True


def test_openid_discovery_as_salesforce_publishes_it(emulator: RunningEmulator) -> None:
    for base in (emulator.base_url, emulator.login_url, emulator.test_url):
        cfg = HTTP.get(f"{base}/.well-known/openid-configuration").json()
        assert cfg["issuer"] == base and cfg["jwks_uri"] == f"{base}/id/keys"
        assert cfg["authorization_endpoint"] == f"{base}/services/oauth2/authorize"
        assert {"openid", "api", "refresh_token", "offline_access", "full", "id", "web"} <= set(cfg["scopes_supported"])
        assert cfg["response_types_supported"] == ["code", "token", "token id_token"]
        assert cfg["id_token_signing_alg_values_supported"] == ["RS256"]
        assert cfg["display_values_supported"] == ["page", "popup", "touch"]
        assert cfg["subject_types_supported"] == ["public"]
        # the userinfo fields are advertised, except the two Salesforce's own document leaves out
        # (phone_number* are advertised, answered only with the phone scope)
        assert USERINFO_FIELDS - {"is_salesforce_integration_user", "utcOffset"} <= set(cfg["claims_supported"])
        assert "private_key_jwt" not in cfg["token_endpoint_auth_methods_supported"]
        assert HTTP.get(cfg["jwks_uri"]).json()["keys"][0]["alg"] == "RS256"
