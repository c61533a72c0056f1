"""The audit report as data (``audit.json``, schema in the README, "Audit report schema"), the
comparison with the previous report at the same location, and the XCom value.

Findings are combined per subject: a token that is stale, never used and of an inactive user is
*one* finding row (``kinds`` lists all three, ``kind``/``severity`` are the worst of them, each
``reasons`` entry keeps its own severity and detail), so a reviewer counts tokens, not rule hits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from sf_oauth_provider.operators.audit.findings import (
    FINDING_KINDS,
    SEVERITIES,
    Finding,
    TokenRecord,
    iso,
    severity_rank,
)
from sf_oauth_provider.operators.audit.rules import Policy

__all__ = ["SCHEMA_VERSION", "AuditMeta", "build_report", "combine", "xcom_value"]

#: Version 1 was the unversioned report of releases before 0.2 (one finding per rule hit).
SCHEMA_VERSION = 2
_KIND_ORDER = {kind: i for i, kind in enumerate(FINDING_KINDS)}


@dataclass
class AuditMeta:
    """Facts about the run that are not findings.

    :param connection: the connection that read the inventory and introspected
    :param org_id: the org's 18-character id (from the connection's token)
    :param instance_url: the org's instance URL
    :param introspections: how many introspections were attempted
    :param failed: checks that failed (redacted messages)
    """

    connection: str
    org_id: str | None = None
    instance_url: str | None = None
    introspections: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)


def combine(findings: Iterable[Finding]) -> list[dict[str, Any]]:
    """One row per subject, worst first (severity, then kind, app, user, fingerprint).

    :param findings: every rule hit
    """
    rows: dict[str, dict[str, Any]] = {}
    for f in findings:
        row = rows.get(f.subject)
        if row is None:
            row = rows[f.subject] = {
                "id": f.subject, "fingerprint": f.fingerprint, "kind": f.kind, "kinds": [], "severity": f.severity,
                "app": f.app, "user": f.user, "source": f.source, "conn_id": f.conn_id, "detail": "",
                "reasons": [], "revocable": f.revocable, "new": False, "new_kinds": [],
            }
        row["reasons"].append({"kind": f.kind, "severity": f.severity, "detail": f.detail, **f.extra})
    for row in rows.values():
        row["reasons"].sort(key=lambda r: (severity_rank(r["severity"]), _KIND_ORDER.get(r["kind"], 99)))
        row["kinds"] = [r["kind"] for r in row["reasons"]]
        row["kind"], row["severity"] = row["kinds"][0], row["reasons"][0]["severity"]
        row["detail"] = _joined_once(r["detail"] for r in row["reasons"])
    return sorted(rows.values(), key=lambda r: (
        severity_rank(r["severity"]), _KIND_ORDER.get(r["kind"], 99), r["app"] or "", r["user"] or "",
        r["fingerprint"] or r["id"],
    ))


def _joined_once(details: Iterable[str]) -> str:
    """The reasons' details joined with ``; ``, leaving out a detail whose every ``; ``-part an
    earlier one already says (a stale, never-used token: "never used; created …" once)."""
    said: list[str] = []
    for detail in details:
        text = "; ".join(said)
        if not said or not all(part in text for part in detail.split("; ")):
            said.append(detail)
    return "; ".join(said)


def _previous_pairs(previous: dict[str, Any] | None) -> set[tuple[str, str]] | None:
    """(subject, kind) pairs of the previous report; ``None`` when there is none to compare."""
    if not isinstance(previous, dict) or not isinstance(previous.get("findings"), list):
        return None
    pairs: set[tuple[str, str]] = set()
    for f in previous["findings"]:
        if not isinstance(f, dict):
            continue
        subject = f.get("id") or f.get("fingerprint")  # schema 1 had no id
        listed = f.get("kinds")
        kinds = listed if isinstance(listed, list) else [f.get("kind")]
        pairs.update((str(subject), str(k)) for k in kinds if subject and k)
    return pairs


def _apps(records: list[TokenRecord], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per connected app, like Setup's *Connected Apps OAuth Usage*."""
    apps: dict[str, dict[str, Any]] = {}
    users: dict[str, set[str]] = {}
    for r in records:
        if r.source == "connection":
            continue
        name = r.app or r.client_id or "(unknown app)"
        app = apps.setdefault(name, {"app": name, "tokens": 0, "users": 0, "last_used": None, "use_count": 0,
                                     "findings": 0, "worst_severity": None})
        app["tokens"] += 1
        app["use_count"] += r.use_count or 0
        used = iso(r.last_used)
        if used and (app["last_used"] is None or used > app["last_used"]):
            app["last_used"] = used
        if r.user_id or r.user:
            users.setdefault(name, set()).add(str(r.user_id or r.user))
    for row in rows:
        if row["source"] == "connection":
            continue
        name = row["app"] or "(unknown app)"
        app = apps.setdefault(name, {"app": name, "tokens": 0, "users": 0, "last_used": None, "use_count": 0,
                                     "findings": 0, "worst_severity": None})
        app["findings"] += 1
        if app["worst_severity"] is None or severity_rank(row["severity"]) < severity_rank(app["worst_severity"]):
            app["worst_severity"] = row["severity"]
    for name, app in apps.items():
        app["users"] = len(users.get(name, ()))
    return sorted(apps.values(), key=lambda a: (-a["tokens"], a["app"]))


def build_report(
    records: list[TokenRecord], findings: list[Finding], policy: Policy, meta: AuditMeta,
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``audit.json`` document (see the README's "Audit report schema").

    :param records: every token and connection the audit looked at
    :param findings: every rule hit
    :param policy: the policy the rules used
    :param meta: connection, org, introspection counts, failed checks
    :param previous: the report found at the same location before this run (``None``: first run)
    """
    rows = combine(findings)
    before = _previous_pairs(previous)
    for row in rows:
        row["new_kinds"] = [k for k in row["kinds"] if before is None or (row["id"], k) not in before]
        row["new"] = bool(row["new_kinds"])
    current_ids = {row["id"] for row in rows}
    resolved: list[dict[str, Any]] = []
    if before is not None:
        for f in previous.get("findings") or []:  # type: ignore[union-attr]
            subject = isinstance(f, dict) and (f.get("id") or f.get("fingerprint"))
            if subject and subject not in current_ids:
                resolved.append({k: f.get(k) for k in ("id", "fingerprint", "kind", "severity", "app", "user")})

    by_kind = {kind: 0 for kind in FINDING_KINDS}
    for f in findings:
        by_kind[f.kind] = by_kind.get(f.kind, 0) + 1
    by_severity = {s: 0 for s in SEVERITIES}
    for row in rows:
        by_severity[row["severity"]] += 1
    failed_introspections = sum(1 for f in meta.failed if f.get("introspection"))
    tokens = [r for r in records if r.source != "connection"]
    apps = _apps(records, rows)
    summary = {
        "tokens": len(tokens),
        "inventory": sum(1 for r in records if r.source == "inventory"),
        "raw_tokens": sum(1 for r in records if r.source == "token"),
        "connections": sum(1 for r in records if r.source == "connection"),
        "apps": len(apps),
        "users": len({r.user_id or r.user for r in tokens if r.user_id or r.user}),
        "introspected": meta.introspections - failed_introspections,
        "introspection_failed": failed_introspections,
        "failed": len(meta.failed),
        "findings": len(rows),
        "new_findings": sum(1 for row in rows if row["new"]),
        "resolved_findings": len(resolved),
        "by_kind": {k: n for k, n in by_kind.items() if n},
        "by_severity": by_severity,
    }
    stale = sorted({f.fingerprint for f in findings if f.kind == "stale" and f.fingerprint})
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": iso(policy.now),
        "org_id": meta.org_id,
        "instance_url": meta.instance_url,
        "connection": meta.connection,
        "policy": {
            "stale_after_days": policy.stale_after.total_seconds() / 86400,
            "expiring_within_seconds": None if policy.expiring_within is None
            else policy.expiring_within.total_seconds(),
            "allowed_scopes": None if policy.allowed_scopes is None else sorted(policy.allowed_scopes),
            "allowed_apps": None if policy.allowed_apps is None else sorted(policy.allowed_apps),
            "certificate_warn_days": policy.certificate_warn_days,
        },
        "previous": None if previous is None or before is None else {"generated_at": previous.get("generated_at")},
        "summary": summary,
        "apps": apps,
        "findings": rows,
        "resolved": resolved,
        "connections": [
            {"conn_id": r.conn_id, "auth_flow": r.auth_flow, "fingerprint": r.fingerprint, "scope": r.scope,
             "key": f"RSA-{r.key_bits}" if r.key_bits else None, "certificate": r.certificate,
             "error": r.auth_error}
            for r in records if r.source == "connection"
        ],
        "failed": meta.failed,
        "stale_token_fingerprints": stale,
        "tokens": [r.to_dict() for r in tokens],
        "finding_kinds": {k: {"severity": v.severity, "meaning": v.meaning} for k, v in FINDING_KINDS.items()},
    }


def xcom_value(report: dict[str, Any], report_files: dict[str, str]) -> dict[str, Any]:
    """What the task returns / pushes: counts, report locations and fingerprints — no usernames,
    app names or messages (DESIGN §9).

    :param report: from :func:`build_report`
    :param report_files: format → path or URI
    """
    rows = report["findings"]
    by_kind: dict[str, list[str]] = {}
    for row in rows:
        for kind in row["kinds"]:
            if row["fingerprint"]:
                by_kind.setdefault(kind, []).append(row["fingerprint"])
    return {
        "schema_version": report["schema_version"],
        "counts": report["summary"],
        "report_files": report_files,
        "finding_fingerprints": sorted({row["fingerprint"] for row in rows if row["fingerprint"]}),
        "new_finding_fingerprints": sorted({row["fingerprint"] for row in rows if row["fingerprint"] and row["new"]}),
        "fingerprints_by_kind": {k: sorted(set(v)) for k, v in sorted(by_kind.items())},
        "stale_token_fingerprints": report["stale_token_fingerprints"],
    }
