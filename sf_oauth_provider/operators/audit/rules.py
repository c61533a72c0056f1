"""Audit rules as data: one function per finding kind.

A *record rule* looks at one :class:`~.findings.TokenRecord` and returns a
:class:`~.findings.Finding` or ``None``; a *group rule* looks at all records at once (the approval
limit is per user and app). Adding a rule: write the function, add it to :data:`RECORD_RULES` or
:data:`GROUP_RULES`, describe its kind in :data:`~.findings.FINDING_KINDS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Optional

from sf_oauth_provider.operators.audit.findings import Finding, TokenRecord, iso

__all__ = [
    "GROUP_RULES",
    "MAX_APPROVALS",
    "MIN_KEY_BITS",
    "RECORD_RULES",
    "Policy",
    "app_not_allowed",
    "approval_limit",
    "auth_failed",
    "broad_scope",
    "certificate_expiry",
    "certificate_mismatch",
    "evaluate",
    "expiring",
    "inactive_token",
    "inactive_user",
    "never_used",
    "scope_not_allowed",
    "stale",
    "weak_key",
]

#: Salesforce keeps at most this many approvals (refresh tokens) per user and app.
MAX_APPROVALS = 5
MIN_KEY_BITS = 2048


@dataclass(frozen=True)
class Policy:
    """What the rules compare against.

    :param now: the audit's time
    :param stale_after: idle time after which an OauthToken is stale
    :param allowed_scopes: scopes a token may have; ``None``: only ``full`` is flagged
    :param allowed_apps: app names or consumer keys tokens may belong to; ``None``: any
    :param expiring_within: flag tokens expiring within this; ``None``: no such rule
    :param certificate_warn_days: flag a ``jwt_certificate`` expiring within this many days
    """

    now: datetime
    stale_after: timedelta = timedelta(days=90)
    allowed_scopes: Optional[frozenset[str]] = None
    allowed_apps: Optional[frozenset[str]] = None
    expiring_within: Optional[timedelta] = None
    certificate_warn_days: float = 60


RecordRule = Callable[[TokenRecord, Policy], Optional[Finding]]
GroupRule = Callable[[list[TokenRecord], Policy], list[Finding]]


def _label(record: TokenRecord) -> str:
    return f"connection {record.conn_id!r}: " if record.source == "connection" else ""


def _days(delta: timedelta) -> int:
    return int(delta.total_seconds() // 86400)


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 0:
        return "the past"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds // 86400} days"


# ---- record rules ----------------------------------------------------------------------------------
def auth_failed(record: TokenRecord, policy: Policy) -> Finding | None:
    """A checked connection cannot authenticate (a permanent error)."""
    if not record.auth_error:
        return None
    return Finding.about(record, "auth_failed", record.auth_error)


def weak_key(record: TokenRecord, policy: Policy) -> Finding | None:
    """A connection's RSA key is shorter than :data:`MIN_KEY_BITS`."""
    if record.key_bits is None or record.key_bits >= MIN_KEY_BITS:
        return None
    return Finding.about(
        record, "weak_key", f"{_label(record)}RSA key of {record.key_bits} bits; use {MIN_KEY_BITS} bits or more"
    )


def certificate_expiry(record: TokenRecord, policy: Policy) -> Finding | None:
    """The connection's ``jwt_certificate`` expires within ``certificate_warn_days`` (or has)."""
    cert = record.certificate
    if not cert or cert.get("not_after") is None:
        return None
    not_after = datetime.fromisoformat(str(cert["not_after"]).replace("Z", "+00:00"))
    left = not_after - policy.now
    days = left.total_seconds() / 86400
    if days > policy.certificate_warn_days:
        return None
    if days <= 0:
        severity = "critical"
        detail = (f"{_label(record)}certificate expired {iso(not_after)} ({_days(-left)} days ago): JWT logins fail; "
                  "upload a new certificate to the connected app and put it and its key in the connection")
    else:
        severity = "high" if days <= 7 else "medium" if days <= 30 else "low"
        detail = (f"{_label(record)}certificate expires {iso(not_after)} (in {_duration(left)}): upload a new one to "
                  "the connected app before then")
    return Finding.about(record, "certificate_expiry", detail, severity=severity)


def certificate_mismatch(record: TokenRecord, policy: Policy) -> Finding | None:
    """The connection's ``jwt_certificate`` is not the certificate of its private key."""
    cert = record.certificate
    if not cert or cert.get("matches_key") is not False:
        return None
    return Finding.about(
        record, "certificate_mismatch",
        f"{_label(record)}jwt_certificate ({cert.get('subject')}) does not match the private key: the connected app "
        "verifies assertions with the certificate, so logins with this key fail",
    )


def stale(record: TokenRecord, policy: Policy) -> Finding | None:
    """An OauthToken idle (not used, or never used since creation) for more than ``stale_after``."""
    since = record.idle_since()
    if record.source != "inventory" or since is None or policy.now - since <= policy.stale_after:
        return None
    if record.last_used is None:  # worded as never_used words it, so a row that has both says it once
        return Finding.about(record, "stale", f"never used; created {iso(since)}, {_days(policy.now - since)} days ago")
    return Finding.about(record, "stale", f"last used {_days(policy.now - since)} days ago ({iso(since)})")


def never_used(record: TokenRecord, policy: Policy) -> Finding | None:
    """An OauthToken that was never used."""
    if record.source != "inventory" or (record.last_used is not None and record.use_count != 0):
        return None
    return Finding.about(record, "never_used", f"never used; created {iso(record.created)}")


def inactive_user(record: TokenRecord, policy: Policy) -> Finding | None:
    """An OauthToken of a deactivated user (offboarding left an approval behind)."""
    if record.source != "inventory" or record.user_active is not False:
        return None
    return Finding.about(record, "inactive_user", f"user {record.user!r} is inactive")


def inactive_token(record: TokenRecord, policy: Policy) -> Finding | None:
    """Salesforce says the token is not active (an inactive user's rows are ``inactive_user``)."""
    if record.active is not False or (record.source == "inventory" and not record.user_active):
        return None
    return Finding.about(record, "inactive_token", f"{_label(record)}Salesforce says the token is not active")


def _scopes(record: TokenRecord) -> set[str]:
    return set((record.scope or "").split())


def broad_scope(record: TokenRecord, policy: Policy) -> Finding | None:
    """An active token with the ``full`` scope, when no ``allowed_scopes`` policy is set."""
    if not record.active or policy.allowed_scopes is not None or "full" not in _scopes(record):
        return None
    return Finding.about(record, "broad_scope", f"{_label(record)}scope {record.scope!r} includes 'full'")


def scope_not_allowed(record: TokenRecord, policy: Policy) -> Finding | None:
    """An active token with a scope outside ``allowed_scopes``."""
    if not record.active or policy.allowed_scopes is None:
        return None
    extra = _scopes(record) - policy.allowed_scopes
    if not extra:
        return None
    return Finding.about(
        record, "scope_not_allowed", f"{_label(record)}scopes {' '.join(sorted(extra))!r} are not in allowed_scopes"
    )


def expiring(record: TokenRecord, policy: Policy) -> Finding | None:
    """An active token that expires within ``expiring_within``."""
    if not record.active or policy.expiring_within is None or record.expires_at is None:
        return None
    left = record.expires_at - policy.now
    if left > policy.expiring_within:
        return None
    return Finding.about(record, "expiring", f"{_label(record)}expires {iso(record.expires_at)} (in {_duration(left)})")


def app_not_allowed(record: TokenRecord, policy: Policy) -> Finding | None:
    """A token of a connected app that is not in ``allowed_apps`` (by name or consumer key)."""
    if policy.allowed_apps is None or not (record.app or record.client_id):
        return None
    if record.app in policy.allowed_apps or record.client_id in policy.allowed_apps:
        return None
    return Finding.about(
        record, "app_not_allowed", f"{_label(record)}app {record.app or record.client_id!r} is not in allowed_apps"
    )


# ---- group rules -----------------------------------------------------------------------------------
def approval_limit(records: list[TokenRecord], policy: Policy) -> list[Finding]:
    """Users with :data:`MAX_APPROVALS` or more approvals for one app: the next approval silently
    revokes the oldest (one finding per user and app, about that oldest token)."""
    groups: dict[tuple[str | None, str | None], list[TokenRecord]] = {}
    for record in records:
        if record.source == "inventory":
            groups.setdefault((record.app, record.user_id or record.user), []).append(record)
    out: list[Finding] = []
    for (app, user_key), group in groups.items():
        if len(group) < MAX_APPROVALS:
            continue
        oldest = min(group, key=lambda r: r.created or datetime.max.replace(tzinfo=timezone.utc))
        out.append(Finding(
            kind="approval_limit",
            severity="low",
            subject=f"approval_limit:{app}:{user_key}",
            detail=(f"{len(group)} approvals for this app (limit {MAX_APPROVALS}); the next approval revokes the "
                    f"oldest, {oldest.fingerprint} (created {iso(oldest.created)})"),
            fingerprint=None,
            app=app,
            user=group[0].user,
            source="inventory",
            extra={"oldest": oldest.fingerprint},
        ))
    return out


#: Rules applied to every record, in report order.
RECORD_RULES: tuple[RecordRule, ...] = (
    auth_failed, certificate_mismatch, certificate_expiry, weak_key, stale, never_used, inactive_user,
    inactive_token, broad_scope, scope_not_allowed, expiring, app_not_allowed,
)
#: Rules applied to all records at once.
GROUP_RULES: tuple[GroupRule, ...] = (approval_limit,)


def evaluate(
    records: Iterable[TokenRecord], policy: Policy,
    record_rules: Iterable[RecordRule] = RECORD_RULES, group_rules: Iterable[GroupRule] = GROUP_RULES,
) -> list[Finding]:
    """Every finding: each record rule on each record, then each group rule.

    :param records: what the audit learned
    :param policy: the thresholds and allow-lists
    :param record_rules: per-record rules (default :data:`RECORD_RULES`)
    :param group_rules: rules over all records (default :data:`GROUP_RULES`)
    """
    records = list(records)
    rules = tuple(record_rules)
    findings = [f for record in records for rule in rules if (f := rule(record, policy)) is not None]
    for group_rule in group_rules:
        findings += group_rule(records, policy)
    return findings
