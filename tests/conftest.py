"""Shared test fixtures. The emulator fixtures live in tests/emulator_fixtures.py.

Airflow reads AIRFLOW_HOME when first imported, so a throwaway one is set here, before any
test module imports airflow: tests never touch ~/airflow.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.helpers.other_users import OtherUserPython, staged_for_session

if "SF_OAUTH_TEST_AIRFLOW_HOME" not in os.environ:
    os.environ["SF_OAUTH_TEST_AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="sf-oauth-airflow-home-")
os.environ["AIRFLOW_HOME"] = os.environ["SF_OAUTH_TEST_AIRFLOW_HOME"]
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

pytest_plugins = ["tests.emulator_fixtures", "tests.redis_fixtures"]

#: what code run as another Unix user imports (what these import in turn is staged too)
OTHER_USER_IMPORTS = [
    "sf_oauth_provider.client.assertion", "sf_oauth_provider.client.cache", "sf_oauth_provider.client.config",
    "sf_oauth_provider.client.oauth", "sf_oauth_provider.client.provider",
    "cryptography.fernet", "httpx", "jwt", "tenacity",  # some imported only when first used
]


@pytest.fixture
def set_connection(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, dict[str, Any]], None]:
    """Define an Airflow connection through ``AIRFLOW_CONN_<ID>`` JSON for this test."""

    def define(conn_id: str, conn: dict[str, Any]) -> None:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))

    return define


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A token cache folder of this test's own."""
    path = tmp_path / "token-cache"
    monkeypatch.setenv("SF_OAUTH_CACHE_DIR", str(path))
    return path


@pytest.fixture
def sf_connections(emulator_connections, set_connection, cache_dir) -> dict[str, dict[str, Any]]:
    """The emulator's demo connections, defined as Airflow connections, with a private cache dir."""
    for conn_id, conn in emulator_connections.items():
        set_connection(conn_id, conn)
    return emulator_connections


@pytest.fixture(scope="session")
def other_user_python() -> Iterator[OtherUserPython]:
    """A Python that other Unix users can run — this interpreter, with the framework-free client of
    this checkout — staged in a world-readable folder under /tmp for the session (see
    tests/helpers/other_users.py): ``other_user_python.run((uid, gid), ["-c", code])``."""
    python, folder = staged_for_session(OTHER_USER_IMPORTS)
    try:
        yield python
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True)
def _fresh_secrets_masker() -> Iterator[None]:
    """Forget, after each test, the secrets it registered with Airflow's secrets masker.

    Tests mint thousands of tokens; a masker holding all of them recompiles one huge pattern for
    every new secret, which slows every later test by seconds. A task process starts empty too.
    """
    yield
    if "airflow" not in sys.modules:
        return
    from tests.airflow_compat import reset_secrets_masker

    reset_secrets_masker()
    masking = sys.modules.get("sf_oauth_provider.masking")
    if masking is not None:
        masking._masked.clear()


@pytest.fixture(autouse=True)
def _fresh_process_login_counts() -> Iterator[None]:
    """Forget, after each test, the logins this process counted for the login budget (caches
    ``memory`` / ``none``): the session emulator serves every test the same user, and a task
    process starts with none counted too."""
    yield
    budget = sys.modules.get("sf_oauth_provider.client.budget")
    if budget is not None:
        budget.MemoryLedger._TIMES.clear()


@pytest.fixture
def memory_store():
    """fsspec's in-memory filesystem attached to Airflow's object storage (as a provider would)."""
    import fsspec
    from airflow.sdk.io.store import attach

    fs = fsspec.filesystem("memory")
    attach(protocol="memory", fs=fs)
    yield fs
    fs.store.clear()
