"""OAuth behaviour where the emulator used to be stricter or looser than Salesforce (DESIGN §6)."""

from __future__ import annotations

import pytest

from sf_oauth_provider.emulator import RunningEmulator

from ._util import HTTP, JWT_GRANT, assertion, jwt_token, token_post


def _userinfo(emu: RunningEmulator, access_token: str) -> int:
    r = HTTP.get(f"{emu.base_url}/services/oauth2/userinfo", headers={"Authorization": f"Bearer {access_token}"})
    return r.status_code


def test_salesforce_cli_assertion_with_exp_in_milliseconds_is_accepted(emulator: RunningEmulator) -> None:
    # The Salesforce CLI (@salesforce/core) signs ``exp: Date.now() + 300``: epoch *milliseconds*,
    # centuries ahead. Salesforce accepts it, so must the emulator.
    now = emulator.org.clock.now()
    body = jwt_token(emulator, exp=int(now * 1000) + 300)
    assert _userinfo(emulator, body["access_token"]) == 200


def test_assertion_an_hour_ahead_is_accepted(emulator: RunningEmulator) -> None:
    # authlib's JWT bearer grant signs ``exp = iat + 3600`` by default.
    jwt_token(emulator, exp=int(emulator.org.clock.now()) + 3600)


def test_exp_in_the_past_is_still_refused(emulator: RunningEmulator) -> None:
    r = token_post(
        emulator.login_url,
        grant_type=JWT_GRANT,
        assertion=assertion(emulator, exp=int(emulator.org.clock.now()) - 600),
    )
    assert r.status_code == 400
    assert r.json() == {"error": "invalid_grant", "error_description": "expired authorization code"}


@pytest.mark.parametrize("kind", ["login", "test"])
def test_emulated_login_url_is_the_audience_of_itself(emulator: RunningEmulator, kind: str) -> None:
    # A client pointed at <root>/login (as at https://login.salesforce.com) derives aud from its host.
    base = emulator.login_url if kind == "login" else emulator.test_url
    assert jwt_token(emulator, base=base, aud=base)["instance_url"] == emulator.base_url
    assert jwt_token(emulator, base=base, aud=base + "/")["instance_url"] == emulator.base_url


def test_my_domain_accepts_the_emulated_login_audience(emulator: RunningEmulator) -> None:
    jwt_token(emulator, base=emulator.base_url, aud=emulator.login_url)


def test_the_other_login_url_is_still_the_wrong_audience(emulator: RunningEmulator) -> None:
    r = token_post(emulator.test_url, grant_type=JWT_GRANT, assertion=assertion(emulator, aud=emulator.login_url))
    assert r.json() == {"error": "invalid_grant", "error_description": "audience is invalid"}


def _refresh(emu: RunningEmulator, token: str):
    d = emu.org.demo
    return token_post(
        emu.login_url,
        grant_type="refresh_token",
        refresh_token=token,
        client_id=d.refresh_consumer_key,
        client_secret=d.refresh_consumer_secret,
    )


def test_reuse_of_a_rotated_away_refresh_token_revokes_the_current_one(emulator: RunningEmulator) -> None:
    old = emulator.org.demo.refresh_token
    first = _refresh(emulator, old).json()
    current, access = first["refresh_token"], first["access_token"]
    assert _userinfo(emulator, access) == 200
    # someone replays the refresh token that rotation retired: Salesforce treats it as theft
    r = _refresh(emulator, old)
    assert r.json() == {"error": "invalid_grant", "error_description": "expired access/refresh token"}
    again = _refresh(emulator, current)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    assert _userinfo(emulator, access) == 403
    # and the OauthToken row is gone
    assert all(a.refresh_token != current for a in emulator.org.oauth_token_rows())


def test_token_responses_and_errors_are_not_cacheable(emulator: RunningEmulator) -> None:
    ok = token_post(emulator.login_url, grant_type=JWT_GRANT, assertion=assertion(emulator))
    bad = token_post(emulator.login_url, grant_type="password")
    refused = token_post(emulator.login_url, grant_type=JWT_GRANT, assertion="not-a-jwt")
    assert (ok.status_code, bad.status_code, refused.status_code) == (200, 400, 400)
    for r in (ok, bad, refused):
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["pragma"] == "no-cache"


def test_every_advertised_token_endpoint_auth_method_is_served(emulator: RunningEmulator) -> None:
    cfg = HTTP.get(f"{emulator.base_url}/.well-known/openid-configuration").json()
    d = emulator.org.demo
    url = cfg["token_endpoint"]
    for method in cfg["token_endpoint_auth_methods_supported"]:
        if method == "client_secret_post":
            r = HTTP.post(
                url,
                data={"grant_type": "client_credentials", "client_id": d.cc_consumer_key,
                      "client_secret": d.cc_consumer_secret},
            )
        elif method == "client_secret_basic":
            r = HTTP.post(url, data={"grant_type": "client_credentials"}, auth=(d.cc_consumer_key, d.cc_consumer_secret))
        else:
            pytest.fail(f"the emulator advertises {method!r} but serves no such client authentication")
        assert r.status_code == 200, (method, r.text)
