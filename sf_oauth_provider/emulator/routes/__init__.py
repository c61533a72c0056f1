"""The emulator's HTTP surface, one module per Salesforce service: ``oauth`` (token,
introspect, revoke, OpenID discovery), ``identity`` (userinfo, identity URL), ``data`` (the REST
API), ``bulk`` (Bulk API 2.0 query jobs) and ``admin`` (the emulator's own control API)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from . import admin, bulk, bulk_ingest, data, identity, oauth, sobjects

__all__ = ["all_routes"]


def all_routes() -> list[BaseRoute]:
    """Every route: OAuth and identity under the root, ``/login`` and ``/test``; the REST and
    admin APIs under the root only."""
    out: list[BaseRoute] = []
    for prefix in ("", "/login", "/test"):
        out += oauth.routes(prefix) + identity.routes(prefix)
    # bulk and DML ahead of data's catch-all
    return out + bulk.routes() + sobjects.routes() + bulk_ingest.routes() + data.routes() + admin.routes()
