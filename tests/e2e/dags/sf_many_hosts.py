"""The CeleryExecutor stack test's DAG: a mapped task of 40 instances, each using two connections.

``sf_redis`` (JWT bearer, extra ``cache: redis``: the deployment's ``[sf_oauth] redis_url``) and
``sf_file`` (client credentials, extra ``cache: file``: the worker host's cache directory only).
Each instance returns which "host" ran it (its worker's ``SF_OAUTH_CACHE_DIR``) and the
fingerprints of the tokens it got — never a token.
"""

from __future__ import annotations

import os
from pathlib import Path

import pendulum
from airflow.sdk import dag, task

INSTANCES = 40


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["test"])
def sf_many_hosts():
    @task(retries=0)
    def use_tokens(i: int) -> dict[str, str]:
        from sf_oauth_provider.client.token import fingerprint
        from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

        seen = {"index": str(i), "host": Path(os.environ["SF_OAUTH_CACHE_DIR"]).name}
        for conn_id in ("sf_redis", "sf_file"):
            seen[conn_id] = fingerprint(SalesforceOAuthHook(conn_id).get_token().access_token)
        return seen

    use_tokens.expand(i=list(range(INSTANCES)))


sf_many_hosts()
