"""The ``OauthToken`` inventory the revocation and audit operators read: every token the
connection's user can see, DeleteTokens (credentials) masked the moment they are read."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sf_oauth_provider.client.token import fingerprint
from sf_oauth_provider.masking import mask_secrets

if TYPE_CHECKING:
    from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

__all__ = ["INVENTORY_SOQL", "InventoryRow", "parse_sf_datetime", "query_inventory"]

#: Every OauthToken column the operators read. ``DeleteToken`` is a credential (it revokes the
#: token): it is masked as soon as it is read and never leaves the operator.
INVENTORY_SOQL = (
    "SELECT AppName, UserId, User.Username, User.IsActive, CreatedDate, LastUsedDate, UseCount, DeleteToken "
    "FROM OauthToken"
)


def parse_sf_datetime(value: Any) -> datetime | None:
    """Salesforce's ``2024-05-14T12:00:00.000+0000`` (or ISO 8601) as an aware UTC datetime."""
    if not value or not isinstance(value, str):
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            return datetime.strptime(value, fmt).astimezone(timezone.utc)
        except ValueError:
            pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class InventoryRow:
    """One ``OauthToken`` row; ``repr()`` never shows the DeleteToken.

    :param delete_token: the credential that revokes this token (a secret)
    :param fingerprint: ``fingerprint(delete_token)``, the row's public name
    """

    delete_token: str = field(repr=False)
    fingerprint: str
    app: str | None
    user_id: str | None
    username: str | None
    user_active: bool | None
    created: datetime | None
    last_used: datetime | None
    use_count: int | None


def query_inventory(hook: SalesforceOAuthHook) -> list[InventoryRow]:
    """Every ``OauthToken`` row the connection's user can see (all users' rows for an admin with
    "Customize Application"), DeleteTokens masked before anything else happens."""
    records = hook.query(INVENTORY_SOQL)
    mask_secrets(r.get("DeleteToken") for r in records)
    rows: list[InventoryRow] = []
    for rec in records:
        delete_token = rec.get("DeleteToken")
        if not delete_token:
            continue
        user = rec.get("User") or {}
        use_count = rec.get("UseCount")
        rows.append(
            InventoryRow(
                delete_token=delete_token,
                fingerprint=fingerprint(delete_token),
                app=rec.get("AppName"),
                user_id=rec.get("UserId"),
                username=user.get("Username"),
                user_active=user.get("IsActive"),
                created=parse_sf_datetime(rec.get("CreatedDate")),
                last_used=parse_sf_datetime(rec.get("LastUsedDate")),
                use_count=int(use_count) if isinstance(use_count, (int, float)) else None,
            )
        )
    return rows
