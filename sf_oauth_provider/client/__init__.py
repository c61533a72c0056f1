"""Framework-free Salesforce OAuth client (no Airflow imports): usable from any Python program.

    from sf_oauth_provider.client import OAuthConfig, TokenProvider
"""

from typing import TYPE_CHECKING, Any

from sf_oauth_provider.client.config import OAuthConfig
from sf_oauth_provider.client.errors import SalesforceOAuthError
from sf_oauth_provider.client.token import IntrospectionResult, SalesforceToken, fingerprint

if TYPE_CHECKING:
    from sf_oauth_provider.client.provider import TokenProvider

__all__ = [
    "OAuthConfig", "TokenProvider", "SalesforceOAuthError", "SalesforceToken", "IntrospectionResult", "fingerprint",
]


def __getattr__(name: str) -> Any:
    # The provider pulls in httpx-free but heavier modules (cryptography, the stores): a DAG file
    # that only imports the hook module (which imports config from here) does not pay for them.
    if name == "TokenProvider":
        from sf_oauth_provider.client.provider import TokenProvider

        return TokenProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
