"""Introspection and revocation (incl. DeleteToken and refresh → access cascade)."""

from __future__ import annotations

from typing import Any

from sf_oauth_provider.emulator import RunningEmulator

from ._util import HTTP, cc_token, jwt_token, token_post


def _introspect(emu: RunningEmulator, token: str, key: str, secret: str, hint: str = "access_token", basic: bool = True):
    data: dict[str, Any] = {"token": token, "token_type_hint": hint}
    kw: dict[str, Any] = {}
    if basic:
        kw["auth"] = (key, secret)
    else:
        data.update(client_id=key, client_secret=secret)
    return HTTP.post(f"{emu.base_url}/services/oauth2/introspect", data=data, **kw)


def _as_jwt_app(emu: RunningEmulator, token: str, **kw: Any):
    d = emu.org.demo
    return _introspect(emu, token, d.jwt_consumer_key, d.jwt_consumer_secret, **kw)


def _as_cc_app(emu: RunningEmulator, token: str, **kw: Any):
    d = emu.org.demo
    return _introspect(emu, token, d.cc_consumer_key, d.cc_consumer_secret, **kw)


def test_introspect_own_access_token(emulator: RunningEmulator) -> None:
    tok = jwt_token(emulator)["access_token"]
    for basic in (True, False):
        r = _as_jwt_app(emulator, tok, basic=basic)
        assert r.status_code == 200
        body = r.json()
        org = emulator.org
        user = org.user_by_username("integration@demo.example")
        assert body["active"] is True
        assert body["client_id"] == org.demo.jwt_consumer_key
        assert body["username"] == "integration@demo.example"
        assert body["token_type"] == "access_token"
        assert body["scope"] == "api id"
        assert body["sub"] == f"{emulator.login_url}/id/{org.org_id}/{user.id}"
        assert body["iat"] == body["nbf"]
        assert body["exp"] - body["iat"] in (7199, 7200, 7201)


def test_introspect_other_app_and_introspect_all(emulator: RunningEmulator) -> None:
    jwt_tok = jwt_token(emulator)["access_token"]
    cc_tok = cc_token(emulator)["access_token"]
    # the CC app has no introspect_all policy: it cannot see the JWT app's token
    assert _as_cc_app(emulator, jwt_tok).json() == {"active": False}
    assert _as_cc_app(emulator, cc_tok).json()["active"] is True
    # the JWT app has introspect_all: it sees everything
    body = _as_jwt_app(emulator, cc_tok).json()
    assert body["active"] is True and body["client_id"] == emulator.org.demo.cc_consumer_key


def test_introspect_inactive_cases(emulator: RunningEmulator) -> None:
    tok = jwt_token(emulator)["access_token"]
    assert _as_jwt_app(emulator, "00Dbogus!AQxyz").json() == {"active": False}
    assert _as_jwt_app(emulator, "").json() == {"active": False}
    emulator.org.clock.advance(7201)
    assert _as_jwt_app(emulator, tok).json() == {"active": False}
    tok2 = jwt_token(emulator)["access_token"]
    assert HTTP.post(f"{emulator.base_url}/services/oauth2/revoke", data={"token": tok2}).status_code == 200
    assert _as_jwt_app(emulator, tok2).json() == {"active": False}


def test_introspect_refresh_token_and_delete_token(emulator: RunningEmulator) -> None:
    d = emulator.org.demo
    body = _as_jwt_app(emulator, d.refresh_token, hint="refresh_token").json()
    assert body["active"] is True and body["token_type"] == "refresh_token"
    assert body["scope"] == "api refresh_token" and body["client_id"] == d.refresh_consumer_key
    stale = emulator.org.seed_facts["stale_delete_tokens"][0]
    body = _as_jwt_app(emulator, stale, hint="refresh_token").json()
    assert body["active"] is True and body["token_type"] == "refresh_token"
    # the Data Loader app (no introspect_all) sees its own refresh token
    own = _introspect(emulator, d.refresh_token, d.refresh_consumer_key, d.refresh_consumer_secret, hint="refresh_token")
    assert own.json()["active"] is True


def test_introspect_bad_client_auth(emulator: RunningEmulator) -> None:
    d = emulator.org.demo
    for key, secret in ((d.jwt_consumer_key, "WRONG"), ("3MVG9nope", "x")):
        for basic in (True, False):
            r = _introspect(emulator, "whatever", key, secret, basic=basic)
            assert r.status_code == 401
            assert r.json() == {"error": "invalid_client", "error_description": "invalid client credentials"}
    r = HTTP.post(f"{emulator.base_url}/services/oauth2/introspect", data={"token": "x"})
    assert r.status_code == 401


def test_revoke_access_post_and_get(emulator: RunningEmulator) -> None:
    t1, t2 = jwt_token(emulator)["access_token"], jwt_token(emulator)["access_token"]
    r = HTTP.post(f"{emulator.login_url}/services/oauth2/revoke", data={"token": t1})
    assert r.status_code == 200 and r.content == b""
    r = HTTP.get(f"{emulator.base_url}/services/oauth2/revoke", params={"token": t2})
    assert r.status_code == 200
    for t in (t1, t2):
        r = HTTP.get(f"{emulator.base_url}/services/oauth2/userinfo", headers={"Authorization": f"Bearer {t}"})
        assert r.status_code == 403
        # revoking again: invalid_token
        r = HTTP.post(f"{emulator.base_url}/services/oauth2/revoke", data={"token": t})
        assert r.status_code == 400
        assert r.json() == {"error": "invalid_token", "error_description": "invalid token"}


def test_revoke_unknown_and_missing(emulator: RunningEmulator) -> None:
    r = HTTP.post(f"{emulator.base_url}/services/oauth2/revoke", data={"token": "nope"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_token"
    r = HTTP.post(f"{emulator.base_url}/services/oauth2/revoke", data={})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_token_type"


def test_revoke_refresh_kills_its_access_tokens(emulator: RunningEmulator) -> None:
    emulator.org.app_by_name_or_key("Data Loader").rotate_refresh_tokens = False
    d = emulator.org.demo
    r = token_post(
        emulator.login_url, grant_type="refresh_token", refresh_token=d.refresh_token, client_id=d.refresh_consumer_key
    )
    access = r.json()["access_token"]
    unrelated = jwt_token(emulator)["access_token"]
    assert HTTP.post(f"{emulator.base_url}/services/oauth2/revoke", data={"token": d.refresh_token}).status_code == 200
    hdr = {"Authorization": f"Bearer {access}"}
    assert HTTP.get(f"{emulator.base_url}/services/oauth2/userinfo", headers=hdr).status_code == 403
    hdr = {"Authorization": f"Bearer {unrelated}"}
    assert HTTP.get(f"{emulator.base_url}/services/oauth2/userinfo", headers=hdr).status_code == 200
    r = token_post(
        emulator.login_url, grant_type="refresh_token", refresh_token=d.refresh_token, client_id=d.refresh_consumer_key
    )
    assert r.json()["error_description"] == "expired access/refresh token"


def test_revoke_delete_token_removes_oauthtoken_row(emulator: RunningEmulator) -> None:
    org = emulator.org
    tok = jwt_token(emulator)["access_token"]
    q = "SELECT DeleteToken FROM OauthToken"

    def rows() -> set[str]:
        r = HTTP.get(
            f"{emulator.base_url}/services/data/v63.0/query", params={"q": q}, headers={"Authorization": f"Bearer {tok}"}
        )
        return {rec["DeleteToken"] for rec in r.json()["records"]}

    before = rows()
    assert len(before) == org.seed_facts["oauth_token_count"]
    victim = org.seed_facts["stale_delete_tokens"][0]
    assert victim in before
    assert HTTP.post(f"{emulator.base_url}/services/oauth2/revoke", data={"token": victim}).status_code == 200
    assert rows() == before - {victim}
    r = HTTP.post(f"{emulator.base_url}/services/oauth2/revoke", data={"token": victim})
    assert r.status_code == 400


def test_approval_limit_revokes_oldest(emulator: RunningEmulator) -> None:
    org = emulator.org
    limit = org.seed_facts["approval_limit"][0]
    app = org.app_by_name_or_key(limit["app"])
    user = org.user_by_username(limit["username"])

    def live() -> list[str]:
        return [a.refresh_token for a in org.oauth_token_rows() if a.app_key == app.consumer_key and a.user_id == user.id]

    before = sorted(
        (a for a in org.oauth_token_rows() if a.app_key == app.consumer_key and a.user_id == user.id),
        key=lambda a: a.created,
    )
    assert len(before) == 5
    new = org.mint_tokens(1, app=app.name, user=user.username, kind="refresh", enforce_limit=True)[0]
    after = live()
    assert len(after) == 5 and new in after and before[0].refresh_token not in after
