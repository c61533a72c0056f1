"""Auth flows: one class per OAuth grant, and the registry everything else derives from.

A flow says which connection fields it needs (:meth:`AuthFlow.check`), whom its tokens are for
(:meth:`AuthFlow.subject`), what besides the host, consumer key and credentials shapes its token
request (:meth:`AuthFlow.request_identity`, part of the cache key) and what it posts to the token
endpoint (:meth:`AuthFlow.grant_form`). Config validation, the token call, the provider info's
``auth_flow`` choices and the audit all read :data:`FLOWS`, so adding a flow is a new class here
(decorated with :func:`register`) plus its tests.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar

if TYPE_CHECKING:
    from sf_oauth_provider.client.config import OAuthConfig
    from sf_oauth_provider.client.errors import SalesforceConfigError

__all__ = ["AuthFlow", "ConnectionFields", "FLOWS", "DEFAULT_FLOW", "JWT_GRANT", "flow_named", "register"]

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: hosts that serve every org's login but not the client-credentials flow
GENERIC_LOGIN_HOSTS = ("login.salesforce.com", "test.salesforce.com")


@dataclass(frozen=True)
class ConnectionFields:
    """What a flow may read while the connection is validated.

    :param conn_id: the connection id (for messages)
    :param hostname: the token host's name, lower case
    :param password: the consumer secret, stripped (``None`` when empty)
    :param extra: the extras, deprecated names already mapped to their new ones
    :param text: reads one string extra (``None`` when unset or empty; a non-string is an error)
    :param fail: builds the :class:`SalesforceConfigError` naming the connection and field
    """

    conn_id: str
    hostname: str
    password: str | None
    extra: dict[str, Any]
    text: Callable[[str], str | None]
    fail: Callable[..., SalesforceConfigError]


class AuthFlow:
    """One OAuth grant. Subclass it, set :attr:`name` and :attr:`summary`, and :func:`register` it."""

    #: the value of the connection's extra ``auth_flow``
    name: ClassVar[str]
    #: one line for the connection form and the docs
    summary: ClassVar[str]
    #: whether Salesforce returns a refresh token that the provider must keep (rotation)
    keeps_refresh_token: ClassVar[bool] = False

    def check(self, fields: ConnectionFields) -> dict[str, Any]:
        """Refuse missing or wrong fields for this flow; return settings it loaded (e.g. a key).

        :param fields: the connection's fields
        """
        return {}

    def subject(self, config: OAuthConfig) -> str:
        """Whom the token is for (part of the cache key; never a secret)."""
        raise NotImplementedError

    def request_identity(self, config: OAuthConfig) -> tuple[str, ...]:
        """Settings besides host, consumer key, subject and credentials that shape the request."""
        return ()

    def grant_form(
        self, config: OAuthConfig, *, refresh_token: str | None, now: float, on_secret: Callable[[str], None]
    ) -> dict[str, str]:
        """The form posted to ``/services/oauth2/token``; every secret made here goes to ``on_secret``.

        :param config: the connection's settings
        :param refresh_token: the newest refresh token the stores hold (rotation), if any
        :param now: epoch seconds (for assertions)
        :param on_secret: called with every secret value before it is sent
        """
        raise NotImplementedError


#: name → flow, in the order the connection form lists them
FLOWS: dict[str, AuthFlow] = {}


def register(cls: type[AuthFlow]) -> type[AuthFlow]:
    """Class decorator: make ``cls`` available as ``auth_flow: <cls.name>``."""
    FLOWS[cls.name] = cls()
    return cls


def flow_named(name: str) -> AuthFlow | None:
    return FLOWS.get(name)


@register
class JwtBearerFlow(AuthFlow):
    """RFC 7523 JWT bearer: an RS256 assertion signed with the connected app's private key."""

    name = "jwt_bearer"
    summary = "jwt_bearer (private key + username)"

    def check(self, fields: ConnectionFields) -> dict[str, Any]:
        if not fields.text("username"):
            raise fields.fail(
                "extra 'username' is required for auth_flow 'jwt_bearer'",
                "extra.username",
                "the Salesforce username the token is issued for (JWT 'sub')",
            )
        from sf_oauth_provider.client.assertion import load_private_key

        passphrase = fields.extra.get("private_key_passphrase")
        if passphrase is not None and not isinstance(passphrase, str):  # kept as typed: no strip
            raise fields.fail(
                f"extra 'private_key_passphrase' must be a string, got {type(passphrase).__name__}",
                "extra.private_key_passphrase",
                'quote it in the extras JSON: "private_key_passphrase": "…"',
            )
        pem: list[str] = []
        key = load_private_key(
            fields.text("private_key"),
            path=fields.text("jwt_key_file"),
            passphrase=passphrase or None,
            conn_id=fields.conn_id,
            on_pem=pem.append,
        )
        return {"private_key": key, "private_key_pem": pem[0] if pem else None}

    def subject(self, config: OAuthConfig) -> str:
        return config.username or ""

    def request_identity(self, config: OAuthConfig) -> tuple[str, ...]:
        return (config.audience or "",)

    def grant_form(
        self, config: OAuthConfig, *, refresh_token: str | None, now: float, on_secret: Callable[[str], None]
    ) -> dict[str, str]:
        from sf_oauth_provider.client.assertion import build_assertion

        assert config.private_key is not None and config.username  # checked at validation
        assertion = build_assertion(
            config.private_key, consumer_key=config.consumer_key, username=config.username,
            audience=config.audience or "", now=now,
        )
        on_secret(assertion)
        return {"grant_type": JWT_GRANT, "assertion": assertion}


@register
class ClientCredentialsFlow(AuthFlow):
    """OAuth client credentials: consumer key and secret, for the app's run-as user (My Domain only)."""

    name = "client_credentials"
    summary = "client_credentials (consumer secret; My Domain only)"

    def check(self, fields: ConnectionFields) -> dict[str, Any]:
        if fields.hostname in GENERIC_LOGIN_HOSTS:
            raise fields.fail(
                f"auth_flow 'client_credentials' is not served on {fields.hostname}",
                "host",
                "set host to your My Domain, e.g. https://acme.my.salesforce.com",
            )
        if not fields.password:
            raise fields.fail("'password' (Consumer Secret) is required for auth_flow 'client_credentials'", "password")
        return {}

    def subject(self, config: OAuthConfig) -> str:
        return "app"

    def grant_form(
        self, config: OAuthConfig, *, refresh_token: str | None, now: float, on_secret: Callable[[str], None]
    ) -> dict[str, str]:
        return {
            "grant_type": "client_credentials",
            "client_id": config.consumer_key,
            "client_secret": config.consumer_secret or "",
        }


@register
class RefreshTokenFlow(AuthFlow):
    """OAuth refresh token: a user's refresh token; with rotation on, each refresh returns a new one."""

    name = "refresh_token"
    summary = "refresh_token (a user's refresh token; rotation kept)"
    keeps_refresh_token = True

    def check(self, fields: ConnectionFields) -> dict[str, Any]:
        if not fields.text("refresh_token"):
            raise fields.fail("extra 'refresh_token' is required for auth_flow 'refresh_token'", "extra.refresh_token")
        return {}

    def subject(self, config: OAuthConfig) -> str:
        # the refresh token identifies the user: keyed by its hash, never the value
        return "rt:" + hashlib.sha256((config.refresh_token or "").encode()).hexdigest()[:16]

    def grant_form(
        self, config: OAuthConfig, *, refresh_token: str | None, now: float, on_secret: Callable[[str], None]
    ) -> dict[str, str]:
        token = refresh_token or config.refresh_token or ""
        on_secret(token)
        form = {"grant_type": "refresh_token", "refresh_token": token, "client_id": config.consumer_key}
        if config.consumer_secret:
            form["client_secret"] = config.consumer_secret
        return form


DEFAULT_FLOW = JwtBearerFlow.name
