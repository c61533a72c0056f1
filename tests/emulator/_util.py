"""Helpers for emulator tests (plain httpx + pyjwt; no sf_oauth_provider client code)."""

from __future__ import annotations

import atexit
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization

from sf_oauth_provider.emulator import RunningEmulator

__all__ = ["HTTP", "JWT_GRANT", "assertion", "cc_token", "jwt_token", "query", "token_post"]

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"

#: one shared client: creating an httpx.Client costs ~0.1 s (TLS context), far more than a request
HTTP = httpx.Client(timeout=10)
atexit.register(HTTP.close)
_KEYS: dict[str, Any] = {}


def assertion(emu: RunningEmulator, key_pem: str | None = None, alg: str = "RS256", **claims: Any) -> str:
    """A JWT-bearer assertion for the demo JWT app (claims overridable; ``None`` drops one)."""
    demo = emu.org.demo
    body: dict[str, Any] = {
        "iss": demo.jwt_consumer_key,
        "sub": demo.jwt_username,
        "aud": "https://login.salesforce.com",
        "exp": int(emu.org.clock.now()) + 120,
    }
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    pem = key_pem or demo.jwt_private_key_pem
    key: Any = pem
    if alg == "RS256":
        key = _KEYS.get(pem)
        if key is None:
            # loading an RSA key is slow (~50 ms consistency check): cache it
            key = _KEYS[pem] = serialization.load_pem_private_key(pem.encode(), password=None)
    return jwt.encode(body, key, algorithm=alg)


def token_post(base: str, **form: str) -> httpx.Response:
    """POST the token endpoint under ``base``."""
    return HTTP.post(f"{base}/services/oauth2/token", data=form)


def jwt_token(emu: RunningEmulator, base: str | None = None, **claims: Any) -> dict[str, Any]:
    """A successful JWT-bearer exchange; returns the JSON body."""
    r = token_post(base or emu.login_url, grant_type=JWT_GRANT, assertion=assertion(emu, **claims))
    assert r.status_code == 200, r.text
    return r.json()


def cc_token(emu: RunningEmulator) -> dict[str, Any]:
    """A successful client-credentials exchange against the root (My Domain)."""
    d = emu.org.demo
    r = token_post(
        emu.base_url, grant_type="client_credentials", client_id=d.cc_consumer_key, client_secret=d.cc_consumer_secret
    )
    assert r.status_code == 200, r.text
    return r.json()


def query(emu: RunningEmulator, token: str, soql: str, version: str = "63.0") -> httpx.Response:
    """GET the query endpoint."""
    return HTTP.get(
        f"{emu.base_url}/services/data/v{version}/query",
        params={"q": soql},
        headers={"Authorization": f"Bearer {token}"},
    )

