"""SalesforceTokenSensor: poke results, deferral, and real ``airflow dags test`` runs on the emulator."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator

import pytest
from airflow.sdk import PokeReturnValue
from tests.airflow_compat import AirflowFailException, TaskDeferred

from sf_oauth_provider.sensors.token import SalesforceTokenSensor
from sf_oauth_provider.token_check import CHECKS
from sf_oauth_provider.triggers.token import SalesforceTokenTrigger

ROOT = Path(__file__).resolve().parents[2]
DAGS = Path(__file__).resolve().parent / "dags"
AIRFLOW = ROOT / ".venv" / "bin" / "airflow"
FAST = {"retry_attempts": 1, "retry_backoff": 0.01}


def sensor(**kwargs: Any) -> SalesforceTokenSensor:
    kwargs = {"task_id": "wait_for_token", "poke_interval": 0.1, "timeout": 30, **FAST, **kwargs}
    return SalesforceTokenSensor(**kwargs)


def broken_key_connection(conn: dict[str, Any]) -> dict[str, Any]:
    from tests.keys import pem, rsa_key

    conn = json.loads(json.dumps(conn))
    conn["extra"].pop("jwt_key_file")
    conn["extra"]["private_key"] = pem(rsa_key())  # not the key whose certificate the app holds
    return conn


def leaked(issued: list[str], *values: Any) -> list[str]:
    text = "".join(v if isinstance(v, str) else repr(v) for v in values)
    return [t for t in issued if t in text]


# ---- arguments ---------------------------------------------------------------------------------
def test_arguments_are_validated():
    with pytest.raises(ValueError, match="'check' must be one of 'auto', 'introspect', 'userinfo'; got 'whoami'"):
        sensor(check="whoami")
    with pytest.raises(ValueError, match="'min_remaining'"):
        sensor(min_remaining=-1)
    assert sensor(min_remaining=90).min_remaining == timedelta(seconds=90)
    assert sensor().min_remaining == timedelta(minutes=10) and sensor().deferrable is False
    assert CHECKS == ("auto", "introspect", "userinfo")


# ---- poke --------------------------------------------------------------------------------------
def test_poke_succeeds_with_a_non_secret_xcom_value(emulator, sf_connections):
    result = sensor().poke({})
    assert isinstance(result, PokeReturnValue) and result.is_done
    value = result.xcom_value
    assert value["check"] == "introspect" and value["fingerprint"].startswith("sha256:")
    assert value["username"] == emulator.org.demo.jwt_username and value["seconds_left"] > 600
    assert value["instance_url"] == emulator.base_url
    assert json.loads(json.dumps(value)) == value  # plain values for XCom
    assert emulator.org.issued_tokens() and not leaked(emulator.org.issued_tokens(), value)


def test_poke_is_not_done_on_a_transient_error(emulator, sf_connections, capsys):
    emulator.org.set_faults("token", sequence=["html503"])
    result = sensor().poke({})
    assert isinstance(result, PokeReturnValue) and not result.is_done
    assert "failed transiently" in capsys.readouterr().out  # Airflow's task logger writes to stdout
    assert sensor().poke({}).is_done  # the outage is over


def test_poke_fails_at_once_on_a_permanent_error(emulator, sf_connections, set_connection):
    set_connection("sf_bad_key", broken_key_connection(sf_connections["salesforce_oauth_default"]))
    with pytest.raises(AirflowFailException, match="invalid assertion.*certificate"):
        sensor(salesforce_oauth_conn_id="sf_bad_key", retry_attempts=3).poke({})
    assert emulator.org.count("token") == 1


def test_poke_mode_execute_returns_the_payload(emulator, sf_connections):
    emulator.org.set_faults("token", sequence=["json503"])  # first poke: not yet; second: done
    value = sensor(check="userinfo").execute({})
    assert value["check"] == "userinfo" and value["fingerprint"].startswith("sha256:")
    assert emulator.org.count("token") == 2


def test_poke_mode_times_out_during_a_long_outage(emulator, sf_connections):
    from tests.airflow_compat import AirflowSensorTimeout

    emulator.org.set_faults("token", rate=1.0)  # every token request: 503
    with pytest.raises(AirflowSensorTimeout) as info:
        sensor(timeout=1, poke_interval=0.1).execute({})
    assert emulator.org.count("token") >= 1  # transient: no AirflowFailException, checks until the timeout
    # the timeout says why the token never came: the last error and its hint
    message = str(info.value)
    assert "Sensor has timed out" in message
    assert "last check of connection 'salesforce_oauth_default' failed: " in message and "503" in message
    assert "Salesforce had an internal error" in message  # the error's hint


# ---- deferrable --------------------------------------------------------------------------------
def test_defers_when_the_first_check_is_transient(emulator, sf_connections):
    emulator.org.set_faults("token", sequence=["json503"])
    task = sensor(deferrable=True, min_remaining=timedelta(minutes=15), check="userinfo", timeout=120, poke_interval=7)
    before = time.time()
    with pytest.raises(TaskDeferred) as info:
        task.execute({})
    deferred = info.value
    # the trigger ends the wait itself (with the last error); Airflow's timeout is only a backstop
    assert deferred.method_name == "execute_complete" and deferred.timeout > timedelta(seconds=120)
    trigger = deferred.trigger
    assert isinstance(trigger, SalesforceTokenTrigger)
    kwargs = trigger.serialize()[1]
    assert before + 120 <= kwargs.pop("end_at") <= time.time() + 120
    assert kwargs == {
        "salesforce_oauth_conn_id": "salesforce_oauth_default", "min_remaining_seconds": 900.0,
        "check": "userinfo", "poke_interval": 7.0, "retry_attempts": 1, "retry_backoff": 0.01,
    }
    assert emulator.org.count("token") == 1


def test_deferrable_returns_at_once_when_the_first_check_succeeds(emulator, sf_connections):
    value = sensor(deferrable=True).execute({})
    assert value["check"] == "introspect" and value["refreshed"] is False


def test_deferrable_fails_without_deferring_on_a_permanent_error(emulator, sf_connections, set_connection):
    set_connection("sf_bad_key", broken_key_connection(sf_connections["salesforce_oauth_default"]))
    with pytest.raises(AirflowFailException, match="certificate"):
        sensor(salesforce_oauth_conn_id="sf_bad_key", deferrable=True).execute({})
    assert emulator.org.count("token") == 1


async def test_deferred_sensor_times_out_with_the_last_error(emulator, sf_connections):
    from tests.airflow_compat import AirflowSensorTimeout

    emulator.org.set_faults("token", rate=1.0)  # a long outage: every token request 503
    task = sensor(deferrable=True, timeout=1, poke_interval=0.2)
    with pytest.raises(TaskDeferred) as info:
        task.execute({})

    async def collect() -> list[dict[str, Any]]:
        return [e.payload async for e in info.value.trigger.run()]

    events = await asyncio.wait_for(collect(), timeout=30)  # before the fix: no event, ever
    assert [e["status"] for e in events] == ["timeout"]
    assert "503" in events[0]["message"]
    with pytest.raises(AirflowSensorTimeout, match=r"timed out after 1 s.*last check of connection 'salesforce_oauth_default' failed: .*503"):
        task.execute_complete({}, events[0])


async def test_trigger_event_resumes_the_sensor(emulator, sf_connections):
    emulator.org.set_faults("token", sequence=["json503"])
    task = sensor(deferrable=True)
    with pytest.raises(TaskDeferred) as info:
        task.execute({})
    events = [e.payload async for e in info.value.trigger.run()]
    assert len(events) == 1
    value = task.execute_complete({}, events[0])
    assert value["fingerprint"].startswith("sha256:") and "status" not in value and "message" not in value
    assert not leaked(emulator.org.issued_tokens(), info.value.trigger.serialize(), events, value)
    with pytest.raises(AirflowFailException, match="no approval"):
        task.execute_complete({}, {"status": "error", "message": "no approval", "hint": None})


# ---- a real DAG run ---------------------------------------------------------------------------
DAG_ID = "sf_token_sensor"
#: task id -> (broken key?, token faults for the worker's first check)
TASKS = {
    "poke_ok": (False, ["json503"]),
    "deferrable_ok": (False, ["json503"]),  # the first check fails transiently: the task defers
    "poke_bad_key": (True, []),
    "deferrable_bad_key": (True, []),
}


def _airflow_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SF_OAUTH", "PYTEST"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(DAGS),
        PYTHONPATH=str(ROOT),
    )
    return env


class AirflowHome:
    """A temporary AIRFLOW_HOME whose ``airflow db migrate`` runs in the background from creation.

    :param path: the folder
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._proc = subprocess.Popen(
            [str(AIRFLOW), "db", "migrate"], env=_airflow_env(path),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )

    def ready(self) -> Path:
        """Wait for the migration (at most 3 minutes) and return the path."""
        output, _ = self._proc.communicate(timeout=180)
        assert self._proc.returncode == 0, output[-4000:]
        return self.path

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)


@pytest.fixture(scope="session")
def migrated_airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowHome]:
    """An AIRFLOW_HOME with a migrated SQLite DB, once per session (``.ready()`` waits for it)."""
    home = AirflowHome(tmp_path_factory.mktemp("airflow_home"))
    try:
        yield home
    finally:
        home.stop()


@pytest.fixture(scope="module", autouse=True)
def _dag_run_in_background(request: pytest.FixtureRequest) -> Iterator[Future[dict[str, Any]] | None]:
    """Start the DAG run when this module starts (if a selected test needs it), so Airflow's
    start-up overlaps the fast tests above instead of adding to them."""
    if not any("dag_run" in getattr(item, "fixturenames", ()) for item in request.session.items):
        yield None
        return
    home = request.getfixturevalue("migrated_airflow_home")
    base = request.getfixturevalue("tmp_path_factory").mktemp("dag_run")
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(_run_dag, home, base)
        yield future
        future.result(timeout=600)  # the subprocess has its own timeouts; this only bounds the wait


@pytest.fixture
def dag_run(_dag_run_in_background: Future[dict[str, Any]] | None) -> dict[str, Any]:
    """What the one ``airflow dags test`` of the DAG in ``dags/`` did."""
    assert _dag_run_in_background is not None
    return _dag_run_in_background.result(timeout=600)


def _run_dag(home: AirflowHome, base: Path) -> dict[str, Any]:
    """Run the DAG with ``airflow dags test``; every task talks to its own emulator, so each
    task's token requests are counted apart."""
    from sf_oauth_provider.emulator import seed_demo_org, serve
    from sf_oauth_provider.emulator.connections import connection_dicts, write_private_key

    env = _airflow_env(home.path)
    env["SF_OAUTH_CACHE_DIR"] = str(base / "token-cache")
    with ExitStack() as stack:
        emulators = {}
        for task_id, (bad_key, faults) in TASKS.items():
            emu = emulators[task_id] = stack.enter_context(serve(seed_demo_org(42)))
            key = write_private_key(emu.org, base / f"{task_id}.pem")
            conn = connection_dicts(emu, key)["salesforce_oauth_default"]
            env[f"AIRFLOW_CONN_SF_{task_id.upper()}"] = json.dumps(broken_key_connection(conn) if bad_key else conn)
            if faults:
                emu.org.set_faults("token", sequence=faults)
        home.ready()
        done = subprocess.run(
            [str(AIRFLOW), "dags", "test", DAG_ID], env=env, cwd=base,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=240,
        )
        return {
            "rc": done.returncode,
            "output": done.stdout,
            "logs": _task_logs(done.stdout),
            "token_requests": {t: emu.org.count("token") for t, emu in emulators.items()},
            "issued": [tok for emu in emulators.values() for tok in emu.org.issued_tokens()],
            **_run_state(home.path / "airflow.db"),
        }


def _task_logs(output: str) -> dict[str, str]:
    """The part of ``dags test`` output written while each task ran (tasks run one at a time)."""
    logs: dict[str, str] = {}
    current = None
    for line in output.splitlines():
        if "[DAG TEST] starting task_id=" in line:
            current = line.split("task_id=", 1)[1].split()[0]
        if current:
            logs[current] = logs.get(current, "") + line + "\n"
        if "[DAG TEST] end task" in line:
            current = None
    return logs


def _run_state(db: Path) -> dict[str, Any]:
    with sqlite3.connect(db) as con:
        (run_id,) = con.execute(
            "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (DAG_ID,)
        ).fetchone()
        rows = con.execute(
            "SELECT task_id, state, duration FROM task_instance WHERE dag_id = ? AND run_id = ?", (DAG_ID, run_id)
        ).fetchall()
        xcom = {}
        for task_id, raw in con.execute(
            "SELECT task_id, value FROM xcom WHERE dag_id = ? AND run_id = ? AND key = 'return_value'", (DAG_ID, run_id)
        ).fetchall():
            value = json.loads(raw) if isinstance(raw, (str, bytes)) else raw
            xcom[task_id] = json.loads(value) if isinstance(value, str) else value
    return {
        "states": {task_id: state for task_id, state, _ in rows},
        "durations": {task_id: duration for task_id, _, duration in rows},
        "xcom": xcom,
    }


@pytest.mark.parametrize("task_id", ["poke_ok", "deferrable_ok"])
def test_dag_run_succeeds(dag_run, task_id):
    assert dag_run["states"][task_id] == "success", dag_run["logs"].get(task_id, dag_run["output"][-4000:])
    value = dag_run["xcom"][task_id]
    assert value["fingerprint"].startswith("sha256:") and value["seconds_left"] > 600
    assert value["check"] == "introspect"
    assert dag_run["token_requests"][task_id] == 2  # one refused by the injected 503, then the token
    assert "failed transiently" in dag_run["logs"][task_id]
    assert not leaked(dag_run["issued"], dag_run["output"], dag_run["xcom"])


def test_deferrable_task_waited_in_the_trigger(dag_run):
    log = dag_run["logs"]["deferrable_ok"]
    assert "checking again later" in log  # the worker's check was transient ...
    assert "SalesforceTokenTrigger" in log  # ... so the trigger ran (inline under dags test)
    assert "is alive at Salesforce" in log


@pytest.mark.parametrize("task_id", ["poke_bad_key", "deferrable_bad_key"])
def test_dag_run_fails_fast_with_the_hint(dag_run, task_id):
    assert dag_run["states"][task_id] == "failed"
    log = dag_run["logs"][task_id]
    assert "invalid assertion" in log
    assert "must match the certificate uploaded to the connected app" in log
    assert dag_run["token_requests"][task_id] == 1  # retries=3, yet one request: no lockout
    assert task_id not in dag_run["xcom"]
    assert "SalesforceTokenTrigger" not in log  # failed on the worker, never deferred
    assert not leaked(dag_run["issued"], dag_run["output"])
