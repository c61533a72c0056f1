"""SalesforceBulkQueryOperator and SalesforceBulkJobTrigger against the emulator: the extract in the
worker, the wait in a real trigger, failures with Salesforce's words, parameters named, a killed
extract that leaves no partial file, a killed task that aborts its job."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sf_oauth_provider.operators.bulk import SalesforceBulkQueryOperator
from sf_oauth_provider.triggers.bulk import SalesforceBulkJobTrigger
from tests.airflow_compat import AirflowException, AirflowFailException, TaskDeferred

ROOT = Path(__file__).resolve().parents[2]
SOQL = "SELECT Id, Name, Account.Name FROM Opportunity"



@pytest.fixture(autouse=True)
def _jobs_finish_at_once(emulator):
    """Jobs complete on the org clock with no processing delay: no test waits on Salesforce's work
    unless it sets a delay itself (and then the wall-clock client timeout is what is tested)."""
    emulator.org.settings.bulk_query_delay = 0.0

def op(tmp_path: Path, **kwargs: Any) -> SalesforceBulkQueryOperator:
    kwargs.setdefault("soql", SOQL)
    kwargs.setdefault("destination", str(tmp_path / "out" / "opps.csv"))
    kwargs.setdefault("poll_interval", 0.05)
    kwargs.setdefault("retry_backoff", 0.01)
    return SalesforceBulkQueryOperator(task_id="extract", **kwargs)


def ids_in(path: str | Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [r["Id"] for r in csv.DictReader(fh)]


def test_extract_in_the_worker(emulator, sf_connections, tmp_path):
    value = op(tmp_path, deferrable=False, max_records="4").execute({})
    assert set(value) == {"location", "rows", "bytes", "job_id"}
    ids = ids_in(value["location"])
    assert sorted(ids) == sorted(o["Id"] for o in emulator.org.opportunities) and value["rows"] == len(ids)


async def test_deferred_extract_waits_in_the_trigger_then_streams(emulator, sf_connections, tmp_path):
    emulator.org.settings.bulk_query_delay = 0.5
    task = op(tmp_path, deferrable=True)
    with pytest.raises(TaskDeferred) as info:
        task.execute({})
    trigger = info.value.trigger
    assert isinstance(trigger, SalesforceBulkJobTrigger) and info.value.method_name == "execute_complete"
    path, kwargs = trigger.serialize()
    assert path == "sf_oauth_provider.triggers.bulk.SalesforceBulkJobTrigger"
    assert set(kwargs) == {"salesforce_oauth_conn_id", "job_id", "api_version", "poll_interval", "end_at",
                           "retry_attempts", "retry_backoff"}
    assert not any(t in json.dumps(kwargs) for t in emulator.org.issued_tokens())
    assert not (tmp_path / "out" / "opps.csv").exists()  # nothing streamed before the job is done
    events = [e.payload async for e in SalesforceBulkJobTrigger(**kwargs).run()]
    assert [e["status"] for e in events] == ["success"] and events[0]["state"] == "JobComplete"
    value = task.execute_complete({}, events[0])
    assert value["job_id"] == kwargs["job_id"] and value["rows"] == len(emulator.org.opportunities)
    assert sorted(ids_in(value["location"])) == sorted(o["Id"] for o in emulator.org.opportunities)


async def test_a_failed_job_fails_the_task_with_salesforces_words(emulator, sf_connections, tmp_path):
    emulator.org.bulk_query.fail_next = "Query timed out: too many rows scanned"
    task = op(tmp_path, deferrable=True)
    with pytest.raises(TaskDeferred) as info:
        task.execute({})
    events = [e.payload async for e in info.value.trigger.run()]
    assert events[0]["status"] == "error" and events[0]["state"] == "Failed"
    with pytest.raises(AirflowFailException, match="Query timed out: too many rows scanned"):
        task.execute_complete({}, events[0])
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


async def test_the_trigger_aborts_a_job_past_the_timeout(emulator, sf_connections, tmp_path):
    emulator.org.settings.bulk_query_delay = 3600.0
    task = op(tmp_path, deferrable=True, timeout=0.5)
    with pytest.raises(TaskDeferred) as info:
        task.execute({})
    events = [e.payload async for e in info.value.trigger.run()]
    assert events[0]["status"] == "timeout"
    job = emulator.org.bulk_query.get(events[0]["job_id"], emulator.org.clock.now())
    assert job is not None and job.state(emulator.org.clock.now()) == "Aborted"
    with pytest.raises(AirflowException, match="did not finish in time") as err:
        task.execute_complete({}, events[0])
    assert not isinstance(err.value, AirflowFailException)  # Airflow may retry a timeout


def test_refused_soql_fails_at_submission_without_retries(emulator, sf_connections, tmp_path):
    with pytest.raises(AirflowFailException, match="Submitting the Bulk query job failed") as err:
        op(tmp_path, deferrable=True, soql="SELECT COUNT() FROM Account").execute({})
    assert "salesforce_oauth_default" in str(err.value)


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"soql": ""}, "'soql' is empty"),
    ({"destination": "  "}, "'destination' is empty"),
    ({"poll_interval": "soon"}, "'poll_interval' must be a number"),
    ({"timeout": "0"}, "'timeout' must be more than 0"),
    ({"all_rows": "maybe"}, "'all_rows' must be true or false"),
    ({"max_records": "lots"}, "'max_records' must be a whole number"),
    ({"line_ending": "CR"}, "line_ending"),
])
def test_a_bad_rendered_parameter_is_named(emulator, sf_connections, tmp_path, kwargs, named):
    task = op(tmp_path, deferrable=False, **{k: "{{ params.x }}" for k in kwargs})
    for k, v in kwargs.items():
        setattr(task, k, v)  # as the template rendered it
    with pytest.raises(AirflowFailException, match=named):
        task.execute({})
    assert emulator.org.count("bulk") == 0


def test_literal_bad_values_fail_when_the_dag_is_parsed(tmp_path):
    with pytest.raises(ValueError, match="'poll_interval' must be a number"):
        op(tmp_path, poll_interval="soon")


# ---- killed -----------------------------------------------------------------------------------
_EXTRACT = r"""
import signal, sys
from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook
def stop(*_):  # what Airflow's task runner does on SIGTERM: raise in the task
    raise SystemExit("terminated")
signal.signal(signal.SIGTERM, stop)
print(SalesforceOAuthHook("salesforce_oauth_default").bulk_extract(sys.argv[1], sys.argv[2], max_records=3,
      poll_interval=0.05, timeout=120).as_dict(), flush=True)
"""


def _extract_process(sf_connections, soql: str, target: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env["AIRFLOW_CONN_SALESFORCE_OAUTH_DEFAULT"] = json.dumps(sf_connections["salesforce_oauth_default"])
    return subprocess.Popen([sys.executable, "-c", _EXTRACT, soql, str(target)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, seconds: float = 60.0) -> None:
    end = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def test_a_killed_extract_leaves_no_partial_file_and_a_rerun_completes_it(emulator, sf_connections, tmp_path):
    emulator.org.set_faults("bulk", latency=0.3)  # slow pages: the kill lands mid-download
    out = tmp_path / "out"
    out.mkdir()
    target = out / "opps.csv"
    proc = _extract_process(sf_connections, SOQL, target)
    try:
        _wait_for(lambda: any(p.name.endswith(".part") and p.stat().st_size > 0 for p in out.iterdir()))
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert not target.exists()  # only the temporary name, never a partial file under the final one
    emulator.org.clear_faults()
    value = op(tmp_path, deferrable=False, destination=str(target)).execute({})
    assert sorted(ids_in(target)) == sorted(o["Id"] for o in emulator.org.opportunities)
    assert value["rows"] == len(emulator.org.opportunities)


def test_a_terminated_task_aborts_its_running_job(emulator, sf_connections, tmp_path):
    emulator.org.settings.bulk_query_delay = 3600.0
    proc = _extract_process(sf_connections, SOQL, tmp_path / "opps.csv")
    try:
        _wait_for(lambda: len(emulator.org.bulk_query.jobs) == 1 and emulator.org.count("bulk") >= 2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    (job,) = emulator.org.bulk_query.jobs.values()
    assert job.state(emulator.org.clock.now()) == "Aborted", err[-2000:]
    assert not (tmp_path / "opps.csv").exists()


def test_on_kill_aborts_the_job_the_task_waits_for(emulator, sf_connections, tmp_path):
    import threading

    emulator.org.settings.bulk_query_delay = 3600.0
    task = op(tmp_path, deferrable=False, timeout=60)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            task.execute({})
        except BaseException as exc:  # noqa: BLE001 - the test reads it
            failure.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    _wait_for(lambda: task._job is not None)
    task.on_kill()
    (job,) = emulator.org.bulk_query.jobs.values()
    assert job.state(emulator.org.clock.now()) == "Aborted"
    worker.join(30)
    assert failure and "aborted" in str(failure[0])  # the waiting extract sees the abort and fails
