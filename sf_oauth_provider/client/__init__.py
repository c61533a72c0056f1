"""Framework-free Salesforce OAuth client (no Airflow imports): usable from any Python program.

    from sf_oauth_provider.client import OAuthConfig, TokenProvider
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sf_oauth_provider.client.config import OAuthConfig
    from sf_oauth_provider.client.errors import SalesforceOAuthError
    from sf_oauth_provider.client.provider import TokenProvider
    from sf_oauth_provider.client.token import IntrospectionResult, SalesforceToken, fingerprint

__all__ = [
    "OAuthConfig", "TokenProvider", "SalesforceOAuthError", "SalesforceToken", "IntrospectionResult", "fingerprint",
]

#: where each public name lives. Loaded on first use: Airflow imports the provider info (which
#: reads the auth-flow registry in this package) in every process, and a DAG file that imports an
#: operator must not pay for the config, the stores or cryptography.
_EXPORTS = {
    "OAuthConfig": "config",
    "TokenProvider": "provider",
    "SalesforceOAuthError": "errors",
    "SalesforceToken": "token",
    "IntrospectionResult": "token",
    "fingerprint": "token",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)
