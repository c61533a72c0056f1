"""The login budget: token requests per Salesforce user per rolling hour, refused at the cap
*before* they reach Salesforce — across threads, processes (one host's file store) and hosts
(one Redis), against the emulator's own login rate limit."""

from __future__ import annotations

import json
import logging
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from sf_oauth_provider.client import OAuthConfig, TokenProvider
from sf_oauth_provider.client.budget import WINDOW, BudgetSettings, budget_key
from sf_oauth_provider.client.errors import (
    SalesforceConfigError,
    SalesforceLoginBudgetExceeded,
    SalesforceLoginRateLimitError,
)

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(180)

# One process = one task: forces a token request (a cached token would not log in) and prints
# what happened. Started together behind a go-file so the processes race for the last logins.
ONE_LOGIN = r"""
import json, os, sys, time
from sf_oauth_provider.client import OAuthConfig, TokenProvider
from sf_oauth_provider.client.budget import BudgetSettings
from sf_oauth_provider.client.errors import SalesforceOAuthError

conn, go, cap = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
config = OAuthConfig.from_connection_fields("sf_budget", host=conn["host"], login=conn["login"],
                                            password=conn.get("password"), extra=conn["extra"])
provider = TokenProvider(config, login_budget=BudgetSettings(cap=cap, warn=0.0))
deadline = time.monotonic() + 60
while not os.path.exists(go) and time.monotonic() < deadline:
    time.sleep(0.005)
try:
    out = {"ok": provider.get_token(force_refresh=True).fingerprint}
except SalesforceOAuthError as exc:
    out = {"error": type(exc).__name__, "code": exc.error, "count": getattr(exc, "count", None),
           "message": str(exc)}
print(json.dumps(out))
"""


def config_of(conn: dict[str, Any], conn_id: str = "sf_budget", **extra: Any) -> OAuthConfig:
    return OAuthConfig.from_connection_fields(conn_id, host=conn["host"], login=conn["login"],
                                              password=conn.get("password"), extra={**conn["extra"], **extra})


def emulator_counters(emulator) -> dict[str, Any]:
    """What the emulator counted, read the way an operator would: its admin API."""
    return httpx.get(emulator.base_url + "/__emulator/counters", timeout=10).json()


def set_emulator(emulator, **settings: Any) -> None:
    httpx.post(emulator.base_url + "/__emulator/settings", json=settings, timeout=10).raise_for_status()


def run_processes(tmp_path: Path, conn: dict[str, Any], cap: int, envs: list[dict[str, str]]) -> list[dict[str, Any]]:
    script, go = tmp_path / "one_login.py", tmp_path / "go"
    script.write_text(ONE_LOGIN)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SF_OAUTH", "AIRFLOW"))}
    procs = [
        subprocess.Popen([sys.executable, str(script), json.dumps(conn), str(go), str(cap)], cwd=ROOT,
                         env={**base, "PYTHONPATH": str(ROOT), **env}, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for env in envs
    ]
    time.sleep(0.5)  # let them import; they wait for the go-file
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


# ---- one process, against the emulator's limit ---------------------------------------------------
def test_the_cap_refuses_the_next_login_before_salesforce_sees_it(emulator, emulator_connections, tmp_path):
    set_emulator(emulator, login_rate_limit=4)  # Salesforce's 3,600, scaled down
    config = config_of(emulator_connections["salesforce_oauth_default"], cache="file")
    provider = TokenProvider(config, cache_dir=tmp_path / "cache", login_budget=BudgetSettings(cap=3, warn=0.0))
    for _ in range(3):
        provider.get_token(force_refresh=True)
    with pytest.raises(SalesforceLoginBudgetExceeded) as refused:
        provider.get_token(force_refresh=True)
    exc = refused.value
    assert emulator_counters(emulator)["endpoints"]["token"] == 3  # the 4th never left the process
    assert (exc.count, exc.cap, exc.error, exc.transient) == (3, 3, "login_budget_exceeded", False)
    assert isinstance(exc, SalesforceLoginRateLimitError)  # operators fail it without Airflow retries
    text = str(exc)
    assert "3 token requests" in text and "the cap is 3" in text and "No request was sent" in text
    assert "[sf_oauth] login_budget_cap" in text and "AIRFLOW__SF_OAUTH__LOGIN_BUDGET_CAP" in text
    assert exc.frees_up_at is not None and abs(exc.frees_up_at - (time.time() + WINDOW)) < 60
    assert time.strftime("%Y-%m-%dT%H:%M", time.gmtime(exc.frees_up_at)) in text
    # a copy that crossed a process boundary (multiprocessing, Airflow) says the same
    copy = pickle.loads(pickle.dumps(exc))
    assert (type(copy), str(copy), copy.count, copy.cap, copy.frees_up_at) == (
        SalesforceLoginBudgetExceeded, text, 3, 3, exc.frees_up_at)


def test_without_a_cap_the_same_logins_trip_salesforces_limit(emulator, emulator_connections, tmp_path):
    set_emulator(emulator, login_rate_limit=3)
    config = config_of(emulator_connections["salesforce_oauth_default"], cache="file")
    provider = TokenProvider(config, cache_dir=tmp_path / "cache", login_budget=BudgetSettings(cap=0, warn=0.0))
    for _ in range(3):
        provider.get_token(force_refresh=True)
    with pytest.raises(SalesforceLoginRateLimitError) as tripped:
        provider.get_token(force_refresh=True)
    assert not isinstance(tripped.value, SalesforceLoginBudgetExceeded)  # Salesforce's own refusal
    assert emulator_counters(emulator)["endpoints"]["token"] == 4


def test_the_warning_is_logged_from_the_threshold_on(emulator, emulator_connections, tmp_path, caplog):
    config = config_of(emulator_connections["salesforce_oauth_default"], cache="memory")
    # warn at 3 of Salesforce's 3,600 (3/3600 of it)
    provider = TokenProvider(config, login_budget=BudgetSettings(cap=0, warn=3 / 3600))
    caplog.set_level(logging.WARNING)
    for _ in range(2):
        provider.get_token(force_refresh=True)
    assert "Login budget" not in caplog.text
    provider.get_token(force_refresh=True)
    warnings = [r.getMessage() for r in caplog.records if "Login budget" in r.getMessage()]
    assert len(warnings) == 1
    assert "made 3 token requests" in warnings[0] and "warning from 3" in warnings[0]


def test_the_budget_frees_up_when_the_oldest_login_leaves_the_hour(emulator, emulator_connections, tmp_path):
    now = [1_900_000_000.0]
    config = config_of(emulator_connections["salesforce_oauth_default"], cache="file")
    provider = TokenProvider(config, cache_dir=tmp_path / "cache", login_budget=BudgetSettings(cap=2, warn=0.0),
                             budget_clock=lambda: now[0])
    first = now[0]
    provider.get_token(force_refresh=True)
    now[0] += 600
    provider.get_token(force_refresh=True)
    with pytest.raises(SalesforceLoginBudgetExceeded) as refused:
        provider.get_token(force_refresh=True)
    assert refused.value.frees_up_at == first + WINDOW
    assert "2030-03-17T18:46:40+00:00" in str(refused.value)  # first + 1 h, as the message says it
    now[0] = first + WINDOW - 1  # the first login is still in the hour
    with pytest.raises(SalesforceLoginBudgetExceeded):
        provider.get_token(force_refresh=True)
    now[0] = first + WINDOW + 1  # it has left: one login free (the second is still counted)
    provider.get_token(force_refresh=True)
    with pytest.raises(SalesforceLoginBudgetExceeded) as again:
        provider.get_token(force_refresh=True)
    assert again.value.frees_up_at == first + 600 + WINDOW
    assert emulator_counters(emulator)["endpoints"]["token"] == 3
    assert provider.budget.used().count == 2


def test_a_cached_token_costs_no_login(emulator, emulator_connections, tmp_path):
    config = config_of(emulator_connections["salesforce_oauth_default"], cache="file")
    provider = TokenProvider(config, cache_dir=tmp_path / "cache", login_budget=BudgetSettings(cap=1, warn=0.0))
    for _ in range(5):
        provider.get_token()
    assert provider.budget.used().count == 1 and emulator.org.count("token") == 1


# ---- many processes on one host: the file store --------------------------------------------------
def test_processes_sharing_the_file_store_share_one_budget(emulator, emulator_connections, tmp_path):
    set_emulator(emulator, login_rate_limit=10)
    conn = json.loads(json.dumps(emulator_connections["salesforce_oauth_default"]))
    conn["extra"]["cache"] = "file"
    env = {"SF_OAUTH_CACHE_DIR": str(tmp_path / "host-cache")}
    results = run_processes(tmp_path, conn, cap=4, envs=[env] * 6)
    assert sum("ok" in r for r in results) == 4, results
    refused = [r for r in results if "error" in r]
    assert [r["error"] for r in refused] == ["SalesforceLoginBudgetExceeded"] * 2, refused
    assert all(r["count"] == 4 for r in refused)
    assert emulator_counters(emulator)["endpoints"]["token"] == 4
    # the count is a small private file beside the tokens
    (logins,) = (tmp_path / "host-cache").glob("lb-*.logins")
    assert oct(logins.stat().st_mode & 0o777) == "0o600" and len(json.loads(logins.read_text())) == 4


# ---- many hosts: one Redis ----------------------------------------------------------------------
def test_hosts_sharing_redis_share_one_budget(emulator, emulator_connections, tmp_path, redis_url, redis_server):
    set_emulator(emulator, login_rate_limit=10)
    conn = json.loads(json.dumps(emulator_connections["salesforce_oauth_default"]))
    conn["extra"]["cache"] = "redis"
    # three hosts (each its own cache dir, as on separate machines), two processes each
    envs = [{"SF_OAUTH_CACHE_DIR": str(tmp_path / f"host{i % 3}"), "SF_OAUTH_REDIS_URL": redis_url}
            for i in range(6)]
    results = run_processes(tmp_path, conn, cap=3, envs=envs)
    assert sum("ok" in r for r in results) == 3, results
    assert sorted(r.get("error", "") for r in results if "error" in r) == ["SalesforceLoginBudgetExceeded"] * 3
    assert emulator_counters(emulator)["endpoints"]["token"] == 3
    key = budget_key(config_of(conn))
    assert redis_server.client().zcard(f"sf_oauth:v1:logins:{key}") == 3
    # no host counted on its own: the budget lived in Redis only
    assert not list(tmp_path.glob("host*/lb-*.logins"))


def test_a_failing_redis_falls_back_to_the_hosts_count(emulator, emulator_connections, tmp_path):
    config = config_of(emulator_connections["salesforce_oauth_default"], cache="auto")
    provider = TokenProvider(config, cache_dir=tmp_path / "cache", redis_url="redis://127.0.0.1:1/0",
                             login_budget=BudgetSettings(cap=2, warn=0.0))
    provider.get_token(force_refresh=True)
    provider.get_token(force_refresh=True)
    with pytest.raises(SalesforceLoginBudgetExceeded):
        provider.get_token(force_refresh=True)
    assert provider.budget.ledger.name == "redis" and emulator.org.count("token") == 2
    assert list((tmp_path / "cache").glob("lb-*.logins"))


# ---- whose budget ---------------------------------------------------------------------------------
def test_budget_keys_follow_the_salesforce_user(emulator_connections):
    jwt = emulator_connections["salesforce_oauth_default"]
    same_user_other_conn = config_of(jwt, "sf_other", timeout=5)
    assert budget_key(config_of(jwt)) == budget_key(same_user_other_conn)
    other_user = config_of(jwt, username="someone.else@example.com")
    assert budget_key(other_user) != budget_key(config_of(jwt))
    assert "example" not in budget_key(other_user) and budget_key(other_user).startswith("lb-")


@pytest.mark.parametrize("cap,warn,name", [("lots", None, "login_budget_cap"), ("-1", None, "login_budget_cap"),
                                           (None, "80%", "login_budget_warn"), (None, "1.5", "login_budget_warn")])
def test_bad_settings_name_the_setting(cap, warn, name):
    with pytest.raises(SalesforceConfigError, match=rf"\[sf_oauth\] {name}"):
        BudgetSettings.parse(cap, warn)
    assert BudgetSettings.parse(None, "") == BudgetSettings(cap=3000, warn=0.8)
    assert BudgetSettings.parse("0", "0") == BudgetSettings(cap=0, warn=0.0)
    assert BudgetSettings(cap=3000, warn=0.8).warn_at == 2880


def test_async_callers_count_in_redis_too(emulator, emulator_connections, tmp_path, redis_url, redis_server):
    import asyncio

    config = config_of(emulator_connections["salesforce_oauth_default"], cache="redis")
    provider = TokenProvider(config, cache_dir=tmp_path / "cache", redis_url=redis_url,
                             login_budget=BudgetSettings(cap=2, warn=0.0))

    async def logins() -> None:
        await provider.aget_token(force_refresh=True)
        await provider.aget_token(force_refresh=True)
        with pytest.raises(SalesforceLoginBudgetExceeded):
            await provider.aget_token(force_refresh=True)

    asyncio.run(logins())
    assert redis_server.client().zcard(f"sf_oauth:v1:logins:{budget_key(config)}") == 2
    assert emulator.org.count("token") == 2
