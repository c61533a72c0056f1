"""Fault matrix: every fault kind on every endpoint, through the hook, against the emulator.

Expected everywhere: a transient error class, a clear message, exactly ``attempts`` requests when
the fault persists, and success once it clears within the retry bound.
"""

from __future__ import annotations

import json

import pytest

from sf_oauth_provider.client import errors as E
from sf_oauth_provider.client.oauth import RetryPolicy
from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

FAST = RetryPolicy(attempts=3, initial_backoff=0.01, max_backoff=0.05, max_total=20)

# fault -> (error class, words one of which the message shows)
FAULTS = {
    "json503": (E.SalesforceUnavailableError, ("503",)),
    "html503": (E.SalesforceUnavailableError, ("503", "HTML")),
    "500": (E.SalesforceUnavailableError, ("500",)),
    "latency": (E.SalesforceConnectionError, ("no answer within",)),
    "reset": (E.SalesforceConnectionError, ("connection failed",)),
    "429": (E.SalesforceRateLimitError, ("429", "rate", "Limit exceeded")),  # REST API: 403 REQUEST_LIMIT_EXCEEDED
}
ENDPOINTS = ["token", "introspect", "revoke", "query"]


@pytest.fixture
def sf(emulator, sf_connections, set_connection):
    conn = json.loads(json.dumps(sf_connections["salesforce_oauth_default"]))
    conn["extra"]["timeout"] = 0.4
    set_connection("sf_fault", conn)
    hook = SalesforceOAuthHook("sf_fault", retry=FAST)
    token = hook.get_token()  # a token to introspect / query with, before any fault
    emulator.org.reset_counters()
    return hook, token


def _call(hook, endpoint, token):
    if endpoint == "token":
        return hook.get_token(force_refresh=True)
    if endpoint == "introspect":
        return hook.introspect(token.access_token)
    if endpoint == "revoke":
        return hook.revoke(hook.client.fetch_token().access_token)
    return hook.query("SELECT Id FROM Account LIMIT 2")


def _fault(kind):
    return {"kind": "latency", "seconds": 1.2} if kind == "latency" else {"kind": kind}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("kind", list(FAULTS))
def test_persistent_fault_gives_transient_error_after_bounded_tries(emulator, sf, endpoint, kind):
    hook, token = sf
    if endpoint == "revoke":
        fresh = hook.client.fetch_token().access_token
        emulator.org.reset_counters()
    emulator.org.set_faults(endpoint, sequence=[_fault(kind)] * 6)
    with pytest.raises(E.SalesforceOAuthError) as info:
        if endpoint == "revoke":
            hook.revoke(fresh)
        else:
            _call(hook, endpoint, token)
    cls, words = FAULTS[kind]
    assert isinstance(info.value, cls) and info.value.transient, repr(info.value)
    assert any(w in str(info.value) for w in words), str(info.value)
    assert emulator.org.count(endpoint) == 3


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("kind", list(FAULTS))
def test_fault_that_clears_within_the_bound_succeeds(emulator, sf, endpoint, kind):
    hook, token = sf
    fresh = hook.client.fetch_token().access_token if endpoint == "revoke" else None
    emulator.org.reset_counters()
    emulator.org.set_faults(endpoint, sequence=[_fault(kind)] * 2)
    result = hook.revoke(fresh) if endpoint == "revoke" else _call(hook, endpoint, token)
    assert result
    assert emulator.org.count(endpoint) == 3


def test_login_rate_limit_is_one_request_and_says_when_it_frees_up(emulator, sf):
    hook, _ = sf
    emulator.org.settings.login_rate_limit = 1  # the fixture already logged in once this hour
    with pytest.raises(E.SalesforceLoginRateLimitError) as info:
        hook.get_token(force_refresh=True)
    assert "LOGIN_RATE_EXCEEDED" in str(info.value) and "3,600" in info.value.hint
    assert not E.retry_may_help(info.value) and " UTC" in str(info.value)
    assert emulator.org.count("token") == 1  # retrying within seconds only burns the hourly budget


def test_login_rate_limit_fails_the_sensor_and_operators_without_retries(emulator, sf, tmp_path):
    from tests.airflow_compat import AirflowFailException
    from tests.operators.test_audit import context

    from sf_oauth_provider.operators.revoke import SalesforceRevokeTokenOperator
    from sf_oauth_provider.sensors.token import SalesforceTokenSensor

    emulator.org.settings.login_rate_limit = 1
    sensor = SalesforceTokenSensor(task_id="wait", salesforce_oauth_conn_id="sf_fault", timeout=5, poke_interval=0.1)
    hook, _ = sf
    hook.invalidate_token()  # the sensor must log in
    with pytest.raises(AirflowFailException, match="LOGIN_RATE_EXCEEDED.* UTC"):
        sensor.execute({})
    revoke = SalesforceRevokeTokenOperator(task_id="revoke", salesforce_oauth_conn_id="sf_fault",
                                           revoke_current=True, dry_run=False)
    with pytest.raises(AirflowFailException, match="LOGIN_RATE_EXCEEDED"):
        revoke.execute(context())
    assert emulator.org.count("token") == 2  # one refused login per task try
