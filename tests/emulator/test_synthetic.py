"""The synthetic large object: rows made on demand, served by REST queries (offset cursors) and
Bulk API 2.0 query jobs, with the emulator's memory flat in the row count."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from sf_oauth_provider.emulator import RunningEmulator

from ._util import HTTP, jwt_token, query
from .test_cli_and_misc import ROOT, _read_until_ready

V = "63.0"
ROWS = 200_000


@pytest.fixture
def tok(emulator: RunningEmulator) -> str:
    return jwt_token(emulator)["access_token"]


def _admin(base: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = HTTP.post(f"{base}/__emulator/{path}", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def _bulk_pages(base: str, tok: str, soql: str, max_records: int, client: httpx.Client = HTTP) -> list[httpx.Response]:
    auth = {"Authorization": f"Bearer {tok}"}
    r = client.post(f"{base}/services/data/v{V}/jobs/query", json={"operation": "query", "query": soql}, headers=auth)
    assert r.status_code == 200, r.text
    job = f"{base}/services/data/v{V}/jobs/query/{r.json()['id']}"
    for _ in range(200):
        if client.get(job, headers=auth).json()["state"] == "JobComplete":
            break
        time.sleep(0.05)
    pages, locator = [], ""
    for _ in range(1000):
        page = client.get(f"{job}/results", params={"locator": locator, "maxRecords": max_records}, headers=auth)
        assert page.status_code == 200, page.text
        pages.append(page)
        locator = page.headers["Sforce-Locator"]
        if locator == "null":
            return pages
    raise AssertionError("the locator never became null")


def test_synthetic_rows_through_rest_and_bulk_pages(emulator: RunningEmulator, tok: str) -> None:
    base = emulator.base_url
    seeded = emulator.org.seed_facts["opportunity_count"]
    assert _admin(base, "synthetic", {"object": "Opportunity", "rows": ROWS}) == {"Opportunity": ROWS}
    _admin(base, "settings", {"bulk_query_delay": 0})
    total = query(emulator, tok, "SELECT COUNT() FROM Opportunity").json()["totalSize"]
    assert total == seeded + ROWS
    first = query(emulator, tok, "SELECT Id, Name, Account.Name, Amount FROM Opportunity").json()
    assert first["totalSize"] == total and len(first["records"]) == 2000 and not first["done"]
    more = HTTP.get(base + first["nextRecordsUrl"], headers={"Authorization": f"Bearer {tok}"}).json()
    synthetic = more["records"][0]
    assert synthetic["Name"] == "Synthetic Deal 0001971" and synthetic["Account"]["Name"]
    assert synthetic["Id"].startswith("006") and len(synthetic["Id"]) == 18
    again = HTTP.get(base + first["nextRecordsUrl"], headers={"Authorization": f"Bearer {tok}"}).json()
    assert again["records"] == more["records"]  # row i is a pure function of i
    got = HTTP.get(f"{base}/services/data/v{V}/sobjects/Opportunity/{synthetic['Id']}",
                   headers={"Authorization": f"Bearer {tok}"})
    assert got.status_code == 200 and got.json()["Name"] == synthetic["Name"]
    beyond = synthetic["Id"][:5] + "9999999999"  # an id past the last synthetic row
    assert HTTP.get(f"{base}/services/data/v{V}/sobjects/Opportunity/{beyond}",
                    headers={"Authorization": f"Bearer {tok}"}).status_code == 404
    pages = _bulk_pages(base, tok, "SELECT Id, Name, Account.Name, Amount FROM Opportunity", 50_000)
    assert [int(p.headers["Sforce-NumberOfRecords"]) for p in pages] == [50_000] * 4 + [seeded]
    ids: set[str] = set()
    for page in pages:
        rows = list(csv.reader(io.StringIO(page.text)))
        assert rows[0] == ["Id", "Name", "Account.Name", "Amount"] and len(rows) == 1 + int(
            page.headers["Sforce-NumberOfRecords"]
        )
        ids.update(row[0] for row in rows[1:])
    assert len(ids) == total
    assert synthetic["Id"] in ids


def test_filtered_synthetic_rows_agree_between_rest_and_bulk(emulator: RunningEmulator, tok: str) -> None:
    base = emulator.base_url
    _admin(base, "synthetic", {"object": "Opportunity", "rows": 50_000})
    _admin(base, "settings", {"bulk_query_delay": 0, "page_size": 2000})
    soql = "SELECT Id FROM Opportunity WHERE StageName = 'Closed Won' AND Amount > 1000000"
    rest_ids: list[str] = []
    body = query(emulator, tok, soql).json()
    for _ in range(100):
        rest_ids += [r["Id"] for r in body["records"]]
        if body["done"]:
            break
        body = HTTP.get(base + body["nextRecordsUrl"], headers={"Authorization": f"Bearer {tok}"}).json()
    assert len(rest_ids) == body["totalSize"] > 4000  # more than two REST pages, two bulk checkpoints
    pages = _bulk_pages(base, tok, soql, 1500)
    bulk_ids = [row[0] for p in pages for row in list(csv.reader(io.StringIO(p.text)))[1:]]
    assert bulk_ids == rest_ids
    assert _admin(base, "reset", {}) == {"ok": True}
    assert query(emulator, tok, "SELECT COUNT() FROM Opportunity").status_code == 401  # reset: tokens gone too
    fresh = jwt_token(emulator)["access_token"]
    count = query(emulator, fresh, "SELECT COUNT() FROM Opportunity").json()["totalSize"]
    assert count == emulator.org.seed_facts["opportunity_count"]  # runtime synthetic rows end with a reset


def test_synthetic_admin_refuses_what_it_cannot_make(emulator: RunningEmulator) -> None:
    r = HTTP.post(f"{emulator.base_url}/__emulator/synthetic", json={"object": "Contact", "rows": 5})
    assert r.status_code == 400 and "Opportunity" in r.json()["message"]
    r = HTTP.post(f"{emulator.base_url}/__emulator/synthetic", json={"object": "Opportunity", "rows": -1})
    assert r.status_code == 400


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to read a process's RSS")
def test_emulator_memory_stays_flat_while_serving_synthetic_rows(tmp_path: Path) -> None:
    """The CLI's --synthetic: the emulator (a subprocess) serves ROWS rows through bulk pages and
    a REST count; its RSS grows by far less than the rows would take if they were stored."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sf_oauth_provider.emulator", "--state-dir", str(tmp_path / "s"),
         "--synthetic", f"Opportunity={ROWS}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        base = _read_until_ready(proc)[-1].split()[1]
        tok = _admin(base, "tokens/mint", {"n": 1})["tokens"][0]
        _admin(base, "settings", {"bulk_query_delay": 0})
        with httpx.Client(timeout=60) as client:
            _bulk_pages(base, tok, "SELECT Id, Name FROM Opportunity LIMIT 1000", 1000, client)  # warm up
            before = _rss_kb(proc.pid)
            pages = _bulk_pages(base, tok, "SELECT Id, Name, Account.Name, Amount, CloseDate FROM Opportunity",
                                50_000, client)
            after = _rss_kb(proc.pid)
        assert sum(int(p.headers["Sforce-NumberOfRecords"]) for p in pages) == ROWS + 30
        # stored as dicts the rows would take ~1 KB each (~200 MB); streamed they take a page's buffers
        assert after - before < 40_000, (before, after)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.parametrize("spec", ["Contact=5", "Opportunity=many"])
def test_cli_refuses_a_synthetic_object_it_cannot_make(tmp_path: Path, spec: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sf_oauth_provider.emulator", "--state-dir", str(tmp_path / "s"), "--synthetic", spec],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "READY" not in done.stdout
