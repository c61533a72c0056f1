"""authlib's standard OAuth clients against the emulator: RFC 7523 JWT bearer grant (with
authlib's default assertion lifetime of one hour), RFC 7662 introspection, RFC 7009 revocation."""

from __future__ import annotations

import ssl
from typing import Iterator

import pytest
from authlib.integrations.httpx_client import AssertionClient, OAuth2Client

from sf_oauth_provider.emulator import RunningEmulator


@pytest.fixture
def verify(tls_emulator: RunningEmulator) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=tls_emulator.ca_bundle)


@pytest.fixture
def assertion_client(tls_emulator: RunningEmulator, verify: ssl.SSLContext) -> Iterator[AssertionClient]:
    d = tls_emulator.org.demo
    with AssertionClient(
        token_endpoint=f"{tls_emulator.login_url}/services/oauth2/token",
        issuer=d.jwt_consumer_key,
        subject=d.jwt_username,
        audience="https://login.salesforce.com",
        key=d.jwt_private_key_pem,
        header={"alg": "RS256"},
        verify=verify,
    ) as client:
        yield client


@pytest.fixture
def app_client(tls_emulator: RunningEmulator, verify: ssl.SSLContext) -> Iterator[OAuth2Client]:
    d = tls_emulator.org.demo
    with OAuth2Client(client_id=d.jwt_consumer_key, client_secret=d.jwt_consumer_secret, verify=verify) as client:
        yield client


def test_jwt_bearer_grant_with_the_default_lifetime(
    assertion_client: AssertionClient, tls_emulator: RunningEmulator
) -> None:
    token = assertion_client.refresh_token()
    assert token["token_type"] == "Bearer"
    assert token["access_token"] in tls_emulator.org.issued_tokens()
    # authlib then authenticates API calls with the token
    r = assertion_client.get(f"{token['instance_url']}/services/data/v63.0/limits")
    assert r.status_code == 200 and "DailyApiRequests" in r.json()


def test_jwt_bearer_grant_to_the_login_url_as_audience(tls_emulator: RunningEmulator, verify: ssl.SSLContext) -> None:
    d = tls_emulator.org.demo
    with AssertionClient(
        token_endpoint=f"{tls_emulator.login_url}/services/oauth2/token",
        issuer=d.jwt_consumer_key, subject=d.jwt_username, audience=tls_emulator.login_url,
        key=d.jwt_private_key_pem, header={"alg": "RS256"}, verify=verify,
    ) as client:
        assert client.refresh_token()["instance_url"] == tls_emulator.base_url


def test_introspect_and_revoke(
    assertion_client: AssertionClient, app_client: OAuth2Client, tls_emulator: RunningEmulator
) -> None:
    access = assertion_client.refresh_token()["access_token"]
    base = tls_emulator.base_url
    info = app_client.introspect_token(f"{base}/services/oauth2/introspect", token=access,
                                       token_type_hint="access_token")
    assert info.status_code == 200
    body = info.json()
    assert body["active"] is True and body["client_id"] == tls_emulator.org.demo.jwt_consumer_key
    assert body["username"] == tls_emulator.org.demo.jwt_username

    revoked = app_client.revoke_token(f"{base}/services/oauth2/revoke", token=access, token_type_hint="access_token")
    assert revoked.status_code == 200
    after = app_client.introspect_token(f"{base}/services/oauth2/introspect", token=access)
    assert after.json() == {"active": False}
    # RFC 7009 §2.2 lets a server answer 200 for an already-invalid token; Salesforce says 400
    again = app_client.revoke_token(f"{base}/services/oauth2/revoke", token=access)
    assert again.status_code == 400 and again.json()["error"] == "invalid_token"


def test_refresh_token_grant_and_introspect_it(tls_emulator: RunningEmulator, verify: ssl.SSLContext) -> None:
    d = tls_emulator.org.demo
    with OAuth2Client(client_id=d.refresh_consumer_key, client_secret=d.refresh_consumer_secret,
                      token_endpoint_auth_method="client_secret_post", verify=verify) as client:
        token = client.refresh_token(f"{tls_emulator.login_url}/services/oauth2/token", refresh_token=d.refresh_token)
        assert token["access_token"] in tls_emulator.org.issued_tokens()
        rotated = token["refresh_token"]
        assert rotated != d.refresh_token
        info = client.introspect_token(
            f"{tls_emulator.base_url}/services/oauth2/introspect", token=rotated, token_type_hint="refresh_token"
        ).json()
        assert info["active"] is True and info["token_type"] == "refresh_token"
