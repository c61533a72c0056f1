"""Provider metadata read by Airflow's ProvidersManager (entry point ``apache_airflow_provider``).

Airflow 3.2+'s React UI builds the connection form only from ``conn-fields`` and
``ui-field-behaviour`` here, so every extra of the connection is declared as a field.
"""

from __future__ import annotations

from typing import Any

from sf_oauth_provider import __version__
from sf_oauth_provider.client.flows import DEFAULT_FLOW, FLOWS

__all__ = ["get_provider_info"]


def _field(label: str, description: str, schema: dict[str, Any], *, sensitive: bool = False) -> dict[str, Any]:
    field: dict[str, Any] = {"label": label, "description": description, "schema": schema}
    if sensitive:
        field["sensitive"] = True
    return field


_STR = ["string", "null"]
_NUM = ["number", "null"]

CONN_FIELDS: dict[str, dict[str, Any]] = {
    "auth_flow": _field(
        "Auth flow",
        "How to get tokens: " + "; ".join(flow.summary for flow in FLOWS.values()) + ".",
        {"type": "string", "enum": list(FLOWS), "default": DEFAULT_FLOW},
    ),
    "username": _field(
        "Username",
        "Salesforce username the token is issued for (JWT subject). Required for jwt_bearer.",
        {"type": _STR},
    ),
    "private_key": _field(
        "Private key",
        "PEM private key whose certificate is uploaded to the connected app (jwt_bearer). "
        "A newline-flattened paste is accepted.",
        {"type": _STR, "format": "multiline"},
        sensitive=True,
    ),
    "jwt_key_file": _field(
        "Private key file",
        "Path to a PEM private key file readable by workers and the triggerer (instead of Private key).",
        {"type": _STR},
    ),
    "private_key_passphrase": _field(
        "Private key passphrase",
        "Passphrase of an encrypted private key.",
        {"type": _STR, "format": "password"},
        sensitive=True,
    ),
    "jwt_certificate": _field(
        "Connected app certificate",
        "The certificate uploaded to the connected app (PEM text or a file path): the audit and the sensor "
        "warn before it expires and check that it matches the private key.",
        {"type": _STR, "format": "multiline"},
    ),
    "audience": _field(
        "JWT audience",
        "JWT 'aud'. Default: https://test.salesforce.com for test.salesforce.com and sandbox My Domains, "
        "else https://login.salesforce.com.",
        {"type": _STR},
    ),
    "refresh_token": _field(
        "Refresh token",
        "Refresh token for the refresh_token flow (rotated tokens are kept in the token cache).",
        {"type": _STR, "format": "password"},
        sensitive=True,
    ),
    "api_version": _field("API version", "REST API version for queries, e.g. 63.0.", {"type": _STR}),
    "session_timeout": _field(
        "Session timeout (s)",
        "Seconds a token is assumed to live when Salesforce does not say (no consumer secret to introspect). "
        "Default 7200.",
        {"type": _NUM},
    ),
    "cache": _field(
        "Token cache",
        "auto (default): the widest store configured (Redis when [sf_oauth] redis_url is set, else the host's "
        "file store); redis: shared by every host (needs [sf_oauth] redis_url); file: shared by every task on "
        "the host; memory: per process; none: no caching.",
        {"type": "string", "enum": ["auto", "redis", "file", "memory", "none"], "default": "auto"},
    ),
    "timeout": _field("HTTP timeout (s)", "Timeout of each HTTP request to Salesforce. Default 30.", {"type": _NUM}),
    "ca_bundle": _field(
        "CA bundle",
        "Path to a PEM file of CA certificates for TLS verification (corporate TLS proxy, the emulator's --tls "
        "mode). Default: the system store.",
        {"type": _STR},
    ),
}

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port"],
    "relabeling": {"host": "Login URL or My Domain", "login": "Consumer Key", "password": "Consumer Secret"},
    "placeholders": {
        "host": "https://login.salesforce.com",
        "login": "3MVG9...",
        "password": "needed for client_credentials, introspection and audits",
        "username": "integration@acme.com",
        "private_key": "-----BEGIN PRIVATE KEY-----",
        "api_version": "63.0",
    },
}


#: Airflow config the provider reads (``airflow config list`` shows it)
CONFIG: dict[str, Any] = {
    "sf_oauth": {
        "description": "Salesforce OAuth provider settings shared by every connection.",
        "options": {
            "redis_url": {
                "description": "Redis shared by every worker host: tokens are cached there (encrypted with a key "
                "derived from each connection's credentials) so that the whole deployment makes one token "
                "request per connection per token lifetime. Connections with extra cache 'auto' (the "
                "default) or 'redis' use it. When Redis is unreachable, tasks still get tokens from the "
                "host's file cache or Salesforce (one warning per process). Outside Airflow: env "
                "SF_OAUTH_REDIS_URL.",
                "version_added": "0.1.0",
                "type": "string",
                "example": "redis://:password@redis.internal:6379/0",
                "default": None,
                "sensitive": True,
            },
            "login_budget_cap": {
                "description": "Token requests per Salesforce user per rolling hour after which further ones are "
                "refused before they are sent (SalesforceLoginBudgetExceeded, saying when the budget frees up), "
                "instead of tripping Salesforce's LOGIN_RATE_EXCEEDED at 3,600, which blocks every integration "
                "of that user for the rest of the hour. Counted in the widest token store a connection uses "
                "(Redis, else the host's cache file, else the process). 0 turns the cap off. Outside Airflow: "
                "env SF_OAUTH_LOGIN_BUDGET_CAP.",
                "version_added": "0.2.0",
                "type": "integer",
                "example": "3000",
                "default": "3000",
            },
            "login_budget_warn": {
                "description": "Fraction of Salesforce's 3,600 logins per user per hour from which each further "
                "token request logs a warning (0.8: from 2,880). 0 turns the warning off. Outside Airflow: env "
                "SF_OAUTH_LOGIN_BUDGET_WARN.",
                "version_added": "0.2.0",
                "type": "float",
                "example": "0.8",
                "default": "0.8",
            },
            "audit_report_dir": {
                "description": "The local folder your token audit task writes its reports to (its report_dir): "
                "the status page (/sf-oauth/) shows the latest audit.json's counts and links its audit.html. "
                "Unset: the page shows no audit.",
                "version_added": "0.2.0",
                "type": "string",
                "example": "/opt/airflow/salesforce_token_audit/sf_token_audit/audit",
                "default": None,
            },
        },
    }
}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "sf-oauth-provider",
        "name": "Salesforce OAuth",
        "description": "Salesforce OAuth 2.0 tokens for Airflow: JWT bearer, client credentials and refresh "
        "token flows, a host-wide token cache, a token validity sensor, revocation and audit operators.",
        "versions": [__version__],
        "config": CONFIG,
        # `airflow sf-oauth …` on Airflow >= 3.2 (older releases ignore the key: use `sf-oauth`)
        "cli": ["sf_oauth_provider.cli.airflow_commands.get_sf_oauth_cli_commands"],
        "connection-types": [
            {
                "hook-class-name": "sf_oauth_provider.hooks.salesforce_oauth.SalesforceOAuthHook",
                "hook-name": "Salesforce OAuth",
                "connection-type": "salesforce_oauth",
                "conn-fields": CONN_FIELDS,
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
            }
        ],
        "hooks": [
            {
                "integration-name": "Salesforce OAuth",
                "python-modules": ["sf_oauth_provider.hooks.salesforce_oauth"],
            }
        ],
        "operators": [
            {
                "integration-name": "Salesforce OAuth",
                "python-modules": ["sf_oauth_provider.operators.revoke", "sf_oauth_provider.operators.audit",
                                   "sf_oauth_provider.operators.bulk"],
            }
        ],
        "sensors": [
            {"integration-name": "Salesforce OAuth", "python-modules": ["sf_oauth_provider.sensors.token"]}
        ],
        "triggers": [
            {"integration-name": "Salesforce OAuth",
             "python-modules": ["sf_oauth_provider.triggers.token", "sf_oauth_provider.triggers.bulk"]}
        ],
        "plugins": [{"name": "sf_oauth", "plugin-class": "sf_oauth_provider.plugins.SalesforceOAuthPlugin"}],
        "integrations": [
            {
                "integration-name": "Salesforce OAuth",
                "external-doc-url": "https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_flows.htm",
                "tags": ["service"],
            }
        ],
    }
