"""Ready-to-use ``salesforce_oauth`` connection definitions for a running emulator.

The JSON written by :func:`write_connections_file` is the format of Airflow's local-filesystem
secrets backend (usable as ``dag.test(conn_file_path=...)``). :func:`env_lines` gives the same
connections as ``export AIRFLOW_CONN_<ID>='<json>'`` lines for a shell (``airflow dags test``
has no ``--conn-file-path`` option); :func:`write_connections_file` also writes them to
``env.sh`` beside the JSON. In TLS mode every connection carries extra ``ca_bundle``.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any, Protocol

from .files import write_private_file
from .state import Org

__all__ = ["connection_dicts", "env_lines", "write_connections_file", "write_private_key"]


class _Running(Protocol):
    base_url: str
    login_url: str
    org: Org


def connection_dicts(running: _Running, key_path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Connections for the three demo flows (conn id → connection dict)."""
    demo = running.org.demo
    conns: dict[str, dict[str, Any]] = {
        "salesforce_oauth_default": {
            "conn_type": "salesforce_oauth",
            "host": running.login_url,
            "login": demo.jwt_consumer_key,
            "password": demo.jwt_consumer_secret,
            "extra": {
                "auth_flow": "jwt_bearer",
                "username": demo.jwt_username,
                "jwt_key_file": str(key_path),
            },
        },
        "salesforce_oauth_cc": {
            "conn_type": "salesforce_oauth",
            "host": running.base_url,
            "login": demo.cc_consumer_key,
            "password": demo.cc_consumer_secret,
            "extra": {"auth_flow": "client_credentials"},
        },
        "salesforce_oauth_refresh": {
            "conn_type": "salesforce_oauth",
            "host": running.login_url,
            "login": demo.refresh_consumer_key,
            "password": demo.refresh_consumer_secret,
            "extra": {"auth_flow": "refresh_token", "refresh_token": demo.refresh_token},
        },
    }
    ca_bundle = getattr(running, "ca_bundle", None)
    if ca_bundle:
        for conn in conns.values():
            conn["extra"]["ca_bundle"] = ca_bundle
    return conns


def env_lines(conns: dict[str, dict[str, Any]]) -> list[str]:
    """``export AIRFLOW_CONN_<ID>='<json>'`` lines (shell-quoted) for ``conns``."""
    return [f"export AIRFLOW_CONN_{cid.upper()}={shlex.quote(json.dumps(c))}" for cid, c in conns.items()]


def write_private_key(org: Org, key_path: str | os.PathLike[str]) -> Path:
    """Write the JWT demo app's private key (PKCS#8 PEM) with mode 0600."""
    path = Path(key_path)
    write_private_file(path, org.demo.jwt_private_key_pem)
    return path


def write_connections_file(
    running: _Running, path: str | os.PathLike[str], key_path: str | os.PathLike[str]
) -> dict[str, dict[str, Any]]:
    """Write the private key, the connections JSON and ``env.sh`` beside it (all 0600, through
    temp files and renames, refusing a directory other users can write); returns the connections."""
    write_private_key(running.org, key_path)
    conns = connection_dicts(running, key_path)
    write_private_file(path, json.dumps(conns, indent=2) + "\n")
    write_private_file(Path(path).with_name("env.sh"), "\n".join(env_lines(conns)) + "\n")
    return conns
