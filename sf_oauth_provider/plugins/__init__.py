"""The provider's Airflow plugin: the Salesforce OAuth status page.

Registered through provider info ``plugins``. Its app (Airflow >= 3.0) is mounted by the API
server at ``/sf-oauth`` (:mod:`sf_oauth_provider.plugins.app`); from Airflow 3.1 a menu entry
under Browse opens it (``external_views``). On 3.0 the page is reached by its URL.

Every Airflow process that loads plugins imports this module (the scheduler, task runners), so it
imports neither FastAPI nor Airflow's API security: :class:`LazyApp` builds the real app on the
first request the API server routes to it (importing both costs ~2 s, measured on 3.3.2).
"""

from __future__ import annotations

import threading
from typing import Any, Awaitable, Callable

from airflow.plugins_manager import AirflowPlugin

from sf_oauth_provider._compat import AIRFLOW_VERSION, _release

__all__ = ["LazyApp", "SalesforceOAuthPlugin"]

URL_PREFIX = "/sf-oauth"

#: the menu entry (``external_views`` exist from Airflow 3.1; 3.0 does not know the key)
MENU_ENTRY: dict[str, Any] = {
    "name": "Salesforce OAuth",
    "href": URL_PREFIX + "/",
    "destination": "nav",
    "category": "browse",
    "url_route": "sf-oauth",
}

ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


class LazyApp:
    """An ASGI app that builds :func:`sf_oauth_provider.plugins.app.create_app` on first use."""

    def __init__(self) -> None:
        self._app: ASGIApp | None = None
        self._lock = threading.Lock()

    def _build(self) -> ASGIApp:
        with self._lock:
            if self._app is None:
                from sf_oauth_provider.plugins.app import create_app

                self._app = create_app()
        return self._app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        app = self._app or self._build()
        await app(scope, receive, send)


class SalesforceOAuthPlugin(AirflowPlugin):
    """The status page: one row per ``salesforce_oauth`` connection and the latest audit."""

    name = "sf_oauth"
    fastapi_apps = [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "Salesforce OAuth status"}]
    external_views = [MENU_ENTRY] if _release(AIRFLOW_VERSION) >= (3, 1) else []
