"""What the clients put on the wire (captured with httpx.MockTransport), sync and async alike."""

from __future__ import annotations

import time
from urllib.parse import parse_qs

import httpx
import jwt
import pytest

from sf_oauth_provider import __version__
from sf_oauth_provider.client.config import OAuthConfig
from sf_oauth_provider.client.oauth import AsyncSalesforceOAuthClient, RetryPolicy, SalesforceOAuthClient
from tests.keys import pem, rsa_key

BODY = {"access_token": "00Dxx0000000001!AQtok", "instance_url": "https://acme.my.salesforce.com",
        "id": "https://login.salesforce.com/id/00Dxx0000000001AAA/005xx0000000001AAA", "token_type": "Bearer"}


def config(flow: str) -> OAuthConfig:
    """A connection without a consumer secret (no introspection), except for client credentials."""
    extras: dict = {"auth_flow": flow}
    if flow == "jwt_bearer":
        extras.update(username="u@acme.com", private_key=pem(rsa_key()))
    if flow == "refresh_token":
        extras["refresh_token"] = "5Aep861refresh"
    secret = "s3cret" if flow == "client_credentials" else None
    return OAuthConfig.from_connection_fields(
        "c", host="https://acme.my.salesforce.com", login="3MVG9key", password=secret, extra=extras
    )


def recorder():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=BODY)

    return seen, httpx.MockTransport(handler)


def form(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


def test_jwt_bearer_request():
    seen, transport = recorder()
    cfg = config("jwt_bearer")
    client = SalesforceOAuthClient(cfg, http=httpx.Client(transport=transport, headers={"User-Agent": "x"}))
    client.http.headers.update(client._http_kwargs()["headers"])
    client.fetch_token()
    (request,) = seen
    assert request.url == "https://acme.my.salesforce.com/services/oauth2/token"
    assert request.headers["user-agent"] == f"sf-oauth-provider/{__version__}"
    data = form(request)
    assert data["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert jwt.get_unverified_header(data["assertion"])["alg"] == "RS256"
    claims = jwt.decode(data["assertion"], rsa_key().public_key(), algorithms=["RS256"], audience="https://login.salesforce.com")
    assert claims["iss"] == "3MVG9key" and claims["sub"] == "u@acme.com"
    assert 0 < claims["exp"] - time.time() <= 180


def test_client_credentials_and_refresh_requests():
    seen, transport = recorder()
    SalesforceOAuthClient(config("client_credentials"), http=httpx.Client(transport=transport)).fetch_token()
    SalesforceOAuthClient(config("refresh_token"), http=httpx.Client(transport=transport)).fetch_token()
    SalesforceOAuthClient(config("refresh_token"), http=httpx.Client(transport=transport)).fetch_token(refresh_token="5Aep861rotated")
    token_requests = [r for r in seen if r.url.path.endswith("/token")]
    cc, rt, rotated = (form(r) for r in token_requests)
    assert len(seen) == 4  # client credentials has the secret: its new token is introspected for expiry
    assert cc == {"grant_type": "client_credentials", "client_id": "3MVG9key", "client_secret": "s3cret"}
    assert rt == {"grant_type": "refresh_token", "refresh_token": "5Aep861refresh", "client_id": "3MVG9key"}
    assert rotated["refresh_token"] == "5Aep861rotated"


async def test_async_client_sends_the_same_request():
    seen, transport = recorder()
    cfg = config("client_credentials")
    sync_tok = SalesforceOAuthClient(cfg, http=httpx.Client(transport=transport)).fetch_token()
    async with AsyncSalesforceOAuthClient(cfg, http=httpx.AsyncClient(transport=transport)) as client:
        async_tok = await client.fetch_token()
    assert len(seen) == 4  # token + introspection, twice
    assert [form(r) for r in seen[:2]] == [form(r) for r in seen[2:]]
    assert [r.url for r in seen[:2]] == [r.url for r in seen[2:]]
    assert (sync_tok.access_token, sync_tok.instance_url) == (async_tok.access_token, async_tok.instance_url)


def test_secrets_are_reported_as_soon_as_they_exist():
    seen, transport = recorder()
    reported: list[str] = []
    client = SalesforceOAuthClient(config("jwt_bearer"), http=httpx.Client(transport=transport), on_secret=reported.append)
    token = client.fetch_token()
    assertion = form(seen[0])["assertion"]
    assert assertion in reported and token.access_token in reported
    assert reported.index(assertion) < reported.index(token.access_token)


def test_retry_policy_bounds_total_time():
    calls = []

    def handler(request):
        calls.append(time.monotonic())
        return httpx.Response(503, text="<html>down</html>")

    cfg = config("client_credentials")
    client = SalesforceOAuthClient(cfg, http=httpx.Client(transport=httpx.MockTransport(handler)),
                                   retry=RetryPolicy(attempts=10, initial_backoff=0.2, max_backoff=0.2, max_total=0.5))
    from sf_oauth_provider.client.errors import SalesforceUnavailableError

    with pytest.raises(SalesforceUnavailableError):
        client.fetch_token()
    assert 2 <= len(calls) < 10  # stopped by the total-time bound, not the attempt count


# ---- hostile numbers and origins -----------------------------------------------------------------
def _token_then(introspection: bytes):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json=BODY)
        return httpx.Response(200, content=introspection, headers={"content-type": "application/json"})

    return httpx.MockTransport(handler)


@pytest.mark.parametrize("exp", [b"1e400", b"NaN", b"1e20", b"-1", b"4102444800"], ids=["1e400", "nan", "1e20", "-1", "year-2100"])
async def test_implausible_introspection_exp_falls_back_to_the_session_timeout(exp):
    cfg = config("client_credentials")
    body = b'{"active": true, "exp": ' + exp + b"}"
    sync_tok = SalesforceOAuthClient(cfg, http=httpx.Client(transport=_token_then(body))).fetch_token()
    async with AsyncSalesforceOAuthClient(cfg, http=httpx.AsyncClient(transport=_token_then(body))) as client:
        async_tok = await client.fetch_token()
    for tok in (sync_tok, async_tok):
        assert tok.expires_at_source == "session_timeout"
        assert tok.expires_at - time.time() <= cfg.session_timeout + 5


async def test_out_of_range_exp_is_the_package_error_for_introspect():
    from sf_oauth_provider.client.errors import SalesforceOAuthError

    cfg = config("client_credentials")
    async with AsyncSalesforceOAuthClient(cfg, http=httpx.AsyncClient(transport=_token_then(b'{"active": true, "exp": 1e400}')),
                                          retry=RetryPolicy(attempts=1)) as client:
        with pytest.raises(SalesforceOAuthError) as info:
            await client.introspect("00Dxx!AQother")  # what the trigger's check calls
    assert info.value.transient and "'exp'" in str(info.value) and str(info.value).startswith("Connection 'c': ")


def _bearer_auth(token):
    from sf_oauth_provider.client.auth import SalesforceTokenAuth

    return SalesforceTokenAuth(get_token=lambda stale: token, conn_id="c")


def test_token_auth_sends_the_bearer_only_to_its_https_origin():
    from sf_oauth_provider.client.errors import SalesforceProtocolError
    from sf_oauth_provider.client.token import SalesforceToken

    seen, transport = recorder()
    secure = SalesforceToken(access_token="00Dxx!AQsecure", instance_url="https://acme.my.salesforce.com",
                             id_url=None, issued_at=0, expires_at=4e9)
    plain = SalesforceToken(access_token="00Dxx!AQplain", instance_url="http://acme.my.salesforce.com",
                            id_url=None, issued_at=0, expires_at=4e9)
    loopback = SalesforceToken(access_token="00Dxx!AQlocal", instance_url="http://127.0.0.1:8123",
                               id_url=None, issued_at=0, expires_at=4e9)
    with httpx.Client(transport=transport, auth=_bearer_auth(secure)) as http:
        http.get("https://acme.my.salesforce.com/services/data")
        with pytest.raises(SalesforceProtocolError, match="another origin"):
            http.get("https://evil.example.com/steal")
        with pytest.raises(SalesforceProtocolError, match="another origin"):
            http.get("http://acme.my.salesforce.com/services/data")  # same host, clear text
    with httpx.Client(transport=transport, auth=_bearer_auth(plain)) as http:
        with pytest.raises(SalesforceProtocolError, match="not https"):
            http.get("http://acme.my.salesforce.com/services/data")
    with httpx.Client(transport=transport, auth=_bearer_auth(loopback)) as http:
        http.get("http://127.0.0.1:8123/services/data")  # the emulator
    assert [r.headers["authorization"] for r in seen] == ["Bearer 00Dxx!AQsecure", "Bearer 00Dxx!AQlocal"]


def test_call_repr_hides_the_form_and_headers():
    client = SalesforceOAuthClient(config("jwt_bearer"))
    call = client.token_call()
    assert "assertion" not in repr(call) and call.data and call.data["assertion"] not in repr(call)
    cc = SalesforceOAuthClient(config("client_credentials")).token_call()
    assert "s3cret" not in repr(cc)
