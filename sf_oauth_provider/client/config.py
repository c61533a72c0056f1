"""OAuthConfig: the validated, frozen settings of one Salesforce connection."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import urlsplit

from sf_oauth_provider.client.errors import SalesforceConfigError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

__all__ = [
    "OAuthConfig",
    "AUTH_FLOWS",
    "CACHE_MODES",
    "LOGIN_AUDIENCE",
    "TEST_AUDIENCE",
    "DEFAULT_API_VERSION",
    "is_loopback_host",
]

AUTH_FLOWS = ("jwt_bearer", "client_credentials", "refresh_token")
CACHE_MODES = ("file", "memory", "none")
LOGIN_AUDIENCE = "https://login.salesforce.com"
TEST_AUDIENCE = "https://test.salesforce.com"
DEFAULT_API_VERSION = "63.0"
_GENERIC_LOGIN_HOSTS = ("login.salesforce.com", "test.salesforce.com")
_KNOWN_EXTRAS = {
    "auth_flow",
    "username",
    "private_key",
    "private_key_path",
    "private_key_passphrase",
    "audience",
    "refresh_token",
    "api_version",
    "session_timeout",
    "token_cache",
    "timeout",
    "jwt_certificate",
}


def is_loopback_host(hostname: str | None) -> bool:
    if not hostname:
        return False
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class OAuthConfig:
    """Settings of one connection, checked before any request is made.

    Build it with :meth:`from_connection_fields`; secrets are excluded from ``repr``.
    """

    conn_id: str
    host: str
    consumer_key: str
    auth_flow: str
    consumer_secret: str | None = field(default=None, repr=False)
    username: str | None = None
    audience: str | None = None
    private_key: RSAPrivateKey | None = field(default=None, repr=False, compare=False)
    refresh_token: str | None = field(default=None, repr=False)
    api_version: str = DEFAULT_API_VERSION
    session_timeout: float = 7200.0
    token_cache: str = "file"
    timeout: float = 30.0
    #: the connected app's certificate (PEM text or a file path), for expiry and key-match checks
    jwt_certificate: str | None = field(default=None, repr=False, compare=False)
    #: hash of every credential (consumer secret, public key, refresh token): part of the cache key
    credential_digest: str = field(default="", repr=False)

    @property
    def token_url(self) -> str:
        return f"{self.host}/services/oauth2/token"

    @property
    def subject(self) -> str:
        """Whom the token is for: the JWT user, the refresh token's holder, or the app itself."""
        if self.auth_flow == "jwt_bearer":
            return self.username or ""
        if self.auth_flow == "refresh_token":
            # the refresh token identifies the user; keyed by its hash, never the value
            return "rt:" + hashlib.sha256((self.refresh_token or "").encode()).hexdigest()[:16]
        return "app"

    @cached_property
    def cache_key(self) -> str:
        """Stable key of this identity: host, consumer key, flow, subject and credentials (hashed).

        The credentials are part of it so that a connection with a wrong secret or key is never
        handed the token another connection cached: it must authenticate on its own.
        """
        raw = "\x1f".join(
            (self.host.lower(), self.consumer_key, self.auth_flow, self.subject, self.credential_digest)
        )
        return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:32]

    @property
    def secrets(self) -> list[str]:
        """Every secret value this config holds (for masking)."""
        return [s for s in (self.consumer_secret, self.refresh_token) if s]

    @classmethod
    def from_connection_fields(
        cls,
        conn_id: str,
        *,
        host: str | None,
        login: str | None,
        password: str | None,
        extra: Mapping[str, Any] | None,
        schema: str | None = None,
        port: int | None = None,
    ) -> OAuthConfig:
        """Validate connection fields; raise :class:`SalesforceConfigError` naming the field."""
        extra = dict(extra or {})

        def fail(message: str, fld: str, hint: str | None = None) -> SalesforceConfigError:
            return SalesforceConfigError(f"Connection {conn_id!r}: {message}", field=fld, hint=hint)

        def text(name: str) -> str | None:
            value = extra.get(name)
            if value is None:
                return None
            if not isinstance(value, str):
                raise fail(f"extra {name!r} must be a string, got {type(value).__name__}", f"extra.{name}")
            return value.strip() or None

        def number(name: str, default: float, low: float, high: float) -> float:
            value = extra.get(name)
            if value is None or value == "":
                return default
            try:
                result = float(value)
            except (TypeError, ValueError):
                raise fail(f"extra {name!r} must be a number of seconds, got {value!r}", f"extra.{name}") from None
            if not low <= result <= high:
                raise fail(f"extra {name!r} must be between {low:g} and {high:g} seconds, got {value!r}", f"extra.{name}")
            return result

        consumer_key = (login or "").strip()
        if not consumer_key:
            raise fail(
                "'login' (Consumer Key) is required",
                "login",
                "copy the consumer key from the connected app (App Manager → View → Manage Consumer Details)",
            )

        auth_flow = (text("auth_flow") or "jwt_bearer").lower()
        if auth_flow not in AUTH_FLOWS:
            raise fail(f"extra 'auth_flow' {extra.get('auth_flow')!r} is not one of {', '.join(AUTH_FLOWS)}", "extra.auth_flow")

        host_url = _normalize_host(conn_id, host, port, fail)
        hostname = (urlsplit(host_url).hostname or "").lower()

        username = text("username")
        private_key = None
        if auth_flow == "jwt_bearer":
            if not username:
                raise fail(
                    "extra 'username' is required for auth_flow 'jwt_bearer'",
                    "extra.username",
                    "the Salesforce username the token is issued for (JWT 'sub')",
                )
            from sf_oauth_provider.client.assertion import load_private_key

            private_key = load_private_key(
                text("private_key"),
                path=text("private_key_path"),
                passphrase=extra.get("private_key_passphrase") or None,
                conn_id=conn_id,
            )
        if auth_flow == "client_credentials":
            if hostname in _GENERIC_LOGIN_HOSTS:
                raise fail(
                    f"auth_flow 'client_credentials' is not served on {hostname}",
                    "host",
                    "set host to your My Domain, e.g. https://acme.my.salesforce.com",
                )
            if not (password or "").strip():
                raise fail("'password' (Consumer Secret) is required for auth_flow 'client_credentials'", "password")
        refresh_token = text("refresh_token")
        if auth_flow == "refresh_token" and not refresh_token:
            raise fail("extra 'refresh_token' is required for auth_flow 'refresh_token'", "extra.refresh_token")

        audience = text("audience") or _default_audience(hostname)
        if not audience.startswith(("https://", "http://")):
            raise fail(f"extra 'audience' must be a URL such as {LOGIN_AUDIENCE}, got {audience!r}", "extra.audience")

        api_version = (text("api_version") or DEFAULT_API_VERSION).lstrip("vV")
        if not re.fullmatch(r"\d{2,3}\.\d", api_version):
            raise fail(f"extra 'api_version' must look like '63.0', got {extra.get('api_version')!r}", "extra.api_version")

        token_cache = (text("token_cache") or "file").lower()
        if token_cache not in CACHE_MODES:
            raise fail(f"extra 'token_cache' must be one of {', '.join(CACHE_MODES)}, got {extra.get('token_cache')!r}", "extra.token_cache")

        consumer_secret = (password or "").strip() or None
        return cls(
            conn_id=conn_id,
            host=host_url,
            consumer_key=consumer_key,
            auth_flow=auth_flow,
            consumer_secret=consumer_secret,
            username=username,
            audience=audience,
            private_key=private_key,
            refresh_token=refresh_token,
            api_version=api_version,
            session_timeout=number("session_timeout", 7200.0, 60, 86400 * 7),
            token_cache=token_cache,
            timeout=number("timeout", 30.0, 0.1, 600),
            jwt_certificate=text("jwt_certificate"),
            credential_digest=_credential_digest(consumer_secret, private_key, refresh_token),
        )


def _credential_digest(secret: str | None, key: RSAPrivateKey | None, refresh_token: str | None) -> str:
    digest = hashlib.sha256()
    for part in (secret, refresh_token):
        digest.update((part or "").encode("utf-8") + b"\x1f")
    if key is not None:
        from cryptography.hazmat.primitives import serialization

        digest.update(key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ))
    return digest.hexdigest()


def _default_audience(hostname: str) -> str:
    if hostname == "test.salesforce.com" or hostname.endswith(".sandbox.my.salesforce.com"):
        return TEST_AUDIENCE
    return LOGIN_AUDIENCE


def _normalize_host(conn_id: str, host: str | None, port: int | None, fail) -> str:
    raw = (host or "").strip()
    if not raw:
        raise fail(
            "'host' is required",
            "host",
            "use https://login.salesforce.com, https://test.salesforce.com or your My Domain URL",
        )
    if "://" not in raw:
        raw = "https://" + raw
    try:
        parts = urlsplit(raw)
        hostname = parts.hostname
        parsed_port = parts.port
    except ValueError:
        raise fail(f"'host' {host!r} is not a URL", "host") from None
    if not hostname:
        raise fail(f"'host' {host!r} has no host name", "host")
    if parts.scheme not in ("https", "http"):
        raise fail(f"'host' must be an https URL, got scheme {parts.scheme!r}", "host")
    if parts.scheme == "http" and not is_loopback_host(hostname):
        raise fail(
            f"'host' {host!r} uses plain http",
            "host",
            "Salesforce requires TLS: use https:// (plain http is allowed only for a loopback emulator)",
        )
    if parts.query or parts.fragment:
        raise fail(f"'host' {host!r} must not contain a query or fragment", "host")
    netloc = parts.netloc.rsplit("@", 1)[-1]  # drop any user:password@ a URI form carried
    if port and not parsed_port:
        netloc = f"{netloc}:{port}"
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"
