"""Token values: the access token Salesforce issued, introspection results, fingerprints."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, fields, replace
from typing import Any

__all__ = ["SalesforceToken", "IntrospectionResult", "fingerprint"]


def fingerprint(token: str) -> str:
    """A stable, non-secret name for a token: ``sha256:`` + the first 12 hex of its SHA-256.

    48 bits of a hash identify a token among millions without letting anyone recover it.
    """
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()[:12]


def _id_parts(id_url: str | None) -> tuple[str | None, str | None]:
    """``.../id/<org id>/<user id>`` -> (org id, user id)."""
    if not id_url:
        return None, None
    parts = id_url.rstrip("/").split("/")
    if len(parts) >= 3 and parts[-3] == "id":
        return parts[-2] or None, parts[-1] or None
    return None, None


@dataclass(frozen=True)
class SalesforceToken:
    """An access token and what Salesforce said about it.

    ``repr()`` and ``str()`` show the fingerprint, never the token.

    :param access_token: the bearer token (a secret)
    :param instance_url: base URL for REST calls
    :param id_url: the identity URL (``.../id/<org>/<user>``)
    :param issued_at: epoch seconds when issued (Salesforce's ``issued_at``, or when received)
    :param expires_at: epoch seconds after which the token is assumed dead
    :param scope: space-separated scopes
    :param refresh_token: a new refresh token, when Salesforce rotated it (a secret)
    :param expires_at_source: ``introspection`` or ``session_timeout`` — how ``expires_at`` was found
    :param generation: how many refreshes the stores have seen for this connection when this token
        was written (a store never replaces an entry of a higher generation, and a process refuses
        one older than it has seen: a replayed or stale copy)
    :param rotated: Salesforce has rotated this connection's refresh token at least once, so the
        configured one is retired and must never be sent again
    :param marker: not a token but a fact a store records: ``in_doubt`` (a refresh with
        ``refresh_token`` may have reached Salesforce and its answer was lost), ``missing`` (the
        entry is gone but the store had one of ``generation``), ``rolled_back`` (the entry is
        older than one the store or this process has seen)
    """

    access_token: str = field(repr=False)
    instance_url: str
    id_url: str | None
    issued_at: float
    expires_at: float
    scope: str | None = None
    token_type: str = "Bearer"
    refresh_token: str | None = field(default=None, repr=False)
    expires_at_source: str = "session_timeout"
    generation: int = field(default=0, repr=False)
    rotated: bool = field(default=False, repr=False)
    marker: str | None = field(default=None, repr=False)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.access_token)

    @property
    def org_id(self) -> str | None:
        return _id_parts(self.id_url)[0]

    @property
    def user_id(self) -> str | None:
        return _id_parts(self.id_url)[1]

    def seconds_left(self, now: float | None = None) -> float:
        return self.expires_at - (time.time() if now is None else now)

    def is_fresh(self, leeway: float, now: float | None = None) -> bool:
        """True while more than ``leeway`` seconds are left."""
        return self.seconds_left(now) > leeway

    def with_expiry(self, expires_at: float, source: str) -> SalesforceToken:
        return replace(self, expires_at=expires_at, expires_at_source=source)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for the cache (contains the secret: only for encrypted storage)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SalesforceToken:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def describe(self) -> dict[str, Any]:
        """Non-secret facts about the token, fit for logs and XCom."""
        return {
            "fingerprint": self.fingerprint,
            "instance_url": self.instance_url,
            "org_id": self.org_id,
            "user_id": self.user_id,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "expires_at_source": self.expires_at_source,
            "scope": self.scope,
        }

    def __str__(self) -> str:
        return f"SalesforceToken({self.fingerprint}, instance_url={self.instance_url!r})"

    def __repr__(self) -> str:
        return (
            f"SalesforceToken(fingerprint={self.fingerprint!r}, instance_url={self.instance_url!r}, "
            f"expires_at={self.expires_at!r}, scope={self.scope!r})"
        )


@dataclass(frozen=True)
class IntrospectionResult:
    """What ``/services/oauth2/introspect`` said about a token (no token inside)."""

    active: bool
    scope: str | None = None
    client_id: str | None = None
    username: str | None = None
    sub: str | None = None
    token_type: str | None = None
    exp: int | None = None
    iat: int | None = None
    nbf: int | None = None

    @property
    def user_id(self) -> str | None:
        return _id_parts(self.sub)[1]

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
