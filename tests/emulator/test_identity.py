"""Userinfo, identity URL, OpenID discovery/JWKS, token expiry by clock and extension by use."""

from __future__ import annotations

import pytest

from sf_oauth_provider.emulator import RunningEmulator

from ._util import HTTP, jwt_token, query


def _userinfo(emu: RunningEmulator, tok: str, base: str | None = None):
    return HTTP.get(f"{base or emu.base_url}/services/oauth2/userinfo", headers={"Authorization": f"Bearer {tok}"})


def test_userinfo(emulator: RunningEmulator) -> None:
    tok = jwt_token(emulator)["access_token"]
    org = emulator.org
    user = org.user_by_username("integration@demo.example")
    for base in (emulator.base_url, emulator.login_url, emulator.test_url):
        r = _userinfo(emulator, tok, base)
        assert r.status_code == 200
        body = r.json()
        assert body["user_id"] == user.id and body["organization_id"] == org.org_id
        assert body["preferred_username"] == "integration@demo.example"
        assert body["active"] is True and body["email"] and body["name"] == "Integration User"
        assert body["zoneinfo"] and body["user_type"] == "STANDARD"
        assert body["urls"]["rest"] == f"{emulator.base_url}/services/data/v{{version}}/"
        assert body["sub"].endswith(f"/id/{org.org_id}/{user.id}")


@pytest.mark.parametrize("auth", [None, "Bearer nope", "Bearer", "Basic abc"])
def test_userinfo_bad_token_is_403_text(emulator: RunningEmulator, auth: str | None) -> None:
    headers = {"Authorization": auth} if auth else {}
    r = HTTP.get(f"{emulator.base_url}/services/oauth2/userinfo", headers=headers)
    assert r.status_code == 403
    assert r.text == "Bad_OAuth_Token"
    assert r.headers["content-type"].startswith("text/plain")


def test_identity_url(emulator: RunningEmulator) -> None:
    body = jwt_token(emulator)
    tok, id_url = body["access_token"], body["id"]
    r = HTTP.get(id_url, headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 200
    ident = r.json()
    assert ident["id"] == id_url
    assert ident["username"] == "integration@demo.example"
    assert ident["organization_id"] == emulator.org.org_id
    assert ident["display_name"] == "Integration User" and ident["active"] is True
    assert "rest" in ident["urls"]
    # 15-char ids, root base, and ?oauth_token=
    org_id, user_id = id_url.rsplit("/", 2)[-2:]
    r = HTTP.get(f"{emulator.base_url}/id/{org_id[:15]}/{user_id[:15]}", params={"oauth_token": tok})
    assert r.status_code == 200
    r = HTTP.get(id_url, headers={"Authorization": "Bearer bad"})
    assert r.status_code == 403 and r.text == "Bad_OAuth_Token"
    other = emulator.org.user_by_username("analyst@demo.example").id
    r = HTTP.get(f"{emulator.base_url}/id/{org_id}/{other}", headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 403 and r.text == "Bad_Id"


def test_openid_configuration_and_keys(emulator: RunningEmulator) -> None:
    for base in (emulator.base_url, emulator.login_url, emulator.test_url):
        cfg = HTTP.get(f"{base}/.well-known/openid-configuration").json()
        assert cfg["issuer"] == base
        assert cfg["token_endpoint"] == f"{base}/services/oauth2/token"
        assert cfg["introspection_endpoint"] == f"{base}/services/oauth2/introspect"
        assert cfg["revocation_endpoint"] == f"{base}/services/oauth2/revoke"
        assert cfg["userinfo_endpoint"] == f"{base}/services/oauth2/userinfo"
        keys = HTTP.get(cfg["jwks_uri"]).json()["keys"]
        assert keys and keys[0]["kty"] == "RSA" and keys[0]["n"] and keys[0]["e"] == "AQAB"
    assert emulator.org.count("openid") == 6


def test_expiry_by_clock_and_extension_by_use(emulator: RunningEmulator) -> None:
    org = emulator.org
    org.settings.session_timeout = 1000
    tok = jwt_token(emulator)["access_token"]
    org.clock.advance(900)
    assert _userinfo(emulator, tok).status_code == 200  # extends to now + 1000
    org.clock.advance(900)
    assert query(emulator, tok, "SELECT Id FROM Account LIMIT 1").status_code == 200  # extends again
    org.clock.advance(900)
    assert HTTP.get(
        f"{emulator.base_url}/id/{org.org_id}/{org.user_by_username('integration@demo.example').id}",
        headers={"Authorization": f"Bearer {tok}"},
    ).status_code == 200
    org.clock.advance(1001)
    assert _userinfo(emulator, tok).status_code == 403
    r = query(emulator, tok, "SELECT Id FROM Account")
    assert r.status_code == 401
    assert r.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def test_inactive_user_tokens_die(emulator: RunningEmulator) -> None:
    tok = jwt_token(emulator)["access_token"]
    emulator.org.user_by_username("integration@demo.example").is_active = False
    assert _userinfo(emulator, tok).status_code == 403
