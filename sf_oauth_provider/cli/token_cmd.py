"""``sf-oauth token CONN_ID``: the token tasks get now, described without the token itself."""

from __future__ import annotations

import time
from typing import Any

from sf_oauth_provider.cli.env import hook_for
from sf_oauth_provider.cli.output import iso, table

__all__ = ["token_info", "render_token"]

_LAYERS = {"salesforce": "Salesforce (fetched now)", "memory": "memory", "file": "file", "redis": "redis"}


def token_info(conn_id: str) -> dict[str, Any]:
    """What :meth:`SalesforceOAuthHook.get_token` hands out for ``conn_id``, and which layer served it."""
    hook = hook_for(conn_id)
    try:
        token = hook.get_token()
        layer = hook.provider.last_layer
    finally:
        hook.close()
    return {
        "connection": conn_id,
        "fingerprint": token.fingerprint,
        "user_id": token.user_id,
        "org_id": token.org_id,
        "instance_url": token.instance_url,
        "issued_at": iso(token.issued_at),
        "expires_at": iso(token.expires_at),
        "expires_in_seconds": int(token.seconds_left(time.time())),
        "expiry_from": token.expires_at_source,
        "scopes": (token.scope or "").split(),
        "layer": layer,
    }


def render_token(info: dict[str, Any]) -> str:
    rows = [
        {"k": "connection", "v": info["connection"]},
        {"k": "fingerprint", "v": info["fingerprint"]},
        {"k": "user", "v": info["user_id"]},
        {"k": "org", "v": info["org_id"]},
        {"k": "instance", "v": info["instance_url"]},
        {"k": "issued", "v": info["issued_at"]},
        {"k": "expires", "v": f"{info['expires_at']} (in {info['expires_in_seconds'] // 60} min; "
                              f"from {info['expiry_from']})"},
        {"k": "scopes", "v": " ".join(info["scopes"]) or "(not given)"},
        {"k": "served by", "v": _LAYERS.get(info["layer"] or "", info["layer"])},
    ]
    return table(rows, [("k", "field"), ("v", "value")])
