"""Data API: SOQL subset, paging, errors, OauthToken visibility."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from sf_oauth_provider.emulator import RunningEmulator

from ._util import HTTP, cc_token, jwt_token, query

DT_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")


@pytest.fixture
def admin_token(emulator: RunningEmulator) -> str:
    return jwt_token(emulator)["access_token"]


def _records(emu: RunningEmulator, tok: str, soql: str) -> list[dict]:
    r = query(emu, tok, soql)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["done"] is True and body["totalSize"] == len(body["records"])
    return body["records"]


def test_basic_select_shape(emulator: RunningEmulator, admin_token: str) -> None:
    recs = _records(emulator, admin_token, "SELECT Id, Name, Industry FROM Account")
    assert len(recs) == emulator.org.seed_facts["account_count"] == 10
    rec = recs[0]
    assert list(rec) == ["attributes", "Id", "Name", "Industry"]
    assert rec["attributes"] == {"type": "Account", "url": f"/services/data/v63.0/sobjects/Account/{rec['Id']}"}
    assert rec["Id"].startswith("001") and len(rec["Id"]) == 18


def test_case_insensitive_keywords_and_fields(emulator: RunningEmulator, admin_token: str) -> None:
    recs = _records(emulator, admin_token, "select name, INDUSTRY from account where NAME = 'acme corporation'")
    assert recs == [
        {"attributes": recs[0]["attributes"], "Name": "Acme Corporation", "Industry": "Manufacturing"}
    ]


def test_where_order_limit(emulator: RunningEmulator, admin_token: str) -> None:
    recs = _records(
        emulator,
        admin_token,
        "SELECT Name, Amount, StageName FROM Opportunity WHERE Amount >= 100000 AND StageName != 'Closed Lost' "
        "ORDER BY Amount DESC LIMIT 5",
    )
    amounts = [r["Amount"] for r in recs]
    assert len(recs) <= 5 and amounts == sorted(amounts, reverse=True) and all(a >= 100000 for a in amounts)
    assert all(r["StageName"] != "Closed Lost" for r in recs)
    like = _records(emulator, admin_token, "SELECT Name FROM Account WHERE Name LIKE 'G%' OR Name LIKE '%ooli'")
    assert sorted(r["Name"] for r in like) == ["Globex", "Hooli"]
    ins = _records(emulator, admin_token, "SELECT Name FROM Account WHERE Industry IN ('Energy', 'Finance') ORDER BY Name")
    assert [r["Name"] for r in ins] == ["Stark Industries", "Wayne Enterprises"]
    nin = _records(emulator, admin_token, "SELECT Name FROM Account WHERE Industry NOT IN ('Technology')")
    assert len(nin) == 7


def test_date_literals_and_relationships(emulator: RunningEmulator, admin_token: str) -> None:
    org = emulator.org
    recs = _records(
        emulator,
        admin_token,
        "SELECT Id, Name, Amount, CloseDate, IsWon, Account.Name FROM Opportunity "
        "WHERE StageName = 'Closed Won' AND CloseDate = YESTERDAY",
    )
    assert sorted(r["Id"] for r in recs) == sorted(org.seed_facts["closed_won_yesterday_ids"])
    yesterday = (dt.datetime.fromtimestamp(org.clock.now(), dt.timezone.utc).date() - dt.timedelta(days=1)).isoformat()
    for r in recs:
        assert r["CloseDate"] == yesterday and r["IsWon"] is True
        assert r["Account"]["attributes"]["type"] == "Account" and r["Account"]["Name"]
    assert len(_records(emulator, admin_token, f"SELECT Id FROM Opportunity WHERE CloseDate = {yesterday} AND IsWon = true")) >= 6
    n1 = _records(emulator, admin_token, "SELECT Id FROM Opportunity WHERE IsWon = true AND CloseDate = N_DAYS_AGO:1")
    assert len(n1) == len(recs)
    # moving the org clock moves the literals
    org.settings.session_timeout = 3 * 86400
    org.clock.advance(86400)
    assert _records(emulator, admin_token, "SELECT Id FROM Opportunity WHERE IsWon = true AND CloseDate = YESTERDAY") == []


def test_oauthtoken_query(emulator: RunningEmulator, admin_token: str) -> None:
    facts = emulator.org.seed_facts
    recs = _records(
        emulator,
        admin_token,
        "SELECT Id, AppName, UserId, User.Username, User.IsActive, CreatedDate, LastUsedDate, UseCount, "
        "DeleteToken, AccessToken, RequestToken, AppMenuItemId FROM OauthToken",
    )
    assert len(recs) == facts["oauth_token_count"]
    for r in recs:
        assert r["Id"] is None
        assert r["attributes"] == {"type": "OauthToken"}
        assert DT_RE.match(r["CreatedDate"])
        assert r["LastUsedDate"] is None or DT_RE.match(r["LastUsedDate"])
        assert set(r["User"]) == {"attributes", "Username", "IsActive"}
    by_tok = {r["DeleteToken"]: r for r in recs}
    for tok in facts["inactive_user_delete_tokens"]:
        assert by_tok[tok]["User"]["IsActive"] is False
    for tok in facts["never_used_delete_tokens"]:
        assert by_tok[tok]["LastUsedDate"] is None and by_tok[tok]["UseCount"] == 0
    stale = _records(
        emulator,
        admin_token,
        "SELECT DeleteToken FROM OauthToken WHERE LastUsedDate < LAST_N_DAYS:90 "
        "OR (LastUsedDate = null AND CreatedDate < LAST_N_DAYS:90)",
    )
    assert {r["DeleteToken"] for r in stale} == set(facts["stale_delete_tokens"])
    assert facts["full_scope_delete_tokens"] and facts["never_used_delete_tokens"]
    assert facts["inactive_usernames"] and facts["stale_delete_tokens"]
    ordered = _records(emulator, admin_token, "SELECT LastUsedDate FROM OauthToken ORDER BY LastUsedDate DESC NULLS LAST")
    vals = [r["LastUsedDate"] for r in ordered]
    non_null = [v for v in vals if v is not None]
    assert non_null == sorted(non_null, reverse=True) and vals[len(non_null):] == [None] * (len(vals) - len(non_null))


def test_oauthtoken_visibility(emulator: RunningEmulator) -> None:
    tok = cc_token(emulator)["access_token"]  # ccuser: no Customize Application
    recs = _records(emulator, tok, "SELECT UserId, User.Username FROM OauthToken")
    cc_id = emulator.org.user_by_username("ccuser@demo.example").id
    assert recs and all(r["UserId"] == cc_id for r in recs)


def test_paging(emulator: RunningEmulator, admin_token: str) -> None:
    emulator.org.settings.page_size = 7
    r = query(emulator, admin_token, "SELECT Id FROM Opportunity ORDER BY Name")
    body = r.json()
    assert body["totalSize"] == 30 and body["done"] is False and len(body["records"]) == 7
    seen = [x["Id"] for x in body["records"]]
    assert re.match(r"^/services/data/v63\.0/query/01g\w+-7$", body["nextRecordsUrl"])
    pages = 1
    while not body["done"]:
        body = HTTP.get(emulator.base_url + body["nextRecordsUrl"], headers={"Authorization": f"Bearer {admin_token}"}).json()
        seen += [x["Id"] for x in body["records"]]
        pages += 1
    assert pages == 5 and len(seen) == len(set(seen)) == 30
    assert "nextRecordsUrl" not in body
    r = HTTP.get(f"{emulator.base_url}/services/data/v63.0/query/01gBOGUS-7", headers={"Authorization": f"Bearer {admin_token}"})
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_count(emulator: RunningEmulator, admin_token: str) -> None:
    r = query(emulator, admin_token, "SELECT COUNT() FROM Opportunity WHERE IsClosed = false")
    assert r.json() == {"totalSize": 16, "done": True, "records": []}


@pytest.mark.parametrize(
    ("soql", "code"),
    [
        ("SELECT FROM Account", "MALFORMED_QUERY"),
        ("SELEC Id FROM Account", "MALFORMED_QUERY"),
        ("SELECT Id FROM Account WHERE", "MALFORMED_QUERY"),
        ("SELECT Id FROM Account LIMIT x", "MALFORMED_QUERY"),
        ("SELECT Id FROM Account WHERE Name = 'unterminated", "MALFORMED_QUERY"),
        ("SELECT Id FROM Nope", "INVALID_TYPE"),
        ("SELECT Nope FROM Account", "INVALID_FIELD"),
        ("SELECT Id FROM Account WHERE Nope = 1", "INVALID_FIELD"),
        ("SELECT Bogus.Name FROM Opportunity", "INVALID_FIELD"),
        ("SELECT Id FROM Opportunity WHERE CloseDate = 'yesterday'", "INVALID_QUERY_FILTER_OPERATOR"),
    ],
)
def test_query_errors(emulator: RunningEmulator, admin_token: str, soql: str, code: str) -> None:
    r = query(emulator, admin_token, soql)
    assert r.status_code == 400
    body = r.json()
    assert isinstance(body, list) and body[0]["errorCode"] == code and body[0]["message"]


def test_query_auth_and_version(emulator: RunningEmulator, admin_token: str) -> None:
    for tok in ("bogus", "00D5g00000DEMOA!AQforged"):
        r = query(emulator, tok, "SELECT Id FROM Account")
        assert r.status_code == 401
        assert r.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    assert query(emulator, admin_token, "SELECT Id FROM Account", version="58.0").status_code == 200
    r = query(emulator, admin_token, "SELECT Id FROM Account", version="latest")
    assert r.status_code == 404
    r = HTTP.get(f"{emulator.base_url}/services/data/v63.0/query", headers={"Authorization": f"Bearer {admin_token}"})
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "MALFORMED_QUERY"
    # the data API lives on the instance URL only
    r = HTTP.get(f"{emulator.login_url}/services/data/v63.0/query", params={"q": "SELECT Id FROM Account"})
    assert r.status_code == 404


def test_user_and_profile(emulator: RunningEmulator, admin_token: str) -> None:
    recs = _records(emulator, admin_token, "SELECT Username, IsActive, Profile.Name FROM User WHERE IsActive = false ORDER BY Username")
    assert [r["Username"] for r in recs] == emulator.org.seed_facts["inactive_usernames"]
    assert all(r["Profile"]["Name"] for r in recs)
