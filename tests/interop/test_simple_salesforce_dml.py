"""simple-salesforce's record DML and Bulk API 2.0 ingest (``sf.bulk2``) against the TLS-mode
emulator; what they report agrees with REST queries."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest, SalesforceResourceNotFound

from sf_oauth_provider.emulator import RunningEmulator


@pytest.fixture
def sf(tls_emulator: RunningEmulator, sf_session: requests.Session, key_file: Path) -> Salesforce:
    """simple-salesforce logged in with the JWT bearer flow; ingest jobs finish at the first poll."""
    tls_emulator.org.settings.update({"bulk_ingest_delay": 0})
    d = tls_emulator.org.demo
    return Salesforce(
        username=d.jwt_username, consumer_key=d.jwt_consumer_key, privatekey_file=str(key_file),
        domain="login", session=sf_session,
    )


def test_create_update_upsert_delete(sf: Salesforce) -> None:
    created = sf.Account.create({"Name": "Simple Co", "Industry": "Retail"})
    assert created["success"] is True and created["errors"] == [] and created["id"].startswith("001")
    new_id = created["id"]
    assert sf.query(f"SELECT Name FROM Account WHERE Id = '{new_id}'")["records"][0]["Name"] == "Simple Co"
    assert sf.Account.update(new_id, {"Industry": "Media"}) == 204
    assert sf.Account.get(new_id)["Industry"] == "Media"
    # simple-salesforce speaks v59.0: an upsert that updates answers 200, one that creates 201
    assert sf.Account.upsert("External_Id__c/SS-1", {"Name": "Upserted Co"}) == 201
    assert sf.Account.upsert("External_Id__c/SS-1", {"Industry": "Energy"}) == 200
    rows = sf.query("SELECT Name, Industry FROM Account WHERE External_Id__c = 'SS-1'")["records"]
    assert [(r["Name"], r["Industry"]) for r in rows] == [("Upserted Co", "Energy")]
    assert sf.Account.get_by_custom_id("External_Id__c", "SS-1")["Name"] == "Upserted Co"
    assert sf.Account.delete(new_id) == 204
    assert sf.query(f"SELECT Id FROM Account WHERE Id = '{new_id}'")["totalSize"] == 0
    with pytest.raises(SalesforceResourceNotFound) as deleted:
        sf.Account.delete(new_id)
    assert deleted.value.content[0]["errorCode"] == "ENTITY_IS_DELETED"


def test_create_errors_reach_the_caller_as_salesforce_errors(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as missing:
        sf.Opportunity.create({"Name": "No stage"})
    assert missing.value.content[0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    assert missing.value.content[0]["fields"] == ["StageName", "CloseDate"]
    with pytest.raises(SalesforceMalformedRequest) as bad_field:
        sf.Account.create({"Name": "x", "Nope__c": "y"})
    assert bad_field.value.content[0]["errorCode"] == "INVALID_FIELD"


def test_bulk2_insert_and_results(sf: Salesforce) -> None:
    records = [{"Name": f"Bulk2 {i}", "Industry": "Bulk"} for i in range(25)] + [{"Name": "", "Industry": "Bulk"}]
    [result] = sf.bulk2.Account.insert(records=records, wait=0.01)
    assert result["numberRecordsProcessed"] == 26 and result["numberRecordsFailed"] == 1
    assert result["numberRecordsTotal"] == 26
    queried = sf.query_all("SELECT Id, Name FROM Account WHERE Industry = 'Bulk'")["records"]
    assert len(queried) == 25
    ok = list(csv.DictReader(io.StringIO(sf.bulk2.Account.get_successful_records(result["job_id"]))))
    assert {r["sf__Id"] for r in ok} == {q["Id"] for q in queried} and {r["sf__Created"] for r in ok} == {"true"}
    failed = list(csv.DictReader(io.StringIO(sf.bulk2.Account.get_failed_records(result["job_id"]))))
    assert [f["sf__Error"] for f in failed] == ["REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --"]


def test_bulk2_upsert_update_and_delete(sf: Salesforce) -> None:
    rows = [{"External_Id__c": f"B2-{i}", "Name": f"Upsert {i}"} for i in range(3)]
    [first] = sf.bulk2.Account.upsert(records=rows, external_id_field="External_Id__c", wait=0.01)
    assert first["numberRecordsProcessed"] == 3 and first["numberRecordsFailed"] == 0
    again = [{"External_Id__c": "B2-0", "Name": "Upsert zero renamed"}, {"External_Id__c": "B2-9", "Name": "New"}]
    [second] = sf.bulk2.Account.upsert(records=again, external_id_field="External_Id__c", wait=0.01)
    ok = list(csv.DictReader(io.StringIO(sf.bulk2.Account.get_successful_records(second["job_id"]))))
    assert [(r["External_Id__c"], r["sf__Created"]) for r in ok] == [("B2-0", "false"), ("B2-9", "true")]
    found = sf.query("SELECT Id, Name FROM Account WHERE External_Id__c LIKE 'B2-%' ORDER BY Name")["records"]
    assert [r["Name"] for r in found] == ["New", "Upsert 1", "Upsert 2", "Upsert zero renamed"]
    [upd] = sf.bulk2.Account.update(records=[{"Id": found[0]["Id"], "Industry": "Updated"}], wait=0.01)
    assert upd["numberRecordsFailed"] == 0
    assert sf.Account.get(found[0]["Id"])["Industry"] == "Updated"
    [gone] = sf.bulk2.Account.delete(records=[{"Id": r["Id"]} for r in found], wait=0.01)
    assert gone["numberRecordsProcessed"] == 4 and gone["numberRecordsFailed"] == 0
    assert sf.query("SELECT Id FROM Account WHERE External_Id__c LIKE 'B2-%'")["totalSize"] == 0
