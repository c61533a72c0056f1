"""simple-salesforce, which works against real Salesforce every day, against the emulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceResourceNotFound

from sf_oauth_provider.emulator import RunningEmulator
from sf_oauth_provider.emulator.connections import write_connections_file
from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook


@pytest.fixture
def sf(tls_emulator: RunningEmulator, sf_session: requests.Session, key_file: Path) -> Salesforce:
    """simple-salesforce logged in with the JWT bearer flow, as its README shows."""
    d = tls_emulator.org.demo
    return Salesforce(
        username=d.jwt_username, consumer_key=d.jwt_consumer_key, privatekey_file=str(key_file),
        domain="login", session=sf_session,
    )


def test_jwt_login(sf: Salesforce, tls_emulator: RunningEmulator) -> None:
    assert sf.sf_instance == tls_emulator.base_url.removeprefix("https://")
    assert sf.session_id in tls_emulator.org.issued_tokens()
    assert tls_emulator.org.count("token", "jwt_bearer") == 1


def test_client_credentials_login(tls_emulator: RunningEmulator, sf_session: requests.Session) -> None:
    d = tls_emulator.org.demo
    sf = Salesforce(consumer_key=d.cc_consumer_key, consumer_secret=d.cc_consumer_secret, domain="demo.my",
                    session=sf_session)
    assert tls_emulator.org.count("token", "client_credentials") == 1
    assert sf.query("SELECT Id FROM Account")["totalSize"] == 10


def test_query_all_and_query_more(sf: Salesforce, tls_emulator: RunningEmulator) -> None:
    tls_emulator.org.settings.update({"page_size": 4})
    everything = sf.query_all("SELECT Id, Name FROM Opportunity")
    assert everything["totalSize"] == 30 and len(everything["records"]) == 30 and everything["done"]
    first = sf.query("SELECT Id FROM Opportunity")
    assert not first["done"] and len(first["records"]) == 4
    by_url = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    by_locator = sf.query_more(first["nextRecordsUrl"].rsplit("/", 1)[1])
    assert by_url["records"] == by_locator["records"] and len(by_url["records"]) == 4
    ids = {r["Id"] for r in first["records"]} | {r["Id"] for r in by_url["records"]}
    assert len(ids) == 8
    deleted_too = sf.query_all("SELECT Id FROM Opportunity", include_deleted=True)
    assert deleted_too["totalSize"] == 30


def test_limits_and_api_usage(sf: Salesforce, tls_emulator: RunningEmulator) -> None:
    limits = sf.restful("limits")
    assert sf.limits() ["DailyApiRequests"]["Max"] == limits["DailyApiRequests"]["Max"]
    usage = sf.api_usage["api-usage"]
    assert usage.total == limits["DailyApiRequests"]["Max"]
    assert usage.used == tls_emulator.org.api_requests_used == 2


def test_describe(sf: Salesforce) -> None:
    names = {s["name"] for s in sf.describe()["sobjects"]}
    assert {"Account", "Opportunity", "User", "Organization", "OauthToken"} <= names
    fields = {f["name"] for f in sf.Account.describe()["fields"]}
    assert {"Id", "Name", "Industry"} <= fields
    assert sf.Account.metadata()["objectDescribe"]["name"] == "Account"


def test_record_get(sf: Salesforce) -> None:
    rec = sf.query("SELECT Id, Name FROM Account LIMIT 1")["records"][0]
    got = sf.Account.get(rec["Id"])
    assert got["Id"] == rec["Id"] and got["Name"] == rec["Name"]
    with pytest.raises(SalesforceResourceNotFound):
        sf.Account.get("001000000000000AAA")


def test_is_sandbox(sf: Salesforce, tls_emulator: RunningEmulator) -> None:
    assert sf.is_sandbox() is False
    tls_emulator.org.settings.update({"is_sandbox": True})
    assert sf.is_sandbox() is True


def test_hook_get_simple_salesforce_in_tls_mode(
    tls_emulator: RunningEmulator, tmp_path: Path, set_connection, cache_dir
) -> None:
    conns = write_connections_file(tls_emulator, tmp_path / "connections.json", tmp_path / "key.pem")
    conn = json.loads(json.dumps(conns["salesforce_oauth_default"]))
    assert conn["host"].startswith("https://") and conn["extra"]["ca_bundle"] == tls_emulator.ca_bundle
    set_connection("sf_tls", conn)
    hook = SalesforceOAuthHook("sf_tls")
    sf = hook.get_simple_salesforce()
    assert sf.query_all("SELECT Id FROM Account")["totalSize"] == 10
    assert sf.is_sandbox() is False
    assert sf.restful("limits")["DailyApiRequests"]["Max"] > 0
    with hook.get_conn() as http:
        assert http.get("/services/data/v63.0/limits").status_code == 200
