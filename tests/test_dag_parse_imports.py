"""What parsing a DAG file costs: importing the hook, the operators and the sensor, and building
the tasks, loads none of what only a running task needs (DESIGN §7's import-cost target).

A structural check, not a timing: ``make bench`` measures the time (benchmarks/import_cost.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Loaded when a task runs, never when a DAG file is parsed: the client's config, tokens, stores,
#: HTTP and JWT code; the check's flow; the audit's rules, report and writers; the report folder;
#: the operators' run-time helpers; and the trigger (which pulls in Airflow's airflow.triggers.base).
RUN_TIME_ONLY = (
    "sf_oauth_provider.client.assertion", "sf_oauth_provider.client.auth", "sf_oauth_provider.client.cache",
    "sf_oauth_provider.client.certificate", "sf_oauth_provider.client.config", "sf_oauth_provider.client.oauth",
    "sf_oauth_provider.client.provider", "sf_oauth_provider.client.responses", "sf_oauth_provider.client.stores",
    "sf_oauth_provider.client.token", "sf_oauth_provider.client.budget", "sf_oauth_provider.client.budget_redis",
    "sf_oauth_provider.client.metrics", "sf_oauth_provider.token_check.flow", "sf_oauth_provider.operators._common",
    "sf_oauth_provider.operators.inventory", "sf_oauth_provider.data", "sf_oauth_provider.triggers.bulk",
    "sf_oauth_provider.operators.audit.findings", "sf_oauth_provider.operators.audit.render",
    "sf_oauth_provider.operators.audit.report", "sf_oauth_provider.operators.audit.rules",
    "sf_oauth_provider.operators.audit.sources", "sf_oauth_provider.reporting.cells",
    "sf_oauth_provider.reporting.location", "sf_oauth_provider.triggers.token", "airflow.triggers.base", "jwt",
    "redis", "tabulate",
)

_PARSE_A_DAG = r"""
import json, sys
from datetime import timedelta
import airflow.sdk
from airflow.sdk import DAG, BaseOperator, BaseSensorOperator

# what Airflow itself loads for any DAG with an operator and a sensor (on 3.0 that includes its
# triggers, jwt and tabulate): not ours to avoid
class _Sensor(BaseSensorOperator):
    def poke(self, context):
        return True

class _Operator(BaseOperator):
    pass

with DAG("baseline", schedule=None):
    _Sensor(task_id="sensor")
    _Operator(task_id="operator")
before = set(sys.modules)

from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook
from sf_oauth_provider.operators.audit import SalesforceTokenAuditOperator
from sf_oauth_provider.operators.bulk import SalesforceBulkQueryOperator
from sf_oauth_provider.operators.revoke import SalesforceRevokeTokenOperator
from sf_oauth_provider.sensors.token import SalesforceTokenSensor

with DAG("parse_only", schedule=None):  # literal parameters: each operator checks them here
    SalesforceTokenSensor(task_id="token_ok", min_remaining=timedelta(minutes=5), check="introspect")
    SalesforceTokenAuditOperator(task_id="audit", conn_ids=["salesforce_oauth_default"], stale_after_days=30,
                                 allowed_scopes=["api", "refresh_token"], fail_on_findings=True)
    SalesforceRevokeTokenOperator(task_id="revoke", token_fingerprints=["sha256:0123456789ab"], dry_run=True,
                                  max_revocations=5)
    SalesforceBulkQueryOperator(task_id="extract", soql="SELECT Id FROM Account WHERE SystemModstamp >= {{ ts }}",
                                destination="s3://aws_default@bucket/accounts/{{ ds }}.csv", deferrable=True)
SalesforceOAuthHook("salesforce_oauth_default")  # building a hook reads nothing either
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def test_parsing_a_dag_file_loads_nothing_a_task_needs_only_when_it_runs(tmp_path):
    env_home = tmp_path / "airflow-home"
    out = subprocess.run(
        [sys.executable, "-c", _PARSE_A_DAG], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**_env(), "AIRFLOW_HOME": str(env_home)},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert "sf_oauth_provider.sensors.token" in loaded  # the imports did happen in this process
    too_early = [m for m in loaded if any(m == r or m.startswith(r + ".") for r in RUN_TIME_ONLY)]
    assert too_early == []


def test_run_time_names_still_load_through_their_packages():
    """What the lazy packages promise: every listed name and submodule resolves."""
    code = (
        "import importlib\n"
        "for pkg in ('sf_oauth_provider.client', 'sf_oauth_provider.hooks', 'sf_oauth_provider.triggers',\n"
        "            'sf_oauth_provider.token_check', 'sf_oauth_provider.operators',\n"
        "            'sf_oauth_provider.operators.audit', 'sf_oauth_provider.reporting'):\n"
        "    module = importlib.import_module(pkg)\n"
        "    for name in dir(module):\n"
        "        getattr(module, name)  # AttributeError: a listed name its module does not define\n"
        "    assert set(getattr(module, '__all__', ())) <= set(dir(module)), pkg\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env=_env())
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
