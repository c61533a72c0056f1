"""Fault injection, counters, the admin HTTP API and bulk minting."""

from __future__ import annotations

import time

import httpx
import pytest

from sf_oauth_provider.emulator import RunningEmulator
from sf_oauth_provider.emulator.app import build_app

from ._util import HTTP, JWT_GRANT, assertion, jwt_token, query, token_post


def _jwt_post(emu: RunningEmulator, **kw) -> httpx.Response:
    return HTTP.post(
        f"{emu.login_url}/services/oauth2/token", data={"grant_type": JWT_GRANT, "assertion": assertion(emu)}, **kw
    )


def test_fault_kinds_on_oauth_endpoints(emulator: RunningEmulator) -> None:
    org = emulator.org
    org.set_faults("token", sequence=["json503", "html503", "500", "429", None])
    r = _jwt_post(emulator)
    assert r.status_code == 503
    assert r.json() == {"error": "server_error", "error_description": "Service Unavailable"}
    r = _jwt_post(emulator)
    assert r.status_code == 503 and r.headers["content-type"].startswith("text/html") and "Maintenance" in r.text
    r = _jwt_post(emulator)
    assert r.status_code == 500 and r.json()["error"] == "server_error"
    r = _jwt_post(emulator)
    assert r.status_code == 429
    assert r.json() == {"error": "rate_limit_exceeded", "error_description": "rate limit exceeded"}
    assert _jwt_post(emulator).status_code == 200  # None in the sequence = a normal answer
    assert _jwt_post(emulator).status_code == 200  # sequence exhausted
    assert org.count("token") == 6 and org.count("token", grant="jwt_bearer") == 6


def test_fault_kinds_on_data_api(emulator: RunningEmulator) -> None:
    tok = jwt_token(emulator)["access_token"]
    emulator.org.set_faults("query", sequence=["json503", "500", "429", "html503"])
    codes = []
    for _ in range(4):
        r = query(emulator, tok, "SELECT Id FROM Account")
        codes.append(r.status_code)
        if r.headers["content-type"].startswith("application/json"):
            assert isinstance(r.json(), list) and r.json()[0]["errorCode"]
    assert codes == [503, 500, 403, 503]  # the REST API says REQUEST_LIMIT_EXCEEDED with 403
    assert query(emulator, tok, "SELECT Id FROM Account").status_code == 200


def test_reset_fault_is_a_transport_error(emulator: RunningEmulator) -> None:
    emulator.org.set_faults("token", sequence=["reset"])
    with pytest.raises(httpx.TransportError):
        _jwt_post(emulator)
    assert _jwt_post(emulator).status_code == 200
    emulator.org.set_faults("*", sequence=["reset"])
    with pytest.raises(httpx.TransportError):
        HTTP.get(f"{emulator.base_url}/id/keys")


def test_latency_fault(emulator: RunningEmulator) -> None:
    emulator.org.set_faults("introspect", sequence=[{"kind": "latency", "seconds": 1.0}])
    d = emulator.org.demo
    with pytest.raises(httpx.ReadTimeout):
        HTTP.post(
            f"{emulator.base_url}/services/oauth2/introspect",
            data={"token": "x"},
            auth=(d.jwt_consumer_key, d.jwt_consumer_secret),
            timeout=0.2,
        )
    emulator.org.set_faults("userinfo", latency=0.2)
    t = time.monotonic()
    r = HTTP.get(f"{emulator.base_url}/services/oauth2/userinfo")
    assert r.status_code == 403 and time.monotonic() - t >= 0.2


def test_fault_rate_is_seeded_and_star_applies_everywhere(emulator: RunningEmulator) -> None:
    org = emulator.org
    org.set_faults("*", rate=1.0, kinds=["429"])
    assert HTTP.get(f"{emulator.base_url}/.well-known/openid-configuration").status_code == 429
    assert _jwt_post(emulator).status_code == 429
    org.clear_faults()

    def run() -> list[int]:
        org.reset()
        org.set_faults("openid", rate=0.5, kinds=["json503", "500"])
        return [HTTP.get(f"{emulator.base_url}/id/keys").status_code for _ in range(40)]

    first = run()
    assert run() == first  # same seed → same failures
    assert 5 < first.count(200) < 35 and set(first) <= {200, 503, 500}
    assert org.count("openid") == 40


def test_counters(emulator: RunningEmulator) -> None:
    org = emulator.org
    d = org.demo
    tok = jwt_token(emulator)["access_token"]
    token_post(emulator.base_url, grant_type="client_credentials", client_id=d.cc_consumer_key, client_secret=d.cc_consumer_secret)
    token_post(emulator.login_url, grant_type="refresh_token", refresh_token=d.refresh_token, client_id=d.refresh_consumer_key)
    token_post(emulator.login_url, grant_type="password")
    HTTP.get(f"{emulator.base_url}/services/oauth2/userinfo", headers={"Authorization": f"Bearer {tok}"})
    query(emulator, tok, "SELECT Id FROM Account")
    HTTP.post(f"{emulator.base_url}/services/oauth2/revoke", data={"token": "x"})
    HTTP.post(f"{emulator.base_url}/services/oauth2/introspect", data={"token": "x"})
    c = org.counters()
    assert c["endpoints"] == {
        "token": 4, "introspect": 1, "revoke": 1, "userinfo": 1, "identity": 0, "query": 1, "openid": 0, "bulk": 0
    }
    assert c["grants"] == {"jwt_bearer": 1, "client_credentials": 1, "refresh_token": 1, "other": 1}
    assert org.count("token", grant="refresh_token") == 1
    # the admin API is neither counted nor faulted
    org.set_faults("*", rate=1.0, kinds=["500"])
    assert HTTP.get(f"{emulator.base_url}/__emulator/counters").json() == c
    org.reset_counters()
    assert org.count("token") == 0


def test_admin_api(emulator: RunningEmulator) -> None:
    base = f"{emulator.base_url}/__emulator"
    org = emulator.org
    info = HTTP.get(f"{base}/info").json()
    assert info["base_url"] == emulator.base_url and info["login_url"] == emulator.login_url
    assert info["test_url"] == emulator.test_url and info["org_id"] == org.org_id
    assert info["demo"]["jwt_consumer_key"] == org.demo.jwt_consumer_key
    raw = HTTP.get(f"{base}/info").text
    for secret in (org.demo.jwt_consumer_secret, org.demo.cc_consumer_secret, org.demo.refresh_token, "PRIVATE KEY"):
        assert secret not in raw

    r = HTTP.post(f"{base}/faults", json={"endpoint": "token", "sequence": ["500"]})
    assert r.status_code == 200 and r.json()["token"]["sequence"] == [{"kind": "500"}]
    assert _jwt_post(emulator).status_code == 500
    HTTP.post(f"{base}/faults", json={"endpoint": "token", "sequence": ["500"]})
    assert HTTP.delete(f"{base}/faults").json() == {}
    assert _jwt_post(emulator).status_code == 200
    assert HTTP.post(f"{base}/faults", json={"endpoint": "token", "sequence": ["nope"]}).status_code == 400

    assert HTTP.get(f"{base}/counters").json()["endpoints"]["token"] == 2
    assert HTTP.post(f"{base}/counters/reset").json()["endpoints"]["token"] == 0

    minted = HTTP.post(f"{base}/tokens/mint", json={"n": 3}).json()["tokens"]
    assert len(minted) == 3 and set(minted) <= set(HTTP.get(f"{base}/tokens").json()["tokens"])
    r = HTTP.get(f"{emulator.base_url}/services/oauth2/userinfo", headers={"Authorization": f"Bearer {minted[0]}"})
    assert r.status_code == 200

    now = HTTP.post(f"{base}/clock", json={"advance": 8000}).json()["now"]
    assert abs(now - org.clock.now()) < 5 and org.clock.offset >= 7999
    r = HTTP.get(f"{emulator.base_url}/services/oauth2/userinfo", headers={"Authorization": f"Bearer {minted[1]}"})
    assert r.status_code == 403
    HTTP.post(f"{base}/clock", json={"now": time.time()})
    assert abs(org.clock.offset) < 5

    s = HTTP.post(f"{base}/settings", json={"page_size": 3, "apps": {"Data Loader": {"rotate_refresh_tokens": False}}}).json()
    assert s["page_size"] == 3 and org.settings.page_size == 3
    assert org.app_by_name_or_key("Data Loader").rotate_refresh_tokens is False
    assert HTTP.post(f"{base}/settings", json={"bogus": 1}).status_code == 400

    assert HTTP.post(f"{base}/reset").json() == {"ok": True}
    assert org.settings.page_size == 2000 and org.count("token") == 0
    assert org.app_by_name_or_key("Data Loader").rotate_refresh_tokens is True


async def test_admin_api_refuses_non_loopback(emulator: RunningEmulator) -> None:
    app = build_app(emulator.org)
    transport = httpx.ASGITransport(app=app, client=("10.0.0.1", 123))
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator.invalid") as client:
        for method, path in (("GET", "/__emulator/info"), ("POST", "/__emulator/reset"), ("GET", "/__emulator/tokens")):
            r = await client.request(method, path)
            assert r.status_code == 403
        # the public endpoints still answer
        assert (await client.get("/id/keys")).status_code == 200
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 123))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        assert (await client.get("/__emulator/info")).status_code == 200


def test_mint_bulk_and_issued_tokens(emulator: RunningEmulator) -> None:
    org = emulator.org
    t = time.monotonic()
    toks = org.mint_tokens(5000)
    assert time.monotonic() - t < 2.0
    assert len(set(toks)) == 5000
    issued = set(org.issued_tokens())
    assert set(toks) <= issued and org.demo.refresh_token in issued
    refresh = org.mint_tokens(3, app="Data Loader", kind="refresh")
    assert all(r.startswith("5Aep861") for r in refresh)
    assert org.count("token") == 0  # minting is not a request
    d = org.demo
    r = HTTP.post(
        f"{emulator.base_url}/services/oauth2/introspect",
        data={"token": toks[-1]},
        auth=(d.jwt_consumer_key, d.jwt_consumer_secret),
    )
    assert r.json()["active"] is True
