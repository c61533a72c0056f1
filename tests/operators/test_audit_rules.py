"""One line per audit rule: the record that breaks it, and the record next to it that does not."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sf_oauth_provider.operators.audit import rules
from sf_oauth_provider.operators.audit.findings import FINDING_KINDS, TokenRecord

NOW = datetime(2026, 11, 25, 6, 0, tzinfo=timezone.utc)
P = rules.Policy(now=NOW, stale_after=timedelta(days=90))


def days(n: float) -> datetime:
    return NOW - timedelta(days=n)


def inv(**kw) -> TokenRecord:
    base = dict(source="inventory", fingerprint="sha256:0123456789ab", app="Tableau", user="u@x", user_id="005x",
                user_active=True, created=days(10), last_used=days(1), use_count=3)
    return TokenRecord(**{**base, **kw})


def kind(rule, record, policy=P):
    finding = rule(record, policy)
    return None if finding is None else (finding.kind, finding.severity)


def test_every_kind_has_a_rule():
    names = {r.__name__ for r in rules.RECORD_RULES} | {r.__name__ for r in rules.GROUP_RULES}
    assert names == set(FINDING_KINDS)


def test_stale():
    assert (kind(rules.stale, inv(last_used=days(91))), kind(rules.stale, inv(last_used=days(89)))) == (("stale", "medium"), None)


def test_stale_counts_from_creation_when_never_used():
    assert kind(rules.stale, inv(last_used=None, created=days(100))) == ("stale", "medium")


def test_never_used():
    assert (kind(rules.never_used, inv(last_used=None, use_count=0)), kind(rules.never_used, inv())) == (("never_used", "low"), None)


def test_inactive_user():
    assert (kind(rules.inactive_user, inv(user_active=False)), kind(rules.inactive_user, inv())) == (("inactive_user", "high"), None)


def test_inactive_token():
    assert (kind(rules.inactive_token, inv(active=False)), kind(rules.inactive_token, inv(active=False, user_active=False))) == (("inactive_token", "info"), None)


def test_broad_scope():
    assert (kind(rules.broad_scope, inv(active=True, scope="full refresh_token")), kind(rules.broad_scope, inv(active=True, scope="api"))) == (("broad_scope", "high"), None)


def test_scope_not_allowed():
    policy = rules.Policy(now=NOW, allowed_scopes=frozenset({"api"}))
    assert (kind(rules.scope_not_allowed, inv(active=True, scope="api web"), policy), kind(rules.scope_not_allowed, inv(active=True, scope="api"), policy)) == (("scope_not_allowed", "medium"), None)


def test_app_not_allowed():
    policy = rules.Policy(now=NOW, allowed_apps=frozenset({"Tableau"}))
    assert (kind(rules.app_not_allowed, inv(app="Evil"), policy), kind(rules.app_not_allowed, inv(), policy)) == (("app_not_allowed", "high"), None)


def test_expiring():
    policy = rules.Policy(now=NOW, expiring_within=timedelta(hours=3))
    assert (kind(rules.expiring, inv(active=True, expires_at=NOW + timedelta(hours=2)), policy), kind(rules.expiring, inv(active=True, expires_at=NOW + timedelta(hours=4)), policy)) == (("expiring", "low"), None)


def test_weak_key():
    assert (kind(rules.weak_key, TokenRecord("connection", conn_id="c", key_bits=1024)), kind(rules.weak_key, TokenRecord("connection", conn_id="c", key_bits=2048))) == (("weak_key", "high"), None)


def test_auth_failed():
    assert (kind(rules.auth_failed, TokenRecord("connection", conn_id="c", auth_error="invalid_grant")), kind(rules.auth_failed, TokenRecord("connection", conn_id="c"))) == (("auth_failed", "critical"), None)


def test_certificate_expiry_severity_rises_as_it_nears():
    def cert(d: float) -> TokenRecord:
        return TokenRecord("connection", conn_id="c", certificate={"not_after": (NOW + timedelta(days=d)).isoformat(), "matches_key": True})

    assert [kind(rules.certificate_expiry, cert(d)) for d in (90, 45, 20, 5, -1)] == [
        None, ("certificate_expiry", "low"), ("certificate_expiry", "medium"), ("certificate_expiry", "high"),
        ("certificate_expiry", "critical"),
    ]


def test_certificate_mismatch():
    assert (kind(rules.certificate_mismatch, TokenRecord("connection", conn_id="c", certificate={"matches_key": False})), kind(rules.certificate_mismatch, TokenRecord("connection", conn_id="c", certificate={"matches_key": True}))) == (("certificate_mismatch", "critical"), None)


def test_approval_limit():
    five = [inv(fingerprint=f"sha256:00000000000{i}", created=days(10 + i)) for i in range(5)]
    assert ([(f.kind, f.extra["oldest"]) for f in rules.approval_limit(five, P)], rules.approval_limit(five[:4], P)) == ([("approval_limit", "sha256:000000000004")], [])


def test_a_row_says_each_fact_once():
    """A stale, never-used token of an inactive user is one row; its detail said "never used;
    created …" twice (the stale and never_used reasons each said it)."""
    from sf_oauth_provider.operators.audit.report import combine

    (row,) = combine(rules.evaluate([inv(last_used=None, use_count=0, created=days(200), user_active=False)], P))
    assert row["kinds"] == ["inactive_user", "stale", "never_used"]
    assert row["detail"].count("never used") == 1 and row["detail"].count("created") == 1, row["detail"]
    assert "200 days" in row["detail"] and "inactive" in row["detail"]
    assert [r["detail"] for r in row["reasons"]][2] == f"never used; created {days(200):%Y-%m-%dT%H:%M:%SZ}"


def test_a_used_stale_token_keeps_both_facts():
    from sf_oauth_provider.operators.audit.report import combine

    (row,) = combine(rules.evaluate([inv(last_used=days(120), use_count=0)], P))
    assert row["kinds"] == ["stale", "never_used"]  # UseCount 0 with a LastUsedDate: both facts stay
    assert "last used" in row["detail"] and "never used" in row["detail"]
