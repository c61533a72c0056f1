"""SalesforceTokenTrigger against the emulator: serialize, success, outage, permanent error."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from sf_oauth_provider.token_check import CHECKS
from sf_oauth_provider.triggers.token import SalesforceTokenTrigger

FAST = {"retry_attempts": 2, "retry_backoff": 0.01}


async def events_of(trigger: SalesforceTokenTrigger, limit: float = 20.0) -> list[dict[str, Any]]:
    """Every event the trigger yields (it must end by itself within ``limit`` seconds)."""

    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    return await asyncio.wait_for(collect(), timeout=limit)


def assert_no_token_in(emulator, *values: Any) -> None:
    text = "".join(repr(v) for v in values)
    issued = emulator.org.issued_tokens()
    assert issued, "the emulator issued no token: the check never reached it"
    assert not [t for t in issued if t in text]


def broken_key_connection(sf_connections: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from tests.keys import pem, rsa_key

    conn = json.loads(json.dumps(sf_connections["salesforce_oauth_default"]))
    conn["extra"].pop("jwt_key_file")
    conn["extra"]["private_key"] = pem(rsa_key())  # not the key whose certificate the app holds
    return conn


# ---- serialize ---------------------------------------------------------------------------------
def test_serialize_round_trips():
    trigger = SalesforceTokenTrigger(
        "sf_prod", min_remaining_seconds=900, check="userinfo", poke_interval=5, end_at=1_800_000_000, **FAST
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "sf_oauth_provider.triggers.token.SalesforceTokenTrigger"
    assert json.loads(json.dumps(kwargs)) == kwargs  # plain values only
    assert kwargs == {
        "salesforce_oauth_conn_id": "sf_prod", "min_remaining_seconds": 900.0, "check": "userinfo",
        "poke_interval": 5.0, "retry_attempts": 2, "retry_backoff": 0.01, "end_at": 1_800_000_000.0,
    }
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(__import__(module, fromlist=[name]), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)


def test_unknown_check_is_refused():
    with pytest.raises(ValueError, match="'check'.*'auto', 'introspect', 'userinfo'.*'whoami'"):
        SalesforceTokenTrigger(check="whoami")
    assert CHECKS == ("auto", "introspect", "userinfo")


# ---- success -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("check", "used"), [("auto", "introspect"), ("introspect", "introspect"), ("userinfo", "userinfo")])
async def test_yields_success_with_a_non_secret_payload(emulator, sf_connections, check, used):
    trigger = SalesforceTokenTrigger(check=check, poke_interval=0.1, **FAST)
    events = await events_of(trigger)
    assert len(events) == 1
    event = events[0]
    assert event["status"] == "success" and event["check"] == used and event["refreshed"] is False
    assert event["fingerprint"].startswith("sha256:") and event["instance_url"] == emulator.base_url
    assert event["username"] == emulator.org.demo.jwt_username and event["user_id"].startswith("005")
    assert event["seconds_left"] > 600 and event["expires_at"].endswith("+00:00")
    assert emulator.org.count("token") == 1
    assert emulator.org.count(used) >= 1
    assert_no_token_in(emulator, events, trigger.serialize())


async def test_auto_uses_userinfo_without_a_consumer_secret(emulator, sf_connections, set_connection):
    conn = dict(sf_connections["salesforce_oauth_default"], password=None)
    set_connection("sf_no_secret", conn)
    (event,) = await events_of(SalesforceTokenTrigger("sf_no_secret", poke_interval=0.1, **FAST))
    assert event["status"] == "success" and event["check"] == "userinfo"
    assert emulator.org.count("introspect") == 0 and emulator.org.count("userinfo") == 1


# ---- refresh -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("check", "refreshed"), [("userinfo", True), ("introspect", False)])
async def test_short_lived_cached_token_is_refreshed(emulator, sf_connections, check, refreshed):
    """The cached token's own estimate says 500 s left. userinfo has nothing better: refresh.
    Introspection's ``exp`` wins over the estimate: the emulator, like Salesforce, extends the
    session on use (now 7200 s), so no refresh is needed."""
    from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

    emulator.org.settings.session_timeout = 500  # > the hook's leeway, < min_remaining
    old = SalesforceOAuthHook().get_token()
    emulator.org.settings.session_timeout = 7200
    trigger = SalesforceTokenTrigger(min_remaining_seconds=600, check=check, poke_interval=0.1, **FAST)
    (event,) = await events_of(trigger)
    assert event["status"] == "success" and event["refreshed"] is refreshed
    assert (event["fingerprint"] != old.fingerprint) is refreshed
    assert event["seconds_left"] > 7000
    assert emulator.org.count("token") == (2 if refreshed else 1)


@pytest.mark.parametrize("check", ["introspect", "userinfo"])
async def test_revoked_cached_token_is_replaced(emulator, sf_connections, check):
    from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

    old = SalesforceOAuthHook().get_token()
    # an admin revokes it in Setup: the token cache still holds it, Salesforce refuses it
    assert emulator.org.revoke_token(old.access_token) is True
    (event,) = await events_of(SalesforceTokenTrigger(check=check, poke_interval=0.1, **FAST))
    assert event["status"] == "success" and event["refreshed"] is True
    assert event["fingerprint"] != old.fingerprint
    assert emulator.org.count("token") == 2


async def test_token_that_can_never_live_long_enough_is_an_error(emulator, sf_connections):
    # poke_interval far beyond events_of's 60 s bound: had the trigger slept once, it would time out
    trigger = SalesforceTokenTrigger(min_remaining_seconds=3 * 3600, poke_interval=3600, **FAST)
    (event,) = await events_of(trigger, limit=60)
    assert event["status"] == "error" and "min_remaining" in event["message"] and "session timeout" in event["hint"]
    assert emulator.org.count("token") == 2  # the cached token, then one refresh; no refresh storm


# ---- errors ------------------------------------------------------------------------------------
async def test_success_after_a_transient_outage(emulator, sf_connections):
    emulator.org.set_faults("token", sequence=["json503", "html503", "json503", "json503", "500"])
    started = time.monotonic()
    (event,) = await events_of(SalesforceTokenTrigger(poke_interval=0.1, **FAST))
    assert event["status"] == "success"
    # two tries per check: checks 1 and 2 fail on four faults, check 3 gets one fault and a token
    assert emulator.org.count("token") == 6
    assert time.monotonic() - started >= 0.2  # slept poke_interval after each failed check
    assert_no_token_in(emulator, event)


async def test_permanent_error_yields_one_error_event_at_once(emulator, sf_connections, set_connection):
    set_connection("sf_bad_key", broken_key_connection(sf_connections))
    # at once: poke_interval is far beyond events_of's 60 s bound, so a single sleep would time out
    trigger = SalesforceTokenTrigger("sf_bad_key", poke_interval=3600, **FAST)
    events = await events_of(trigger, limit=60)
    assert len(events) == 1
    event = events[0]
    assert event["status"] == "error" and event["error"] == "invalid_grant"
    assert "invalid assertion" in event["message"] and "certificate" in event["hint"]
    assert event["hint"] in event["message"]
    assert emulator.org.count("token") == 1


async def test_config_error_is_permanent(emulator, sf_connections, set_connection):
    conn = dict(sf_connections["salesforce_oauth_default"], password=None)
    set_connection("sf_no_secret", conn)
    (event,) = await events_of(SalesforceTokenTrigger("sf_no_secret", check="introspect", poke_interval=30, **FAST))
    assert event["status"] == "error" and "password" in event["message"]
    assert emulator.org.count("introspect") == 0


# ---- one HTTP pool for the trigger's life ------------------------------------------------------
class PoolCounter:
    """Counts the HTTP connection pools (``httpx.AsyncClient``) opened while it is installed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import httpx

        self.opened = 0
        original = httpx.AsyncClient.__init__

        def counted(client: Any, *args: Any, **kwargs: Any) -> None:
            self.opened += 1
            original(client, *args, **kwargs)

        monkeypatch.setattr(httpx.AsyncClient, "__init__", counted)


@pytest.mark.parametrize("check", ["introspect", "userinfo"])
async def test_a_trigger_opens_one_http_pool_for_all_its_checks(emulator, sf_connections, monkeypatch, check):
    """The first check fetches a token (and introspects it for its expiry), every check then
    introspects or calls userinfo: all of it on one pool, not a new pool per call."""
    emulator.org.set_faults(check, sequence=["json503", "json503", "json503", "json503"])
    pools = PoolCounter(monkeypatch)
    (event,) = await events_of(SalesforceTokenTrigger(poke_interval=0.05, check=check, **FAST))
    assert event["status"] == "success"
    assert emulator.org.count(check) >= 5  # three checks ran (two failed on the faults)
    assert pools.opened == 1
