"""A DAG for the SalesforceTokenSensor tests: the sensor in poke and deferrable mode, each once
with a working connection and once with a connection whose private key does not match.

Each task has its own connection (``sf_<task_id>``), defined by the test through
``AIRFLOW_CONN_SF_<TASK_ID>``; the tasks are independent, so every one runs.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from sf_oauth_provider.sensors.token import SalesforceTokenSensor

TASKS = {"poke_ok": False, "deferrable_ok": True, "poke_bad_key": False, "deferrable_bad_key": True}

with DAG("sf_token_sensor", schedule=None, start_date=datetime(2025, 1, 1), catchup=False) as dag:
    for task_id, deferrable in TASKS.items():
        SalesforceTokenSensor(
            task_id=task_id,
            salesforce_oauth_conn_id=f"sf_{task_id}",
            min_remaining=timedelta(minutes=10),
            deferrable=deferrable,
            poke_interval=0.2,
            timeout=60,
            # Airflow retries must not multiply logins: a permanent error fails the task without
            # them (lockout safety), which the tests check as exactly one token request per task.
            retries=3,
            retry_delay=timedelta(seconds=0),
            retry_attempts=1,
            retry_backoff=0.01,
        )
