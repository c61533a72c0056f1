"""``make demo``: run the example DAGs for real against the bundled Salesforce org emulator.

Steps: start the emulator (``python -m sf_oauth_provider.emulator``) on 127.0.0.1, prepare a
demo ``AIRFLOW_HOME`` under ``.demo/airflow`` (``airflow db migrate``), run
``nightly_batch_report``, ``token_audit`` and ``emergency_revocation`` with
``airflow dags test`` (connections from the emulator's ``connections.json`` as
``AIRFLOW_CONN_*``), print a summary (run states, report files, counts, the token requests the
emulator saw) and stop the emulator, also on failure. Re-runnable; exits 1 if a run failed.

Airflow is only run in subprocesses: importing this module is cheap.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator, Sequence

__all__ = ["DemoRun", "EmulatorProcess", "airflow_env", "main", "run_dag", "start_emulator"]

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class DemoRun:
    """One ``airflow dags test`` run.

    :param dag_id: the DAG
    :param conf: the run's params (``-c``)
    :param returncode: exit status of ``airflow dags test``
    :param state: the DAG run's final state from the metadata DB
    :param xcoms: task id → return value (XCom) of the run's tasks
    :param seconds: wall time
    :param output: combined stdout/stderr of the run
    """

    dag_id: str
    conf: dict[str, Any]
    returncode: int
    state: str | None
    xcoms: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    output: str = ""

    @property
    def ok(self) -> bool:
        """The run succeeded."""
        return self.returncode == 0 and self.state == "success"


class EmulatorProcess:
    """The emulator in a subprocess: its base URL, connections file and ``stop()``.

    :param proc: the running ``python -m sf_oauth_provider.emulator`` process
    :param base_url: its root URL (My Domain / instance)
    :param state_dir: where it wrote ``connections.json`` and the demo key
    """

    def __init__(self, proc: subprocess.Popen[str], base_url: str, state_dir: Path) -> None:
        self.proc = proc
        self.base_url = base_url
        self.state_dir = state_dir
        self.connections_file = state_dir / "connections.json"

    def admin(self, path: str) -> Any:
        """GET ``/__emulator/<path>`` as JSON.

        :param path: e.g. ``counters``
        """
        with urllib.request.urlopen(f"{self.base_url}/__emulator/{path}", timeout=10) as resp:
            return json.loads(resp.read())

    def connections(self) -> dict[str, dict[str, Any]]:
        """Connection dicts (conn id → dict) written by the emulator."""
        return json.loads(self.connections_file.read_text(encoding="utf-8"))

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds (idempotent).

        :param timeout: seconds to wait for a clean exit
        """
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _lines(stream: IO[str], sink: queue.Queue[str | None]) -> None:
    for line in stream:
        sink.put(line)
    sink.put(None)


def start_emulator(state_dir: Path, timeout: float = 30.0) -> EmulatorProcess:
    """Start ``python -m sf_oauth_provider.emulator --port 0`` and wait for its ``READY`` line.

    :param state_dir: its ``--state-dir``
    :param timeout: seconds to wait for ``READY``
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sf_oauth_provider.emulator", "--port", "0", "--state-dir", str(state_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    assert proc.stdout is not None
    threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError("the emulator did not report READY in time:\n" + "".join(seen))
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError("the emulator exited before READY:\n" + "".join(seen))
            seen.append(line)
            if line.startswith("READY "):
                return EmulatorProcess(proc, line.split(None, 1)[1].strip(), state_dir)
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        raise


def airflow_env(
    airflow_home: Path,
    dags_folder: Path,
    connections: dict[str, dict[str, Any]],
    cache_dir: Path,
    output_dir: Path,
    base: dict[str, str] | None = None,
) -> dict[str, str]:
    """Environment for Airflow CLIs: own ``AIRFLOW_HOME``, example DAGs, connections as env vars.

    :param airflow_home: the ``AIRFLOW_HOME`` to use
    :param dags_folder: the DAGs folder
    :param connections: conn id → connection dict
    :param cache_dir: ``SF_OAUTH_CACHE_DIR``
    :param output_dir: ``SF_OAUTH_DEMO_OUTPUT``
    :param base: environment to start from (default: this process's)
    """
    env = {k: v for k, v in (base if base is not None else os.environ).items() if not k.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "SF_OAUTH_CACHE_DIR": str(cache_dir),
            "SF_OAUTH_DEMO_OUTPUT": str(output_dir),
            "SF_OAUTH_DEMO_POKE_INTERVAL": env.get("SF_OAUTH_DEMO_POKE_INTERVAL", "2"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    for conn_id, conn in connections.items():
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)
    return env


def _airflow(args: Sequence[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        env=env,
        cwd=env["AIRFLOW_HOME"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def migrate(env: dict[str, str], timeout: float = 300.0) -> None:
    """``airflow db migrate`` (idempotent) in ``env``'s ``AIRFLOW_HOME``.

    :param env: from :func:`airflow_env`
    :param timeout: seconds
    """
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    done = _airflow(["db", "migrate"], env, timeout)
    if done.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{done.stdout}\n{done.stderr}")


def _db_path(env: dict[str, str]) -> Path:
    return Path(env["AIRFLOW_HOME"]) / "airflow.db"


def _decode_xcom(raw: Any) -> Any:
    value = raw
    for _ in range(3):  # stored as JSON text (sometimes JSON of a JSON string)
        if isinstance(value, (bytes, bytearray)):
            value = value.decode("utf-8", "replace")
        if not isinstance(value, str):
            break
        try:
            value = json.loads(value)
        except ValueError:
            break
    return value


def latest_run(db_path: Path, dag_id: str) -> tuple[str | None, dict[str, Any]]:
    """The newest run of ``dag_id`` in the SQLite metadata DB: its state and its tasks' XComs.

    :param db_path: ``$AIRFLOW_HOME/airflow.db``
    :param dag_id: the DAG
    """
    if not db_path.exists():
        return None, {}
    with sqlite3.connect(db_path) as db:
        row = db.execute(
            "SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
        ).fetchone()
        if row is None:
            return None, {}
        run_id, state = row
        xcoms = {
            task_id: _decode_xcom(value)
            for task_id, value in db.execute(
                "SELECT task_id, value FROM xcom WHERE dag_id = ? AND run_id = ? AND key = 'return_value' "
                "ORDER BY timestamp",
                (dag_id, run_id),
            )
        }
    return state, xcoms


def run_dag(
    dag_id: str, env: dict[str, str], conf: dict[str, Any] | None = None, timeout: float = 300.0,
    logical_date: str | None = None,
) -> DemoRun:
    """``airflow dags test <dag_id> [<logical_date>] -c <conf>``; state and XComs read back from the DB.

    :param dag_id: the DAG
    :param env: from :func:`airflow_env`
    :param conf: run params
    :param timeout: seconds
    :param logical_date: e.g. ``2026-11-25`` (default: now)
    """
    conf = conf or {}
    args = ["dags", "test", dag_id] + ([logical_date] if logical_date else [])
    if conf:
        args += ["-c", json.dumps(conf)]
    started = time.monotonic()
    done = _airflow(args, env, timeout)
    state, xcoms = latest_run(_db_path(env), dag_id)
    return DemoRun(
        dag_id, conf, done.returncode, state, xcoms, time.monotonic() - started, done.stdout + done.stderr
    )


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _fmt_revocations(xcom: Any) -> str:
    x = _as_dict(xcom)
    if not x:
        return "skipped"
    mode = "dry run: " if x.get("dry_run") else ""
    would = sum(1 for i in x.get("items") or [] if isinstance(i, dict) and i.get("outcome") == "would_revoke")
    if x.get("dry_run"):
        return f"{mode}{would} would be revoked, {x.get('already_invalid', 0)} already invalid"
    return f"{x.get('revoked', 0)} revoked, {x.get('already_invalid', 0)} already invalid, {x.get('failed', 0)} failed"


def _summary_lines(run: DemoRun) -> Iterator[str]:
    mark = "OK  " if run.ok else "FAIL"
    conf = f" {json.dumps(run.conf)}" if run.conf else ""
    yield f"[{mark}] {run.dag_id}{conf}: {run.state or 'no run'} ({run.seconds:.1f} s)"
    x = run.xcoms
    if run.dag_id == "nightly_batch_report":
        rep = _as_dict(x.get("closed_won_report"))
        if rep:
            window = _as_dict(rep.get("window"))
            yield (f"       CloseDate {window.get('start')} up to {window.get('end')}: {rep.get('opportunities')} "
                   f"opportunities, total {rep.get('currency', '')} {rep.get('total_amount', 0):,.2f}")
            yield f"       CSV:     {rep.get('csv_path')}"
            yield f"       summary: {rep.get('summary_path')}"
        bulk = _as_dict(x.get("extract_changed_opportunities"))
        if bulk:
            yield (f"       Bulk API 2.0 extract of the window's changes (job {bulk.get('job_id')}): "
                   f"{bulk.get('rows')} rows, {bulk.get('bytes')} bytes")
            yield f"       CSV:     {bulk.get('location')}"
        yield f"       revoke current token: {_fmt_revocations(x.get('revoke_current_token'))}"
    elif run.dag_id == "token_audit":
        audit = _as_dict(x.get("audit_tokens"))
        if audit:
            counts = _as_dict(audit.get("counts"))
            yield (f"       findings: {counts.get('findings')} ({counts.get('new_findings')} new), stale tokens: "
                   f"{len(audit.get('stale_token_fingerprints') or [])}")
            severities = _as_dict(counts.get("by_severity"))
            if severities:
                yield "       by severity: " + ", ".join(f"{k}={v}" for k, v in severities.items())
            kinds = _as_dict(counts.get("by_kind"))
            if kinds:
                yield "       findings by kind: " + ", ".join(f"{k}={v}" for k, v in kinds.items())
            files = _as_dict(audit.get("report_files"))
            for fmt, path in files.items():
                if fmt != "html":
                    yield f"       report: {path}"
            if files.get("html"):
                yield f"       Audit report (open in a browser): {files['html']}"
        yield f"       revoke stale tokens: {_fmt_revocations(x.get('revoke_stale_tokens'))}"
    elif run.dag_id == "emergency_revocation":
        yield f"       by fingerprint: {_fmt_revocations(x.get('revoke_by_fingerprint'))}"
        yield f"       current token:  {_fmt_revocations(x.get('revoke_current_token'))}"
    if not run.ok:
        tail = run.output.strip().splitlines()[-25:]
        yield "       last output lines:"
        yield from (f"         {line}" for line in tail)


DOCTOR_CONN_ID = "salesforce_oauth_default"


def _doctor(env: dict[str, str], timeout: float = 120.0) -> str:
    """``sf-oauth doctor`` of the demo connection, as printed (its stdout)."""
    proc = subprocess.run([sys.executable, "-m", "sf_oauth_provider.cli", "doctor", DOCTOR_CONN_ID], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    return proc.stdout.rstrip() or f"(sf-oauth doctor printed nothing; exit {proc.returncode})"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; 0 when every run succeeded.

    :param argv: unused (the demo takes no options); folder from ``SF_OAUTH_DEMO_DIR`` (``.demo``)
    """
    demo_dir = Path(os.environ.get("SF_OAUTH_DEMO_DIR") or Path.cwd() / ".demo").resolve()
    dags_folder = REPO_ROOT / "dags_examples"
    if not dags_folder.is_dir():
        dags_folder = Path.cwd() / "dags_examples"
    cache_dir = demo_dir / "token-cache"
    output_dir = demo_dir / "output"
    # a new emulator org every time: tokens cached by an earlier demo are worthless
    shutil.rmtree(cache_dir, ignore_errors=True)
    print(f"Demo folder: {demo_dir}")
    print("Starting the Salesforce org emulator on 127.0.0.1 ...", flush=True)
    emulator = start_emulator(demo_dir / "emulator")
    runs: list[DemoRun] = []
    try:
        print(f"  emulator at {emulator.base_url}", flush=True)
        env = airflow_env(demo_dir / "airflow", dags_folder, emulator.connections(), cache_dir, output_dir)
        print(f"Preparing AIRFLOW_HOME {env['AIRFLOW_HOME']} (airflow db migrate) ...", flush=True)
        migrate(env)

        def run(dag_id: str, conf: dict[str, Any] | None = None) -> DemoRun:
            print(f"Running {dag_id} {json.dumps(conf or {})} ...", flush=True)
            result = run_dag(dag_id, env, conf)
            runs.append(result)
            return result

        run("nightly_batch_report", {"revoke_current": True})
        audit = run("token_audit", {"revoke_stale": True, "dry_run": True})
        stale = list(_as_dict(audit.xcoms.get("audit_tokens")).get("stale_token_fingerprints") or [])
        run("emergency_revocation", {"token_fingerprints": stale[:2], "dry_run": False})
        counters = emulator.admin("counters")
        doctor = _doctor(env)
    finally:
        emulator.stop()

    print()
    print("=" * 72)
    print("Summary")
    print("=" * 72)
    for r in runs:
        for line in _summary_lines(r):
            print(line)
    grants = {k: v for k, v in _as_dict(counters.get("grants")).items() if v}
    endpoints = {k: v for k, v in _as_dict(counters.get("endpoints")).items() if v}
    by_grant = ", ".join(f"{k}={v}" for k, v in grants.items()) or "none"
    print(f"Token requests the emulator saw: {sum(grants.values())} ({by_grant})")
    print("Requests by endpoint: " + ", ".join(f"{k}={v}" for k, v in sorted(endpoints.items())))
    print(f"Reports under: {output_dir}")
    html = _as_dict(_as_dict(next((r.xcoms for r in runs if r.dag_id == "token_audit"), {})).get("audit_tokens"))
    html_path = _as_dict(html.get("report_files")).get("html")
    if html_path:
        print(f"Audit report (open in a browser): {html_path}")
    print()
    print(f"$ sf-oauth doctor {DOCTOR_CONN_ID}   (what an operator runs when a token fails)")
    print(doctor)
    failed = [r.dag_id for r in runs if not r.ok]
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    print("All runs succeeded.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
