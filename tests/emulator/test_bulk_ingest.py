"""Bulk API 2.0 ingest jobs over real HTTP: the job's life on the org clock, uploads, results
CSVs with Salesforce's columns and error wording, wrong-state answers, and ``/limits``."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
import pytest

from sf_oauth_provider.emulator import RunningEmulator

from ._util import HTTP, jwt_token

V = "62.0"


class Bulk:
    """Bulk API 2.0 ingest as one logged-in user sees it; the org clock through the admin API."""

    def __init__(self, emu: RunningEmulator) -> None:
        self.emu = emu
        self.base = f"{emu.base_url}/services/data/v{V}"
        self.auth = {"Authorization": f"Bearer {jwt_token(emu)['access_token']}"}
        self.settings(bulk_ingest_delay=10)

    def settings(self, **values: Any) -> None:
        assert HTTP.post(f"{self.emu.base_url}/__emulator/settings", json=values).status_code == 200

    def advance(self, seconds: float) -> None:
        assert HTTP.post(f"{self.emu.base_url}/__emulator/clock", json={"advance": seconds}).status_code == 200

    def create(self, **body: Any) -> httpx.Response:
        return HTTP.post(f"{self.base}/jobs/ingest", json=body, headers=self.auth)

    def job(self, job_id: str, method: str = "GET", **body: Any) -> httpx.Response:
        return HTTP.request(method, f"{self.base}/jobs/ingest/{job_id}", json=body or None, headers=self.auth)

    def upload(self, job_id: str, text: str) -> httpx.Response:
        headers = {**self.auth, "Content-Type": "text/csv"}
        return HTTP.put(f"{self.base}/jobs/ingest/{job_id}/batches", content=text.encode(), headers=headers)

    def results(self, job_id: str, kind: str, delimiter: str = ",") -> list[list[str]]:
        r = HTTP.get(f"{self.base}/jobs/ingest/{job_id}/{kind}", headers=self.auth)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv"), r.text
        return list(csv.reader(io.StringIO(r.text), delimiter=delimiter))

    def run(self, text: str, **job: Any) -> str:
        """Create, upload, close, and let the clock finish the job; returns its id."""
        r = self.create(**job)
        assert r.status_code == 200, r.text
        job_id = r.json()["id"]
        assert self.upload(job_id, text).status_code == 201
        assert self.job(job_id, "PATCH", state="UploadComplete").status_code == 200
        self.advance(11)
        return job_id

    def query(self, soql: str) -> list[dict[str, Any]]:
        r = HTTP.get(f"{self.base}/query", params={"q": soql}, headers=self.auth)
        assert r.status_code == 200, r.text
        return r.json()["records"]


@pytest.fixture
def bulk(emulator: RunningEmulator) -> Bulk:
    return Bulk(emulator)


def test_insert_job_life_on_the_org_clock(bulk: Bulk) -> None:
    r = bulk.create(object="Account", operation="insert", contentType="CSV", lineEnding="LF")
    assert r.status_code == 200, r.text
    info = r.json()
    job_id = info["id"]
    assert job_id.startswith("750") and len(job_id) == 18
    assert info["state"] == "Open" and info["object"] == "Account" and info["operation"] == "insert"
    assert info["contentUrl"] == f"services/data/v{V}/jobs/ingest/{job_id}/batches"
    assert info["apiVersion"] == 62.0 and info["columnDelimiter"] == "COMMA" and info["lineEnding"] == "LF"
    r = bulk.upload(job_id, "Name,Industry\nBulk One,Energy\n\"Bulk, Two\",Media\n")
    assert r.status_code == 201 and r.content == b""
    r = bulk.job(job_id, "PATCH", state="UploadComplete")
    assert r.status_code == 200 and r.json()["state"] == "UploadComplete"
    assert bulk.query("SELECT Id FROM Account WHERE Name LIKE 'Bulk%'") == []  # nothing written before it runs
    bulk.advance(6)
    assert bulk.job(job_id).json()["state"] == "InProgress"
    bulk.advance(5)
    info = bulk.job(job_id).json()
    assert info["state"] == "JobComplete"
    assert info["numberRecordsProcessed"] == 2 and info["numberRecordsFailed"] == 0
    assert info["jobType"] == "V2Ingest" and "contentUrl" not in info
    rows = bulk.results(job_id, "successfulResults")
    assert rows[0] == ["sf__Id", "sf__Created", "Name", "Industry"]
    assert [r[1:] for r in rows[1:]] == [["true", "Bulk One", "Energy"], ["true", "Bulk, Two", "Media"]]
    created = {r[0] for r in rows[1:]}
    queried = bulk.query("SELECT Id, Name FROM Account WHERE Name LIKE 'Bulk%'")
    assert {q["Id"] for q in queried} == created and all(len(i) == 18 and i.startswith("001") for i in created)
    assert bulk.results(job_id, "failedResults") == [["sf__Id", "sf__Error", "Name", "Industry"]]


def test_failed_rows_carry_salesforces_error_wording(bulk: Bulk) -> None:
    csv_text = "Name,StageName,CloseDate,Amount\nGood,Prospecting,2026-03-01,10\n,Prospecting,2026-03-01,5\n" \
               "Bad amount,Prospecting,2026-03-01,lots\n"
    job_id = bulk.run(csv_text, object="Opportunity", operation="insert")
    info = bulk.job(job_id).json()
    assert info["state"] == "JobComplete"
    assert info["numberRecordsProcessed"] == 3 and info["numberRecordsFailed"] == 2
    failed = bulk.results(job_id, "failedResults")
    assert failed[0] == ["sf__Id", "sf__Error", "Name", "StageName", "CloseDate", "Amount"]
    assert failed[1] == ["", "REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --", "",
                         "Prospecting", "2026-03-01", "5"]
    assert failed[2][1] == "INVALID_TYPE_ON_FIELD_IN_RECORD:Amount: value not of required type: lots:Amount --"
    assert [r[2] for r in bulk.results(job_id, "successfulResults")[1:]] == ["Good"]
    assert len(bulk.query("SELECT Id FROM Opportunity")) == 31


def test_opportunities_reference_accounts_by_external_id(bulk: Bulk) -> None:
    bulk.run("Name,External_Id__c\nParent Co,P-1\n", object="Account", operation="insert")
    parent = bulk.query("SELECT Id FROM Account WHERE External_Id__c = 'P-1'")[0]["Id"]
    text = "Name,StageName,CloseDate,Account.External_Id__c\nChild,Prospecting,2026-04-01,P-1\n" \
           "Orphan,Prospecting,2026-04-01,P-404\n"
    job_id = bulk.run(text, object="Opportunity", operation="insert")
    assert bulk.job(job_id).json()["numberRecordsFailed"] == 1
    assert [r["AccountId"] for r in bulk.query("SELECT AccountId FROM Opportunity WHERE Name = 'Child'")] == [parent]
    failed = bulk.results(job_id, "failedResults")
    assert failed[1][1] == ("INVALID_FIELD:Foreign key external ID: P-404 not found for field External_Id__c in "
                            "entity Account:AccountId --")


def test_update_upsert_delete_and_hard_delete(bulk: Bulk) -> None:
    accounts = bulk.query("SELECT Id, Name FROM Account ORDER BY Name LIMIT 3")
    missing = "001" + "0" * 15
    text = "Id,Industry\n" + "".join(f"{a['Id']},Updated\n" for a in accounts[:2]) + f"{missing},Updated\n"
    job_id = bulk.run(text, object="Account", operation="update")
    assert bulk.job(job_id).json()["numberRecordsFailed"] == 1
    assert len(bulk.query("SELECT Id FROM Account WHERE Industry = 'Updated'")) == 2
    failed = bulk.results(job_id, "failedResults")
    assert failed[1][:2] == [missing, "NOT_FOUND:The requested resource does not exist: --"]
    assert {r[1] for r in bulk.results(job_id, "successfulResults")[1:]} == {"false"}

    job_id = bulk.run("External_Id__c,Name\nX-1,Upsert New\nX-1,Upsert Again\n", object="Account",
                      operation="upsert", externalIdFieldName="External_Id__c")
    ok = bulk.results(job_id, "successfulResults")
    assert [(r[1], r[3]) for r in ok[1:]] == [("true", "Upsert New"), ("false", "Upsert Again")]
    assert ok[1][0] == ok[2][0]
    assert [r["Name"] for r in bulk.query("SELECT Name FROM Account WHERE External_Id__c = 'X-1'")] == ["Upsert Again"]

    job_id = bulk.run(f"Id\n{accounts[0]['Id']}\n", object="Account", operation="delete")
    assert bulk.job(job_id).json()["numberRecordsProcessed"] == 1
    job_id = bulk.run(f"Id\n{accounts[0]['Id']}\n{accounts[1]['Id']}\n", object="Account", operation="hardDelete")
    failed = bulk.results(job_id, "failedResults")
    assert [r[1] for r in failed[1:]] == ["ENTITY_IS_DELETED:entity is deleted: --"]
    assert bulk.query(f"SELECT Id FROM Account WHERE Id IN ('{accounts[0]['Id']}', '{accounts[1]['Id']}')") == []


def test_job_level_failures_leave_rows_unprocessed(bulk: Bulk) -> None:
    job_id = bulk.run("Name,Nope__c\nA,1\n", object="Account", operation="insert")
    info = bulk.job(job_id).json()
    assert info["state"] == "Failed" and info["errorMessage"] == "InvalidBatch : Field name not found : Nope__c"
    assert info["numberRecordsProcessed"] == 0
    assert bulk.results(job_id, "unprocessedrecords") == [["Name", "Nope__c"], ["A", "1"]]
    job_id = bulk.run("Id,Name\n001000000000000AAA,x\n", object="Account", operation="delete")
    assert bulk.job(job_id).json()["errorMessage"] == "InvalidBatch : The 'delete' batch must contain only ids"


def test_create_job_refusals(bulk: Bulk) -> None:
    r = bulk.create(object="Account", operation="upsert")
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "INVALIDJOB"
    assert r.json()[0]["message"] == "External ID was blank for Account. An External ID must be specified for upsert."
    r = bulk.create(object="Account", operation="upsert", externalIdFieldName="Name")
    assert r.json()[0]["message"].startswith("Field name provided, Name does not match an External ID")
    for body in ({"object": "Account", "operation": "merge"}, {"object": "Nope__c", "operation": "insert"},
                 {"object": "Account", "operation": "insert", "columnDelimiter": "DOT"},
                 {"object": "Account", "operation": "insert", "contentType": "JSON"}):
        r = bulk.create(**body)
        assert r.status_code == 400 and r.json()[0]["errorCode"] == "INVALIDJOB", body
    assert bulk.job("750" + "0" * 15).status_code == 404


def test_wrong_states_abort_delete_and_list(bulk: Bulk) -> None:
    job_id = bulk.create(object="Account", operation="insert").json()["id"]
    r = bulk.job(job_id, "DELETE")
    assert r.status_code == 409 and r.json()[0]["errorCode"] == "INVALIDJOBSTATE"  # Open jobs can't be deleted
    assert bulk.upload(job_id, "Name\nAborted One\n").status_code == 201
    r = bulk.job(job_id, "PATCH", state="Aborted")
    assert r.status_code == 200 and r.json()["state"] == "Aborted"
    r = bulk.upload(job_id, "Name\nLate\n")
    assert r.status_code == 409 and r.json()[0]["errorCode"] == "INVALIDJOBSTATE"
    assert bulk.job(job_id, "PATCH", state="UploadComplete").status_code == 409
    assert bulk.job(job_id, "PATCH", state="Bogus").status_code == 400
    bulk.advance(60)
    assert bulk.job(job_id).json()["state"] == "Aborted"
    assert bulk.results(job_id, "unprocessedrecords") == [["Name"], ["Aborted One"]]
    assert bulk.query("SELECT Id FROM Account WHERE Name = 'Aborted One'") == []
    other = bulk.run("Name\nListed\n", object="Account", operation="insert")
    assert bulk.job(other, "PATCH", state="Aborted").status_code == 409  # a finished job can't be aborted
    listing = HTTP.get(f"{bulk.base}/jobs/ingest", headers=bulk.auth).json()
    assert listing["done"] is True and listing["nextRecordsUrl"] is None
    assert {j["id"]: j["state"] for j in listing["records"]} == {job_id: "Aborted", other: "JobComplete"}
    assert bulk.job(job_id, "DELETE").status_code == 204
    assert bulk.job(job_id).status_code == 404
    bulk.advance(7 * 86400 + 60)  # Salesforce deletes finished jobs after seven days
    bulk.auth = {"Authorization": f"Bearer {jwt_token(bulk.emu)['access_token']}"}
    assert HTTP.get(f"{bulk.base}/jobs/ingest", headers=bulk.auth).json()["records"] == []
    assert bulk.job(other).status_code == 404


def test_pipe_delimiter_crlf_and_several_uploads(bulk: Bulk) -> None:
    r = bulk.create(object="Account", operation="insert", columnDelimiter="PIPE", lineEnding="CRLF")
    job_id = r.json()["id"]
    assert bulk.upload(job_id, "Name|Industry\r\nPipe A|x\r\n").status_code == 201
    assert bulk.upload(job_id, "Name|Industry\r\nPipe B|y\r\n").status_code == 201
    bulk.job(job_id, "PATCH", state="UploadComplete")
    bulk.advance(11)
    raw = HTTP.get(f"{bulk.base}/jobs/ingest/{job_id}/successfulResults", headers=bulk.auth).text
    assert raw.startswith('"sf__Id"|"sf__Created"|"Name"|"Industry"\r\n')
    assert len(bulk.query("SELECT Id FROM Account WHERE Name LIKE 'Pipe%'")) == 2


def test_limits_count_ingest_batches_and_api_requests(emulator: RunningEmulator, bulk: Bulk) -> None:
    def limits() -> dict[str, Any]:
        return HTTP.get(f"{bulk.base}/limits", headers=bulk.auth).json()

    before = limits()
    rows = "".join(f"Row {i}\n" for i in range(10_001))
    bulk.run("Name\n" + rows, object="Account", operation="insert")
    after = limits()
    # Salesforce counts a batch per started chunk of 10,000 records of an ingest job
    assert before["DailyBulkApiBatches"]["Remaining"] - after["DailyBulkApiBatches"]["Remaining"] == 2
    # create, upload, close, and this /limits call: four REST requests
    assert before["DailyApiRequests"]["Remaining"] - after["DailyApiRequests"]["Remaining"] == 4
    assert emulator.org.bulk_batches_used == 2
