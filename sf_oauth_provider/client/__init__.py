"""Framework-free Salesforce OAuth client (no Airflow imports): usable from any Python program.

    from sf_oauth_provider.client import OAuthConfig, TokenProvider

Its modules load on first use (:mod:`sf_oauth_provider._lazy`): Airflow imports the provider info
(which reads the auth-flow registry in this package) in every process, and the hook, which a DAG
file imports, reads the config, the token classes, the stores and the HTTP clients as
``client.<name>`` only when a task runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sf_oauth_provider._lazy import attach

if TYPE_CHECKING:
    from sf_oauth_provider.client import (  # noqa: F401 (the submodules, for type checkers)
        assertion,
        auth,
        budget,
        cache,
        certificate,
        config,
        errors,
        flows,
        masking,
        metrics,
        oauth,
        provider,
        responses,
        singleflight,
        stores,
        token,
    )
    from sf_oauth_provider.client.config import OAuthConfig
    from sf_oauth_provider.client.errors import SalesforceOAuthError
    from sf_oauth_provider.client.provider import TokenProvider
    from sf_oauth_provider.client.token import IntrospectionResult, SalesforceToken, fingerprint

__all__ = [
    "OAuthConfig", "TokenProvider", "SalesforceOAuthError", "SalesforceToken", "IntrospectionResult", "fingerprint",
]

__getattr__, __dir__ = attach(
    __name__,
    submodules=(
        "assertion", "auth", "budget", "cache", "certificate", "config", "errors", "flows", "masking", "metrics",
        "oauth", "provider", "responses", "singleflight", "stores", "token",
    ),
    attributes={
        "OAuthConfig": "config",
        "TokenProvider": "provider",
        "SalesforceOAuthError": "errors",
        "SalesforceToken": "token",
        "IntrospectionResult": "token",
        "fingerprint": "token",
    },
)
