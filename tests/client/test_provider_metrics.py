"""TokenProvider's metrics (sync and async alike), recorded by a sink of the test's own — the
framework-free path a script or another orchestrator uses (the Airflow path: tests/hooks/test_metrics_statsd.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Mapping

import pytest

from sf_oauth_provider.client import OAuthConfig, TokenProvider
from sf_oauth_provider.client.budget import BudgetSettings
from sf_oauth_provider.client.errors import (
    SalesforceAuthError,
    SalesforceLoginBudgetExceeded,
    SalesforceUnavailableError,
)
from sf_oauth_provider.client.oauth import RetryPolicy

pytestmark = pytest.mark.timeout(120)


class Recorder:
    """A metrics sink that keeps what it got: (kind, name, value, tags)."""

    def __init__(self) -> None:
        self.got: list[tuple[str, str, float, dict[str, str]]] = []

    def incr(self, name: str, count: int = 1, tags: Mapping[str, str] | None = None) -> None:
        self.got.append(("incr", name, count, dict(tags or {})))

    def timing(self, name: str, seconds: float, tags: Mapping[str, str] | None = None) -> None:
        self.got.append(("timing", name, seconds, dict(tags or {})))

    def gauge(self, name: str, value: float, tags: Mapping[str, str] | None = None) -> None:
        self.got.append(("gauge", name, value, dict(tags or {})))

    def names(self) -> list[str]:
        return [name for _, name, _, _ in self.got]


def provider_for(conn: dict[str, Any], tmp_path: Path, sink: Recorder, conn_id: str = "sf_metrics",
                 **kwargs: Any) -> TokenProvider:
    config = OAuthConfig.from_connection_fields(conn_id, host=conn["host"], login=conn["login"],
                                                password=conn.get("password"), extra={**conn["extra"], "cache": "file"})
    return TokenProvider(config, cache_dir=tmp_path / "cache", metrics=sink,
                         login_budget=kwargs.pop("login_budget", BudgetSettings(cap=0, warn=0.0)), **kwargs)


MISS = ["sf_oauth.lock_wait", "sf_oauth.logins_last_hour.sf_metrics", "sf_oauth.token_request.jwt_bearer.ok",
        "sf_oauth.cache_miss"]


def test_a_miss_then_a_hit(emulator, emulator_connections, tmp_path):
    sink = Recorder()
    provider = provider_for(emulator_connections["salesforce_oauth_default"], tmp_path, sink)
    provider.get_token()
    provider.get_token()
    assert sink.names() == [*MISS, "sf_oauth.cache_hit.memory"]
    request = sink.got[2]
    assert request[3] == {"flow": "jwt_bearer", "outcome": "ok"}
    assert sink.got[0][3] == {"layer": "file"} and 0 <= sink.got[0][2] < 5  # seconds waited for the host lock
    assert sink.got[1][2] == 1


def test_a_token_another_process_cached_is_a_file_hit(emulator, emulator_connections, tmp_path):
    from sf_oauth_provider.client.stores import forget_process_memory

    provider_for(emulator_connections["salesforce_oauth_default"], tmp_path, Recorder()).get_token()
    forget_process_memory(everything=True)  # as a new task process starts
    sink = Recorder()
    provider_for(emulator_connections["salesforce_oauth_default"], tmp_path, sink).get_token()
    assert sink.names() == ["sf_oauth.cache_hit.file"] and sink.got[0][3] == {"layer": "file"}


def test_async_callers_send_the_same(emulator, emulator_connections, tmp_path):
    sink = Recorder()
    provider = provider_for(emulator_connections["salesforce_oauth_default"], tmp_path, sink,
                            login_budget=BudgetSettings(cap=1, warn=0.0))

    async def three() -> None:
        await provider.aget_token()
        await provider.aget_token()
        with pytest.raises(SalesforceLoginBudgetExceeded):
            await provider.aget_token(force_refresh=True)

    asyncio.run(three())
    assert sink.names() == [
        *MISS, "sf_oauth.cache_hit.memory",
        "sf_oauth.lock_wait", "sf_oauth.logins_last_hour.sf_metrics",
        "sf_oauth.token_request.jwt_bearer.budget_refused",
        "sf_oauth.cache_miss", "sf_oauth.permanent_error.login_budget_exceeded",
    ]
    assert emulator.org.count("token") == 1


def test_a_transient_error_is_not_a_permanent_one(emulator, emulator_connections, tmp_path):
    sink = Recorder()
    provider = provider_for(emulator_connections["salesforce_oauth_default"], tmp_path, sink,
                            retry=RetryPolicy(attempts=1, initial_backoff=0.01))
    emulator.org.set_faults("token", sequence=["json503"])
    with pytest.raises(SalesforceUnavailableError):
        provider.get_token()
    assert "sf_oauth.token_request.jwt_bearer.transient_error" in sink.names()
    assert not [n for n in sink.names() if n.startswith("sf_oauth.permanent_error")]


def test_a_refused_key_counts_salesforces_error_code(emulator, emulator_connections, tmp_path):
    sink = Recorder()
    conn = emulator_connections["salesforce_oauth_default"]
    wrong_user = {**conn, "extra": {**conn["extra"], "username": "nobody@example.invalid"}}
    with pytest.raises(SalesforceAuthError):
        provider_for(wrong_user, tmp_path, sink).get_token()
    assert "sf_oauth.token_request.jwt_bearer.permanent_error" in sink.names()
    assert sink.got[-1][:2] == ("incr", "sf_oauth.permanent_error.invalid_grant")
    assert sink.got[-1][3] == {"code": "invalid_grant"}


def test_a_rotated_refresh_token_is_counted(emulator, emulator_connections, tmp_path):
    sink = Recorder()
    provider = provider_for(emulator_connections["salesforce_oauth_refresh"], tmp_path, sink, conn_id="sf_refresh")
    provider.get_token()
    provider.get_token(force_refresh=True)
    assert sink.names().count("sf_oauth.refresh_rotated") == 2
    assert sink.names().count("sf_oauth.token_request.refresh_token.ok") == 2


def test_a_caller_that_waits_for_anothers_refresh_reports_the_wait_and_a_hit(emulator, emulator_connections,
                                                                           tmp_path):
    import threading
    import time

    emulator.org.set_faults("token", latency=0.6)  # a slow Salesforce: the first caller holds the lock
    first, second = Recorder(), Recorder()
    conn = emulator_connections["salesforce_oauth_default"]
    slow = threading.Thread(target=provider_for(conn, tmp_path, first).get_token)
    slow.start()
    time.sleep(0.2)
    provider_for(conn, tmp_path, second).get_token()
    slow.join(30)
    assert emulator.org.count("token") == 1
    waited = [value for kind, name, value, _ in second.got if name == "sf_oauth.lock_wait"]
    assert len(waited) == 1 and 0.2 < waited[0] < 10, second.got  # seconds, handed to the sink
    assert second.names()[-1].startswith("sf_oauth.cache_hit.")  # found the first caller's token
    assert "sf_oauth.cache_miss" not in second.names() and "sf_oauth.cache_miss" in first.names()
