"""A mistyped connection id is a permanent error that names the closest ``salesforce_oauth``
connection: Airflow must not retry it like an outage (issue 27, item 1)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.airflow_compat import AirflowFailException

from sf_oauth_provider.client.errors import SalesforceConfigError, retry_may_help
from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = ROOT / ".venv" / "bin" / "airflow"


@pytest.fixture
def other_types(set_connection):
    """Connections of other types, one of them closer to the typo than any Salesforce one."""
    set_connection("salesforce_oauth_defaul", {"conn_type": "postgres", "host": "db.internal", "password": "pw0123456"})
    os.environ["AIRFLOW_CONN_SF_HTTP"] = "http://user:pw@example.invalid"  # a URI, not JSON
    yield
    os.environ.pop("AIRFLOW_CONN_SF_HTTP", None)


def test_a_mistyped_conn_id_is_permanent_and_names_the_closest(emulator, sf_connections, other_types):
    hook = SalesforceOAuthHook("salesforce_oauth_defualt")
    with pytest.raises(SalesforceConfigError) as info:
        hook.get_token()
    exc = info.value
    assert not retry_may_help(exc)
    assert exc.field == "salesforce_oauth_conn_id"
    message = str(exc)
    assert message.startswith("Connection 'salesforce_oauth_defualt': ")
    assert "isn't defined" in message  # Airflow's own words are kept
    assert "did you mean 'salesforce_oauth_default'?" in message  # not the postgres one, though closer
    assert "salesforce_oauth_defaul'" not in message and "pw0123456" not in message
    assert emulator.org.count("token") == 0


def test_code_that_catches_airflows_not_found_still_catches_it(sf_connections):
    from airflow.exceptions import AirflowNotFoundException

    with pytest.raises(AirflowNotFoundException):
        SalesforceOAuthHook("sf_nope").config  # noqa: B018


def test_without_a_close_match_the_message_lists_what_exists(sf_connections):
    with pytest.raises(SalesforceConfigError) as info:
        SalesforceOAuthHook("warehouse").config  # noqa: B018
    message = str(info.value)
    assert "did you mean" not in message
    assert "salesforce_oauth_cc, salesforce_oauth_default, salesforce_oauth_refresh" in message
    assert "airflow connections list" in message  # where DB-stored connections can be seen


def test_the_error_survives_pickling(sf_connections):
    import pickle

    with pytest.raises(SalesforceConfigError) as info:
        SalesforceOAuthHook("sf_prdo").config  # noqa: B018
    again = pickle.loads(pickle.dumps(info.value))
    assert type(again) is type(info.value) and str(again) == str(info.value) and again.field == info.value.field


async def test_async_lookup_says_the_same(sf_connections):
    with pytest.raises(SalesforceConfigError, match="did you mean 'salesforce_oauth_cc'"):
        await SalesforceOAuthHook("salesforce_oauth_ccc").aget_token()


def test_sensor_fails_without_retries(sf_connections):
    from sf_oauth_provider.sensors.token import SalesforceTokenSensor

    task = SalesforceTokenSensor(task_id="wait", salesforce_oauth_conn_id="salesforce_oauth_defualt", timeout=5,
                                 poke_interval=0.1)
    with pytest.raises(AirflowFailException, match="did you mean 'salesforce_oauth_default'"):
        task.execute({})


async def test_trigger_ends_with_an_error_event(sf_connections):
    from sf_oauth_provider.triggers.token import SalesforceTokenTrigger

    trigger = SalesforceTokenTrigger(salesforce_oauth_conn_id="salesforce_oauth_defualt", poke_interval=0.1)
    event = await anext(trigger.run())
    assert event.payload["status"] == "error" and "did you mean 'salesforce_oauth_default'" in event.payload["message"]


def test_operators_fail_without_retries(sf_connections, tmp_path):
    from sf_oauth_provider.operators.audit import SalesforceTokenAuditOperator
    from sf_oauth_provider.operators.revoke import SalesforceRevokeTokenOperator
    from tests.operators.test_audit import context

    revoke = SalesforceRevokeTokenOperator(task_id="revoke", salesforce_oauth_conn_id="salesforce_oauth_defualt",
                                           revoke_current=True)
    with pytest.raises(AirflowFailException, match="did you mean 'salesforce_oauth_default'"):
        revoke.execute(context())
    audit = SalesforceTokenAuditOperator(task_id="audit", salesforce_oauth_conn_id="salesforce_oauth_defualt",
                                         report_dir=str(tmp_path / "r"))
    with pytest.raises(AirflowFailException, match="did you mean 'salesforce_oauth_default'"):
        audit.execute(context())


def test_connections_in_the_metadata_db_are_named_where_the_db_is_reachable(tmp_path, emulator_connections):
    """In a process that reads connections from the metadata DB (scheduler, API server, a shell
    with ``_AIRFLOW_PROCESS_CONTEXT=server``), DB-stored connections are candidates too."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SF_OAUTH", "PYTEST"))}
    env.update(AIRFLOW_HOME=str(tmp_path), AIRFLOW__CORE__LOAD_EXAMPLES="False", PYTHONPATH=str(ROOT),
               AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{tmp_path / 'airflow.db'}")
    conn = emulator_connections["salesforce_oauth_default"]
    script = f"""
import json
from airflow.models import Connection
from airflow.utils.db import initdb
from airflow.utils.session import create_session
initdb()
with create_session() as session:
    session.add(Connection(conn_id="sf_production", conn_type="salesforce_oauth", host={conn['host']!r},
                           login="key", extra=json.dumps({{"username": "u@x"}})))
    session.add(Connection(conn_id="sf_productio", conn_type="postgres", host="db"))
from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook
try:
    SalesforceOAuthHook("sf_prodution").config
except Exception as exc:
    print("ERROR", type(exc).__name__, exc)
"""
    env["_AIRFLOW_PROCESS_CONTEXT"] = "server"
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=240)
    assert "ERROR SalesforceConnectionNotFound" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
    assert "did you mean 'sf_production'?" in done.stdout
