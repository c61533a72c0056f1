"""Emergency revocation: revoke OAuth tokens by fingerprint, on demand, dry run first.

Trigger it by hand (schedule ``None``) with the params:

* ``token_fingerprints``: fingerprints of ``OauthToken`` rows, e.g. from a ``token_audit``
  report (``sha256:`` + 12 hex; a token's fingerprint never reveals the token);
* ``revoke_current``: also revoke the connection's own current access token;
* ``dry_run`` (default **true**): report what would be revoked and revoke nothing. Re-trigger with
  ``dry_run`` false once the dry run's list looks right.

* ``fail_on_not_found`` (default **true**): fail when a fingerprint matches no token — a typo, or
  a token revoked earlier; the run still revokes every fingerprint that does match.

Revocation is capped (``max_revocations``) and every result names tokens by fingerprint only.
Runs unchanged against a real org: point the connection ``salesforce_oauth_default`` at it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

from sf_oauth_provider.operators.revoke import SalesforceRevokeTokenOperator

__all__ = ["dag"]

CONN_ID = "salesforce_oauth_default"

with DAG(
    dag_id="emergency_revocation",
    description="Revoke Salesforce OAuth tokens by fingerprint (manual, dry run by default)",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    params={
        "token_fingerprints": Param(
            [],
            type="array",
            items={"type": "string", "pattern": "^sha256:[0-9a-f]{12}$"},
            description="Fingerprints of the OauthToken rows to revoke",
        ),
        "revoke_current": Param(False, type="boolean", description="Also revoke the connection's current token"),
        "dry_run": Param(True, type="boolean", description="Report only; revoke nothing"),
        "fail_on_not_found": Param(
            True, type="boolean", description="Fail when a fingerprint matches no token (a typo, or revoked earlier)"
        ),
    },
    tags=["salesforce", "example", "security"],
) as dag:
    revoke_by_fingerprint = SalesforceRevokeTokenOperator(
        task_id="revoke_by_fingerprint",
        salesforce_oauth_conn_id=CONN_ID,
        token_fingerprints="{{ params.token_fingerprints }}",
        dry_run="{{ params.dry_run }}",
        fail_on_not_found="{{ params.fail_on_not_found }}",
        max_revocations=100,
    )

    @task.short_circuit(ignore_downstream_trigger_rules=True)
    def current_token_requested(params: dict[str, Any] | None = None) -> bool:
        """Continue to ``revoke_current_token`` only when the param ``revoke_current`` is true.

        :param params: the DAG params (injected by Airflow)
        """
        return bool((params or {}).get("revoke_current"))

    revoke_current_token = SalesforceRevokeTokenOperator(
        task_id="revoke_current_token",
        salesforce_oauth_conn_id=CONN_ID,
        revoke_current=True,
        dry_run="{{ params.dry_run }}",
    )

    # the connection's own token goes last: the fingerprint revocations still need it
    revoke_by_fingerprint >> current_token_requested() >> revoke_current_token
