"""Deterministic demo org: apps, users, OauthToken rows, accounts and opportunities.

Everything except RSA key material and the absolute dates is a pure function of the seed
integer (dates are relative to the org clock at seed time). RSA keys are generated once per
seed per process and cached, so :meth:`Org.reset` is fast.

Seeded refresh tokens (OauthToken ``DeleteToken`` values) are derived from the seed so that a
restarted CLI emulator prints the same connection file; tokens minted at run time use
:mod:`secrets`.
"""

from __future__ import annotations

import base64
import datetime as dt
import random
import string
from typing import Any

from .state import ConnectedApp, Org, Settings, User, sf_id18

__all__ = ["ORG_ID15", "STALE_DAYS", "demo_key_material", "populate", "seed_demo_org"]

ORG_ID15 = "00D5g00000DEMOA"
STALE_DAYS = 90
_ALNUM = string.ascii_letters + string.digits
_DAY = 86400.0

_KEY_CACHE: dict[int, tuple[str, str, str]] = {}
_SERVER_KEY: dict[str, Any] = {}


def demo_key_material(seed: int) -> tuple[str, str, str]:
    """``(private_key_pkcs8_pem, certificate_pem, public_key_pem)`` for the JWT demo app,
    generated once per seed per process."""
    cached = _KEY_CACHE.get(seed)
    if cached is not None:
        return cached
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "airflow-integration-demo"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sf-oauth-provider emulator"),
        ]
    )
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1000 + seed % 1_000_000)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    priv_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    pub_pem = (
        cert.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    _KEY_CACHE[seed] = (priv_pem, cert_pem, pub_pem)
    return _KEY_CACHE[seed]


def _b64u_int(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _server_key() -> tuple[str, dict[str, Any]]:
    """The emulator's own signing key (for the JWKS), one per process."""
    if not _SERVER_KEY:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        nums = key.public_key().public_numbers()
        _SERVER_KEY["pem"] = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        _SERVER_KEY["jwk"] = {
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": "emulator-246",
            "n": _b64u_int(nums.n),
            "e": _b64u_int(nums.e),
        }
    return _SERVER_KEY["pem"], dict(_SERVER_KEY["jwk"])


class _Ids:
    """Deterministic Salesforce-style ids."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.seen: set[str] = set()

    def make(self, prefix: str) -> str:
        while True:
            body = prefix + "5g00000" + "".join(self.rng.choice(_ALNUM) for _ in range(5))
            if body not in self.seen:
                self.seen.add(body)
                return sf_id18(body)


def _rand(rng: random.Random, n: int, alphabet: str = _ALNUM) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _consumer_key(rng: random.Random) -> str:
    return "3MVG9" + _rand(rng, 80, _ALNUM + "._")


def _consumer_secret(rng: random.Random) -> str:
    return _rand(rng, 64, "0123456789ABCDEF")


_MORE_USERS = [
    ("Dana", "Lee", True),
    ("Priya", "Nair", True),
    ("Marco", "Rossi", True),
    ("Aiko", "Tanaka", True),
    ("Sam", "Okafor", True),
    ("Lena", "Fischer", True),
    ("Tomas", "Novak", False),
    ("Grace", "Kim", True),
]

_ACCOUNTS = [
    ("Acme Corporation", "Manufacturing"),
    ("Globex", "Technology"),
    ("Initech", "Technology"),
    ("Umbrella Health", "Healthcare"),
    ("Stark Industries", "Energy"),
    ("Wayne Enterprises", "Finance"),
    ("Hooli", "Technology"),
    ("Vandelay Imports", "Retail"),
    ("Soylent Foods", "Food & Beverage"),
    ("Tyrell Systems", "Electronics"),
]

_STAGES_OPEN = ["Prospecting", "Qualification", "Needs Analysis", "Proposal/Price Quote", "Negotiation/Review"]


def seed_demo_org(seed: int = 42, base_url: str | None = None, settings: Settings | None = None) -> Org:
    """Build the demo org for ``seed`` (``base_url`` is informational only; the server derives
    URLs from each request)."""
    org = Org(seed=seed, settings=settings)
    org.base_url = base_url
    org._seeder = populate
    org.reset()
    return org


def populate(org: Org) -> None:
    """Fill an empty org with the deterministic demo data (called by :meth:`Org.reset`)."""
    rng = random.Random(org.seed)
    ids = _Ids(rng)
    now = org.clock.now()
    org.org_id = sf_id18(ORG_ID15)
    org.server_key_pem, org.server_jwk = _server_key()
    priv_pem, cert_pem, pub_pem = demo_key_material(org.seed)

    # profiles
    prof_admin, prof_std, prof_api = ids.make("00e"), ids.make("00e"), ids.make("00e")
    org.profiles = {
        prof_admin: "System Administrator",
        prof_std: "Standard User",
        prof_api: "Minimum Access - API Only Integrations",
    }

    # users
    def add_user(first: str, last: str, username: str, active: bool, profile: str, admin: bool = False) -> User:
        u = User(
            id=ids.make("005"),
            username=username,
            first_name=first,
            last_name=last,
            email=username.replace("@demo.example", "@example.com"),
            is_active=active,
            profile_id=profile,
            customize_application=admin,
        )
        org.users[u.id] = u
        return u

    integration = add_user("Integration", "User", "integration@demo.example", True, prof_admin, admin=True)
    ccuser = add_user("Client Credentials", "User", "ccuser@demo.example", True, prof_api)
    analyst = add_user("Alex", "Analyst", "analyst@demo.example", True, prof_std)
    former = add_user("Former", "Employee", "former@demo.example", False, prof_std)
    others: list[User] = []
    for first, last, active in _MORE_USERS:
        others.append(add_user(first, last, f"{first.lower()}.{last.lower()}@demo.example", active, prof_std))

    # connected apps
    def add_app(name: str, **kw: Any) -> ConnectedApp:
        app = ConnectedApp(
            name=name,
            consumer_key=_consumer_key(rng),
            consumer_secret=_consumer_secret(rng),
            app_menu_item_id=ids.make("0Pp"),
            **kw,
        )
        org.apps[app.consumer_key] = app
        return app

    jwt_app = add_app(
        "Airflow Integration",
        scope="api id",
        certificate_pem=cert_pem,
        public_key_pem=pub_pem,
        jwt_enabled=True,
        introspect_all=True,
        approved_user_ids={integration.id},
    )
    cc_app = add_app("Airflow Client Credentials", scope="api", cc_enabled=True, run_as_user_id=ccuser.id)
    broken = add_app("Broken CC App", scope="api", cc_enabled=True, run_as_user_id=None)
    loader = add_app("Data Loader", scope="api refresh_token", refresh_enabled=True, rotate_refresh_tokens=True)
    admin_only = add_app(
        "Admin Approved Only",
        scope="api id",
        certificate_pem=cert_pem,
        public_key_pem=pub_pem,
        jwt_enabled=True,
        admin_approved_only=True,
    )
    mobile = add_app("Salesforce Mobile", scope="api refresh_token", refresh_enabled=True)
    tableau = add_app("Tableau", scope="api refresh_token", refresh_enabled=True)
    legacy = add_app("Legacy ETL", scope="full refresh_token", refresh_enabled=True)

    # OauthToken rows (approvals)
    def rt() -> str:
        return "5Aep861" + _rand(rng, 80)

    facts: dict[str, list[Any]] = {
        "stale_delete_tokens": [],
        "never_used_delete_tokens": [],
        "inactive_user_delete_tokens": [],
        "full_scope_delete_tokens": [],
        "all_delete_tokens": [],
    }

    def row(app: ConnectedApp, user: User, scope: str, created_days: float, used_days: float | None, uses: int) -> str:
        created = now - created_days * _DAY
        last_used = None if used_days is None else now - used_days * _DAY
        appr = org.create_approval(
            app, user, scope, created=created, last_used=last_used, use_count=uses, token=rt(), enforce_limit=False
        )
        if last_used is not None:  # masked, unusable trace of the last access token
            appr.last_access_mask = org.org_id[:15] + "****"
        _record_facts(facts, appr.refresh_token, user, scope, created_days, used_days)
        return appr.refresh_token

    demo_refresh = row(loader, integration, "api refresh_token", 20, 1, 42)
    # analyst: exactly five approvals for Salesforce Mobile
    for i, (c, u) in enumerate([(400, 200), (300, 5), (120, None), (60, 2), (10, 1)]):
        row(mobile, analyst, "api refresh_token", c, u, 0 if u is None else 3 + i)
    # guaranteed categories
    row(legacy, former, "full refresh_token", 700, 365, 120)
    row(tableau, integration, "full refresh_token", 30, None, 0)
    row(legacy, ccuser, "full refresh_token", 500, 150, 7)
    row(tableau, others[6], "api refresh_token", 200, None, 0)  # inactive user, never used

    counts: dict[tuple[str, str], int] = {}
    for appr in org.approvals.values():
        key = (appr.app_key, appr.user_id)
        counts[key] = counts.get(key, 0) + 1
    pool_users = [integration, ccuser, former] + others
    pool_apps = [mobile, tableau, legacy, loader]
    while len(facts["all_delete_tokens"]) < 50:
        user = rng.choice(pool_users)
        app = rng.choice(pool_apps)
        if counts.get((app.consumer_key, user.id), 0) >= 4:
            continue
        counts[(app.consumer_key, user.id)] = counts.get((app.consumer_key, user.id), 0) + 1
        scope = "full refresh_token" if rng.random() < 0.2 else rng.choice(
            ["api refresh_token", "api id web refresh_token"]
        )
        created, used = _random_age(rng)
        row(app, user, scope, created, used, 0 if used is None else rng.randint(1, 500))

    # accounts & opportunities
    for name, industry in _ACCOUNTS:
        org.accounts.append({"Id": ids.make("001"), "Name": name, "Industry": industry})
    closed_won_yesterday = _add_opportunities(org, rng, ids, now)
    # a generator of its own, so the audit dates leave every other seeded value as it was
    dates_rng = random.Random(f"{org.seed}-audit-dates")
    for rec in org.accounts + org.opportunities:
        rec.update(audit_dates(dates_rng, now))
    # a deal closed yesterday was last changed yesterday (closing it changed it): the nightly
    # example's incremental extract of yesterday's changes finds them
    midnight = dt.datetime.combine(dt.datetime.fromtimestamp(now, dt.timezone.utc).date(), dt.time(),
                                   dt.timezone.utc).timestamp()
    for rec in org.opportunities:
        if rec["Id"] in closed_won_yesterday:
            stamp = dt.datetime.fromtimestamp(round(midnight - dates_rng.uniform(60, 86340), 3), dt.timezone.utc)
            rec.update(LastModifiedDate=stamp, SystemModstamp=stamp, CreatedDate=min(rec["CreatedDate"], stamp))

    org.demo.org_id = org.org_id
    org.demo.jwt_app_name = jwt_app.name
    org.demo.jwt_consumer_key = jwt_app.consumer_key
    org.demo.jwt_consumer_secret = jwt_app.consumer_secret
    org.demo.jwt_private_key_pem = priv_pem
    org.demo.jwt_certificate_pem = cert_pem
    org.demo.jwt_username = integration.username
    org.demo.cc_consumer_key = cc_app.consumer_key
    org.demo.cc_consumer_secret = cc_app.consumer_secret
    org.demo.cc_username = ccuser.username
    org.demo.refresh_consumer_key = loader.consumer_key
    org.demo.refresh_consumer_secret = loader.consumer_secret
    org.demo.refresh_token = demo_refresh
    org.demo.refresh_username = integration.username
    org.demo.admin_only_consumer_key = admin_only.consumer_key
    org.demo.admin_only_consumer_secret = admin_only.consumer_secret
    org.demo.broken_cc_consumer_key = broken.consumer_key
    org.demo.broken_cc_consumer_secret = broken.consumer_secret
    org.demo.analyst_username = analyst.username
    org.demo.inactive_username = former.username

    org.seed_facts = {
        **facts,
        "stale_days": STALE_DAYS,
        "oauth_token_count": len(facts["all_delete_tokens"]),
        "inactive_usernames": sorted(u.username for u in org.users.values() if not u.is_active),
        "active_usernames": sorted(u.username for u in org.users.values() if u.is_active),
        "approval_limit": [{"username": analyst.username, "app": mobile.name, "count": 5}],
        "demo_refresh_token": demo_refresh,
        "closed_won_yesterday_ids": closed_won_yesterday,
        "account_count": len(org.accounts),
        "opportunity_count": len(org.opportunities),
        "user_count": len(org.users),
    }


def _record_facts(
    facts: dict[str, list[Any]], tok: str, user: User, scope: str, created_days: float, used_days: float | None
) -> None:
    """File the DeleteToken ``tok`` under every audit category it belongs to (what tests expect)."""
    facts["all_delete_tokens"].append(tok)
    idle_days = used_days if used_days is not None else created_days
    if idle_days > STALE_DAYS:
        facts["stale_delete_tokens"].append(tok)
    if used_days is None:
        facts["never_used_delete_tokens"].append(tok)
    if not user.is_active:
        facts["inactive_user_delete_tokens"].append(tok)
    if "full" in scope.split():
        facts["full_scope_delete_tokens"].append(tok)


def _random_age(rng: random.Random) -> tuple[float, float | None]:
    """``(created, last used)`` days ago of a filler approval: a fifth never used, the rest
    recently or long ago (draws from ``rng`` in a fixed order, so the seed decides the data)."""
    created = float(rng.randint(5, 720))
    kind = rng.random()
    if kind < 0.2:
        used: float | None = None
    elif kind < 0.6:
        used = float(rng.randint(0, min(60, int(created))))
    else:
        used = float(rng.randint(100, max(100, int(created))))
        if used > created:
            created = used + rng.randint(1, 60)
    # keep away from the 90-day boundary so "stale" is unambiguous
    if used is None and 80 <= created <= 100:
        created += 30
    return created, used


def audit_dates(rng: random.Random, now: float) -> dict[str, dt.datetime]:
    """``CreatedDate``, ``LastModifiedDate`` and ``SystemModstamp`` of one record, spread over
    the year before ``now`` (whole milliseconds, as Salesforce stores them)."""

    def at(epoch: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(round(epoch, 3), dt.timezone.utc)

    created = now - rng.uniform(1 * 3600, 365 * 86400)
    modified = created + rng.random() * (now - 600 - created) if rng.random() < 0.8 else created
    stamp = min(now, modified + rng.choice((0.0, 0.0, rng.uniform(1, 60))))
    return {"CreatedDate": at(created), "LastModifiedDate": at(modified), "SystemModstamp": at(stamp)}


def _add_opportunities(org: Org, rng: random.Random, ids: _Ids, now: float) -> list[str]:
    """Add 30 opportunities over the seeded accounts; return the ids of those closed won yesterday."""
    today = dt.datetime.fromtimestamp(now, dt.timezone.utc).date()
    yesterday = today - dt.timedelta(days=1)
    closed_won_yesterday: list[str] = []
    for i in range(30):
        acc = org.accounts[i % len(org.accounts)]
        if i < 6:
            stage, close = "Closed Won", yesterday
        elif i < 10:
            stage, close = "Closed Won", today - dt.timedelta(days=rng.randint(5, 200))
        elif i < 14:
            stage, close = "Closed Lost", today - dt.timedelta(days=rng.randint(1, 120))
        else:
            stage, close = rng.choice(_STAGES_OPEN), today + dt.timedelta(days=rng.randint(1, 180))
        opp = {
            "Id": ids.make("006"),
            "Name": f"{acc['Name']} - Deal {i + 1:02d}",
            "AccountId": acc["Id"],
            "Amount": float(rng.randint(5, 500) * 1000),
            "StageName": stage,
            "CloseDate": close,
            "IsWon": stage == "Closed Won",
            "IsClosed": stage in ("Closed Won", "Closed Lost"),
        }
        org.opportunities.append(opp)
        if stage == "Closed Won" and close == yesterday:
            closed_won_yesterday.append(opp["Id"])
    return closed_won_yesterday
