"""A DAG for the metrics test: one task fetches a token, the next finds it in the cache, the
last uses a connection whose private key the connected app does not know (a permanent error).

The connections (``sf_metrics``, ``sf_metrics_broken``) come from ``AIRFLOW_CONN_*`` set by the test.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, task

from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

with DAG("sf_oauth_metrics", schedule=None, start_date=datetime(2025, 1, 1), catchup=False) as dag:

    @task
    def fetch() -> str:
        return SalesforceOAuthHook("sf_metrics").get_token().fingerprint

    @task
    def reuse() -> str:
        return SalesforceOAuthHook("sf_metrics").get_token().fingerprint

    @task(retries=0, trigger_rule="all_done")
    def broken() -> str:
        return SalesforceOAuthHook("sf_metrics_broken").get_token().fingerprint

    fetch() >> reuse() >> broken()
