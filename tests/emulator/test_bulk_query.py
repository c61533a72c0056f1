"""Bulk API 2.0 query jobs over real HTTP: states on the org clock, CSV pages and their headers,
refusals, abort/delete/list, limits and sessions."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import gzip
import io
import re
from typing import Any

import httpx
import pytest

from sf_oauth_provider.emulator import RunningEmulator

from ._util import HTTP, jwt_token, query

V = "63.0"
OPP_SOQL = "SELECT Id, Name, Account.Name, Amount, CloseDate, IsWon FROM Opportunity"


@pytest.fixture
def tok(emulator: RunningEmulator) -> str:
    return jwt_token(emulator)["access_token"]


def _admin(emu: RunningEmulator, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = HTTP.post(f"{emu.base_url}/__emulator/{path}", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def _jobs_url(emu: RunningEmulator, version: str = V) -> str:
    return f"{emu.base_url}/services/data/v{version}/jobs/query"


def _auth(tok: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}", **extra}


def _create(emu: RunningEmulator, tok: str, soql: str, version: str = V, **spec: Any) -> httpx.Response:
    return HTTP.post(_jobs_url(emu, version), json={"operation": "query", "query": soql, **spec}, headers=_auth(tok))


def _job(emu: RunningEmulator, tok: str, job_id: str, version: str = V) -> dict[str, Any]:
    r = HTTP.get(f"{_jobs_url(emu, version)}/{job_id}", headers=_auth(tok))
    assert r.status_code == 200, r.text
    return r.json()


def _completed(emu: RunningEmulator, tok: str, soql: str, **spec: Any) -> str:
    _admin(emu, "settings", {"bulk_query_delay": 0})
    r = _create(emu, tok, soql, **spec)
    assert r.status_code == 200, r.text
    job_id = r.json()["id"]
    assert _job(emu, tok, job_id)["state"] == "JobComplete"
    return job_id


def _results(emu: RunningEmulator, tok: str, job_id: str, version: str = V, **params: Any) -> httpx.Response:
    return HTTP.get(f"{_jobs_url(emu, version)}/{job_id}/results", params=params, headers=_auth(tok))


def _all_pages(emu: RunningEmulator, tok: str, job_id: str, max_records: int) -> list[httpx.Response]:
    pages, locator = [], ""
    for _ in range(100):
        r = _results(emu, tok, job_id, locator=locator, maxRecords=max_records)
        assert r.status_code == 200, r.text
        pages.append(r)
        locator = r.headers["Sforce-Locator"]
        if locator == "null":
            return pages
    raise AssertionError("the locator never became null")


def _rows(r: httpx.Response, delimiter: str = ",") -> list[list[str]]:
    return list(csv.reader(io.StringIO(r.text), delimiter=delimiter))


def test_create_answers_job_info_in_upload_complete(emulator: RunningEmulator, tok: str) -> None:
    r = _create(emulator, tok, OPP_SOQL)
    assert r.status_code == 200, r.text
    job = r.json()
    assert list(job) == [
        "id", "operation", "object", "createdById", "createdDate", "systemModstamp", "state", "concurrencyMode",
        "contentType", "apiVersion", "lineEnding", "columnDelimiter",
    ]
    assert job["id"].startswith("750") and len(job["id"]) == 18
    assert job["state"] == "UploadComplete" and job["object"] == "Opportunity" and job["operation"] == "query"
    assert job["apiVersion"] == 63.0 and job["lineEnding"] == "LF" and job["columnDelimiter"] == "COMMA"
    assert job["createdById"] == emulator.org.user_by_username(emulator.org.demo.jwt_username).id  # type: ignore[union-attr]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000\+0000", job["createdDate"])
    assert r.headers["Sforce-Limit-Info"].startswith("api-usage=")


def test_state_moves_with_the_settable_delay_and_clock(emulator: RunningEmulator, tok: str) -> None:
    _admin(emulator, "settings", {"bulk_query_delay": 100})
    job_id = _create(emulator, tok, OPP_SOQL).json()["id"]
    first = _job(emulator, tok, job_id)
    assert first["state"] == "UploadComplete" and first["jobType"] == "V2Query"
    assert first["numberRecordsProcessed"] == 0 and first["retries"] == 0
    early = _results(emulator, tok, job_id)
    assert early.status_code == 412
    assert early.json()[0]["errorCode"] == "JOB_NOT_COMPLETE" and "UPLOAD_COMPLETE" in early.json()[0]["message"]
    _admin(emulator, "clock", {"advance": 50})
    assert _job(emulator, tok, job_id)["state"] == "InProgress"
    assert "IN_PROGRESS" in _results(emulator, tok, job_id).json()[0]["message"]
    _admin(emulator, "clock", {"advance": 51})
    done = _job(emulator, tok, job_id)
    assert done["state"] == "JobComplete"
    assert done["numberRecordsProcessed"] == emulator.org.seed_facts["opportunity_count"]
    assert done["totalProcessingTime"] == 100000


def test_pages_repeat_the_header_and_locators_are_stable(emulator: RunningEmulator, tok: str) -> None:
    soql = "SELECT Id, Name FROM Opportunity WHERE Amount > 50000"
    rest = query(emulator, tok, soql).json()
    job_id = _completed(emulator, tok, soql)
    pages = _all_pages(emulator, tok, job_id, max_records=7)
    assert len(pages) == -(-rest["totalSize"] // 7) > 1
    assert all(_rows(p)[0] == ["Id", "Name"] for p in pages)
    counts = [int(p.headers["Sforce-NumberOfRecords"]) for p in pages]
    assert counts == [len(_rows(p)) - 1 for p in pages] and sum(counts) == rest["totalSize"]
    assert pages[-1].headers["Sforce-Locator"] == "null"
    assert all(p.headers["content-type"].startswith("text/csv") for p in pages)
    ids = [row[0] for p in pages for row in _rows(p)[1:]]
    assert sorted(ids) == sorted(rec["Id"] for rec in rest["records"]) and len(set(ids)) == len(ids)
    # the second page's locator gives the same page again (a retried download)
    locator = pages[0].headers["Sforce-Locator"]
    again = _results(emulator, tok, job_id, locator=locator, maxRecords=7)
    assert again.text == pages[1].text and again.headers["Sforce-Locator"] == pages[1].headers["Sforce-Locator"]
    assert base64.b64decode(locator + "==").decode() == "7"  # what Salesforce's locators look like
    assert _results(emulator, tok, job_id, locator="not-a-locator").status_code == 400


def test_csv_quotes_every_field_and_writes_null_empty(emulator: RunningEmulator, tok: str) -> None:
    rest = query(emulator, tok, OPP_SOQL + " ORDER BY Name").json()["records"]
    job_id = _completed(emulator, tok, OPP_SOQL + " ORDER BY Name")
    r = _results(emulator, tok, job_id)
    lines = r.text.split("\n")
    assert lines[0] == '"Id","Name","Account.Name","Amount","CloseDate","IsWon"'
    first = rest[0]
    won = "true" if first["IsWon"] else "false"
    assert lines[1] == (
        f'"{first["Id"]}","{first["Name"]}","{first["Account"]["Name"]}","{first["Amount"]}",'
        f'"{first["CloseDate"]}","{won}"'
    )
    assert lines[-1] == "" and len(lines) == len(rest) + 2  # LF after every row
    org_job = _completed(emulator, tok, "SELECT Name, NamespacePrefix FROM Organization")
    assert _results(emulator, tok, org_job).text == '"Name","NamespacePrefix"\n"Emulated Org",""\n'


def test_crlf_and_pipe_delimiter(emulator: RunningEmulator, tok: str) -> None:
    job_id = _completed(emulator, tok, "SELECT Name, Industry FROM Account ORDER BY Name", lineEnding="CRLF",
                        columnDelimiter="PIPE")
    info = _job(emulator, tok, job_id)
    assert info["lineEnding"] == "CRLF" and info["columnDelimiter"] == "PIPE"
    text = _results(emulator, tok, job_id).text
    assert text.startswith('"Name"|"Industry"\r\n"Acme Corporation"|"Manufacturing"\r\n')
    assert text.count("\r\n") == 11 and "\n" not in text.replace("\r\n", "")


def test_gzip_only_when_asked(emulator: RunningEmulator, tok: str) -> None:
    job_id = _completed(emulator, tok, OPP_SOQL)
    url = f"{_jobs_url(emulator)}/{job_id}/results"
    with httpx.stream("GET", url, headers=_auth(tok, **{"Accept-Encoding": "gzip"})) as r:
        raw = b"".join(r.iter_raw())
        assert r.headers["content-encoding"] == "gzip"
    plain = HTTP.get(url, headers=_auth(tok, **{"Accept-Encoding": "identity"}))
    assert "content-encoding" not in plain.headers
    assert gzip.decompress(raw) == plain.content and plain.text.startswith('"Id","Name"')


def test_results_with_another_api_version_is_409(emulator: RunningEmulator, tok: str) -> None:
    job_id = _completed(emulator, tok, OPP_SOQL)
    r = _results(emulator, tok, job_id, version="58.0")
    assert r.status_code == 409 and "63.0" in r.json()[0]["message"]
    assert _job(emulator, tok, job_id, version="58.0")["apiVersion"] == 63.0  # job info: any version


@pytest.mark.parametrize(
    ("soql", "words"),
    [
        ("SELECT COUNT() FROM Account", "Aggregate queries"),
        ("SELECT Industry, COUNT(Id) FROM Account GROUP BY Industry", "GROUP BY"),
        ("SELECT Name FROM Account OFFSET 5", "OFFSET"),
        ("SELECT TYPEOF What WHEN Account THEN Name END FROM Event", "TYPEOF"),
        ("SELECT FIELDS(STANDARD) FROM Account", "FIELDS()"),
        ("SELECT Name, (SELECT Name FROM Opportunities) FROM Account", "Aggregate Relationships"),
    ],
)
def test_refused_soql_answers_at_creation(emulator: RunningEmulator, tok: str, soql: str, words: str) -> None:
    r = _create(emulator, tok, soql)
    assert r.status_code == 400
    body = r.json()
    assert list(body[0]) == ["message", "errorCode"] and body[0]["errorCode"] == "API_ERROR"
    assert words in body[0]["message"]


def test_bad_soql_and_spec_answer_at_creation(emulator: RunningEmulator, tok: str) -> None:
    r = _create(emulator, tok, "SELECT Nope FROM Account")
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "INVALID_FIELD"
    assert _create(emulator, tok, "SELECT Id FROM Nope").json()[0]["errorCode"] == "INVALID_TYPE"
    assert _create(emulator, tok, "SELECT Name FROM Account WHERE Name = 'O''Brien' OFFSET 1").status_code == 400
    bad = _create(emulator, tok, OPP_SOQL, columnDelimiter="COLON")
    assert bad.status_code == 400 and bad.json()[0]["errorCode"] == "INVALIDJOB"
    assert _create(emulator, tok, OPP_SOQL, operation="insert").status_code == 400
    # a string literal that merely mentions GROUP BY is not a GROUP BY
    assert _create(emulator, tok, "SELECT Name FROM Account WHERE Name = 'GROUP BY x'").status_code == 200


def test_planned_failure_reports_error_message(emulator: RunningEmulator, tok: str) -> None:
    _admin(emulator, "bulk", {"fail_next_query_job": "Query timed out"})
    job_id = _completed_or_failed(emulator, tok)
    info = _job(emulator, tok, job_id)
    assert info["state"] == "Failed" and info["errorMessage"] == "Query timed out"
    assert _results(emulator, tok, job_id).status_code == 412
    assert _job(emulator, tok, _completed_or_failed(emulator, tok))["state"] == "JobComplete"  # only the next one


def _completed_or_failed(emu: RunningEmulator, tok: str) -> str:
    _admin(emu, "settings", {"bulk_query_delay": 0})
    return str(_create(emu, tok, OPP_SOQL).json()["id"])


def test_abort_delete_list_and_unknown(emulator: RunningEmulator, tok: str) -> None:
    _admin(emulator, "settings", {"bulk_query_delay": 100})
    running = _create(emulator, tok, OPP_SOQL).json()["id"]
    _admin(emulator, "clock", {"advance": 30})
    url = f"{_jobs_url(emulator)}/{running}"
    assert HTTP.delete(url, headers=_auth(tok)).status_code == 400  # in progress: abort first
    aborted = HTTP.patch(url, json={"state": "Aborted"}, headers=_auth(tok))
    assert aborted.status_code == 200 and aborted.json()["state"] == "Aborted"
    again = HTTP.patch(url, json={"state": "Aborted"}, headers=_auth(tok))
    assert again.status_code == 400 and again.json()[0]["errorCode"] == "INVALIDJOBSTATE"
    _admin(emulator, "clock", {"advance": 200})
    assert _job(emulator, tok, running)["state"] == "Aborted"  # stays aborted
    done = _completed(emulator, tok, OPP_SOQL)
    listing = HTTP.get(_jobs_url(emulator), headers=_auth(tok)).json()
    assert listing["done"] is True and listing["nextRecordsUrl"] is None
    assert [(j["id"], j["state"], j["jobType"]) for j in listing["records"]] == [
        (running, "Aborted", "V2Query"), (done, "JobComplete", "V2Query"),
    ]
    filtered = HTTP.get(_jobs_url(emulator), params={"isPkChunkingEnabled": "true"}, headers=_auth(tok)).json()
    assert filtered["records"] == []
    assert HTTP.delete(f"{_jobs_url(emulator)}/{done}", headers=_auth(tok)).status_code == 204
    gone = HTTP.get(f"{_jobs_url(emulator)}/{done}", headers=_auth(tok))
    assert gone.status_code == 404 and gone.json() == [
        {"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}
    ]
    assert _results(emulator, tok, done).status_code == 404


def test_limits_count_query_jobs(emulator: RunningEmulator, tok: str) -> None:
    def remaining() -> int:
        r = HTTP.get(f"{emulator.base_url}/services/data/v{V}/limits", headers=_auth(tok))
        return int(r.json()["DailyBulkV2QueryJobs"]["Remaining"])

    assert remaining() == 10000
    for _ in range(3):
        assert _create(emulator, tok, OPP_SOQL).status_code == 200
    assert remaining() == 9997
    _admin(emulator, "clock", {"advance": 24 * 3600 + 1})
    tok2 = jwt_token(emulator)["access_token"]
    r = HTTP.get(f"{emulator.base_url}/services/data/v{V}/limits", headers=_auth(tok2))
    assert r.json()["DailyBulkV2QueryJobs"] == {"Max": 10000, "Remaining": 10000}  # a rolling 24 hours


def test_session_and_version_are_checked(emulator: RunningEmulator, tok: str) -> None:
    r = HTTP.post(_jobs_url(emulator), json={"operation": "query", "query": OPP_SOQL})
    assert r.status_code == 401 and r.json()[0]["errorCode"] == "INVALID_SESSION_ID"
    assert HTTP.get(_jobs_url(emulator), headers=_auth("00Dbogus!token")).status_code == 401
    assert _create(emulator, tok, OPP_SOQL, version="46.0").status_code == 404  # query jobs from 47.0
    assert HTTP.get(f"{_jobs_url(emulator)}x", headers=_auth(tok)).status_code == 404


# ---------------------------------------------------------------- audit dates (REST and Bulk)
AUDIT_SOQL = "SELECT Id, CreatedDate, LastModifiedDate, SystemModstamp FROM Opportunity"


def _parse_sf(text: str) -> float:
    return dt.datetime.strptime(text.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def test_seeded_records_carry_audit_dates_over_past_days(emulator: RunningEmulator, tok: str) -> None:
    now = emulator.org.clock.now()
    for obj in ("Account", "Opportunity"):
        recs = query(emulator, tok, AUDIT_SOQL.replace("Opportunity", obj)).json()["records"]
        assert recs and all(
            re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", r[f])
            for r in recs for f in ("CreatedDate", "LastModifiedDate", "SystemModstamp")
        )
        for r in recs:
            c, m, s = (_parse_sf(r[f]) for f in ("CreatedDate", "LastModifiedDate", "SystemModstamp"))
            assert c <= m <= s <= now + 1
        assert len({r["CreatedDate"][:10] for r in recs}) >= len(recs) // 2  # spread over many days


@pytest.mark.parametrize("style", ["%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.000+0000"])
def test_datetime_literals_filter_rest_and_bulk_alike(emulator: RunningEmulator, tok: str, style: str) -> None:
    recs = query(emulator, tok, AUDIT_SOQL).json()["records"]
    stamps = sorted(_parse_sf(r["SystemModstamp"]) for r in recs)
    cutoff = dt.datetime.fromtimestamp(int(stamps[len(stamps) // 2]) + 1, dt.timezone.utc)
    literal = cutoff.strftime(style)
    expected = {r["Id"] for r in recs if _parse_sf(r["SystemModstamp"]) >= cutoff.timestamp()}
    assert 0 < len(expected) < len(recs)
    after = query(emulator, tok, f"SELECT Id FROM Opportunity WHERE SystemModstamp >= {literal}").json()
    before = query(emulator, tok, f"SELECT Id FROM Opportunity WHERE SystemModstamp < {literal}").json()
    assert {r["Id"] for r in after["records"]} == expected
    assert after["totalSize"] + before["totalSize"] == len(recs)
    job_id = _completed(emulator, tok, f"SELECT Id, SystemModstamp FROM Opportunity WHERE SystemModstamp >= {literal}")
    rows = _rows(_results(emulator, tok, job_id))
    assert rows[0] == ["Id", "SystemModstamp"] and {row[0] for row in rows[1:]} == expected
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", row[1]) for row in rows[1:])


def test_date_literals_compare_on_dates_and_datetimes(emulator: RunningEmulator, tok: str) -> None:
    recs = query(emulator, tok, "SELECT Id, CloseDate, CreatedDate FROM Opportunity").json()["records"]
    day = sorted(r["CloseDate"] for r in recs)[len(recs) // 2]
    closing = query(emulator, tok, f"SELECT Id FROM Opportunity WHERE CloseDate >= {day}").json()
    assert closing["totalSize"] == sum(r["CloseDate"] >= day for r in recs)
    created_day = sorted(r["CreatedDate"][:10] for r in recs)[len(recs) // 2]
    older = query(emulator, tok, f"SELECT Id FROM Opportunity WHERE CreatedDate < {created_day}").json()
    assert older["totalSize"] == sum(r["CreatedDate"][:10] < created_day for r in recs) > 0
    recent = query(emulator, tok, "SELECT Id FROM Opportunity WHERE CreatedDate = LAST_N_DAYS:400").json()
    assert recent["totalSize"] == len(recs)
