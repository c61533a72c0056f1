"""simple-salesforce's Bulk API 2.0 client (``sf.bulk2``) against the TLS emulator: query jobs
created, waited for, paged by locator and downloaded give the rows the REST API gives."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest, SalesforceOperationError

from sf_oauth_provider.emulator import RunningEmulator

SOQL = "SELECT Id, Name, Account.Name, Amount, CloseDate, IsWon FROM Opportunity"


@pytest.fixture
def sf(tls_emulator: RunningEmulator, sf_session: requests.Session, key_file: Path) -> Salesforce:
    """simple-salesforce logged in with the JWT bearer flow; query jobs finish at once."""
    tls_emulator.org.settings.update({"bulk_query_delay": 0})
    d = tls_emulator.org.demo
    return Salesforce(
        username=d.jwt_username, consumer_key=d.jwt_consumer_key, privatekey_file=str(key_file),
        domain="login", session=sf_session,
    )


def _rest_rows(sf: Salesforce) -> dict[str, list[str]]:
    out = {}
    for r in sf.query_all(SOQL)["records"]:
        out[r["Id"]] = [r["Id"], r["Name"], r["Account"]["Name"], str(r["Amount"]), r["CloseDate"],
                        "true" if r["IsWon"] else "false"]
    return out


def _csv_rows(text: str) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["Id", "Name", "Account.Name", "Amount", "CloseDate", "IsWon"]  # on every page
    return rows[1:]


def test_bulk2_query_pages_match_rest(sf: Salesforce) -> None:
    pages = list(sf.bulk2.Opportunity.query(SOQL, max_records=7, wait=0))
    assert len(pages) == 5  # 30 records, 7 a page
    bulk = [row for page in pages for row in _csv_rows(page)]
    assert {row[0]: row for row in bulk} == _rest_rows(sf) and len(bulk) == 30


def test_bulk2_download_writes_the_same_rows(sf: Salesforce, tmp_path: Path) -> None:
    results = sf.bulk2.Opportunity.download(SOQL, path=str(tmp_path), max_records=12, wait=0)
    assert [r["number_of_records"] for r in results] == [12, 12, 6]
    assert [r["locator"] for r in results][-1] == ""  # simple-salesforce's reading of "null"
    rows = [row for r in results for row in _csv_rows(Path(r["file"]).read_text())]
    assert {row[0]: row for row in rows} == _rest_rows(sf)


def test_bulk2_query_all_with_pipe_and_crlf(sf: Salesforce) -> None:
    pages = list(sf.bulk2.Account.query_all("SELECT Id, Name FROM Account", column_delimiter="PIPE",
                                            line_ending="CRLF", wait=0))
    text = "".join(pages)
    assert text.startswith('"Id"|"Name"\r\n') and text.count("\r\n") == 11
    assert {r["Name"] for r in sf.query_all("SELECT Name FROM Account")["records"]} == {
        row[1] for row in list(csv.reader(io.StringIO(text), delimiter="|"))[1:]
    }


def test_bulk2_failed_job_raises_with_salesforce_message(sf: Salesforce, tls_emulator: RunningEmulator) -> None:
    tls_emulator.org.bulk_query.fail_next = "Query timed out"
    with pytest.raises(SalesforceOperationError, match="Query timed out"):
        list(sf.bulk2.Account.query("SELECT Id FROM Account", wait=0))


def test_bulk2_refused_soql_is_a_malformed_request(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as caught:
        list(sf.bulk2.Account.query("SELECT COUNT() FROM Account", wait=0))
    assert caught.value.status == 400 and caught.value.content[0]["errorCode"] == "API_ERROR"
