"""The REST API under /services/data beyond /query: what real clients call (DESIGN §6)."""

from __future__ import annotations

import re

import pytest

from sf_oauth_provider.emulator import RunningEmulator

from ._util import HTTP, jwt_token

V = "63.0"
SEEDED = ("Account", "Opportunity", "User", "Profile", "OauthToken", "Organization")
LIMIT_RE = re.compile(r"^api-usage=(\d+)/(\d+)$")


@pytest.fixture
def tok(emulator: RunningEmulator) -> str:
    return jwt_token(emulator)["access_token"]


def _get(emu: RunningEmulator, tok: str | None, path: str, **params: str):
    headers = {"Authorization": f"Bearer {tok}"} if tok else {}
    return HTTP.get(f"{emu.base_url}{path}", params=params, headers=headers)


def _ok(r) -> dict | list:
    assert r.status_code == 200, (r.request.url, r.text)
    return r.json()


def test_versions_list(emulator: RunningEmulator) -> None:
    versions = _ok(_get(emulator, None, "/services/data"))
    assert _ok(_get(emulator, None, "/services/data/")) == versions
    by_version = {v["version"]: v for v in versions}
    assert by_version[V] == {"label": "Spring '25", "url": f"/services/data/v{V}", "version": V}
    assert by_version["59.0"]["label"] == "Winter '24"
    assert [float(v["version"]) for v in versions] == sorted(float(v["version"]) for v in versions)


def test_resource_list(emulator: RunningEmulator, tok: str) -> None:
    resources = _ok(_get(emulator, tok, f"/services/data/v{V}/"))
    assert _ok(_get(emulator, tok, f"/services/data/v{V}")) == resources
    for name in ("limits", "query", "queryAll", "sobjects"):
        assert resources[name] == f"/services/data/v{V}/{name}"


def test_limits_and_the_header_agree(emulator: RunningEmulator, tok: str) -> None:
    r = _get(emulator, tok, f"/services/data/v{V}/limits")
    used, limit = map(int, LIMIT_RE.match(r.headers["sforce-limit-info"]).groups())
    daily = _ok(r)["DailyApiRequests"]
    assert daily["Max"] == limit
    assert daily["Remaining"] == limit - used
    # every API call counts: a query, then limits/ again
    q = _get(emulator, tok, f"/services/data/v{V}/query", q="SELECT Id FROM Account")
    assert LIMIT_RE.match(q.headers["sforce-limit-info"]).groups() == (str(used + 1), str(limit))
    r2 = _get(emulator, tok, f"/services/data/v{V}/limits/")
    assert _ok(r2)["DailyApiRequests"]["Remaining"] == limit - used - 2
    assert r2.headers["sforce-limit-info"] == f"api-usage={used + 2}/{limit}"


def test_request_limit_exceeded_is_403(emulator: RunningEmulator, tok: str) -> None:
    emulator.org.settings.update({"api_request_limit": 3})
    codes = [_get(emulator, tok, f"/services/data/v{V}/limits").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 403]
    r = _get(emulator, tok, f"/services/data/v{V}/query", q="SELECT Id FROM Account")
    assert r.status_code == 403
    assert r.json()[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"


def test_rate_limit_fault_on_the_data_api_is_403(emulator: RunningEmulator, tok: str) -> None:
    emulator.org.set_faults("query", sequence=["429"])
    r = _get(emulator, tok, f"/services/data/v{V}/query", q="SELECT Id FROM Account")
    assert r.status_code == 403
    assert r.json()[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"


def test_describe_global(emulator: RunningEmulator, tok: str) -> None:
    body = _ok(_get(emulator, tok, f"/services/data/v{V}/sobjects"))
    assert body["encoding"] == "UTF-8" and body["maxBatchSize"] == 200
    names = {s["name"]: s for s in body["sobjects"]}
    assert set(SEEDED) <= set(names)
    acc = names["Account"]
    assert acc["keyPrefix"] == "001" and acc["queryable"] is True
    assert acc["urls"]["describe"] == f"/services/data/v{V}/sobjects/Account/describe"


@pytest.mark.parametrize("name", SEEDED)
def test_describe_every_seeded_object(emulator: RunningEmulator, tok: str, name: str) -> None:
    body = _ok(_get(emulator, tok, f"/services/data/v{V}/sobjects/{name}/describe"))
    assert body["name"] == name
    fields = {f["name"]: f for f in body["fields"]}
    assert "Id" in fields and fields["Id"]["type"] == "id"
    # every described field can be queried
    soql = f"SELECT {', '.join(fields)} FROM {name} LIMIT 1"
    _ok(_get(emulator, tok, f"/services/data/v{V}/query", q=soql))
    # the basic sObject resource
    assert _ok(_get(emulator, tok, f"/services/data/v{V}/sobjects/{name}"))["objectDescribe"]["name"] == name


def test_describe_types_and_relationships(emulator: RunningEmulator, tok: str) -> None:
    fields = {f["name"]: f for f in _ok(_get(emulator, tok, f"/services/data/v{V}/sobjects/Opportunity/describe"))["fields"]}
    assert fields["AccountId"]["type"] == "reference"
    assert fields["AccountId"]["referenceTo"] == ["Account"]
    assert fields["AccountId"]["relationshipName"] == "Account"
    assert fields["CloseDate"]["type"] == "date"
    assert fields["Amount"]["type"] in ("currency", "double")


def test_record_retrieve(emulator: RunningEmulator, tok: str) -> None:
    rec = _ok(_get(emulator, tok, f"/services/data/v{V}/query", q="SELECT Id, Name FROM Account LIMIT 1"))["records"][0]
    got = _ok(_get(emulator, tok, rec["attributes"]["url"]))
    assert got["Id"] == rec["Id"] and got["Name"] == rec["Name"]
    assert got["attributes"] == {"type": "Account", "url": rec["attributes"]["url"]}
    assert "Industry" in got
    # 15-character ids work too, and ?fields= narrows
    some = _ok(_get(emulator, tok, f"/services/data/v{V}/sobjects/Account/{rec['Id'][:15]}", fields="Name"))
    assert some["Name"] == rec["Name"] and "Industry" not in some
    missing = _get(emulator, tok, f"/services/data/v{V}/sobjects/Account/001000000000000AAA")
    assert missing.status_code == 404 and missing.json()[0]["errorCode"] == "NOT_FOUND"


def test_query_all_and_trailing_slash(emulator: RunningEmulator, tok: str) -> None:
    soql = "SELECT Id FROM Account"
    plain = _ok(_get(emulator, tok, f"/services/data/v{V}/query", q=soql))
    for path in ("query/", "queryAll", "queryAll/"):
        r = HTTP.get(
            f"{emulator.base_url}/services/data/v{V}/{path}",
            params={"q": soql},
            headers={"Authorization": f"Bearer {tok}"},
            follow_redirects=False,
        )
        assert r.status_code == 200, (path, r.status_code)
        assert r.json()["totalSize"] == plain["totalSize"]


def test_query_all_pages(emulator: RunningEmulator, tok: str) -> None:
    emulator.org.settings.update({"page_size": 4})
    body = _ok(_get(emulator, tok, f"/services/data/v{V}/queryAll", q="SELECT Id FROM Account"))
    seen = len(body["records"])
    while not body["done"]:
        body = _ok(_get(emulator, tok, body["nextRecordsUrl"]))
        seen += len(body["records"])
    assert seen == body["totalSize"]


def test_columns_metadata(emulator: RunningEmulator, tok: str) -> None:
    body = _ok(
        _get(emulator, tok, f"/services/data/v{V}/query", q="SELECT Id, Name, Account.Name FROM Opportunity", columns="true")
    )
    assert body["entityName"] == "Opportunity" and body["idSelected"] is True
    cols = body["columnMetadata"]
    assert [c["columnName"] for c in cols] == ["Id", "Name", "Account"]
    assert cols[2]["joinColumns"][0]["columnName"] == "Name"
    assert cols[2]["joinColumns"][0]["displayName"] == "Account.Name"
    assert "records" not in body


def test_organization_object(emulator: RunningEmulator, tok: str) -> None:
    recs = _ok(_get(emulator, tok, f"/services/data/v{V}/query", q="SELECT Id, Name, IsSandbox, OrganizationType FROM Organization LIMIT 1"))["records"]
    assert len(recs) == 1
    assert recs[0]["Id"] == emulator.org.org_id and recs[0]["IsSandbox"] is False
    got = _ok(_get(emulator, tok, recs[0]["attributes"]["url"]))
    assert got["Id"] == emulator.org.org_id


@pytest.mark.parametrize(
    "path",
    ["/services/data/v63.0/nonsense", "/services/data/v63.0/sobjects/Nope/describe", "/services/data/v63.0/sobjects/Account/x/y/z"],
)
def test_unknown_resources_are_json_not_found(emulator: RunningEmulator, tok: str, path: str) -> None:
    r = _get(emulator, tok, path)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]


def test_data_api_still_needs_a_session(emulator: RunningEmulator) -> None:
    for path in ("limits", "sobjects", "sobjects/Account/describe", ""):
        r = _get(emulator, "bogus", f"/services/data/v{V}/{path}")
        assert r.status_code == 401
        assert r.json()[0]["errorCode"] == "INVALID_SESSION_ID"
