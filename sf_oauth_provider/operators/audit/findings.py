"""What the audit knows: one :class:`TokenRecord` per token or connection, one :class:`Finding`
per broken rule, and the catalogue of finding kinds with their severities."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

__all__ = ["FINDING_KINDS", "SEVERITIES", "Finding", "KindInfo", "TokenRecord", "iso", "severity_rank"]

#: From worst to mildest; findings are sorted in this order.
SEVERITIES: tuple[str, ...] = ("critical", "high", "medium", "low", "info")


def severity_rank(severity: str) -> int:
    """0 for ``critical`` … 4 for ``info`` (unknown severities sort last)."""
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


@dataclass(frozen=True)
class KindInfo:
    """A finding kind: its usual severity and what it means (printed in the reports).

    :param severity: the severity of a finding of this kind (``certificate_expiry`` rises as the
        expiry nears)
    :param meaning: one sentence for the reader
    """

    severity: str
    meaning: str


#: Every finding kind. Severities: *critical* — a login is broken or about to break; *high* — a
#: token that should not exist (offboarded user, over-broad scope, unknown app, weak key);
#: *medium* — hygiene a reviewer acts on (stale, scope outside policy); *low* — worth knowing.
FINDING_KINDS: dict[str, KindInfo] = {
    "auth_failed": KindInfo("critical", "connection in conn_ids that cannot authenticate (permanent error)"),
    "certificate_mismatch": KindInfo("critical", "jwt_certificate does not belong to the connection's private key"),
    "certificate_expiry": KindInfo(
        "medium", "jwt_certificate expires soon (critical once expired, high within 7 days, medium within 30)"
    ),
    "inactive_user": KindInfo("high", "OauthToken of a deactivated user"),
    "broad_scope": KindInfo("high", "token with the 'full' scope (default policy when allowed_scopes is not set)"),
    "app_not_allowed": KindInfo("high", "token of a connected app not in allowed_apps (by name or consumer key)"),
    "weak_key": KindInfo("high", "jwt_bearer connection whose RSA key is shorter than 2048 bits"),
    "stale": KindInfo("medium", "OauthToken not used (or, if never used, created) more than stale_after_days ago"),
    "scope_not_allowed": KindInfo("medium", "token with a scope outside allowed_scopes"),
    "approval_limit": KindInfo(
        "low", "user with 5 or more approvals (refresh tokens) for one app: the next approval revokes the oldest"
    ),
    "never_used": KindInfo("low", "OauthToken with UseCount 0 / no LastUsedDate"),
    "expiring": KindInfo("low", "token that expires within expiring_within"),
    "inactive_token": KindInfo(
        "info", "raw token, connection token, or OauthToken of an active user that Salesforce says is not active"
    ),
}


@dataclass
class TokenRecord:
    """What the audit learned about one token or connection — never the token itself.

    :param source: ``inventory`` (an OauthToken row), ``token`` (a raw token) or ``connection``
    :param fingerprint: the token's public name (``sha256:`` + 12 hex); for an OauthToken row the
        fingerprint of its DeleteToken, which the revocation operator accepts
    :param active: what introspection said; ``None``: not introspected
    :param certificate: for a connection with ``jwt_certificate``: expiry and key match
    """

    source: str
    fingerprint: str | None = None
    app: str | None = None
    user: str | None = None
    user_id: str | None = None
    user_active: bool | None = None
    created: datetime | None = None
    last_used: datetime | None = None
    use_count: int | None = None
    active: bool | None = None
    scope: str | None = None
    expires_at: datetime | None = None
    client_id: str | None = None
    conn_id: str | None = None
    auth_flow: str | None = None
    key_bits: int | None = None
    auth_error: str | None = None
    certificate: dict[str, Any] | None = None

    @property
    def subject(self) -> str:
        """A name for what a finding is about that stays the same from run to run.

        A connection gets a new token on every run, so it is named by its connection id.
        """
        if self.source == "connection":
            return f"connection:{self.conn_id}"
        return self.fingerprint or f"{self.source}:{self.app}:{self.user_id or self.user}"

    def idle_since(self) -> datetime | None:
        """Last use, or creation when never used."""
        return self.last_used or self.created

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (dates as ISO 8601 UTC)."""
        out: dict[str, Any] = {}
        for name in (
            "source", "fingerprint", "app", "user", "user_active", "created", "last_used", "use_count", "active",
            "scope", "expires_at", "client_id", "conn_id", "auth_flow",
        ):
            value = getattr(self, name)
            out[name] = iso(value) if isinstance(value, datetime) else value
        out["key"] = f"RSA-{self.key_bits}" if self.key_bits else None
        out["certificate"] = self.certificate
        return out


@dataclass(frozen=True)
class Finding:
    """One rule one token, connection or group breaks.

    :param kind: a key of :data:`FINDING_KINDS`
    :param severity: one of :data:`SEVERITIES`
    :param subject: what it is about, stable across runs (see :attr:`TokenRecord.subject`)
    :param detail: one sentence for the reader
    :param fingerprint: the token's fingerprint, when the finding is about one token
    :param revocable: the fingerprint names an OauthToken row, so the revocation operator
        (``token_fingerprints``) can revoke it
    """

    kind: str
    severity: str
    subject: str
    detail: str
    fingerprint: str | None = None
    app: str | None = None
    user: str | None = None
    source: str = "inventory"
    conn_id: str | None = None
    revocable: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def about(cls, record: TokenRecord, kind: str, detail: str, severity: str | None = None) -> Finding:
        """A finding of ``kind`` about ``record`` (severity: the kind's unless given)."""
        return cls(
            kind=kind,
            severity=severity or FINDING_KINDS[kind].severity,
            subject=record.subject,
            detail=detail,
            fingerprint=record.fingerprint,
            app=record.app or record.client_id,
            user=record.user,
            source=record.source,
            conn_id=record.conn_id,
            revocable=record.source == "inventory" and bool(record.fingerprint),
        )


def iso(value: datetime | None) -> str | None:
    """``2026-11-25T06:00:00Z`` (UTC), or ``None``."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
