"""Where the commands find connections and stores: the way the hook does, with or without a running Airflow.

Connections come from Airflow (``AIRFLOW_CONN_<ID>`` variables, the configured secrets backends, the
metadata DB where this process can reach it); ``--conn-file`` adds a local connections file (the JSON
of Airflow's local-filesystem backend, the format ``python -m sf_oauth_provider.emulator`` writes).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sf_oauth_provider.client.config import OAuthConfig
    from sf_oauth_provider.client.stores.file import FileStore
    from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

__all__ = ["use_connections_file", "hook_for", "fernet_key", "redis_url", "file_store", "known_configs",
           "CONN_FILE_ENV"]

#: the connections file when ``--conn-file`` is not given
CONN_FILE_ENV = "SF_OAUTH_CONN_FILE"


def use_connections_file(path: str | os.PathLike[str]) -> list[str]:
    """Make the connections of a local JSON file (``{conn_id: {conn_type, host, login, ...}}``)
    visible to Airflow in this process, as ``AIRFLOW_CONN_<ID>`` variables.

    :returns: the connection ids it held
    :raises ValueError: the file is not such a JSON object
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"{path} is not a JSON object of connections ({{conn_id: {{conn_type, host, ...}}}})")
    for conn_id, conn in data.items():
        os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)
    return list(data)


def hook_for(conn_id: str) -> SalesforceOAuthHook:
    from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

    return SalesforceOAuthHook(salesforce_oauth_conn_id=conn_id)


def fernet_key() -> str | None:
    """Airflow's Fernet key, as tasks use it for the file store (the placeholder of a missing
    airflow.cfg is no key)."""
    from sf_oauth_provider._compat import conf

    key = conf.get("core", "fernet_key", fallback=None) or None
    return None if key is None or key.startswith("{") else key


def redis_url() -> str | None:
    """The deployment's Redis: Airflow ``[sf_oauth] redis_url``, else ``$SF_OAUTH_REDIS_URL``."""
    from sf_oauth_provider._compat import conf
    from sf_oauth_provider.client.stores.redis import REDIS_URL_ENV

    return conf.get("sf_oauth", "redis_url", fallback=None) or os.environ.get(REDIS_URL_ENV) or None


def file_store() -> FileStore:
    """The host's file store, as tasks open it.

    :raises Rejected: the directory or its key file cannot be trusted
    :raises OSError: it cannot be created or written
    """
    from sf_oauth_provider.client.cache import default_cache_dir
    from sf_oauth_provider.client.stores.file import FileStore

    return FileStore(default_cache_dir(), fernet_key=fernet_key())


def known_configs() -> dict[str, OAuthConfig]:
    """Cache key → settings of every ``salesforce_oauth`` connection this process can list and
    validate (to name cache entries, and to decrypt Redis entries, which need the connection's key)."""
    from sf_oauth_provider.hooks.connection_lookup import listable_connection_ids

    found: dict[str, Any] = {}
    ids, _ = listable_connection_ids()
    for conn_id in ids:
        try:
            config = hook_for(conn_id).config
        except Exception:  # noqa: BLE001 - a broken connection just stays unnamed here; doctor explains it
            continue
        found[config.cache_key] = config
    return found
