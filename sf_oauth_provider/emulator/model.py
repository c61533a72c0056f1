"""The records an emulated org holds — users, connected apps, approvals (refresh tokens), access
tokens, the demo credentials — and its fault plans. Plain data: :mod:`.state` (the org) keeps
them, under its lock."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "AFTER_WORK_FAULTS",
    "ENDPOINTS",
    "FAULT_KINDS",
    "GRANTS",
    "AccessTokenRecord",
    "Approval",
    "ConnectedApp",
    "DemoCredentials",
    "FaultPlan",
    "User",
    "normalize_fault",
]

ENDPOINTS: tuple[str, ...] = ("token", "introspect", "revoke", "userinfo", "identity", "query", "openid", "bulk")
GRANTS: tuple[str, ...] = ("jwt_bearer", "client_credentials", "refresh_token", "other")
FAULT_KINDS: tuple[str, ...] = ("json503", "html503", "500", "429", "latency", "reset", "stall", "late", "drop")
#: faults that let the request do its work first and then lose the answer (the client cannot tell
#: whether it was processed): ``late`` answers after ``seconds``, ``drop`` cuts the connection
AFTER_WORK_FAULTS: tuple[str, ...] = ("late", "drop")


@dataclass
class User:
    """A Salesforce user."""

    id: str
    username: str
    first_name: str
    last_name: str
    email: str
    is_active: bool = True
    profile_id: str = ""
    customize_application: bool = False
    user_type: str = "STANDARD"
    timezone: str = "America/Los_Angeles"

    @property
    def name(self) -> str:
        """Full name."""
        return f"{self.first_name} {self.last_name}".strip()


@dataclass
class ConnectedApp:
    """A connected app (consumer). Flags describe which flows and policies it has."""

    name: str
    consumer_key: str
    consumer_secret: str
    app_menu_item_id: str
    scope: str = "api"
    certificate_pem: str | None = None
    public_key_pem: str | None = None
    jwt_enabled: bool = False
    run_as_user_id: str | None = None
    cc_enabled: bool = False
    refresh_enabled: bool = False
    rotate_refresh_tokens: bool = False
    introspect_all: bool = False
    admin_approved_only: bool = False
    approved_user_ids: set[str] = field(default_factory=set)
    refresh_token_ttl: float | None = None
    _public_key: Any = field(default=None, repr=False, compare=False)

    def public_key(self) -> Any:
        """The certificate's public key object (cached), or ``None``."""
        if self._public_key is None and self.public_key_pem:
            from cryptography.hazmat.primitives.serialization import load_pem_public_key

            self._public_key = load_pem_public_key(self.public_key_pem.encode())
        return self._public_key


@dataclass
class Approval:
    """An approval (refresh token) — one row of the ``OauthToken`` object."""

    refresh_token: str
    app_key: str
    user_id: str
    scope: str
    created: float
    last_used: float | None = None
    use_count: int = 0
    revoked: bool = False
    last_access_mask: str | None = None
    #: on the tombstone of a rotated-away refresh token: the live approval it was rotated into
    successor: Approval | None = field(default=None, repr=False, compare=False)


@dataclass
class AccessTokenRecord:
    """An issued access token."""

    token: str
    app_key: str
    user_id: str
    scope: str
    issued_at: float
    last_used: float
    parent_refresh: str | None = None
    revoked: bool = False


@dataclass
class DemoCredentials:
    """Credentials of the seeded demo org (all of them, including secrets)."""

    org_id: str = ""
    jwt_app_name: str = ""
    jwt_consumer_key: str = ""
    jwt_consumer_secret: str = ""
    jwt_private_key_pem: str = ""
    jwt_certificate_pem: str = ""
    jwt_username: str = ""
    cc_consumer_key: str = ""
    cc_consumer_secret: str = ""
    cc_username: str = ""
    refresh_consumer_key: str = ""
    refresh_consumer_secret: str = ""
    refresh_token: str = ""
    refresh_username: str = ""
    admin_only_consumer_key: str = ""
    admin_only_consumer_secret: str = ""
    broken_cc_consumer_key: str = ""
    broken_cc_consumer_secret: str = ""
    analyst_username: str = ""
    inactive_username: str = ""

    def public_summary(self) -> dict[str, str]:
        """Everything except secrets, tokens and keys."""
        hidden = ("secret", "private_key", "refresh_token")
        return {
            k: v
            for k, v in self.__dict__.items()
            if not any(h in k for h in hidden) and k != "jwt_certificate_pem"
        }


@dataclass
class FaultPlan:
    """Faults for one endpoint (or ``*``): a sequence consumed one per request, a random
    failure ``rate`` drawing from ``kinds``, and ``latency`` added to every request."""

    sequence: deque[dict[str, Any] | None] = field(default_factory=deque)
    rate: float = 0.0
    kinds: list[dict[str, Any]] = field(default_factory=list)
    latency: float = 0.0


def normalize_fault(spec: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """Turn ``"json503"`` / ``"latency=2"`` / ``{"kind": ...}`` into a fault dict
    (``None``, ``"ok"`` and ``{"kind": "ok"}`` mean "answer normally")."""
    if spec is None:
        return None
    if isinstance(spec, str):
        kind, _, arg = spec.partition("=")
        spec = {"kind": kind.strip()}
        if arg:
            spec["seconds"] = float(arg)
    kind = str(spec.get("kind", ""))
    if kind == "ok":
        return None
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
    out = dict(spec)
    out["kind"] = kind
    if kind in ("latency", "stall", "late"):
        out["seconds"] = float(out.get("seconds", 1.0))
    return out
