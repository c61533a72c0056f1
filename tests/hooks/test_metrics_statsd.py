"""Metrics reach the deployment's StatsD: a real ``airflow dags test`` run whose tasks use the hook
against the emulator, with ``[metrics] statsd_on`` pointing at a UDP socket on 127.0.0.1.

Plain StatsD has no tags, so each dimension arrives as a dotted suffix of the name, under
Airflow's prefix (``airflow.``). Needs the ``statsd`` package (``apache-airflow[statsd]``: the test
extra installs it), as any deployment that turns StatsD on does.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from sf_oauth_provider.client.metrics import NO_METRICS, Metrics
from sf_oauth_provider.hooks.airflow_metrics import AirflowStatsSink

ROOT = Path(__file__).resolve().parents[2]
DAGS = Path(__file__).resolve().parent / "dags"
#: the Airflow of the interpreter running the tests (each `make test-compat` row has its own)
AIRFLOW = Path(sys.executable).parent / "airflow"
DAG_ID = "sf_oauth_metrics"

pytestmark = pytest.mark.timeout(420)


class StatsdListener:
    """A UDP socket on 127.0.0.1 that keeps every StatsD line it receives (until stopped)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                packet = self.sock.recv(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            self.lines.extend(packet.decode("utf-8", "replace").splitlines())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def _env(home: Path, port: int, cache_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SF_OAUTH", "PYTEST"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(DAGS),
        AIRFLOW__METRICS__STATSD_ON="True",
        AIRFLOW__METRICS__STATSD_HOST="127.0.0.1",
        AIRFLOW__METRICS__STATSD_PORT=str(port),
        SF_OAUTH_CACHE_DIR=str(cache_dir),
        PYTHONPATH=str(ROOT),
    )
    return env


@pytest.fixture(scope="module")
def dag_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One ``airflow dags test`` of the metrics DAG, and every StatsD line it sent."""
    from sf_oauth_provider.emulator import seed_demo_org, serve
    from sf_oauth_provider.emulator.connections import connection_dicts, write_private_key
    from tests.keys import pem, rsa_key

    base = tmp_path_factory.mktemp("metrics_run")
    home = base / "airflow_home"
    home.mkdir()
    listener = StatsdListener()
    try:
        with serve(seed_demo_org(42)) as emu:
            env = _env(home, listener.port, base / "token-cache")
            conn = connection_dicts(emu, write_private_key(emu.org, base / "key.pem"))["salesforce_oauth_default"]
            broken = json.loads(json.dumps(conn))
            broken["extra"].pop("jwt_key_file")
            broken["extra"]["private_key"] = pem(rsa_key())  # not the key whose certificate the app holds
            env["AIRFLOW_CONN_SF_METRICS"] = json.dumps(conn)
            env["AIRFLOW_CONN_SF_METRICS_BROKEN"] = json.dumps(broken)
            migrated = subprocess.run([str(AIRFLOW), "db", "migrate"], env=env, cwd=base, capture_output=True,
                                      text=True, timeout=240)
            assert migrated.returncode == 0, migrated.stdout[-3000:] + migrated.stderr[-3000:]
            listener.lines.clear()  # only what the run sends
            done = subprocess.run([str(AIRFLOW), "dags", "test", DAG_ID], env=env, cwd=base,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=240)
            token_requests = emu.org.count("token")
    finally:
        listener.stop()
    yield {"rc": done.returncode, "output": done.stdout, "lines": list(listener.lines),
           "token_requests": token_requests}


def ours(lines: list[str]) -> list[str]:
    return [line for line in lines if ".sf_oauth." in line]


def test_a_token_request_is_counted_by_flow_and_outcome(dag_run):
    lines = ours(dag_run["lines"])
    assert lines, dag_run["output"][-4000:]
    assert "airflow.sf_oauth.token_request.jwt_bearer.ok:1|c" in lines
    # the first task fetched, the second found it: one successful token request, one refused by Salesforce
    assert lines.count("airflow.sf_oauth.token_request.jwt_bearer.ok:1|c") == 1
    assert lines.count("airflow.sf_oauth.token_request.jwt_bearer.permanent_error:1|c") == 1
    assert dag_run["token_requests"] == 2


def test_a_cache_miss_then_a_cache_hit(dag_run):
    lines = ours(dag_run["lines"])
    miss = lines.index("airflow.sf_oauth.cache_miss:1|c")
    hits = [i for i, line in enumerate(lines) if line.startswith("airflow.sf_oauth.cache_hit.")]
    assert hits and hits[0] > miss, lines
    assert lines[hits[0]] in ("airflow.sf_oauth.cache_hit.memory:1|c", "airflow.sf_oauth.cache_hit.file:1|c")


def test_a_broken_connection_counts_a_permanent_error_with_salesforces_code(dag_run):
    assert "airflow.sf_oauth.permanent_error.invalid_grant:1|c" in ours(dag_run["lines"])
    assert "sf_metrics_broken" in dag_run["output"] and "invalid_grant" in dag_run["output"]


def test_the_lock_wait_and_the_logins_of_the_hour(dag_run):
    lines = ours(dag_run["lines"])
    waits = [line for line in lines if line.startswith("airflow.sf_oauth.lock_wait:")]
    assert waits and all(line.endswith("|ms") for line in waits)
    assert float(waits[0].split(":")[1].split("|")[0]) < 10_000  # milliseconds, not seconds
    assert "airflow.sf_oauth.logins_last_hour.sf_metrics:1|g" in lines
    # the broken connection logs in as the same Salesforce user: its login is the user's second this hour
    assert "airflow.sf_oauth.logins_last_hour.sf_metrics_broken:2|g" in lines


def test_no_secret_in_any_metric(dag_run):
    text = "\n".join(dag_run["lines"])
    assert "00D" not in text and "!" not in text  # access tokens look like 00Dxx!AQ...
    assert "BEGIN" not in text


# ---- the adapter, in process ----------------------------------------------------------------------
def test_the_client_sends_nothing_by_default_and_a_failing_sink_never_fails_a_call():
    assert Metrics().sink is NO_METRICS and not Metrics().enabled

    class Broken:
        def incr(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("statsd down")

        timing = gauge = incr

    metrics = Metrics(Broken())  # type: ignore[arg-type]
    metrics.cache_miss()
    metrics.token_request("jwt_bearer", "ok")  # no exception: metrics never fail a token request


def test_names_stay_within_what_every_backend_accepts():
    sent: list[tuple[str, dict[str, str]]] = []

    class Recorder:
        def incr(self, name: str, count: int = 1, tags: Any = None) -> None:
            sent.append((name, dict(tags or {})))

        def gauge(self, name: str, value: float, tags: Any = None) -> None:
            sent.append((name, dict(tags or {})))

        timing = gauge

    metrics = Metrics(Recorder())  # type: ignore[arg-type]
    metrics.logins_last_hour("sf prod/eu:1", 3)
    metrics.permanent_error(None)
    assert sent == [("sf_oauth.logins_last_hour.sf_prod_eu_1", {"conn_id": "sf_prod_eu_1"}),
                    ("sf_oauth.permanent_error.unknown", {"code": "unknown"})]
    assert repr(AirflowStatsSink()) == "AirflowStatsSink()"
