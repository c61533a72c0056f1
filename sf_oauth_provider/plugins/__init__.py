"""The provider's Airflow plugin: the Salesforce OAuth status page.

Registered through provider info ``plugins``. Its FastAPI app (Airflow >= 3.0) is mounted by the
API server at ``/sf-oauth`` (:mod:`sf_oauth_provider.plugins.app`); from Airflow 3.1 a menu entry
under Browse opens it (``external_views``). On 3.0 the page is reached by its URL.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from sf_oauth_provider._compat import AIRFLOW_VERSION, _release
from sf_oauth_provider.plugins.app import URL_PREFIX, create_app

__all__ = ["SalesforceOAuthPlugin"]

#: the menu entry (``external_views`` exist from Airflow 3.1; 3.0 does not know the key)
MENU_ENTRY: dict[str, Any] = {
    "name": "Salesforce OAuth",
    "href": URL_PREFIX + "/",
    "destination": "nav",
    "category": "browse",
    "url_route": "sf-oauth",
}


class SalesforceOAuthPlugin(AirflowPlugin):
    """The status page: one row per ``salesforce_oauth`` connection and the latest audit."""

    name = "sf_oauth"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "Salesforce OAuth status"}]
    external_views = [MENU_ENTRY] if _release(AIRFLOW_VERSION) >= (3, 1) else []
