"""Record DML over real HTTP: create, update, delete and upsert with Salesforce's status codes
and error bodies, and the written records visible to the REST query."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sf_oauth_provider.emulator import RunningEmulator
from sf_oauth_provider.emulator.state import sf_id18

from ._util import HTTP, jwt_token

V = "63.0"


class Api:
    """The REST API as one logged-in user sees it."""

    def __init__(self, emu: RunningEmulator, version: str = V) -> None:
        self.emu = emu
        self.base = f"{emu.base_url}/services/data/v{version}"
        self.headers = {"Authorization": f"Bearer {jwt_token(emu)['access_token']}"}

    def call(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> httpx.Response:
        content = raw if raw is not None else (None if body is None else httpx.Request("POST", "/", json=body).content)
        headers = {**self.headers, "Content-Type": "application/json"}
        return HTTP.request(method, self.base + path, content=content, headers=headers)

    def query(self, soql: str) -> list[dict[str, Any]]:
        r = HTTP.get(self.base + "/query", params={"q": soql}, headers=self.headers)
        assert r.status_code == 200, r.text
        return r.json()["records"]


@pytest.fixture
def api(emulator: RunningEmulator) -> Api:
    return Api(emulator)


def _error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert isinstance(body, list) and len(body) == 1 and body[0]["errorCode"] == code, body
    assert set(body[0]) == {"message", "errorCode", "fields"}
    return body[0]


def test_create_answers_201_with_an_18_char_id_of_the_key_prefix_visible_to_queries(api: Api) -> None:
    r = api.call("POST", "/sobjects/Account", {"Name": "Globex DML", "Industry": "Energy"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["success"] is True and body["errors"] == []
    new_id = body["id"]
    assert len(new_id) == 18 and new_id.startswith("001") and sf_id18(new_id[:15]) == new_id
    rows = api.query(f"SELECT Id, Name, Industry FROM Account WHERE Id = '{new_id}'")
    assert [(r["Name"], r["Industry"]) for r in rows] == [("Globex DML", "Energy")]
    assert len(api.query("SELECT Id FROM Account")) == 11
    got = api.call("GET", f"/sobjects/Account/{new_id}")
    assert got.status_code == 200 and got.json()["Name"] == "Globex DML"


def test_opportunity_create_derives_is_won_and_checks_its_account(api: Api) -> None:
    acct = api.query("SELECT Id FROM Account LIMIT 1")[0]["Id"]
    r = api.call("POST", "/sobjects/Opportunity",
                 {"Name": "Big deal", "AccountId": acct, "StageName": "Closed Won", "CloseDate": "2026-01-31",
                  "Amount": 1234.5})
    assert r.status_code == 201, r.text
    row = api.query(f"SELECT Amount, IsWon, CloseDate, Account.Id FROM Opportunity WHERE Id = '{r.json()['id']}'")[0]
    assert row["IsWon"] is True and row["Amount"] == 1234.5 and row["CloseDate"] == "2026-01-31"
    assert row["Account"]["Id"] == acct
    missing_acct = "001" + "0" * 12
    bad = api.call("POST", "/sobjects/Opportunity",
                   {"Name": "x", "AccountId": missing_acct, "StageName": "Prospecting", "CloseDate": "2026-01-31"})
    err = _error(bad, 400, "INVALID_CROSS_REFERENCE_KEY")
    assert err["fields"] == ["AccountId"]
    wrong_type = api.call("POST", "/sobjects/Opportunity", {"Name": "x", "AccountId": acct.replace("001", "006", 1),
                                                            "StageName": "Prospecting", "CloseDate": "2026-01-31"})
    assert "id value of incorrect type" in _error(wrong_type, 400, "MALFORMED_ID")["message"]


def test_create_errors_say_what_salesforce_says(api: Api) -> None:
    err = _error(api.call("POST", "/sobjects/Opportunity", {"Name": "x"}), 400, "REQUIRED_FIELD_MISSING")
    assert err["message"] == "Required fields are missing: [StageName, CloseDate]"
    assert err["fields"] == ["StageName", "CloseDate"]
    err = _error(api.call("POST", "/sobjects/Account", {"Name": "x", "Nope__c": 1}), 400, "INVALID_FIELD")
    assert err["message"] == "No such column 'Nope__c' on sobject of type Account"
    err = _error(api.call("POST", "/sobjects/Opportunity", {"Name": "x", "IsWon": True}), 400,
                 "INVALID_FIELD_FOR_INSERT_UPDATE")
    assert err["message"].startswith("Unable to create/update fields: IsWon.") and err["fields"] == ["IsWon"]
    _error(api.call("POST", "/sobjects/Account", raw=b"{not json"), 400, "JSON_PARSER_ERROR")
    _error(api.call("POST", "/sobjects/Account", [{"Name": "x"}]), 400, "JSON_PARSER_ERROR")
    _error(api.call("POST", "/sobjects/Opportunity",
                    {"Name": "x", "StageName": "P", "CloseDate": "2026-01-31", "Amount": "lots"}),
           400, "JSON_PARSER_ERROR")
    err = _error(api.call("POST", "/sobjects/Organization", {"Name": "x"}), 400, "INVALID_TYPE_FOR_OPERATION")
    assert err["message"] == "entity type cannot be inserted: Organization"
    _error(api.call("POST", "/sobjects/Nope__c", {"Name": "x"}), 404, "NOT_FOUND")
    assert len(api.query("SELECT Id FROM Account")) == 10  # nothing was written by a refused call


def test_update_and_delete_answer_204_and_then_entity_is_deleted(api: Api) -> None:
    acct = api.query("SELECT Id, Name FROM Account ORDER BY Name LIMIT 1")[0]
    r = api.call("PATCH", f"/sobjects/Account/{acct['Id']}", {"Industry": "Robotics"})
    assert r.status_code == 204 and r.content == b""
    assert api.query(f"SELECT Industry FROM Account WHERE Id = '{acct['Id']}'")[0]["Industry"] == "Robotics"
    # a 15-character id names the same record
    assert api.call("PATCH", f"/sobjects/Account/{acct['Id'][:15]}", {"Name": "Renamed"}).status_code == 204
    err = _error(api.call("PATCH", f"/sobjects/Account/{acct['Id']}", {"Name": None}), 400, "REQUIRED_FIELD_MISSING")
    assert err["fields"] == ["Name"]
    opps_before = api.query(f"SELECT Id FROM Opportunity WHERE AccountId = '{acct['Id']}'")
    assert opps_before
    r = api.call("DELETE", f"/sobjects/Account/{acct['Id']}")
    assert r.status_code == 204 and r.content == b""
    assert api.query(f"SELECT Id FROM Account WHERE Id = '{acct['Id']}'") == []
    # Salesforce cascades an Account's delete to its Opportunities
    assert api.query(f"SELECT Id FROM Opportunity WHERE AccountId = '{acct['Id']}'") == []
    _error(api.call("DELETE", f"/sobjects/Account/{acct['Id']}"), 404, "ENTITY_IS_DELETED")
    _error(api.call("PATCH", f"/sobjects/Account/{acct['Id']}", {"Name": "x"}), 404, "ENTITY_IS_DELETED")
    _error(api.call("DELETE", f"/sobjects/Opportunity/{opps_before[0]['Id']}"), 404, "ENTITY_IS_DELETED")
    assert api.call("GET", f"/sobjects/Account/{acct['Id']}").status_code == 404


def test_update_and_delete_of_bad_ids(api: Api) -> None:
    _error(api.call("PATCH", "/sobjects/Account/001abc", {"Name": "x"}), 400, "MALFORMED_ID")
    opp = api.query("SELECT Id FROM Opportunity LIMIT 1")[0]["Id"]
    err = _error(api.call("DELETE", f"/sobjects/Account/{opp}"), 400, "MALFORMED_ID")
    assert err["message"] == f"Account ID: id value of incorrect type: {opp}"
    _error(api.call("DELETE", "/sobjects/Account/001" + "0" * 15), 404, "NOT_FOUND")
    err = _error(api.call("DELETE", "/sobjects/User/005" + "0" * 15), 400, "INVALID_TYPE_FOR_OPERATION")
    assert err["message"] == "entity type cannot be deleted: User"


def test_upsert_by_external_id_answers_per_api_version(emulator: RunningEmulator, api: Api) -> None:
    r = api.call("PATCH", "/sobjects/Account/External_Id__c/EXT-1", {"Name": "Upserted"})
    assert r.status_code == 201, r.text
    assert r.json() == {"id": r.json()["id"], "success": True, "errors": [], "created": True}
    new_id = r.json()["id"]
    r = api.call("PATCH", "/sobjects/Account/External_Id__c/EXT-1", {"Industry": "Media"})
    assert r.status_code == 200 and r.json() == {"id": new_id, "success": True, "errors": [], "created": False}
    rows = api.query("SELECT Id, Name, Industry, External_Id__c FROM Account WHERE External_Id__c = 'EXT-1'")
    assert rows == [{"attributes": rows[0]["attributes"], "Id": new_id, "Name": "Upserted", "Industry": "Media",
                     "External_Id__c": "EXT-1"}]
    old = Api(emulator, "45.0")
    r = old.call("PATCH", "/sobjects/Account/External_Id__c/EXT-1", {"Industry": "Games"})
    assert r.status_code == 204 and r.content == b""
    r = old.call("PATCH", "/sobjects/Account/External_Id__c/EXT-2", {"Name": "Old API"})
    assert r.status_code == 201 and set(r.json()) == {"id", "success", "errors"}


def test_upsert_errors_and_multiple_matches(api: Api) -> None:
    err = _error(api.call("PATCH", "/sobjects/Account/Name/Acme", {"Industry": "x"}), 404, "NOT_FOUND")
    assert err["message"] == "Provided external ID field does not exist or is not accessible: Name"
    err = _error(api.call("PATCH", "/sobjects/Account/External_Id__c/NEW", {"Industry": "x"}), 400,
                 "REQUIRED_FIELD_MISSING")
    assert err["fields"] == ["Name"]
    for name in ("Dup A", "Dup B"):
        assert api.call("POST", "/sobjects/Account", {"Name": name, "External_Id__c": "DUP"}).status_code == 201
    r = api.call("PATCH", "/sobjects/Account/External_Id__c/DUP", {"Industry": "x"})
    assert r.status_code == 300
    assert len(r.json()) == 2 and all(u.startswith(f"/services/data/v{V}/sobjects/Account/001") for u in r.json())
    assert api.query("SELECT Id FROM Account WHERE Industry = 'x'") == []
    r = api.call("DELETE", "/sobjects/Account/External_Id__c/EXT-NONE")
    _error(r, 404, "NOT_FOUND")


def test_delete_by_external_id(api: Api) -> None:
    assert api.call("PATCH", "/sobjects/Account/External_Id__c/GONE", {"Name": "Soon gone"}).status_code == 201
    assert api.call("DELETE", "/sobjects/Account/External_Id__c/GONE").status_code == 204
    assert api.query("SELECT Id FROM Account WHERE External_Id__c = 'GONE'") == []


def test_dml_needs_a_session_and_counts_api_usage(emulator: RunningEmulator, api: Api) -> None:
    r = HTTP.post(api.base + "/sobjects/Account", json={"Name": "x"}, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json()[0]["errorCode"] == "INVALID_SESSION_ID"
    before = emulator.org.api_requests_used
    r = api.call("POST", "/sobjects/Account", {"Name": "Counted"})
    assert r.status_code == 201
    assert emulator.org.api_requests_used == before + 1
    assert r.headers["Sforce-Limit-Info"] == f"api-usage={before + 1}/15000"


def test_reset_forgets_written_records(emulator: RunningEmulator, api: Api) -> None:
    assert api.call("POST", "/sobjects/Account", {"Name": "Temporary"}).status_code == 201
    emulator.org.reset()
    fresh = Api(emulator)
    assert fresh.query("SELECT Id FROM Account WHERE Name = 'Temporary'") == []


def test_describe_says_what_dml_may_write(api: Api) -> None:
    account = api.call("GET", "/sobjects/Account/describe").json()
    assert account["createable"] and account["updateable"] and account["deletable"]
    fields = {f["name"]: f for f in account["fields"]}
    assert fields["External_Id__c"]["externalId"] and fields["External_Id__c"]["idLookup"]
    assert fields["External_Id__c"]["custom"] and not fields["Name"]["custom"]
    assert fields["Name"]["createable"] and not fields["Name"]["nillable"] and not fields["Id"]["createable"]
    opp = {f["name"]: f for f in api.call("GET", "/sobjects/Opportunity/describe").json()["fields"]}
    assert opp["Amount"]["updateable"] and not opp["IsWon"]["createable"]
    org = api.call("GET", "/sobjects/Organization/describe").json()
    assert not org["createable"] and not org["deletable"]


def test_writes_stamp_audit_fields_on_the_org_clock(emulator: RunningEmulator, api: Api) -> None:
    err = _error(api.call("POST", "/sobjects/Account", {"Name": "x", "CreatedDate": "2020-01-01T00:00:00Z"}), 400,
                 "INVALID_FIELD_FOR_INSERT_UPDATE")
    assert err["fields"] == ["CreatedDate"]
    t0 = emulator.org.clock.now()
    new_id = api.call("POST", "/sobjects/Account", {"Name": "Stamped"}).json()["id"]
    assert HTTP.post(f"{emulator.base_url}/__emulator/clock", json={"advance": 3600}).status_code == 200
    assert api.call("PATCH", f"/sobjects/Account/{new_id}", {"Industry": "Later"}).status_code == 204
    row = next(r for r in emulator.org.accounts if r["Id"] == new_id)
    assert t0 <= row["CreatedDate"].timestamp() < t0 + 60
    assert row["SystemModstamp"] == row["LastModifiedDate"]
    assert t0 + 3600 <= row["SystemModstamp"].timestamp() < t0 + 3660


def test_faults_and_unserved_writes(emulator: RunningEmulator, api: Api) -> None:
    emulator.org.set_faults("query", sequence=["json503"])
    r = api.call("POST", "/sobjects/Account", {"Name": "Never written"})
    assert r.status_code == 503 and r.json()[0]["errorCode"] == "SERVER_UNAVAILABLE"
    assert api.query("SELECT Id FROM Account WHERE Name = 'Never written'") == []
    for method, path in (("POST", "/query"), ("PUT", "/sobjects/Account"), ("POST", "/sobjects/Account/describe/x")):
        r = api.call(method, path, {"Name": "x"})
        assert r.status_code == 405 and r.json()[0]["errorCode"] == "METHOD_NOT_ALLOWED", (method, path)


def test_reference_by_the_parents_external_id(api: Api) -> None:
    parent = api.call("PATCH", "/sobjects/Account/External_Id__c/PARENT-1", {"Name": "Parent"}).json()["id"]
    opp = {"Name": "Child", "StageName": "Prospecting", "CloseDate": "2026-05-01"}
    r = api.call("POST", "/sobjects/Opportunity", {**opp, "Account": {"External_Id__c": "parent-1"}})
    assert r.status_code == 201, r.text
    assert api.query(f"SELECT AccountId FROM Opportunity WHERE Id = '{r.json()['id']}'")[0]["AccountId"] == parent
    err = _error(api.call("POST", "/sobjects/Opportunity", {**opp, "Account": {"External_Id__c": "NOPE"}}), 400,
                 "INVALID_FIELD")
    assert err["message"] == "Foreign key external ID: NOPE not found for field External_Id__c in entity Account"


def test_changing_an_external_id_moves_the_upsert_target(api: Api) -> None:
    first = api.call("PATCH", "/sobjects/Account/External_Id__c/OLD", {"Name": "Moving"}).json()["id"]
    assert api.call("PATCH", f"/sobjects/Account/{first}", {"External_Id__c": "NEW"}).status_code == 204
    r = api.call("PATCH", "/sobjects/Account/External_Id__c/new", {"Industry": "Found"})
    assert r.status_code == 200 and r.json()["id"] == first
    r = api.call("PATCH", "/sobjects/Account/External_Id__c/OLD", {"Name": "Second"})
    assert r.status_code == 201 and r.json()["id"] != first
    assert api.call("DELETE", f"/sobjects/Account/{first}").status_code == 204
    r = api.call("PATCH", "/sobjects/Account/External_Id__c/NEW", {"Name": "Third"})
    assert r.status_code == 201  # the deleted record no longer answers to its external id


def test_retrieve_by_external_id(api: Api) -> None:
    new_id = api.call("PATCH", "/sobjects/Account/External_Id__c/GET-1", {"Name": "Fetched"}).json()["id"]
    r = api.call("GET", "/sobjects/Account/External_Id__c/GET-1")
    assert r.status_code == 200 and r.json()["Id"] == new_id and r.json()["Name"] == "Fetched"
    assert r.json()["attributes"]["url"].endswith(f"/sobjects/Account/{new_id}")
    _error(api.call("GET", "/sobjects/Account/External_Id__c/NONE"), 404, "NOT_FOUND")
    err = _error(api.call("GET", "/sobjects/Account/Industry/Energy"), 404, "NOT_FOUND")
    assert err["message"] == "Provided external ID field does not exist or is not accessible: Industry"
    assert api.call("POST", "/sobjects/Account", {"Name": "Twin", "External_Id__c": "GET-1"}).status_code == 201
    assert api.call("GET", "/sobjects/Account/External_Id__c/GET-1").status_code == 300
