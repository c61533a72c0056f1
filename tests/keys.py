"""Real RSA/EC keys for tests, generated once per test session."""

from __future__ import annotations

from functools import lru_cache

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


@lru_cache(maxsize=None)
def rsa_key(bits: int = 2048, n: int = 0) -> rsa.RSAPrivateKey:
    """A fresh RSA key; ``n`` distinguishes several keys of one size."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def pem(key, passphrase: str | None = None, traditional: bool = False) -> str:
    fmt = serialization.PrivateFormat.TraditionalOpenSSL if traditional else serialization.PrivateFormat.PKCS8
    enc = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, fmt, enc).decode()


@lru_cache(maxsize=None)
def ec_pem() -> str:
    return pem(ec.generate_private_key(ec.SECP256R1()))
