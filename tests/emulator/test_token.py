"""Token endpoint: the three flows, their success shapes and every error."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sf_oauth_provider.emulator import RunningEmulator

from ._util import HTTP, JWT_GRANT, assertion, cc_token, jwt_token, token_post


def _err(r, error: str, desc: str, status: int = 400) -> None:
    assert r.status_code == status, r.text
    assert r.json() == {"error": error, "error_description": desc}


def _sig(secret: str, id_url: str, issued_at: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), (id_url + issued_at).encode(), hashlib.sha256).digest()).decode()


# ----------------------------------------------------------------------------- jwt bearer
def test_jwt_success_shape_via_login(emulator: RunningEmulator) -> None:
    body = jwt_token(emulator)
    assert set(body) == {"access_token", "scope", "instance_url", "id", "token_type"}
    org = emulator.org
    assert body["token_type"] == "Bearer"
    assert body["instance_url"] == emulator.base_url
    user_id = org.user_by_username("integration@demo.example").id
    assert body["id"] == f"{emulator.login_url}/id/{org.org_id}/{user_id}"
    assert org.org_id.startswith("00D") and len(org.org_id) == 18 and user_id.startswith("005")
    assert body["access_token"].startswith(org.org_id[:15] + "!AQ")
    assert len(body["access_token"]) > 80
    assert body["access_token"] in org.issued_tokens()


def test_jwt_via_my_domain_with_login_or_root_audience(emulator: RunningEmulator) -> None:
    assert jwt_token(emulator, base=emulator.base_url)["id"].startswith(emulator.login_url + "/id/")
    jwt_token(emulator, base=emulator.base_url, aud=emulator.base_url)
    jwt_token(emulator, base=emulator.login_url, aud=[emulator.base_url, "x"])


def test_jwt_via_test_base(emulator: RunningEmulator) -> None:
    body = jwt_token(emulator, base=emulator.test_url, aud="https://test.salesforce.com")
    assert body["id"].startswith(emulator.test_url + "/id/")
    assert body["instance_url"] == emulator.base_url


@pytest.mark.parametrize(
    ("base", "aud"),
    [("login", "https://test.salesforce.com"), ("test", "https://login.salesforce.com"), ("root", "https://evil.example")],
)
def test_jwt_audience_invalid(emulator: RunningEmulator, base: str, aud: str) -> None:
    url = {"login": emulator.login_url, "test": emulator.test_url, "root": emulator.base_url}[base]
    r = token_post(url, grant_type=JWT_GRANT, assertion=assertion(emulator, aud=aud))
    _err(r, "invalid_grant", "audience is invalid")


def test_jwt_unknown_issuer(emulator: RunningEmulator) -> None:
    r = token_post(emulator.login_url, grant_type=JWT_GRANT, assertion=assertion(emulator, iss="3MVG9nope"))
    _err(r, "invalid_client_id", "client identifier invalid")


def test_jwt_bad_signature_malformed_and_hs256(emulator: RunningEmulator) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_pem = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    for a in (
        assertion(emulator, key_pem=other_pem),
        "not-a-jwt",
        "",
        assertion(emulator, key_pem="x" * 40, alg="HS256"),
        assertion(emulator)[:-6] + "AAAAAA",
    ):
        _err(token_post(emulator.login_url, grant_type=JWT_GRANT, assertion=a), "invalid_grant", "invalid assertion")


def test_jwt_expiry_rules(emulator: RunningEmulator) -> None:
    now = int(emulator.org.clock.now())
    r = token_post(emulator.login_url, grant_type=JWT_GRANT, assertion=assertion(emulator, exp=now - 120))
    _err(r, "invalid_grant", "expired authorization code")
    # within the skew: fine
    jwt_token(emulator, exp=now - 10)
    # far ahead is fine: Salesforce does not enforce its documented 3 minutes
    jwt_token(emulator, exp=now + 600)
    r = token_post(emulator.login_url, grant_type=JWT_GRANT, assertion=assertion(emulator, exp=None))
    _err(r, "invalid_grant", "invalid assertion")
    # a string of digits is accepted, as Salesforce does (simple-salesforce sends one) ...
    jwt_token(emulator, exp=str(now + 120))
    # ... but not any other string
    r = token_post(emulator.login_url, grant_type=JWT_GRANT, assertion=assertion(emulator, exp="soon"))
    _err(r, "invalid_grant", "invalid assertion")
    # the org clock, not the wall clock, decides
    emulator.org.clock.advance(3600)
    r = token_post(emulator.login_url, grant_type=JWT_GRANT, assertion=assertion(emulator, exp=now + 120))
    _err(r, "invalid_grant", "expired authorization code")


def test_jwt_user_errors(emulator: RunningEmulator) -> None:
    d = emulator.org.demo
    for sub in ("nobody@demo.example", d.inactive_username):
        r = token_post(emulator.login_url, grant_type=JWT_GRANT, assertion=assertion(emulator, sub=sub))
        _err(r, "invalid_grant", "invalid user")
    r = token_post(emulator.login_url, grant_type=JWT_GRANT, assertion=assertion(emulator, sub=d.analyst_username))
    _err(r, "invalid_grant", "user hasn't approved this consumer")
    r = token_post(
        emulator.login_url, grant_type=JWT_GRANT, assertion=assertion(emulator, iss=d.admin_only_consumer_key)
    )
    _err(r, "invalid_app_access", "user is not admin approved to access this app")


def test_unsupported_grant_type(emulator: RunningEmulator) -> None:
    for form in ({"grant_type": "password"}, {}):
        _err(token_post(emulator.login_url, **form), "unsupported_grant_type", "grant type not supported")
    assert emulator.org.count("token", grant="other") == 2


def test_login_rate_limit(emulator: RunningEmulator) -> None:
    emulator.org.settings.login_rate_limit = 2
    jwt_token(emulator)
    jwt_token(emulator)
    r = token_post(emulator.login_url, grant_type=JWT_GRANT, assertion=assertion(emulator))
    assert r.status_code == 400
    assert r.json()["error"] == "rate_limit_exceeded"
    assert "LOGIN_RATE_EXCEEDED" in r.json()["error_description"]
    # other users are not affected; the window rolls
    cc_token(emulator)
    emulator.org.clock.advance(3601)
    jwt_token(emulator)


# ----------------------------------------------------------------------------- client credentials
def test_cc_success_shape_and_signature(emulator: RunningEmulator) -> None:
    body = cc_token(emulator)
    d = emulator.org.demo
    assert set(body) == {"access_token", "signature", "scope", "instance_url", "id", "token_type", "issued_at"}
    assert body["issued_at"].isdigit() and len(body["issued_at"]) == 13
    assert body["signature"] == _sig(d.cc_consumer_secret, body["id"], body["issued_at"])
    cc_user = emulator.org.user_by_username("ccuser@demo.example")
    assert body["id"].endswith(f"/id/{emulator.org.org_id}/{cc_user.id}")
    assert body["id"].startswith(emulator.login_url)
    assert "refresh_token" not in body


def test_cc_basic_auth(emulator: RunningEmulator) -> None:
    d = emulator.org.demo
    r = HTTP.post(
        f"{emulator.base_url}/services/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(d.cc_consumer_key, d.cc_consumer_secret),
    )
    assert r.status_code == 200, r.text


def test_cc_errors(emulator: RunningEmulator) -> None:
    d = emulator.org.demo
    ok = {"grant_type": "client_credentials", "client_id": d.cc_consumer_key, "client_secret": d.cc_consumer_secret}
    for base in (emulator.login_url, emulator.test_url):
        _err(token_post(base, **ok), "invalid_grant", "request not supported on this domain")
    _err(
        token_post(emulator.base_url, **{**ok, "client_id": "3MVG9unknown"}),
        "invalid_client_id",
        "client identifier invalid",
    )
    _err(token_post(emulator.base_url, **{**ok, "client_secret": "WRONG"}), "invalid_client", "invalid client credentials")
    _err(
        token_post(emulator.base_url, **{k: v for k, v in ok.items() if k != "client_secret"}),
        "invalid_client",
        "invalid client credentials",
    )
    _err(
        token_post(
            emulator.base_url,
            grant_type="client_credentials",
            client_id=d.broken_cc_consumer_key,
            client_secret=d.broken_cc_consumer_secret,
        ),
        "invalid_grant",
        "no client credentials user enabled",
    )


# ----------------------------------------------------------------------------- refresh token
def _refresh(emu: RunningEmulator, token: str, secret: bool = True, **extra: str):
    d = emu.org.demo
    form = {"grant_type": "refresh_token", "refresh_token": token, "client_id": d.refresh_consumer_key}
    if secret:
        form["client_secret"] = d.refresh_consumer_secret
    form.update(extra)
    return token_post(emu.login_url, **form)


def test_refresh_rotation(emulator: RunningEmulator) -> None:
    d = emulator.org.demo
    r = _refresh(emulator, d.refresh_token)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {
        "access_token", "refresh_token", "signature", "scope", "instance_url", "id", "token_type", "issued_at"
    }
    assert body["signature"] == _sig(d.refresh_consumer_secret, body["id"], body["issued_at"])
    new = body["refresh_token"]
    assert new != d.refresh_token and new.startswith("5Aep861")
    assert new in emulator.org.issued_tokens()
    r2 = _refresh(emulator, new, secret=False)
    assert r2.status_code == 200, r2.text
    assert "signature" not in r2.json()
    # the access token from the first exchange is still valid (it belongs to the same approval)
    r3 = HTTP.get(
        f"{emulator.base_url}/services/oauth2/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert r3.status_code == 200
    # the retired refresh token is dead (replaying it also revokes the chain: test_oauth_fidelity)
    _err(_refresh(emulator, d.refresh_token), "invalid_grant", "expired access/refresh token")


def test_refresh_without_rotation(emulator: RunningEmulator) -> None:
    emulator.org.app_by_name_or_key("Data Loader").rotate_refresh_tokens = False
    d = emulator.org.demo
    for _ in range(2):
        r = _refresh(emulator, d.refresh_token)
        assert r.status_code == 200 and "refresh_token" not in r.json()


def test_refresh_errors(emulator: RunningEmulator) -> None:
    d = emulator.org.demo
    _err(_refresh(emulator, "5Aep861bogus"), "invalid_grant", "expired access/refresh token")
    _err(_refresh(emulator, d.refresh_token, client_secret="WRONG"), "invalid_client", "invalid client credentials")
    _err(
        _refresh(emulator, d.refresh_token, secret=False, client_id="3MVG9unknown"),
        "invalid_client_id",
        "client identifier invalid",
    )
    _err(
        _refresh(emulator, d.refresh_token, client_id=d.cc_consumer_key, client_secret=d.cc_consumer_secret),
        "invalid_client_id",
        "client identifier invalid",
    )
    assert emulator.org.revoke_token(d.refresh_token)
    _err(_refresh(emulator, d.refresh_token), "invalid_grant", "expired access/refresh token")


def test_tokens_are_unique_and_unguessable(emulator: RunningEmulator) -> None:
    toks = {jwt_token(emulator)["access_token"] for _ in range(5)}
    assert len(toks) == 5
