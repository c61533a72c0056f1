"""Ready-to-use ``salesforce_oauth`` connection definitions for a running emulator.

The JSON written by :func:`write_connections_file` is the format of Airflow's local-filesystem
secrets backend (usable as ``dag.test(conn_file_path=...)``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

from .state import Org

__all__ = ["connection_dicts", "write_connections_file", "write_private_key"]


class _Running(Protocol):
    base_url: str
    login_url: str
    org: Org


def connection_dicts(running: _Running, key_path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Connections for the three demo flows (conn id → connection dict)."""
    demo = running.org.demo
    return {
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


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def write_private_key(org: Org, key_path: str | os.PathLike[str]) -> Path:
    """Write the JWT demo app's private key (PKCS#8 PEM) with mode 0600."""
    path = Path(key_path)
    _write_private(path, org.demo.jwt_private_key_pem)
    return path


def write_connections_file(
    running: _Running, path: str | os.PathLike[str], key_path: str | os.PathLike[str]
) -> dict[str, dict[str, Any]]:
    """Write the private key and the connections JSON (both 0600); returns the connections."""
    write_private_key(running.org, key_path)
    conns = connection_dicts(running, key_path)
    _write_private(Path(path), json.dumps(conns, indent=2) + "\n")
    return conns
