"""simple-salesforce against the emulator, round 2: SOSL (``search``, ``quick_search``,
parameterizedSearch through ``restful``), the resource list, retired and current API versions,
and Salesforce's error answers as simple-salesforce's exceptions."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceError, SalesforceMalformedRequest, SalesforceResourceNotFound

from sf_oauth_provider.emulator import RunningEmulator


def _login(emu: RunningEmulator, session: requests.Session, key_file: Path, version: str | None = None) -> Salesforce:
    d = emu.org.demo
    extra = {"version": version} if version else {}
    return Salesforce(
        username=d.jwt_username, consumer_key=d.jwt_consumer_key, privatekey_file=str(key_file),
        domain="login", session=session, **extra,
    )


@pytest.fixture
def sf(tls_emulator: RunningEmulator, sf_session: requests.Session, key_file: Path) -> Salesforce:
    return _login(tls_emulator, sf_session, key_file)


def test_search_and_quick_search(sf: Salesforce, tls_emulator: RunningEmulator) -> None:
    acme = next(a for a in tls_emulator.org.accounts if a["Name"] == "Acme Corporation")
    found = sf.search("FIND {Acme} IN NAME FIELDS RETURNING Account(Id, Name), User(Name) LIMIT 20")
    assert found["searchRecords"] == [
        {
            "attributes": {"type": "Account", "url": f"/services/data/v{sf.sf_version}/sobjects/Account/{acme['Id']}"},
            "Id": acme["Id"],
            "Name": "Acme Corporation",
        }
    ]
    quick = sf.quick_search("Acme")["searchRecords"]
    assert acme["Id"] in {r["Id"] for r in quick} and {r["attributes"]["type"] for r in quick} >= {"Account"}
    # the record URL of a hit is one simple-salesforce can follow
    assert sf.Account.get(acme["Id"])["Name"] == "Acme Corporation"


def test_search_errors_are_simple_salesforce_exceptions(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as short:
        sf.quick_search("a")
    assert short.value.content[0]["errorCode"] == "INVALID_SEARCH"
    with pytest.raises(SalesforceMalformedRequest) as malformed:
        sf.search("FIND Acme")
    assert malformed.value.content[0]["errorCode"] == "MALFORMED_SEARCH"


def test_parameterized_search_through_restful(sf: Salesforce) -> None:
    body = {"q": "Acme", "sobjects": [{"name": "Account", "fields": ["Id", "Name"], "limit": 5}]}
    recs = sf.restful("parameterizedSearch", method="POST", json=body)["searchRecords"]
    assert [r["Name"] for r in recs] == ["Acme Corporation"]
    recs = sf.restful("parameterizedSearch", params={"q": "Acme", "sobject": "Account", "Account.fields": "Name"})
    assert [r["Name"] for r in recs["searchRecords"]] == ["Acme Corporation"]


def test_resource_list_names_identity(sf: Salesforce, tls_emulator: RunningEmulator) -> None:
    resources = sf.restful("")
    assert resources["identity"].startswith(f"{tls_emulator.login_url}/id/{tls_emulator.org.org_id}/")
    assert {"search", "parameterizedSearch", "query", "sobjects", "limits"} <= set(resources)
    identity = sf.session.get(resources["identity"], headers=sf.headers).json()
    assert identity["username"] == tls_emulator.org.demo.jwt_username


def test_versions_retired_current_and_unknown(
    tls_emulator: RunningEmulator, sf_session: requests.Session, key_file: Path
) -> None:
    listed = sf_session.get(f"{tls_emulator.base_url}/services/data/").json()
    assert listed[0]["version"] == "31.0" and listed[-1]["version"] == "68.0"
    current = _login(tls_emulator, sf_session, key_file, version="68.0")
    assert current.query("SELECT Id FROM Account LIMIT 1")["totalSize"] == 1
    retired = _login(tls_emulator, sf_session, key_file, version="30.0")
    with pytest.raises(SalesforceError) as gone:
        retired.query("SELECT Id FROM Account")
    assert gone.value.status == 410
    unknown = _login(tls_emulator, sf_session, key_file, version="99.0")
    with pytest.raises(SalesforceResourceNotFound):
        unknown.query("SELECT Id FROM Account")


def test_unserved_method_is_a_salesforce_error(sf: Salesforce) -> None:
    with pytest.raises(SalesforceError) as refused:
        sf.restful("limits", method="DELETE")
    assert refused.value.status == 405
    assert refused.value.content == [
        {"errorCode": "METHOD_NOT_ALLOWED", "message": "HTTP Method 'DELETE' not allowed. Allowed are HEAD,GET"}
    ]
