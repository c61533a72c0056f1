"""Framework-free Salesforce OAuth client (no Airflow imports): usable from any Python program."""

from sf_oauth_provider.client.config import OAuthConfig
from sf_oauth_provider.client.errors import SalesforceOAuthError
from sf_oauth_provider.client.token import IntrospectionResult, SalesforceToken, fingerprint

__all__ = ["OAuthConfig", "SalesforceOAuthError", "SalesforceToken", "IntrospectionResult", "fingerprint"]
