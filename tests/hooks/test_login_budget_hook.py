"""The hook reads the login budget from Airflow config ``[sf_oauth] login_budget_cap`` /
``login_budget_warn`` (here through ``AIRFLOW__SF_OAUTH__...``), and the sensor fails a refused
login without Airflow retries, as it does any permanent error."""

from __future__ import annotations

import logging

import pytest

from sf_oauth_provider.client.errors import SalesforceConfigError, SalesforceLoginBudgetExceeded
from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook
from sf_oauth_provider.sensors.token import SalesforceTokenSensor
from tests.airflow_compat import AirflowFailException

pytestmark = pytest.mark.timeout(120)


def test_the_cap_comes_from_airflow_config(emulator, sf_connections, monkeypatch):
    monkeypatch.setenv("AIRFLOW__SF_OAUTH__LOGIN_BUDGET_CAP", "2")
    monkeypatch.setenv("AIRFLOW__SF_OAUTH__LOGIN_BUDGET_WARN", "0")
    hook = SalesforceOAuthHook()
    hook.get_token(force_refresh=True)
    hook.get_token(force_refresh=True)
    with pytest.raises(SalesforceLoginBudgetExceeded, match="the cap is 2"):
        SalesforceOAuthHook().get_token(force_refresh=True)  # another hook, same user: same budget
    assert emulator.org.count("token") == 2


def test_the_sensor_fails_a_refused_login_without_retries(emulator, sf_connections, monkeypatch):
    monkeypatch.setenv("AIRFLOW__SF_OAUTH__LOGIN_BUDGET_CAP", "1")
    SalesforceOAuthHook().get_token()  # the one login of the hour
    SalesforceOAuthHook().invalidate_token()  # the cached token is gone: the sensor must log in
    sensor = SalesforceTokenSensor(task_id="t", poke_interval=0.1, timeout=10, retry_attempts=1)
    with pytest.raises(AirflowFailException, match="login budget used up"):
        sensor.poke({})
    assert emulator.org.count("token") == 1


def test_the_warning_threshold_comes_from_airflow_config(emulator, sf_connections, monkeypatch, caplog, capfd):
    monkeypatch.setenv("AIRFLOW__SF_OAUTH__LOGIN_BUDGET_WARN", str(2 / 3600))
    caplog.set_level(logging.WARNING)
    hook = SalesforceOAuthHook()
    hook.get_token(force_refresh=True)
    assert "Login budget" not in output(caplog, capfd)
    hook.get_token(force_refresh=True)
    assert "Login budget: connection 'salesforce_oauth_default' made 2 token requests" in output(caplog, capfd)


def output(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> str:
    """What the task log shows: Airflow's task logger writes to the process's output."""
    out, err = capfd.readouterr()
    return caplog.text + out + err


def test_a_bad_setting_names_itself(emulator, sf_connections, monkeypatch):
    monkeypatch.setenv("AIRFLOW__SF_OAUTH__LOGIN_BUDGET_CAP", "many")
    with pytest.raises(SalesforceConfigError, match=r"\[sf_oauth\] login_budget_cap must be a whole number"):
        SalesforceOAuthHook().get_token()
    assert emulator.org.count("token") == 0


def test_a_connection_that_cannot_be_read_counts_as_a_permanent_error(emulator, sf_connections, monkeypatch):
    sent: list[str] = []

    class Recorder:
        def incr(self, name: str, count: int = 1, tags: object = None) -> None:
            sent.append(name)

        timing = gauge = incr

    monkeypatch.setattr(SalesforceOAuthHook, "metrics_sink", Recorder())
    with pytest.raises(SalesforceConfigError):
        SalesforceOAuthHook("salesforce_oauth_missing").get_token()
    assert sent == ["sf_oauth.permanent_error.SalesforceConnectionNotFound"]
    SalesforceOAuthHook().get_token()
    assert sent[1:] == ["sf_oauth.lock_wait", "sf_oauth.logins_last_hour.salesforce_oauth_default",
                        "sf_oauth.token_request.jwt_bearer.ok", "sf_oauth.cache_miss"]
