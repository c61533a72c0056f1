"""SOSL over REST: ``…/search?q=FIND {…}`` and ``…/parameterizedSearch`` (GET and POST), over a
real loopback HTTP server, in Salesforce's ``{"searchRecords": [...]}`` shape and error list."""

from __future__ import annotations

import httpx
import pytest

from sf_oauth_provider.emulator import RunningEmulator

from ._util import HTTP, jwt_token

V = "64.0"


@pytest.fixture
def tok(emulator: RunningEmulator) -> str:
    return jwt_token(emulator)["access_token"]


def _search(emu: RunningEmulator, tok: str, q: str) -> httpx.Response:
    return HTTP.get(f"{emu.base_url}/services/data/v{V}/search", params={"q": q},
                    headers={"Authorization": f"Bearer {tok}"})


def _records(r: httpx.Response) -> list[dict]:
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body) == ["searchRecords"]
    return body["searchRecords"]


def _acme(emu: RunningEmulator) -> dict:
    return next(a for a in emu.org.accounts if a["Name"] == "Acme Corporation")


def test_find_returning_in_salesforce_shape(emulator: RunningEmulator, tok: str) -> None:
    q = "FIND {Acme} IN NAME FIELDS RETURNING Account(Id, Name), User(Name) LIMIT 20"
    recs = _records(_search(emulator, tok, q))
    acme = _acme(emulator)
    assert recs == [
        {
            "attributes": {"type": "Account", "url": f"/services/data/v{V}/sobjects/Account/{acme['Id']}"},
            "Id": acme["Id"],
            "Name": "Acme Corporation",
        }
    ]


def test_without_returning_every_searchable_object_gives_ids(emulator: RunningEmulator, tok: str) -> None:
    recs = _records(_search(emulator, tok, "FIND {Acme}"))
    types = {r["attributes"]["type"] for r in recs}
    acme_opps = [o for o in emulator.org.opportunities if "Acme" in o["Name"]]
    assert "Account" in types and len(recs) == 1 + len(acme_opps)
    assert all(set(r) == {"attributes", "Id"} for r in recs)


def test_word_wildcard_phrase_or_and_not(emulator: RunningEmulator, tok: str) -> None:
    names = [a["Name"] for a in emulator.org.accounts]

    def found(term: str) -> set[str]:
        return {r["Name"] for r in _records(_search(emulator, tok, f"FIND {{{term}}} RETURNING Account(Name)"))}

    assert found("acme") == {"Acme Corporation"}  # case-insensitive, whole word
    assert found("Acm") == set()  # no prefix match without a wildcard
    assert found("Acm*") == {"Acme Corporation"}
    assert found('"Acme Corporation"') == {"Acme Corporation"}
    second = names[1].split()[0]
    assert found(f"Acme OR {second}") == {"Acme Corporation", names[1]}
    assert found("Acme AND NOT Corporation") == set()


def test_returning_where_order_limit_and_overall_limit(emulator: RunningEmulator, tok: str) -> None:
    q = "FIND {Acme} RETURNING Opportunity(Name, Amount WHERE Amount > 0 ORDER BY Name DESC LIMIT 2)"
    recs = _records(_search(emulator, tok, q))
    expected = sorted((o["Name"] for o in emulator.org.opportunities if "Acme" in o["Name"] and (o["Amount"] or 0) > 0),
                      reverse=True)[:2]
    assert [r["Name"] for r in recs] == expected
    recs = _records(_search(emulator, tok, "FIND {Acme} RETURNING Account(Name), Opportunity(Name) LIMIT 1"))
    assert len(recs) == 1 and recs[0]["attributes"]["type"] == "Account"


def test_email_fields_group(emulator: RunningEmulator, tok: str) -> None:
    recs = _records(_search(emulator, tok, "FIND {integration@example.com} IN EMAIL FIELDS RETURNING User(Username)"))
    assert [r["Username"] for r in recs] == ["integration@demo.example"]
    assert _records(_search(emulator, tok, "FIND {integration} IN NAME FIELDS RETURNING User(Username)")) == [
        {"attributes": recs[0]["attributes"], "Username": "integration@demo.example"}
    ]


@pytest.mark.parametrize(
    ("q", "code", "words"),
    [
        ("FIND {a}", "INVALID_SEARCH", "search term must be longer than one character"),
        ("FIND {a*}", "INVALID_SEARCH", "longer than one character"),
        ("FIND Acme", "MALFORMED_SEARCH", "must be enclosed in braces"),
        ("FIND {Acme", "MALFORMED_SEARCH", "must be enclosed in braces"),
        ("SELECT Id FROM Account", "MALFORMED_SEARCH", "enclosed in braces"),
        ("FIND {Acme} IN BOGUS FIELDS", "MALFORMED_SEARCH", "BOGUS"),
        ("FIND {Acme} RETURNING Account(Name", "MALFORMED_SEARCH", "')'"),
        ("FIND {Acme} NONSENSE", "MALFORMED_SEARCH", "NONSENSE"),
        ("FIND {Acme} RETURNING Nope(Name)", "INVALID_TYPE", "Nope"),
        ("FIND {Acme} RETURNING Organization(Name)", "INVALID_TYPE", "does not support search"),
        ("FIND {Acme} RETURNING Account(Nope)", "INVALID_FIELD", "No such column 'Nope'"),
    ],
)
def test_errors(emulator: RunningEmulator, tok: str, q: str, code: str, words: str) -> None:
    r = _search(emulator, tok, q)
    assert r.status_code == 400
    [err] = r.json()
    assert err["errorCode"] == code and words in err["message"]


def test_missing_q_and_no_session(emulator: RunningEmulator, tok: str) -> None:
    r = HTTP.get(f"{emulator.base_url}/services/data/v{V}/search", headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "MALFORMED_SEARCH"
    r = _search(emulator, "bogus", "FIND {Acme}")
    assert r.status_code == 401 and r.json()[0]["errorCode"] == "INVALID_SESSION_ID"


def test_parameterized_search_get_and_post(emulator: RunningEmulator, tok: str) -> None:
    url = f"{emulator.base_url}/services/data/v{V}/parameterizedSearch"
    auth = {"Authorization": f"Bearer {tok}"}
    acme = _acme(emulator)
    params = {"q": "Acme", "sobject": "Account", "Account.fields": "Id,Name", "Account.limit": "5"}
    acme_url = f"/services/data/v{V}/sobjects/Account/{acme['Id']}"
    assert _records(HTTP.get(url, params=params, headers=auth)) == [
        {"attributes": {"type": "Account", "url": acme_url}, "Id": acme["Id"], "Name": "Acme Corporation"}
    ]
    body = {
        "q": "Acme", "fields": ["Id"], "in": "NAME", "overallLimit": 3,
        "sobjects": [{"name": "Account", "fields": ["Name"]}, {"name": "Opportunity"}],
    }
    recs = _records(HTTP.post(url, json=body, headers=auth))
    assert len(recs) == 3 and recs[0] == {"attributes": recs[0]["attributes"], "Name": "Acme Corporation"}
    assert {r["attributes"]["type"] for r in recs[1:]} == {"Opportunity"}
    assert all(set(r) == {"attributes", "Id"} for r in recs[1:])
    # the same short-term rule and error list as search
    r = HTTP.get(url, params={"q": "A"}, headers=auth)
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "INVALID_SEARCH"
    r = HTTP.post(url, content=b"{not json", headers={**auth, "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "JSON_PARSER_ERROR"
    r = HTTP.get(url, params={"q": "Acme", "in": "EVERYWHERE"}, headers=auth)
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "INVALID_SEARCH"


def test_search_counts_as_an_api_call(emulator: RunningEmulator, tok: str) -> None:
    r1 = _search(emulator, tok, "FIND {Acme}")
    r2 = _search(emulator, tok, "FIND {Acme}")
    used1 = int(r1.headers["Sforce-Limit-Info"].split("=")[1].split("/")[0])
    used2 = int(r2.headers["Sforce-Limit-Info"].split("=")[1].split("/")[0])
    assert used2 == used1 + 1
