"""OAuthConfig: the validated, frozen settings of one Salesforce connection."""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import logging
import os
import re
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import urlsplit

from sf_oauth_provider.client.errors import SalesforceConfigError
from sf_oauth_provider.client.flows import DEFAULT_FLOW, FLOWS, ConnectionFields

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

    from sf_oauth_provider.client.flows import AuthFlow

__all__ = [
    "OAuthConfig",
    "CACHE_MODES",
    "KNOWN_EXTRAS",
    "LOGIN_AUDIENCE",
    "TEST_AUDIENCE",
    "DEFAULT_API_VERSION",
    "is_loopback_host",
]

#: extra 'cache': 'auto' is resolved by the TokenProvider: Redis when a URL is configured, else the file
CACHE_MODES = ("auto", "redis", "file", "memory", "none")
LOGIN_AUDIENCE = "https://login.salesforce.com"
TEST_AUDIENCE = "https://test.salesforce.com"
DEFAULT_API_VERSION = "63.0"
#: every extra the connection reads (an unknown one is reported with the closest of these)
KNOWN_EXTRAS = (
    "auth_flow",
    "username",
    "private_key",
    "jwt_key_file",
    "private_key_passphrase",
    "audience",
    "refresh_token",
    "api_version",
    "session_timeout",
    "cache",
    "timeout",
    "ca_bundle",
    "jwt_certificate",
)
#: old name -> new name; the old names work for one release (Airflow's masker hid their values)
RENAMED_EXTRAS = {"token_cache": "cache", "private_key_path": "jwt_key_file"}
_TOKEN_PATH = "/services/oauth2/token"
_HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)", re.IGNORECASE)
_MISTYPED_SCHEME = re.compile(r"(?i)^https?(?::/?(?!/)|//)")  # https//x, https:/x, https:x
_NETLOC = re.compile(r"(?i)^(?:\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::\d{1,5})?$")
log = logging.getLogger("sf_oauth_provider.config")


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
    #: the private key's PEM text as read (pasted or from ``jwt_key_file``): only for masking
    private_key_pem: str | None = field(default=None, repr=False, compare=False)
    refresh_token: str | None = field(default=None, repr=False)
    api_version: str = DEFAULT_API_VERSION
    session_timeout: float = 7200.0
    #: token store: 'auto' (Redis when configured, else file), 'redis' (every host), 'file' (every
    #: process on the host), 'memory' (this process) or 'none'
    cache: str = "file"
    timeout: float = 30.0
    #: PEM CA bundle for TLS verification (None: the system/certifi store)
    ca_bundle: str | None = None
    #: the connected app's certificate (PEM text or a file path), for expiry and key-match checks
    jwt_certificate: str | None = field(default=None, repr=False, compare=False)
    #: hash of every credential (consumer secret, public key, refresh token): part of the cache key
    credential_digest: str = field(default="", repr=False)

    @property
    def token_url(self) -> str:
        return f"{self.host}/services/oauth2/token"

    @property
    def flow(self) -> AuthFlow:
        """The :class:`~sf_oauth_provider.client.flows.AuthFlow` this connection uses."""
        return FLOWS[self.auth_flow]

    @property
    def subject(self) -> str:
        """Whom the token is for: the JWT user, the refresh token's holder, or the app itself."""
        return self.flow.subject(self)

    @cached_property
    def cache_key(self) -> str:
        """Stable key of everything that shapes the token request (credentials hashed).

        Host, consumer key, flow, subject, the JWT audience and the credentials: a connection that
        differs in any of them (a wrong secret, key or audience) is never handed the token another
        connection cached — it must authenticate on its own, and fail now rather than hours later.
        Settings that do not change the request (timeouts, API version, cache mode) are left out.
        """
        raw = "\x1f".join(
            (self.host.lower(), self.consumer_key, self.auth_flow, self.subject,
             *self.flow.request_identity(self), self.credential_digest)
        )
        return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:32]

    @property
    def secrets(self) -> list[str]:
        """Every secret value this config holds (for masking)."""
        return [s for s in (self.consumer_secret, self.refresh_token, self.private_key_pem) if s]

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
        """Validate connection fields; raise :class:`SalesforceConfigError` naming the field.

        :param schema: the connection's ``schema``, which this type does not use: a URI
            connection puts its path there (``…/login`` → ``login``), so a non-empty one is refused
            rather than silently dropped from the host
        """

        def fail(message: str, fld: str, hint: str | None = None) -> SalesforceConfigError:
            return SalesforceConfigError(f"Connection {conn_id!r}: {message}", field=fld, hint=hint)

        extra = _renamed_extras_resolved(conn_id, dict(extra or {}), fail)
        _warn_unknown_extras(conn_id, extra)

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
                raise fail(
                    f"extra {name!r} must be between {low:g} and {high:g} seconds, got {value!r}", f"extra.{name}"
                )
            return result

        consumer_key = (login or "").strip()
        if not consumer_key:
            raise fail(
                "'login' (Consumer Key) is required",
                "login",
                "copy the consumer key from the connected app (App Manager → View → Manage Consumer Details)",
            )

        auth_flow = (text("auth_flow") or DEFAULT_FLOW).lower()
        flow = FLOWS.get(auth_flow)
        if flow is None:
            raise fail(
                f"extra 'auth_flow' {extra.get('auth_flow')!r} is not one of {', '.join(FLOWS)}", "extra.auth_flow"
            )

        host_url = _normalize_host(conn_id, host, port, fail)
        _refuse_schema(schema, host_url, fail)
        hostname = (urlsplit(host_url).hostname or "").lower()
        consumer_secret = (password or "").strip() or None
        loaded = flow.check(ConnectionFields(conn_id, hostname, consumer_secret, extra, text, fail))
        username = text("username")
        private_key = loaded.get("private_key")
        private_key_pem = loaded.get("private_key_pem")
        refresh_token = text("refresh_token")

        audience = text("audience") or _default_audience(hostname)
        if not audience.startswith(("https://", "http://")):
            raise fail(f"extra 'audience' must be a URL such as {LOGIN_AUDIENCE}, got {audience!r}", "extra.audience")

        api_version = (text("api_version") or DEFAULT_API_VERSION).lstrip("vV")
        if not re.fullmatch(r"\d{2,3}\.\d", api_version):
            raise fail(
                f"extra 'api_version' must look like '63.0', got {extra.get('api_version')!r}", "extra.api_version"
            )

        cache = (text("cache") or "auto").lower()
        if cache not in CACHE_MODES:
            raise fail(
                f"extra 'cache' must be one of {', '.join(CACHE_MODES)}, got {extra.get('cache')!r}", "extra.cache"
            )

        ca_bundle = _readable_ca_bundle(text("ca_bundle"), fail)

        return cls(
            conn_id=conn_id,
            host=host_url,
            consumer_key=consumer_key,
            auth_flow=auth_flow,
            consumer_secret=consumer_secret,
            username=username,
            audience=audience,
            private_key=private_key,
            private_key_pem=private_key_pem,
            refresh_token=refresh_token,
            api_version=api_version,
            session_timeout=number("session_timeout", 7200.0, 60, 86400 * 7),
            cache=cache,
            timeout=number("timeout", 30.0, 0.1, 600),
            ca_bundle=ca_bundle,
            jwt_certificate=text("jwt_certificate"),
            credential_digest=_credential_digest(consumer_secret, private_key, refresh_token),
        )


def _refuse_schema(schema: str | None, host_url: str, fail) -> None:
    """Refuse a non-empty ``schema``: a connection URI's path lands there and would be silently dropped."""
    if schema and schema.strip():
        path = "/" + schema.strip().strip("/")
        raise fail(
            f"'schema' is {schema!r}: a connection URI's path ({path!r}) lands there, and this "
            "connection type does not use it",
            "schema",
            f"put the whole base URL in 'host', e.g. {host_url}{path}, and leave 'schema' empty",
        )


def _readable_ca_bundle(ca_bundle: str | None, fail) -> str | None:
    """Return ``ca_bundle`` unchanged if it is unset or a readable file; refuse it otherwise."""
    if ca_bundle is not None and not (os.path.isfile(ca_bundle) and os.access(ca_bundle, os.R_OK)):
        raise fail(f"extra 'ca_bundle' {ca_bundle!r} is not a readable file", "extra.ca_bundle",
                   "give the path of a PEM file of CA certificates, or remove the field to use the system store")
    return ca_bundle


def _renamed_extras_resolved(conn_id: str, extra: dict[str, Any], fail) -> dict[str, Any]:
    """Map deprecated extra names to their new ones, with a warning; refuse a disagreeing pair."""
    for old, new in RENAMED_EXTRAS.items():
        if old not in extra:
            continue
        value = extra.pop(old)
        if extra.get(new) not in (None, "") and value not in (None, "") and extra[new] != value:
            raise fail(
                f"extra {old!r} (deprecated) is {value!r} but {new!r} is {extra[new]!r}",
                f"extra.{new}",
                f"keep only {new!r}",
            )
        if extra.get(new) in (None, ""):
            extra[new] = value
        if value in (None, ""):
            continue
        message = (
            f"Connection {conn_id!r}: extra {old!r} is deprecated and will be removed in the next "
            f"release; rename it {new!r} (Airflow's secrets masker hides the value of {old!r} in logs)"
        )
        log.warning(message)
        warnings.warn(message, DeprecationWarning, stacklevel=4)
    return extra


#: extras of apache-airflow-providers-salesforce (``SalesforceHook``, also ``extra__salesforce__<name>``)
#: and what replaces each here: a migrated connection gets a warning that says what to change
SALESFORCE_PROVIDER_EXTRAS = {
    "consumer_key": "put the consumer key in 'login' (Consumer Key)",
    "consumer_secret": "put the consumer secret in 'password' (Consumer Secret)",
    "private_key_file_path": "use extra 'jwt_key_file'",
    "domain": "set 'host' to https://login.salesforce.com ('login'), https://test.salesforce.com ('test') "
              "or your My Domain URL (https://<domain>.my.salesforce.com)",
    "sandbox": "set 'host' to https://test.salesforce.com (or your sandbox My Domain URL)",
    "is_sandbox": "set 'host' to https://test.salesforce.com (or your sandbox My Domain URL)",
    "version": "use extra 'api_version'",
    "instance_url": "not needed: Salesforce returns the instance URL with every token; put a My Domain URL in 'host'",
    "instance": "not needed: Salesforce returns the instance URL with every token; put a My Domain URL in 'host'",
    "security_token": "not used: the username-password login it belongs to is not supported; use auth_flow "
                      "'jwt_bearer' (extra 'username' plus a key) or 'client_credentials'",
    "organization_id": "not used (it serves the username-password login of IP-restricted orgs)",
    "client_id": "not used (simple-salesforce's call label); the connected app's consumer key goes in 'login'",
    "proxies": "not supported: the client connects to Salesforce directly",
}
_SALESFORCE_PREFIX = "extra__salesforce__"


def _migration_hint(name: str) -> str | None:
    """What replaces an extra of the Salesforce provider, or None if ``name`` is not one."""
    bare = name[len(_SALESFORCE_PREFIX):] if name.startswith(_SALESFORCE_PREFIX) else name
    if bare in SALESFORCE_PROVIDER_EXTRAS:
        return SALESFORCE_PROVIDER_EXTRAS[bare]
    if bare != name and bare in KNOWN_EXTRAS:
        return f"use extra {bare!r} (without the prefix)"
    return None


def _warn_unknown_extras(conn_id: str, extra: Mapping[str, Any]) -> None:
    for name in extra:
        if name in KNOWN_EXTRAS:
            continue
        migration = _migration_hint(name)
        if migration is not None:
            log.warning("Connection %r: extra %r of apache-airflow-providers-salesforce is ignored: %s "
                        "(README: 'Migrating from apache-airflow-providers-salesforce')", conn_id, name, migration)
            continue
        close = difflib.get_close_matches(name, KNOWN_EXTRAS, n=1, cutoff=0.75)
        guess = f"; did you mean {close[0]!r}?" if close else f" (known extras: {', '.join(KNOWN_EXTRAS)})"
        log.warning("Connection %r: unknown extra %r is ignored%s", conn_id, name, guess)


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
    example = "use https://login.salesforce.com, https://test.salesforce.com or your My Domain URL"
    if not raw:
        raise fail("'host' is required", "host", example)
    if _MISTYPED_SCHEME.match(raw):
        raise fail(f"'host' {host!r} has a mistyped scheme", "host", f"write it as https://…; {example}")
    if "://" not in raw:
        raw = "https://" + raw
    try:
        parts = urlsplit(raw)
        hostname = (parts.hostname or "").lower()
        parsed_port = parts.port
    except ValueError:
        raise fail(f"'host' {host!r} is not a URL", "host", example) from None
    if parts.scheme not in ("https", "http"):
        raise fail(
            f"'host' must be an https URL, got scheme {parts.scheme!r} in {host!r}",
            "host",
            f"write https://…; {example}",
        )
    if "@" in parts.netloc:
        # https://login.salesforce.com@evil.com connects to evil.com
        raise fail(
            f"'host' {host!r} contains '@' (user information)",
            "host",
            "put the consumer key and secret in 'login' and 'password', never in the host",
        )
    if not hostname or not _NETLOC.match(parts.netloc) or not _valid_hostname(hostname):
        raise fail(f"'host' {host!r} has no valid host name", "host", example)
    if parts.scheme == "http" and not is_loopback_host(hostname):
        raise fail(
            f"'host' {host!r} uses plain http",
            "host",
            "Salesforce requires TLS: use https:// (plain http is allowed only for a loopback emulator)",
        )
    if parts.query or parts.fragment:
        raise fail(f"'host' {host!r} must not contain a query or fragment", "host")
    path = parts.path.rstrip("/")
    if "/services/" in path + "/":
        base = path[: path.index("/services")]
        raise fail(
            f"'host' {host!r} includes the API path {path[len(base):]!r}",
            "host",
            f"set host to the base URL only, e.g. {parts.scheme}://{parts.netloc}{base}",
        )
    netloc = parts.netloc
    if port and not parsed_port:
        netloc = f"{netloc}:{port}"
    return f"{parts.scheme}://{netloc}{path}"


def _valid_hostname(hostname: str) -> bool:
    try:
        ipaddress.ip_address(hostname)
        return True
    except ValueError:
        pass
    return all(_HOST_LABEL.fullmatch(label) for label in hostname.split("."))
