"""In-memory state of an emulated Salesforce org.

The :class:`Org` holds connected apps, users, data records, issued access tokens, approvals
(refresh tokens, which are also the rows of the ``OauthToken`` object), a settable clock,
request counters, fault plans and settings. Every public method takes the org lock, because the
server thread and the test thread touch the same object.

Token semantics (mirroring Salesforce):

* an access token lives for ``settings.session_timeout`` seconds after its *last use*; a
  successful use on userinfo / identity / the data API extends it;
* a refresh token ("approval") lives until revoked (or ``ConnectedApp.refresh_token_ttl``);
  revoking it kills every access token minted from it;
* at most :data:`MAX_APPROVALS_PER_APP` approvals per user per app, a new one revokes the oldest.

This module never imports ``airflow``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import random
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from .bulk_query import BulkQueryStore
from .model import (
    ENDPOINTS,
    FAULT_KINDS,
    GRANTS,
    AccessTokenRecord,
    Approval,
    ConnectedApp,
    DemoCredentials,
    FaultPlan,
    User,
    normalize_fault,
)
from .soql_rows import ResultIndex
from .synthetic import SyntheticObjects

__all__ = [
    "ACCESS_TOKEN_PREFIX_SEP",
    "ENDPOINTS",
    "FAULT_KINDS",
    "GRANTS",
    "MAX_APPROVALS_PER_APP",
    "AccessTokenRecord",
    "Approval",
    "Clock",
    "ConnectedApp",
    "DemoCredentials",
    "FaultPlan",
    "Org",
    "Settings",
    "User",
    "sf_id18",
    "sign_identity",
]

ACCESS_TOKEN_PREFIX_SEP = "!"
MAX_APPROVALS_PER_APP = 5

_CHECKSUM_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def sf_id18(id15: str) -> str:
    """Return the 18-character, case-insensitive form of a 15-character Salesforce id."""
    if len(id15) == 18:
        return id15
    if len(id15) != 15:
        raise ValueError("a Salesforce id has 15 or 18 characters")
    suffix = ""
    for chunk_start in (0, 5, 10):
        bits = 0
        for i, ch in enumerate(id15[chunk_start : chunk_start + 5]):
            if "A" <= ch <= "Z":
                bits |= 1 << i
        suffix += _CHECKSUM_CHARS[bits]
    return id15 + suffix


def sign_identity(client_secret: str, id_url: str, issued_at: str) -> str:
    """Salesforce ``signature``: base64(HMAC-SHA256(key=client_secret, msg=id + issued_at))."""
    digest = hmac.new(client_secret.encode(), (id_url + issued_at).encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class Clock:
    """The org clock: real time plus a settable offset (epoch seconds, UTC)."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        """Current org time in epoch seconds."""
        return time.time() + self._offset

    def advance(self, seconds: float) -> float:
        """Move the clock forward (or back, if negative) and return the new time."""
        with self._lock:
            self._offset += float(seconds)
        return self.now()

    def set(self, epoch: float) -> float:
        """Set the clock to ``epoch`` (it keeps ticking from there)."""
        with self._lock:
            self._offset = float(epoch) - time.time()
        return self.now()

    def reset(self) -> None:
        """Back to real time."""
        with self._lock:
            self._offset = 0.0

    @property
    def offset(self) -> float:
        """Seconds between the org clock and real time."""
        return self._offset


@dataclass
class Settings:
    """Org-wide settings (all settable at run time).

    * ``session_timeout`` — seconds an access token lives after its last use (default 7200).
    * ``page_size`` — query batch size (default 2000).
    * ``login_rate_limit`` — successful logins (token grants) per user per rolling hour (3600).
    * ``jwt_skew`` — seconds a JWT ``exp`` may lie in the past (clock skew, 30 s). There is no
      upper bound: Salesforce accepts an ``exp`` far ahead (the Salesforce CLI sends epoch
      *milliseconds*, authlib one hour ahead), although its docs ask for 3 minutes.
    * ``api_request_limit`` — REST API requests per rolling 24 h (``DailyApiRequests``; 15000).
    * ``is_sandbox`` / ``org_name`` — what the ``Organization`` object says.
    * ``bulk_query_delay`` — seconds (org clock) a Bulk API 2.0 query job takes (0.5).
    * ``bulk_ingest_delay`` — org-clock seconds a Bulk API 2.0 ingest job takes after
      ``UploadComplete`` (``InProgress`` for the second half of it), 1.0.
    * ``bulk_result_page_records`` — records behind each ``resultUrl`` of ``…/resultPages`` (50000).
    """

    session_timeout: float = 7200.0
    page_size: int = 2000
    login_rate_limit: int = 3600
    jwt_skew: float = 30.0
    api_request_limit: int = 15000
    is_sandbox: bool = False
    org_name: str = "Emulated Org"
    bulk_query_delay: float = 0.5
    bulk_ingest_delay: float = 1.0
    bulk_result_page_records: int = 50000

    def update(self, values: dict[str, Any]) -> None:
        """Apply a dict of settings; unknown names raise ``KeyError``."""
        for key, value in values.items():
            if key not in self.__dataclass_fields__:
                raise KeyError(f"unknown setting {key!r}")
            current = getattr(self, key)
            setattr(self, key, type(current)(value))

    def as_dict(self) -> dict[str, Any]:
        """Settings as a plain dict."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class Org:
    """A stateful emulated Salesforce org. Build one with :func:`seed_demo_org`."""

    def __init__(self, seed: int = 42, settings: Settings | None = None) -> None:
        self.seed = seed
        self.lock = threading.RLock()
        self.clock = Clock()
        self.settings = settings or Settings()
        self._initial_settings = copy.deepcopy(self.settings)
        self.base_url: str | None = None
        self.org_id = ""
        self.server_key_pem = ""
        self.server_jwk: dict[str, Any] = {}
        self.demo = DemoCredentials()
        self.seed_facts: dict[str, Any] = {}
        self.apps: dict[str, ConnectedApp] = {}
        self.users: dict[str, User] = {}
        self.profiles: dict[str, str] = {}
        self.accounts: list[dict[str, Any]] = []
        self.opportunities: list[dict[str, Any]] = []
        self.access_tokens: dict[str, AccessTokenRecord] = {}
        self.approvals: dict[str, Approval] = {}
        #: REST query cursors: (user id, the records, or where they are for a synthetic object)
        self.cursors: dict[str, tuple[str, list[dict[str, Any]] | ResultIndex]] = {}
        self.bulk_query = BulkQueryStore()
        #: record DML and ingest jobs (``records.py``, ``ingest.py``): deleted rows by 15-char id,
        #: ingest jobs by id, Bulk API batches used (``DailyBulkApiBatches``), lookup indexes
        self.deleted_records: dict[str, tuple[str, dict[str, Any]]] = {}
        self.ingest_jobs: dict[str, Any] = {}
        self.bulk_batches_used = 0
        self.record_indexes: dict[str, Any] = {}
        self.synthetic = SyntheticObjects()
        self._issued: list[str] = []
        self.api_requests_used = 0
        self._logins: dict[str, deque[float]] = {}
        self._endpoint_counts: dict[str, int] = {}
        self._grant_counts: dict[str, int] = {}
        self._faults: dict[str, FaultPlan] = {}
        self._fault_rng = random.Random(seed)
        self._seeder: Callable[[Org], None] | None = None
        self.reset_counters()

    # ------------------------------------------------------------------ lifecycle
    def reset(self) -> None:
        """Back to the freshly seeded state: data, tokens, counters, faults, clock, settings."""
        with self.lock:
            self.clock.reset()
            self.settings.update(self._initial_settings.as_dict())
            self.apps.clear()
            self.users.clear()
            self.profiles.clear()
            self.accounts = []
            self.opportunities = []
            self.access_tokens.clear()
            self.approvals.clear()
            self.cursors.clear()
            self.bulk_query.clear()
            self.deleted_records.clear()
            self.ingest_jobs.clear()
            self.bulk_batches_used = 0
            self.record_indexes.clear()
            self.synthetic.reset()
            self._issued = []
            self.api_requests_used = 0
            self._logins.clear()
            self.seed_facts = {}
            self.demo = DemoCredentials()
            self._fault_rng = random.Random(self.seed)
            self.clear_faults()
            self.reset_counters()
            if self._seeder is not None:
                self._seeder(self)

    # ------------------------------------------------------------------ lookups
    def app_by_key(self, consumer_key: str | None) -> ConnectedApp | None:
        """The app with this consumer key."""
        return self.apps.get(consumer_key or "")

    def app_by_name_or_key(self, ref: str) -> ConnectedApp:
        """Find an app by consumer key or (case-insensitive) name; ``KeyError`` if none."""
        with self.lock:
            if ref in self.apps:
                return self.apps[ref]
            for app in self.apps.values():
                if app.name.lower() == ref.lower():
                    return app
        raise KeyError(f"no connected app {ref!r}")

    def user_by_username(self, username: str | None) -> User | None:
        """The user with this username (case-insensitive)."""
        if not username:
            return None
        uname = username.lower()
        for user in self.users.values():
            if user.username.lower() == uname:
                return user
        return None

    def user_by_ref(self, ref: str) -> User:
        """Find a user by id or username; ``KeyError`` if none."""
        with self.lock:
            if ref in self.users:
                return self.users[ref]
            user = self.user_by_username(ref)
        if user is None:
            raise KeyError(f"no user {ref!r}")
        return user

    # ------------------------------------------------------------------ tokens
    def _new_access_token_string(self) -> str:
        return f"{self.org_id[:15]}{ACCESS_TOKEN_PREFIX_SEP}AQ{secrets.token_urlsafe(68)}"

    @staticmethod
    def _new_refresh_token_string() -> str:
        return "5Aep861" + secrets.token_urlsafe(62).replace("-", "x").replace("_", "y")

    def issue_access_token(
        self, app: ConnectedApp, user: User, scope: str, parent_refresh: str | None = None
    ) -> AccessTokenRecord:
        """Mint and record an access token."""
        with self.lock:
            now = self.clock.now()
            rec = AccessTokenRecord(
                token=self._new_access_token_string(),
                app_key=app.consumer_key,
                user_id=user.id,
                scope=scope,
                issued_at=now,
                last_used=now,
                parent_refresh=parent_refresh,
            )
            self.access_tokens[rec.token] = rec
            self._issued.append(rec.token)
            if parent_refresh and parent_refresh in self.approvals:
                self.approvals[parent_refresh].last_access_mask = rec.token[:15] + "****"
            return rec

    def create_approval(
        self,
        app: ConnectedApp,
        user: User,
        scope: str,
        *,
        created: float | None = None,
        last_used: float | None = None,
        use_count: int = 0,
        token: str | None = None,
        enforce_limit: bool = True,
    ) -> Approval:
        """Create an approval (refresh token, OauthToken row). With ``enforce_limit`` a user
        with :data:`MAX_APPROVALS_PER_APP` live approvals for the app loses the oldest."""
        with self.lock:
            if enforce_limit:
                live = sorted(
                    (
                        a
                        for a in self.approvals.values()
                        if not a.revoked and a.app_key == app.consumer_key and a.user_id == user.id
                    ),
                    key=lambda a: a.created,
                )
                while len(live) >= MAX_APPROVALS_PER_APP:
                    self._revoke_approval(live.pop(0))
            appr = Approval(
                refresh_token=token or self._new_refresh_token_string(),
                app_key=app.consumer_key,
                user_id=user.id,
                scope=scope,
                created=self.clock.now() if created is None else created,
                last_used=last_used,
                use_count=use_count,
            )
            self.approvals[appr.refresh_token] = appr
            self._issued.append(appr.refresh_token)
            return appr

    def _revoke_approval(self, appr: Approval) -> None:
        appr.revoked = True
        for rec in self.access_tokens.values():
            if rec.parent_refresh == appr.refresh_token:
                rec.revoked = True

    def rotate_approval(self, appr: Approval) -> str:
        """Replace an approval's refresh token by a new one (the old one dies)."""
        with self.lock:
            new = self._new_refresh_token_string()
            old = appr.refresh_token
            del self.approvals[old]
            # keep a tombstone so the old token is recognisably dead (and not reusable)
            tomb = copy.copy(appr)
            tomb.revoked = True
            tomb.successor = appr
            self.approvals[old] = tomb
            appr.refresh_token = new
            self.approvals[new] = appr
            for rec in self.access_tokens.values():
                if rec.parent_refresh == old:
                    rec.parent_refresh = new
            self._issued.append(new)
            return new

    def revoke_successor(self, appr: Approval) -> bool:
        """A rotated-away refresh token was presented again: like Salesforce, treat it as stolen and
        revoke the refresh token it was rotated into (and that one's access tokens).
        Returns ``True`` when a live approval was revoked."""
        with self.lock:
            live = appr.successor
            if live is None or live.revoked:
                return False
            self._revoke_approval(live)
            return True

    def count_api_request(self) -> int | None:
        """Count one REST API request against ``settings.api_request_limit``; returns the usage
        including this request, or ``None`` (not counted) when the limit is already reached."""
        with self.lock:
            if self.api_requests_used >= self.settings.api_request_limit:
                return None
            self.api_requests_used += 1
            return self.api_requests_used

    def access_token_valid(self, rec: AccessTokenRecord | None, now: float | None = None) -> bool:
        """True when the token exists, is not revoked and has not timed out."""
        if rec is None or rec.revoked:
            return False
        now = self.clock.now() if now is None else now
        if now > rec.last_used + self.settings.session_timeout:
            return False
        parent = self.approvals.get(rec.parent_refresh) if rec.parent_refresh else None
        if parent is not None and parent.revoked:
            return False
        user = self.users.get(rec.user_id)
        return user is not None and user.is_active

    def approval_valid(self, appr: Approval | None, now: float | None = None) -> bool:
        """True when the refresh token is live."""
        if appr is None or appr.revoked:
            return False
        app = self.apps.get(appr.app_key)
        if app is None:
            return False
        if app.refresh_token_ttl is not None:
            now = self.clock.now() if now is None else now
            if now > appr.created + app.refresh_token_ttl:
                return False
        return True

    def use_access_token(self, token: str | None) -> AccessTokenRecord | None:
        """Validate a bearer token and extend its life; ``None`` when it is not usable."""
        if not token:
            return None
        with self.lock:
            rec = self.access_tokens.get(token)
            now = self.clock.now()
            if not self.access_token_valid(rec, now):
                return None
            assert rec is not None
            rec.last_used = now
            if rec.parent_refresh and rec.parent_refresh in self.approvals:
                self.approvals[rec.parent_refresh].last_used = now
            return rec

    def revoke_token(self, token: str) -> bool:
        """Revoke an access token, or a refresh token / DeleteToken (and its access tokens).
        Returns ``False`` when the token is unknown or already dead."""
        with self.lock:
            rec = self.access_tokens.get(token)
            if rec is not None:
                if not self.access_token_valid(rec):
                    return False
                rec.revoked = True
                return True
            appr = self.approvals.get(token)
            if appr is not None and self.approval_valid(appr):
                self._revoke_approval(appr)
                return True
            return False

    def check_login_rate(self, user: User) -> bool:
        """Record a login for ``user``; ``False`` when the rolling-hour limit is exceeded."""
        with self.lock:
            now = self.clock.now()
            q = self._logins.setdefault(user.id, deque())
            while q and q[0] <= now - 3600:
                q.popleft()
            if len(q) >= self.settings.login_rate_limit:
                return False
            q.append(now)
            return True

    def issued_tokens(self) -> list[str]:
        """Every access and refresh token ever issued (seeded ones included), for leak scans."""
        with self.lock:
            return list(self._issued)

    def mint_tokens(
        self,
        n: int,
        app: str | None = None,
        user: str | None = None,
        kind: str = "access",
        scope: str | None = None,
        enforce_limit: bool = False,
    ) -> list[str]:
        """Create ``n`` valid tokens quickly (no HTTP, not counted, no login-rate check).

        ``app``: consumer key or name (default: the JWT demo app); ``user``: id or username
        (default: the integration user); ``kind``: ``"access"`` or ``"refresh"``. Refresh
        tokens become OauthToken rows; the 5-per-app limit applies only with ``enforce_limit``.
        """
        if kind not in ("access", "refresh"):
            raise ValueError("kind must be 'access' or 'refresh'")
        with self.lock:
            the_app = self.app_by_name_or_key(app or self.demo.jwt_consumer_key)
            the_user = self.user_by_ref(user or self.demo.jwt_username)
            sc = scope or the_app.scope
            out: list[str] = []
            for _ in range(int(n)):
                if kind == "access":
                    out.append(self.issue_access_token(the_app, the_user, sc).token)
                else:
                    out.append(
                        self.create_approval(the_app, the_user, sc, enforce_limit=enforce_limit).refresh_token
                    )
            return out

    def oauth_token_rows(self) -> list[Approval]:
        """Live approvals (the rows of the OauthToken object)."""
        with self.lock:
            return [a for a in self.approvals.values() if self.approval_valid(a)]

    # ------------------------------------------------------------------ counters
    def reset_counters(self) -> None:
        """Zero every counter."""
        with self.lock:
            self._endpoint_counts = {e: 0 for e in ENDPOINTS}
            self._grant_counts = {g: 0 for g in GRANTS}

    def record_request(self, endpoint: str, grant: str | None = None) -> None:
        """Count one request (and its grant type on the token endpoint)."""
        with self.lock:
            self._endpoint_counts[endpoint] = self._endpoint_counts.get(endpoint, 0) + 1
            if grant is not None:
                self._grant_counts[grant] = self._grant_counts.get(grant, 0) + 1

    def counters(self) -> dict[str, dict[str, int]]:
        """``{"endpoints": {name: n}, "grants": {name: n}}``."""
        with self.lock:
            return {"endpoints": dict(self._endpoint_counts), "grants": dict(self._grant_counts)}

    def count(self, endpoint: str, grant: str | None = None) -> int:
        """Requests seen by ``endpoint``; with ``grant``, token requests of that grant type."""
        with self.lock:
            if grant is not None:
                return self._grant_counts.get(grant, 0)
            return self._endpoint_counts.get(endpoint, 0)

    # ------------------------------------------------------------------ faults
    def set_faults(
        self,
        endpoint: str,
        sequence: Iterable[str | dict[str, Any] | None] | None = None,
        rate: float = 0.0,
        kinds: Iterable[str | dict[str, Any]] | None = None,
        latency: float = 0.0,
    ) -> None:
        """Plan faults for ``endpoint`` (one of :data:`ENDPOINTS`, or ``"*"`` for all).

        ``sequence`` entries (fault kinds, ``{"kind": ...}`` dicts, or ``None``/``"ok"`` for a
        normal answer) are consumed one per request; after that, each request fails with
        probability ``rate`` (seeded RNG) with a kind drawn from ``kinds`` (default
        ``["json503"]``); ``latency`` seconds are added to every request.
        """
        if endpoint != "*" and endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; expected '*' or one of {ENDPOINTS}")
        plan = FaultPlan(
            sequence=deque(normalize_fault(s) for s in (sequence or [])),
            rate=float(rate),
            kinds=[k for k in (normalize_fault(k) for k in (kinds or ["json503"])) if k is not None],
            latency=float(latency),
        )
        with self.lock:
            self._faults[endpoint] = plan

    def clear_faults(self) -> None:
        """Remove every fault plan."""
        with self.lock:
            self._faults.clear()

    def faults(self) -> dict[str, dict[str, Any]]:
        """Current fault plans (for the admin API)."""
        with self.lock:
            return {
                ep: {
                    "sequence": list(p.sequence),
                    "rate": p.rate,
                    "kinds": list(p.kinds),
                    "latency": p.latency,
                }
                for ep, p in self._faults.items()
            }

    def next_fault(self, endpoint: str) -> tuple[dict[str, Any] | None, float]:
        """Draw the fault (or ``None``) and the added latency for one request."""
        with self.lock:
            plans = [p for p in (self._faults.get(endpoint), self._faults.get("*")) if p is not None]
            if not plans:
                return None, 0.0
            latency = max(p.latency for p in plans)
            for p in plans:
                if p.sequence:
                    return p.sequence.popleft(), latency
            for p in plans:
                if p.rate > 0 and self._fault_rng.random() < p.rate:
                    kinds = p.kinds or [{"kind": "json503"}]
                    return dict(self._fault_rng.choice(kinds)), latency
            return None, latency
