"""End to end on a real Airflow stack: deferral through the real triggerer, the connection form,
the connection test endpoint, and a leak scan of everything the stack stored.

One stack (api-server, scheduler, triggerer, dag-processor on 127.0.0.1, SQLite + LocalExecutor,
its own temp ``AIRFLOW_HOME``) serves every test here; ``nightly_batch_report`` is triggered once
through the REST API. The emulator's introspection endpoint answers 503 until the sensor is seen
``deferred``, so the sensor's first check in the worker fails transiently and the real triggerer
finishes the wait.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from cryptography.fernet import Fernet

from sf_oauth_provider.client.token import fingerprint
from sf_oauth_provider.demo import airflow_env, migrate
from sf_oauth_provider.emulator import RunningEmulator
from sf_oauth_provider.emulator.connections import write_connections_file

from tests.airflow_compat import airflow_release

from .stack import AirflowStack, free_port, stack_settings

pytestmark = [pytest.mark.stack, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO / "dags_examples"
DAG_ID = "nightly_batch_report"
SENSOR = "wait_for_token"
# the README shows the newest release's form; other releases' screenshots stay in the test's tmp dir
SCREENSHOT = REPO / "docs" / "connection-form.png"
SCREENSHOT_RELEASE = (3, 3)
ADMIN = "admin"
# Per release (README "Supported versions"): the UI reads the provider's form metadata (labels,
# extra fields) from 3.2 on; 3.0 and 3.1 show the generic form with the extras as JSON.
FORM_METADATA = airflow_release() >= (3, 2)
# The Test button on a connection's row exists from 3.1 on; from 3.2 (port hidden by the form
# metadata) it sends `port: 0`; from 3.3 the API refuses a port that differs from the stored one,
# so a stored null port makes the button fail there.
TEST_BUTTON = airflow_release() >= (3, 1)
TEST_BUTTON_SENDS_PORT_0 = airflow_release() >= (3, 2)
TEST_API_REFUSES_OTHER_PORT = airflow_release() >= (3, 3)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@dataclass
class StackRun:
    """The stack plus what the run left behind."""

    stack: AirflowStack
    emulator: RunningEmulator
    connections: dict[str, dict[str, Any]]
    fernet_key: str
    password: str = ""
    run_id: str = ""
    run: dict[str, Any] = field(default_factory=dict)
    task_states: dict[str, str | None] = field(default_factory=dict)
    seen_sensor_states: list[str] = field(default_factory=list)
    trigger_rows: list[dict[str, Any]] = field(default_factory=list)
    next_kwargs_seen: list[str] = field(default_factory=list)


def _capture_deferral(db_path: Path, fernet_key: str, run: StackRun) -> None:
    """While the sensor is deferred: keep its trigger row (decrypted) and next_kwargs for the scan."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10) as db:
        for trig_id, classpath, kwargs in db.execute("SELECT id, classpath, kwargs FROM trigger"):
            text = kwargs if kwargs.startswith("{") else Fernet(fernet_key.encode()).decrypt(kwargs.encode()).decode()
            run.trigger_rows.append({"id": trig_id, "classpath": classpath, "raw": kwargs, "kwargs": text})
        for (nk,) in db.execute(
            "SELECT next_kwargs FROM task_instance WHERE dag_id = ? AND task_id = ?", (DAG_ID, SENSOR)
        ):
            if nk:
                run.next_kwargs_seen.append(str(nk))


@pytest.fixture(scope="module")
def stack_run(emulator_server: RunningEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackRun]:
    """Start the stack, trigger ``nightly_batch_report``, wait for it; stop everything at the end."""
    emulator = emulator_server
    emulator.org.reset()  # the `emulator` fixture's reset, once for the whole module
    base = tmp_path_factory.mktemp("e2e-stack")
    home = base / "airflow"
    connections = write_connections_file(emulator, base / "connections.json", base / "demo_private_key.pem")
    port = free_port()
    settings, password = stack_settings(base, port, ADMIN)
    fernet_key = settings["AIRFLOW__CORE__FERNET_KEY"]
    env = airflow_env(home, DAGS_FOLDER, {"salesforce_oauth_default": connections["salesforce_oauth_default"]},
                      base / "token-cache", base / "output")
    env.update(
        {
            **settings,
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__TRIGGERER__CAPACITY": "50",
            "SF_OAUTH_DEMO_POKE_INTERVAL": "2",
        }
    )
    migrate(env)
    stack = AirflowStack(home, env, port)
    run = StackRun(stack, emulator, connections, fernet_key, password)
    try:
        stack.start()
        stack.wait_healthy()
        stack.login(ADMIN, password)
        stack.wait_dag(DAG_ID)
        # Salesforce "down" for introspection: the sensor's first check (in the worker) fails
        # transiently, so it defers; the fault is lifted once the task is seen deferred
        emulator.org.set_faults("introspect", rate=1.0, kinds=["json503"])
        resp = stack.api.patch(f"/api/v2/dags/{DAG_ID}", json={"is_paused": False})
        assert resp.status_code == 200, resp.text
        resp = stack.api.post(f"/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": {}})
        assert resp.status_code == 200, resp.text
        run.run_id = resp.json()["dag_run_id"]
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            tis = stack.api.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run.run_id}/taskInstances").json()
            run.task_states = {ti["task_id"]: ti["state"] for ti in tis.get("task_instances", [])}
            sensor_state = run.task_states.get(SENSOR)
            if sensor_state and (not run.seen_sensor_states or run.seen_sensor_states[-1] != sensor_state):
                run.seen_sensor_states.append(sensor_state)
            if sensor_state == "deferred" and not run.trigger_rows:
                _capture_deferral(stack.db_path, fernet_key, run)
                emulator.org.clear_faults()
            run.run = stack.api.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run.run_id}").json()
            if run.run.get("state") in ("success", "failed"):
                break
            time.sleep(1)
        emulator.org.clear_faults()
        yield run
    finally:
        emulator.org.clear_faults()
        stack.stop()


# ---- 2. the run: deferred, completed by the real triggerer ------------------------------------
def test_run_succeeds_after_real_deferral(stack_run: StackRun) -> None:
    run = stack_run
    assert run.run.get("state") == "success", f"run {run.run}; tasks {run.task_states}\n{run.stack.diagnostics()}"
    assert run.task_states == {
        SENSOR: "success",
        "extract_changed_opportunities": "success",
        "closed_won_report": "success",
        "revoke_requested": "success",
        "revoke_current_token": "skipped",
    }
    # the sensor was seen deferred, its trigger row existed, and the triggerer ran it
    assert "deferred" in run.seen_sensor_states, run.seen_sensor_states
    assert [r["classpath"] for r in run.trigger_rows] == ["sf_oauth_provider.triggers.token.SalesforceTokenTrigger"]
    # (3.3.2 stored these kwargs as plain JSON here, not Fernet-encrypted: all the more reason that
    # they hold only the conn id and numbers; the leak scan below checks them either way)
    triggerer_out = run.stack.output("triggerer")
    trigger_logs = "".join(t for p, t in _task_logs(run).items() if f"task_id={SENSOR}" in str(p))
    assert "SalesforceTokenTrigger" in triggerer_out + trigger_logs, triggerer_out[-3000:]
    # the sensor's one check in the worker saw the outage; the triggerer's check succeeded
    assert run.emulator.org.count("token", grant="jwt_bearer") == 1
    ti = run.stack.api.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run.run_id}/taskInstances/{SENSOR}").json()
    assert ti["try_number"] == 1
    xcom = run.stack.api.get(
        f"/api/v2/dags/{DAG_ID}/dagRuns/{run.run_id}/taskInstances/closed_won_report/xcomEntries/return_value"
    ).json()
    report = xcom["value"] if isinstance(xcom["value"], dict) else json.loads(xcom["value"])
    assert report["opportunities"] == len(run.emulator.org.seed_facts["closed_won_yesterday_ids"])
    assert Path(report["csv_path"]).is_file()


def test_bulk_extract_waited_in_the_real_triggerer(stack_run: StackRun) -> None:
    run = stack_run
    assert run.task_states.get("extract_changed_opportunities") == "success", run.stack.diagnostics()
    task = "extract_changed_opportunities"
    logs = "".join(t for p, t in _task_logs(run).items() if f"task_id={task}" in str(p))
    # the job was submitted in the worker, watched by the triggerer, streamed after resuming
    assert "waiting in the triggerer" in logs, logs[-3000:]
    # the triggerer's own lines in the task log: the trigger fired the job's completion
    fired = [line for line in logs.splitlines() if "Trigger fired event" in line]
    assert len(fired) == 1 and "'status': 'success'" in fired[0] and "'state': 'JobComplete'" in fired[0], fired
    xcom = run.stack.api.get(
        f"/api/v2/dags/{DAG_ID}/dagRuns/{run.run_id}/taskInstances/{task}/xcomEntries/return_value"
    ).json()
    extract = xcom["value"] if isinstance(xcom["value"], dict) else json.loads(xcom["value"])
    assert set(extract) == {"location", "rows", "bytes", "job_id"}
    ids = {line.split(",")[0].strip('"') for line in Path(extract["location"]).read_text().splitlines()[1:]}
    assert len(ids) == extract["rows"] >= len(run.emulator.org.seed_facts["closed_won_yesterday_ids"])
    assert set(run.emulator.org.seed_facts["closed_won_yesterday_ids"]) <= ids


# ---- 3. connection form, test endpoint, Test button --------------------------------------------
def test_hook_meta_offers_salesforce_oauth(stack_run: StackRun) -> None:
    resp = stack_run.stack.api.get("/ui/connections/hook_meta")
    assert resp.status_code == 200, resp.text
    meta = {m["connection_type"]: m for m in resp.json()}
    sf = meta["salesforce_oauth"]
    assert sf["hook_name"] == "Salesforce OAuth"
    extra_fields = sf["extra_fields"] or {}
    if not FORM_METADATA:
        assert not extra_fields and not sf["standard_fields"]  # the generic form (extras as JSON)
        return
    for name in ("auth_flow", "username", "private_key", "jwt_key_file", "refresh_token", "api_version"):
        assert name in extra_fields, sorted(extra_fields)
    assert sf["standard_fields"]["login"]["title"] == "Consumer Key"
    assert sf["standard_fields"]["password"]["title"] == "Consumer Secret"
    assert sf["standard_fields"]["port"]["hidden"] is True


def _conn_body(conn_id: str, conn: dict[str, Any], **over: Any) -> dict[str, Any]:
    body = {
        "connection_id": conn_id,
        "conn_type": conn["conn_type"],
        "host": conn["host"],
        "login": conn["login"],
        "password": conn["password"],
        "extra": json.dumps(conn["extra"]),
    }
    body.update(over)
    return body


def test_connection_test_endpoint_with_full_body(stack_run: StackRun) -> None:
    conn = stack_run.connections["salesforce_oauth_default"]
    resp = stack_run.stack.api.post("/api/v2/connections/test", json=_conn_body("sf_adhoc_test", conn))
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] is True, resp.json()

    bad = _conn_body("sf_adhoc_bad", conn, extra=json.dumps({**conn["extra"], "username": "nobody@example.com"}))
    resp = stack_run.stack.api.post("/api/v2/connections/test", json=bad)
    assert resp.status_code == 200 and resp.json()["status"] is False
    assert conn["password"] not in resp.text


def _launch(p: Any) -> Any:
    return p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def _logged_in_page(browser: Any, stack: AirflowStack, **kwargs: Any) -> Any:
    """A page whose browser holds the stack's JWT in the ``_token`` cookie, as after a login:
    3.0's UI moves it from the cookie into local storage, 3.1+ send it back with every call."""
    context = browser.new_context(**kwargs)
    context.add_cookies([{"name": "_token", "value": stack.token, "url": stack.base_url}])
    return context.new_page()


def test_connection_form_in_the_browser(stack_run: StackRun, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    base = stack_run.stack.base_url
    with sync_playwright() as p:
        browser = _launch(p)
        try:
            page = _logged_in_page(browser, stack_run.stack, viewport={"width": 1100, "height": 1000})
            page.goto(f"{base}/connections", wait_until="networkidle")
            page.get_by_role("button", name=re.compile("Add Connection", re.I)).click()
            combo = page.get_by_role("combobox", name=re.compile("Connection Type", re.I))
            combo.click()
            combo.fill("Salesforce OAuth")
            page.get_by_role("option", name="Salesforce OAuth").click()
            dialog = page.get_by_role("dialog")
            if not FORM_METADATA:  # the generic form: standard labels, extras as JSON
                for label in ("Login", "Password"):
                    expect(dialog.locator("label").filter(has_text=re.compile(rf"^{label}\s*\*?$")).first).to_be_visible()
                return
            for label in ("Consumer Key", "Consumer Secret"):
                # a required field's label ends with an aria-hidden "*"
                expect(dialog.locator("label").filter(has_text=re.compile(rf"^{label}\s*\*?$")).first).to_be_visible()
            dialog.get_by_role("button", name=re.compile("^Extra Fields$", re.I)).click()
            page.wait_for_timeout(500)
            snapshot = dialog.aria_snapshot()
            for label in ("Auth flow", "Username", "Private key"):
                assert re.search(rf"text: {label}\b(?! file| passphrase)", snapshot), f"{label!r} missing:\n{snapshot}"
                # a required field's label ends with an aria-hidden "*"
                expect(dialog.locator("label").filter(has_text=re.compile(rf"^{label}\s*\*?$")).first).to_be_visible()
            dialog.get_by_role("textbox", name="Connection ID").fill("salesforce_oauth_default")
            shot = SCREENSHOT if airflow_release() == SCREENSHOT_RELEASE else tmp_path / SCREENSHOT.name
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000


def _ui_test_button(stack: AirflowStack, conn_id: str) -> tuple[int, dict[str, Any], Any]:
    """Click the Test button on ``conn_id``'s row; the request the UI sent and the answer."""
    from playwright.sync_api import sync_playwright

    base = stack.base_url
    with sync_playwright() as p:
        browser = _launch(p)
        try:
            page = _logged_in_page(browser, stack, viewport={"width": 1400, "height": 900})
            page.goto(f"{base}/connections", wait_until="networkidle")
            row = page.get_by_role("row").filter(has_text=conn_id)
            with page.expect_response(lambda r: r.url.endswith("/api/v2/connections/test")) as info:
                row.get_by_role("button", name=re.compile("test", re.I)).click()
            resp = info.value
            sent = json.loads(resp.request.post_data or "{}")
            try:
                answer: Any = resp.json()
            except ValueError:
                answer = resp.text()
            return resp.status, sent, answer
        finally:
            browser.close()


def _ui_test_buttons(stack: AirflowStack, conn_id: str) -> int:
    """How many Test buttons ``conn_id``'s row in the connection list has."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = _launch(p)
        try:
            page = _logged_in_page(browser, stack, viewport={"width": 1400, "height": 900})
            page.goto(f"{stack.base_url}/connections", wait_until="networkidle")
            row = page.get_by_role("row").filter(has_text=conn_id)
            row.first.wait_for()
            return row.get_by_role("button", name=re.compile("test", re.I)).count()
        finally:
            browser.close()


def test_ui_test_button(stack_run: StackRun) -> None:
    """The row's Test button, per release. 3.3: with the port stored as null (what the form saves,
    port hidden) the UI sends ``port: 0`` and the API refuses; with the port stored as 0 the test
    runs and passes. 3.2 sends ``port: 0`` too but the API accepts it; 3.1 passes both; 3.0 has
    no Test button on the row."""
    api = stack_run.stack.api
    conn = stack_run.connections["salesforce_oauth_default"]
    for conn_id, port in (("sf_port_null", None), ("sf_port_zero", 0)):
        body = _conn_body(conn_id, conn)
        if port is not None:
            body["port"] = port
        api.delete(f"/api/v2/connections/{conn_id}")
        resp = api.post("/api/v2/connections", json=body)
        assert resp.status_code == 201, resp.text

    if not TEST_BUTTON:
        assert _ui_test_buttons(stack_run.stack, "sf_port_zero") == 0
        return
    status, sent, answer = _ui_test_button(stack_run.stack, "sf_port_null")
    assert conn["password"] not in json.dumps(sent)
    if TEST_BUTTON_SENDS_PORT_0:
        assert sent.get("port") == 0, sent
    if TEST_API_REFUSES_OTHER_PORT:
        assert status == 400, (status, sent, answer)
        assert "differs from the stored connection" in json.dumps(answer)
    else:
        assert status == 200 and answer["status"] is True, (status, sent, answer)

    status, sent, answer = _ui_test_button(stack_run.stack, "sf_port_zero")
    assert status == 200 and answer["status"] is True, (status, sent, answer)


# ---- 4. leak scan ------------------------------------------------------------------------------
def _task_logs(run: StackRun) -> dict[Path, str]:
    logs = run.stack.home / "logs"
    return {p: p.read_text(encoding="utf-8", errors="replace") for p in sorted(logs.rglob("*")) if p.is_file()}


def test_no_secret_anywhere_the_stack_stored(stack_run: StackRun) -> None:
    run = stack_run
    issued = httpx.get(f"{run.emulator.base_url}/__emulator/tokens", timeout=10).json()["tokens"]
    assert issued, "the emulator issued tokens during the run"
    org = run.emulator.org
    key_body = [line for line in org.demo.jwt_private_key_pem.splitlines() if line and not line.startswith("-----")]
    secrets = {
        **{f"token {fingerprint(t)}": t for t in issued},
        **{f"DeleteToken {fingerprint(t)}": t for t in org.seed_facts["all_delete_tokens"]},
        "consumer secret": org.demo.jwt_consumer_secret,
        **{f"private key line {i}": line for i, line in enumerate(key_body) if len(line) >= 32},
    }

    sources: dict[str, str] = {}
    # task logs (incl. the trigger's log) and component output
    logs = _task_logs(run)
    run_logs = {p: t for p, t in logs.items() if f"dag_id={DAG_ID}" in str(p)}
    assert any(f"task_id={SENSOR}" in str(p) for p in run_logs), sorted(map(str, logs))
    assert any("task_id=closed_won_report" in str(p) for p in run_logs)
    sensor_xcom = run.stack.api.get(
        f"/api/v2/dags/{DAG_ID}/dagRuns/{run.run_id}/taskInstances/{SENSOR}/xcomEntries/return_value"
    ).json()["value"]
    sensor_fp = (sensor_xcom if isinstance(sensor_xcom, dict) else json.loads(sensor_xcom))["fingerprint"]
    assert sensor_fp and any(sensor_fp in t for t in run_logs.values()), "the logs mention the token by fingerprint"
    assert all(t.strip() for t in run_logs.values())
    sources.update({f"log {p.relative_to(run.stack.home)}": t for p, t in logs.items()})
    sources.update({f"output {n}": run.stack.output(n) for n in run.stack.procs})

    # the metadata DB: targeted tables, then every row of every table
    with sqlite3.connect(f"file:{run.stack.db_path}?mode=ro", uri=True, timeout=10) as db:
        xcoms = db.execute("SELECT task_id, value FROM xcom WHERE dag_id = ?", (DAG_ID,)).fetchall()
        assert {t for t, _ in xcoms} >= {SENSOR, "closed_won_report", "revoke_requested"}
        sources["xcom"] = "\n".join(str(v) for _, v in xcoms)
        rendered = db.execute("SELECT task_id, rendered_fields FROM rendered_task_instance_fields WHERE dag_id = ?",
                              (DAG_ID,)).fetchall()
        assert rendered
        sources["rendered_task_instance_fields"] = "\n".join(str(v) for _, v in rendered)
        sources["task_instance.next_kwargs"] = "\n".join(
            str(v) for (v,) in db.execute("SELECT next_kwargs FROM task_instance WHERE dag_id = ?", (DAG_ID,))
        ) + "\n".join(run.next_kwargs_seen)
        sources["trigger rows"] = "\n".join(
            f"{r['raw']}\n{r['kwargs']}" for r in run.trigger_rows
        ) + "\n".join(str(r) for r in db.execute("SELECT * FROM trigger"))
        dump = "\n".join(db.iterdump())
    assert run.trigger_rows and "salesforce_oauth_default" in run.trigger_rows[0]["kwargs"]
    sources["database dump"] = dump
    sources["database file"] = run.stack.db_path.read_bytes().decode("latin-1")

    hits = [(where, name) for where, text in sources.items() for name, s in secrets.items() if s and s in text]
    assert not hits, f"secrets found: {hits[:20]}"
