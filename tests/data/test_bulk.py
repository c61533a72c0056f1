"""Bulk API 2.0 query jobs against the emulator over loopback: the hook's extract, sync and async,
a session that dies mid-download, refused SOQL, failed and slow jobs, the file only when complete."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path

import pytest

from sf_oauth_provider.client import errors as E
from sf_oauth_provider.client.oauth import RetryPolicy
from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

FAST = RetryPolicy(attempts=3, initial_backoff=0.01, max_backoff=0.05, max_total=10)
SOQL = "SELECT Id, Name, Amount, StageName, CloseDate, Account.Name FROM Opportunity ORDER BY Id"



@pytest.fixture(autouse=True)
def _jobs_finish_at_once(emulator):
    """Jobs complete on the org clock with no processing delay: no test waits on Salesforce's work
    unless it sets a delay itself (and then the wall-clock client timeout is what is tested)."""
    emulator.org.settings.bulk_query_delay = 0.0

def hook(conn_id: str = "salesforce_oauth_default") -> SalesforceOAuthHook:
    return SalesforceOAuthHook(conn_id, retry=FAST)


def rows_of(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def rest_rows(h: SalesforceOAuthHook, soql: str = SOQL) -> list[dict[str, str]]:
    """The same query through the REST API, as Bulk's CSV writes it (null → empty)."""
    out = []
    for rec in h.query(soql):
        row = {}
        for key, value in rec.items():
            if key == "attributes":
                continue
            if isinstance(value, dict):
                row[f"{key}.Name"] = "" if value.get("Name") is None else str(value["Name"])
            else:
                row[key] = "" if value is None else (str(value).lower() if isinstance(value, bool) else str(value))
        out.append(row)
    return out


def test_extract_writes_every_row_once_with_one_header(emulator, sf_connections, tmp_path):
    h = hook()
    target = tmp_path / "out" / "opps.csv"
    result = h.bulk_extract(SOQL, str(target), max_records=7, poll_interval=0.05, timeout=60)
    expected = rest_rows(h)
    got = rows_of(target)
    assert len(expected) > 14  # several pages
    assert result.rows == len(expected) == len(got)
    assert sorted(r["Id"] for r in got) == sorted(r["Id"] for r in expected)
    assert {r["Id"]: r["Name"] for r in got} == {r["Id"]: r["Name"] for r in expected}
    text = target.read_text()
    assert text.count("Account.Name") == 1  # the header of every page written once
    assert result.bytes == target.stat().st_size and result.location == str(target)
    assert [p.name for p in target.parent.iterdir()] == ["opps.csv"]  # no temporary file left


def test_async_extract_matches_the_sync_one(emulator, sf_connections, tmp_path):
    h = hook()

    async def run() -> tuple[int, bytes]:
        sink = io.BytesIO()
        async with h.abulk_queries() as bulk:
            result = await bulk.extract(SOQL, sink, max_records=5, poll_interval=0.05, timeout=60)
        return result.rows, sink.getvalue()

    rows, data = asyncio.run(run())
    sink = io.BytesIO()
    sync = h.bulk_queries().extract(SOQL, sink, max_records=11, poll_interval=0.05, timeout=60)
    assert rows == sync.rows > 0
    assert sorted(data.splitlines()) == sorted(sink.getvalue().splitlines())


def test_a_session_that_dies_mid_download_is_renewed_once_and_no_row_is_lost(emulator, sf_connections, tmp_path):
    h = hook()
    bulk = h.bulk_queries()
    job = bulk.wait(bulk.submit(SOQL), poll_interval=0.05, timeout=60)

    class KillAfterFirstPage(io.BytesIO):
        killed = False

        def write(self, b) -> int:  # type: ignore[override]
            if not self.killed and self.tell() > 0:
                emulator.org.revoke_token(h.get_token().access_token)  # the session dies between pages
                self.killed = True
            return super().write(b)

    sink = KillAfterFirstPage()
    tokens_before = emulator.org.count("token")
    result = bulk.download(job, sink, max_records=6)
    ids = [r["Id"] for r in csv.DictReader(io.StringIO(sink.getvalue().decode()))]
    assert sink.killed
    assert len(ids) == len(set(ids)) == result.rows == len(rest_rows(h))
    assert emulator.org.count("token") == tokens_before + 1  # exactly one new token


@pytest.mark.parametrize("soql", [
    "SELECT COUNT() FROM Account",
    "SELECT Name, COUNT(Id) FROM Account GROUP BY Name",
    "SELECT Id FROM Account LIMIT 5 OFFSET 2",
    "SELECT Id, (SELECT Id FROM Contacts) FROM Account",
])
def test_soql_bulk_refuses_is_a_permanent_error_with_salesforces_words(emulator, sf_connections, tmp_path, soql):
    with pytest.raises(E.SalesforceRequestError) as err:
        hook().bulk_extract(soql, str(tmp_path / "x.csv"), poll_interval=0.05, timeout=30)
    assert not err.value.transient and "salesforce_oauth_default" in str(err.value)
    assert err.value.error_description  # Salesforce's own message, quoted
    assert not (tmp_path / "x.csv").exists()


def test_unknown_field_fails_the_job_or_the_request_naming_it(emulator, sf_connections, tmp_path):
    with pytest.raises(E.SalesforcePermanentError) as err:
        hook().bulk_extract("SELECT Id, NoSuchField__c FROM Account", str(tmp_path / "x.csv"), poll_interval=0.05,
                            timeout=30)
    assert "NoSuchField__c" in str(err.value)
    assert not list(tmp_path.iterdir()) or not (tmp_path / "x.csv").exists()


def test_an_empty_or_bad_parameter_is_named_before_anything_is_sent(emulator, sf_connections, tmp_path):
    h = hook()
    before = emulator.org.count("token")
    with pytest.raises(E.SalesforceConfigError, match="'soql' is empty"):
        h.bulk_extract("  ", str(tmp_path / "x.csv"))
    with pytest.raises(E.SalesforceConfigError, match="line_ending"):
        h.bulk_query("SELECT Id FROM Account", line_ending="CR")
    with pytest.raises(E.SalesforceConfigError, match="max_records"):
        h.bulk_extract("SELECT Id FROM Account", str(tmp_path / "x.csv"), max_records=0, poll_interval=0.05)
    assert not (tmp_path / "x.csv").exists()
    with pytest.raises(ValueError, match="destination"):
        h.bulk_extract("SELECT Id FROM Account", str(tmp_path) + "/")
    assert emulator.org.count("token") - before <= 1


def _job_id(message: str) -> str:
    import re

    found = re.search(r"\b(750[A-Za-z0-9]{15})\b", message)
    assert found, message
    return found.group(1)


def test_a_job_that_outlives_the_timeout_is_aborted(emulator, sf_connections, tmp_path):
    tmp_path = tmp_path / "out"
    emulator.org.settings.bulk_query_delay = 3600.0  # Salesforce is busy for an hour
    h = hook()
    with pytest.raises(E.SalesforceBulkTimeout) as err:
        h.bulk_extract(SOQL, str(tmp_path / "opps.csv"), poll_interval=0.05, timeout=0.5)
    assert err.value.transient  # Airflow may retry the task later
    job = emulator.org.bulk_query.get(_job_id(str(err.value)), emulator.org.clock.now())
    assert job is not None and job.state(emulator.org.clock.now()) == "Aborted"
    assert list(tmp_path.iterdir()) == []  # no file, not even a temporary one


def test_a_failed_job_is_permanent_and_quotes_salesforce(emulator, sf_connections, tmp_path):
    tmp_path = tmp_path / "out"
    emulator.org.bulk_query.fail_next = "Query timed out: too many rows scanned"
    with pytest.raises(E.SalesforceBulkJobError) as err:
        hook().bulk_extract(SOQL, str(tmp_path / "opps.csv"), poll_interval=0.05, timeout=30)
    assert not err.value.transient
    assert "Query timed out: too many rows scanned" in str(err.value) and "750" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_an_outage_on_a_results_page_is_retried_and_the_page_read_again(emulator, sf_connections):
    h = hook()
    bulk = h.bulk_queries()
    job = bulk.wait(bulk.submit(SOQL), poll_interval=0.05, timeout=60)
    before = emulator.org.count("bulk")
    emulator.org.set_faults("bulk", sequence=["ok", "json503", "html503"])  # page 2 fails twice
    sink = io.BytesIO()
    result = bulk.download(job, sink, max_records=9)
    ids = [r["Id"] for r in csv.DictReader(io.StringIO(sink.getvalue().decode()))]
    assert len(ids) == len(set(ids)) == result.rows == len(rest_rows(h))
    pages = -(-result.rows // 9)
    assert emulator.org.count("bulk") - before == pages + 2


def test_a_rerun_replaces_the_file_and_a_failed_one_leaves_the_old_one(emulator, sf_connections, tmp_path):
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    h = hook()
    target = tmp_path / "opps.csv"
    target.write_text("yesterday's file\n")
    h.bulk_extract("SELECT Id FROM Account", str(target), poll_interval=0.05, timeout=30)
    fresh = target.read_text()
    assert fresh.startswith('"Id"') and "yesterday" not in fresh
    emulator.org.bulk_query.fail_next = "boom"
    with pytest.raises(E.SalesforceBulkJobError):
        h.bulk_extract("SELECT Id, Name FROM Account", str(target), poll_interval=0.05, timeout=30)
    assert target.read_text() == fresh  # the failed run did not touch the complete file
    assert [p.name for p in tmp_path.iterdir()] == ["opps.csv"]


def test_object_storage_destination(emulator, sf_connections, memory_store):
    h = hook()
    result = h.bulk_extract("SELECT Id, Name FROM Account", "memory://bulk-test/extracts/accounts.csv",
                            poll_interval=0.05, timeout=30)
    from airflow.sdk import ObjectStoragePath

    path = ObjectStoragePath("memory://bulk-test/extracts/accounts.csv")
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert len(rows) == result.rows == len(h.query("SELECT Id FROM Account"))
    assert [p.name for p in ObjectStoragePath("memory://bulk-test/extracts/").iterdir()] == ["accounts.csv"]
    assert result.location and result.location.endswith("extracts/accounts.csv")
