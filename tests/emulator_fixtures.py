"""pytest fixtures for the Salesforce org emulator (loaded via ``pytest_plugins``).

* ``emulator_server`` (session): one running emulator for the whole session.
* ``emulator``: the same :class:`RunningEmulator`, reset (data, tokens, counters, faults, clock,
  settings) before each test.
* ``emulator_connections``: writes ``connections.json`` and ``demo_private_key.pem`` (0600) into
  ``tmp_path`` and returns the connection dicts (conn id → dict).
* ``emulator_connections_file``: path of that ``connections.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from sf_oauth_provider.emulator import RunningEmulator, seed_demo_org, serve
from sf_oauth_provider.emulator.connections import write_connections_file

__all__ = ["emulator", "emulator_connections", "emulator_connections_file", "emulator_server"]


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[RunningEmulator]:
    """One emulator (seed 42) on 127.0.0.1 for the whole test session."""
    with serve(seed_demo_org(42)) as running:
        yield running


@pytest.fixture
def emulator(emulator_server: RunningEmulator) -> RunningEmulator:
    """The session emulator, freshly reset for this test."""
    emulator_server.org.reset()
    return emulator_server


@pytest.fixture
def emulator_connections(emulator: RunningEmulator, tmp_path: Path) -> dict[str, dict[str, Any]]:
    """Connection dicts for the demo flows; files written under ``tmp_path``."""
    return write_connections_file(emulator, tmp_path / "connections.json", tmp_path / "demo_private_key.pem")


@pytest.fixture
def emulator_connections_file(emulator_connections: dict[str, dict[str, Any]], tmp_path: Path) -> Path:
    """Path of the connections JSON written by ``emulator_connections``."""
    return tmp_path / "connections.json"
