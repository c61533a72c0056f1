"""The example DAGs, run for real with ``airflow dags test`` against the emulator.

Each run is a subprocess with its own migrated ``AIRFLOW_HOME`` (shared by this module only), the
emulator's demo connections as ``AIRFLOW_CONN_*`` and a token cache of its own. Assertions use
the emulator's ground truth (``org.seed_facts``) and request counters.
"""

from __future__ import annotations

import copy
import csv
import json
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Iterator

import pytest

from sf_oauth_provider.client.token import fingerprint
from sf_oauth_provider.demo import DemoRun, airflow_env, migrate, run_dag
from sf_oauth_provider.emulator import RunningEmulator
from sf_oauth_provider.emulator.connections import write_connections_file

pytestmark = pytest.mark.timeout(240)

REPO = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO / "dags_examples"


@pytest.fixture(scope="module")
def examples_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A migrated ``AIRFLOW_HOME`` for this module's ``airflow dags test`` runs."""
    home = tmp_path_factory.mktemp("examples-airflow-home")
    migrate(airflow_env(home, DAGS_FOLDER, {}, home / "cache", home / "out"))
    yield home


def _run_example(
    home: Path, connections: dict[str, dict[str, Any]], base: Path, dag_id: str, conf: dict[str, Any] | None = None,
    logical_date: str | None = None,
) -> DemoRun:
    """``airflow dags test dag_id`` at DEBUG; token cache and outputs under ``base``; must succeed."""
    env = airflow_env(home, DAGS_FOLDER, connections, base / "cache", base / "out")
    # DEBUG for everything (the package, httpx, httpcore, Airflow): the leak scans read it all
    env["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "DEBUG"
    result = run_dag(dag_id, env, conf, timeout=200, logical_date=logical_date)
    assert result.ok, f"{dag_id} ended {result.state} (exit {result.returncode}):\n{result.output[-4000:]}"
    return result


@pytest.fixture
def run(
    examples_home: Path, emulator: RunningEmulator, emulator_connections: dict[str, dict[str, Any]], tmp_path: Path
):
    """``run(dag_id, conf)`` → :class:`DemoRun`, outputs under ``tmp_path / "out"``."""

    def go(dag_id: str, conf: dict[str, Any] | None = None, logical_date: str | None = None) -> DemoRun:
        return _run_example(examples_home, emulator_connections, tmp_path, dag_id, conf, logical_date)

    return go


@dataclass(frozen=True)
class NightlyRun:
    """One ``airflow dags test nightly_batch_report`` and what the emulator knew right after it."""

    result: DemoRun
    base: Path  # cache/ and out/
    connections: dict[str, dict[str, Any]]
    secrets: list[str]
    issued_tokens: list[str]
    token_requests: int
    revocations: int
    org_id: str
    opportunities: list[dict[str, Any]]
    closed_won_yesterday_ids: list[str]


@pytest.fixture(scope="module")
def nightly_run(
    examples_home: Path, emulator_server: RunningEmulator, tmp_path_factory: pytest.TempPathFactory
) -> NightlyRun:
    """The nightly report run that two tests read (a run costs ~15 s of every CI suite run)."""
    org = emulator_server.org
    org.reset()
    base = tmp_path_factory.mktemp("nightly")
    connections = write_connections_file(emulator_server, base / "connections.json", base / "demo_private_key.pem")
    result = _run_example(examples_home, connections, base, "nightly_batch_report")
    return NightlyRun(
        result, base, connections, _secrets(emulator_server), org.issued_tokens(), org.count("token"),
        org.count("revoke"), org.org_id, copy.deepcopy(org.opportunities),
        list(org.seed_facts["closed_won_yesterday_ids"]),
    )


def _secrets(emulator: RunningEmulator) -> list[str]:
    org = emulator.org
    return [
        *org.issued_tokens(),
        *org.seed_facts["all_delete_tokens"],
        org.demo.jwt_consumer_secret,
        *[line for line in org.demo.jwt_private_key_pem.splitlines() if len(line) > 40],
    ]


def _assert_no_secrets(text: str, secrets: list[str], cache_dir: Path | None = None) -> None:
    assert "connect_tcp" in text  # httpcore's DEBUG lines are in the scanned output
    cache = b"".join(p.read_bytes() for p in cache_dir.rglob("*") if p.is_file()) if cache_dir else b""
    leaked = [fingerprint(s) for s in secrets if s and (s in text or s.encode() in cache)]
    assert not leaked, f"secrets found (by fingerprint): {leaked}"


def test_nightly_batch_report(nightly_run: NightlyRun) -> None:
    result = nightly_run.result

    report = result.xcoms["closed_won_report"]
    assert set(report) == {"csv_path", "summary_path", "window", "soql", "currency", "opportunities", "total_amount"}
    expected = {o["Id"]: o for o in nightly_run.opportunities if o["Id"] in nightly_run.closed_won_yesterday_ids}
    with open(report["csv_path"], newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["Id"] for r in rows} == set(expected) and len(rows) == len(expected) == report["opportunities"]
    for r in rows:
        assert r["Name"] == expected[r["Id"]]["Name"]
        assert float(r["Amount"]) == expected[r["Id"]]["Amount"]
    total = sum(o["Amount"] for o in expected.values())
    assert report["total_amount"] == pytest.approx(total)
    summary = Path(report["summary_path"]).read_text(encoding="utf-8")
    assert f"Deals: {len(expected)}" in summary and f"USD {total:,.2f}" in summary
    assert f"Org: {nightly_run.org_id}" in summary and "Generated: " in summary and "Currency: USD" in summary
    assert f"## Top {min(5, len(expected))} of {len(expected)} deals" in summary
    assert Path(report["csv_path"]).parent == nightly_run.base / "out" / "nightly_batch_report"

    # the Bulk extract of the window's changes: exactly the rows the REST query of its SOQL gives
    extract = result.xcoms["extract_changed_opportunities"]
    assert set(extract) == {"location", "rows", "bytes", "job_id"} and extract["job_id"].startswith("750")
    first, end = (date.fromisoformat(report["window"][k]) for k in ("start", "end"))
    changed = {o["Id"]: o for o in nightly_run.opportunities if first <= o["SystemModstamp"].date() < end}
    with open(extract["location"], newline="", encoding="utf-8") as fh:
        extracted = list(csv.DictReader(fh))
    assert len(changed) >= len(expected) > 0  # the deals closed in the window changed in it
    assert sorted(r["Id"] for r in extracted) == sorted(changed) and extract["rows"] == len(changed)
    assert list(extracted[0]) == ["Id", "Name", "StageName", "Amount", "CloseDate", "Account.Name", "SystemModstamp"]
    for r in extracted:
        assert r["Name"] == changed[r["Id"]]["Name"] and r["StageName"] == changed[r["Id"]]["StageName"]
    assert Path(extract["location"]).name == f"opportunities_changed_{first.isoformat()}.csv"
    assert Path(extract["location"]).stat().st_size == extract["bytes"]
    assert sorted(p.name for p in Path(extract["location"]).parent.iterdir() if p.name.startswith(".")) == []
    from sf_oauth_provider.demo import _summary_lines

    summary_lines = "\n".join(_summary_lines(result))  # what `make demo` prints for this run
    assert f"{extract['rows']} rows" in summary_lines and extract["location"] in summary_lines

    sensor = result.xcoms["wait_for_token"]
    assert sensor["fingerprint"].startswith("sha256:")
    # revoke_current defaults to false: the revocation task was skipped, nothing was revoked
    assert "revoke_current_token" not in result.xcoms
    assert nightly_run.revocations == 0
    assert nightly_run.token_requests == 1
    _assert_no_secrets(result.output + json.dumps(result.xcoms), nightly_run.secrets, nightly_run.base / "cache")


def test_dags_test_at_debug_prints_no_secret(nightly_run: NightlyRun) -> None:
    """Everything ``airflow dags test`` prints at DEBUG — no line left out — is free of the
    connection's consumer secret, its private key and every token the run got.

    The in-process supervisor ``dags test`` uses (Airflow 3.0–3.3) logs each request a task sends
    it, and a ``mask_secret`` call is such a request: ``Sending request
    msg=MaskSecret(value='<the secret>')`` — for the provider's own calls and for Airflow's masking
    of the connection it reads. ``sf_oauth_provider._compat`` sends neither there.
    """
    text = nightly_run.result.output
    assert "connect_tcp" in text and "Sending request" in text  # DEBUG lines of httpcore and the supervisor
    conn = nightly_run.connections["salesforce_oauth_default"]
    pem = Path(conn["extra"]["jwt_key_file"]).read_text(encoding="utf-8")
    secrets = {
        "consumer secret": [conn["password"]],
        # every body line of the key (the masker leaves alone fragments under 16 characters)
        "private key PEM line": [ln for ln in pem.splitlines() if len(ln) >= 16 and not ln.startswith("-----")],
        "access or refresh token": nightly_run.issued_tokens,
        "refresh token (connection)": [nightly_run.connections["salesforce_oauth_refresh"]["extra"]["refresh_token"]],
    }
    assert nightly_run.token_requests == 1 and len(secrets["private key PEM line"]) > 20
    every = [s for values in secrets.values() for s in values if s]

    def shown(line: str) -> str:
        for s in every:
            line = line.replace(s, "<SECRET>")
        return line[:200]

    lines = text.splitlines()
    leaked = [
        f"{kind} {fingerprint(s)} on output line {n}: {shown(line)}"
        for kind, values in secrets.items() for s in values if s
        for n, line in enumerate(lines, 1) if s in line
    ]
    assert not leaked, "secrets in the output of airflow dags test:\n" + "\n".join(leaked[:20])


def test_nightly_batch_report_for_a_past_logical_date(run, emulator: RunningEmulator, tmp_path: Path) -> None:
    """``airflow dags test nightly_batch_report <date>`` (a zero-width interval) reports the day
    before that date — not yesterday by the wall clock — and names the files by it."""
    org = emulator.org
    won = [o for o in org.opportunities if o["StageName"] == "Closed Won"]
    yesterday = min(o["CloseDate"] for o in won if o["Id"] in org.seed_facts["closed_won_yesterday_ids"])
    day = next(o["CloseDate"] for o in won if o["CloseDate"] < yesterday)
    expected = {o["Id"] for o in won if o["CloseDate"] == day}
    hostile = next(o for o in won if o["CloseDate"] == day)
    hostile["Name"] = '=HYPERLINK("https://evil.example","open") | <img src=x onerror=alert(1)>'

    result = run("nightly_batch_report", logical_date=(day + timedelta(days=1)).isoformat())

    report = result.xcoms["closed_won_report"]
    assert report["window"] == {"start": day.isoformat(), "end": (day + timedelta(days=1)).isoformat()}
    assert f"CloseDate >= {day.isoformat()} AND CloseDate < {(day + timedelta(days=1)).isoformat()}" in report["soql"]
    assert Path(report["csv_path"]).name == f"closed_won_{day.isoformat()}.csv"
    with open(report["csv_path"], newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["Id"] for r in rows} == expected and report["opportunities"] == len(expected)
    assert "'" + hostile["Name"] in {r["Name"] for r in rows}  # a formula cell is neutralised
    summary = Path(report["summary_path"]).read_text(encoding="utf-8")
    assert f"Window: CloseDate {day.isoformat()}" in summary and "<img" not in summary


def test_token_audit_dry_run_revokes_nothing(run, emulator: RunningEmulator, tmp_path: Path) -> None:
    rows_before = len(emulator.org.oauth_token_rows())
    result = run("token_audit", {"revoke_stale": True})  # dry_run defaults to true

    audit = result.xcoms["audit_tokens"]
    expected_stale = sorted(fingerprint(t) for t in emulator.org.seed_facts["stale_delete_tokens"])
    assert sorted(audit["stale_token_fingerprints"]) == expected_stale and expected_stale
    for path in audit["report_files"].values():
        assert Path(path).is_file() and Path(path).stat().st_size > 0
    revoke = result.xcoms["revoke_stale_tokens"]
    assert revoke["dry_run"] is True and revoke["revoked"] == 0
    assert sorted(i["fingerprint"] for i in revoke["items"] if i["outcome"] == "would_revoke") == expected_stale
    assert emulator.org.count("revoke") == 0
    assert len(emulator.org.oauth_token_rows()) == rows_before
    reports = "".join(Path(p).read_text(encoding="utf-8") for p in audit["report_files"].values())
    _assert_no_secrets(result.output + json.dumps(result.xcoms) + reports, _secrets(emulator))
    # the notifier (no external service) wrote its summary beside the report
    folder = Path(audit["report_files"]["html"]).parent
    assert folder == tmp_path / "out" / "token_audit"
    note = (folder / "audit-summary.txt").read_text(encoding="utf-8")
    assert f"{audit['counts']['findings']} findings ({audit['counts']['new_findings']} new" in note
    assert audit["counts"]["new_findings"] == audit["counts"]["findings"] > 0  # first run here

    again = run("token_audit")  # same place: compared with the first run
    assert again.xcoms["audit_tokens"]["counts"]["new_findings"] == 0


def test_emergency_revocation(run, emulator: RunningEmulator) -> None:
    stale = emulator.org.seed_facts["stale_delete_tokens"][:2]
    wanted = [fingerprint(t) for t in stale]
    rows_before = len(emulator.org.oauth_token_rows())
    result = run("emergency_revocation", {"token_fingerprints": wanted, "revoke_current": True, "dry_run": False})

    by_fp = result.xcoms["revoke_by_fingerprint"]
    assert by_fp["dry_run"] is False and by_fp["revoked"] == 2 and by_fp["failed"] == 0
    assert sorted(i["fingerprint"] for i in by_fp["items"]) == sorted(wanted)
    current = result.xcoms["revoke_current_token"]
    assert current["revoked"] == 1
    assert len(emulator.org.oauth_token_rows()) == rows_before - 2
    live = {a.refresh_token for a in emulator.org.oauth_token_rows()}  # DeleteToken = the approval's token
    assert not set(stale) & live
    assert emulator.org.count("revoke") == 3
    _assert_no_secrets(result.output + json.dumps(result.xcoms), _secrets(emulator))
