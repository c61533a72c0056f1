"""authlib reads the emulator's OpenID discovery document as it reads Salesforce's: the metadata
validates (OpenID Connect Discovery 1.0 / RFC 8414), its token endpoint logs in, its JWKS
loads, and its userinfo endpoint answers the claims it advertises — on all three hosts."""

from __future__ import annotations

import ssl

import httpx
import pytest
from authlib.integrations.httpx_client import AssertionClient
from authlib.jose import JsonWebKey  # in every authlib the compat rows install (joserfc only in newer ones)
from authlib.oidc.discovery import OpenIDProviderMetadata

from sf_oauth_provider.emulator import RunningEmulator


@pytest.mark.parametrize("host", ["root", "login", "test"])
def test_discovery_drives_a_login(tls_emulator: RunningEmulator, host: str) -> None:
    base = {"root": tls_emulator.base_url, "login": tls_emulator.login_url, "test": tls_emulator.test_url}[host]
    verify = ssl.create_default_context(cafile=tls_emulator.ca_bundle)
    with httpx.Client(verify=verify, timeout=10) as http:
        metadata = OpenIDProviderMetadata(http.get(f"{base}/.well-known/openid-configuration").json())
        metadata.validate()  # raises on a missing or malformed required key
        assert metadata["issuer"] == base
        keys = JsonWebKey.import_key_set(http.get(metadata["jwks_uri"]).json())
        assert keys.keys and keys.keys[0].kty == "RSA"

    d = tls_emulator.org.demo
    audience = "https://test.salesforce.com" if host == "test" else "https://login.salesforce.com"
    with AssertionClient(
        token_endpoint=metadata["token_endpoint"], issuer=d.jwt_consumer_key, subject=d.jwt_username,
        audience=audience, key=d.jwt_private_key_pem, header={"alg": "RS256"}, verify=verify,
    ) as client:
        client.refresh_token()
        info = client.get(metadata["userinfo_endpoint"]).json()
    assert info["preferred_username"] == d.jwt_username
    advertised = set(metadata["claims_supported"])
    assert {"sub", "email", "name", "preferred_username", "user_id", "organization_id", "photos"} <= advertised
    assert {k for k in info if k in advertised} >= {"sub", "email", "name", "photos", "urls", "updated_at"}
