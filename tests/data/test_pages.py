"""Result pages into a sink: the header once, a failed page rewritten from its start, loops stopped."""

from __future__ import annotations

import io

import httpx
import pytest

from sf_oauth_provider.client.errors import SalesforceConfigError, SalesforceProtocolError
from sf_oauth_provider.data._pages import PageWriter, ResultPager
from sf_oauth_provider.data.bulk import BulkRequest


class _Stream(io.RawIOBase):
    """A write-only stream that cannot seek (like an object-storage upload)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[override]
        self.data += bytes(b)
        return len(b)


def _pages(writer: PageWriter, pages: list[list[bytes]]) -> None:
    for chunks in pages:
        writer.begin_page()
        for chunk in chunks:
            writer.write(chunk)
        writer.end_page()


@pytest.mark.parametrize("make_sink", [io.BytesIO, _Stream], ids=["seekable", "stream"])
def test_header_written_once_even_when_split_across_chunks(make_sink) -> None:
    sink = make_sink()
    writer = PageWriter(sink, "c", spool_bytes=16)
    _pages(writer, [[b'"Id","Na', b'me"\n"1","a"\n'], [b'"Id","Name"\n"2","b', b'"\n'], [b'"Id","Name"\n']])
    data = sink.getvalue() if isinstance(sink, io.BytesIO) else bytes(sink.data)
    assert data == b'"Id","Name"\n"1","a"\n"2","b"\n'
    assert writer.bytes == len(data)


@pytest.mark.parametrize("make_sink", [io.BytesIO, _Stream], ids=["seekable", "stream"])
def test_a_page_that_broke_half_way_is_written_again_from_its_start(make_sink) -> None:
    sink = make_sink()
    writer = PageWriter(sink, "c", spool_bytes=8)
    _pages(writer, [[b"H\r\n1\r\n"]])
    writer.begin_page()
    writer.write(b"H\r\n2\r\n3")  # the connection dropped here
    writer.begin_page()  # the retry of the same locator
    writer.write(b"H\r\n2\r\n3\r\n")
    writer.end_page()
    data = sink.getvalue() if isinstance(sink, io.BytesIO) else bytes(sink.data)
    assert data == b"H\r\n1\r\n2\r\n3\r\n"


def test_a_page_with_other_columns_is_refused() -> None:
    writer = PageWriter(io.BytesIO(), "conn")
    _pages(writer, [[b"Id,Name\n1,a\n"]])
    writer.begin_page()
    with pytest.raises(SalesforceProtocolError, match="another header row"):
        writer.write(b"Id,Email\n2,b\n")


def test_a_first_line_without_end_is_stopped() -> None:
    writer = PageWriter(io.BytesIO(), "conn")
    writer.begin_page()
    with pytest.raises(SalesforceProtocolError, match="first line is over"):
        for _ in range(20):
            writer.write(b"x" * 65536)


def _headers(locator: str | None, count: str | None = "2") -> httpx.Headers:
    found = {}
    if locator is not None:
        found["Sforce-Locator"] = locator
    if count is not None:
        found["Sforce-NumberOfRecords"] = count
    return httpx.Headers(found)


def test_pager_counts_rows_and_stops_at_the_literal_null() -> None:
    pager = ResultPager("c")
    assert pager.next_locator(_headers("MTAw")) == "MTAw"
    assert pager.next_locator(_headers("null", "1")) is None
    assert pager.rows == 3 and pager.pages == 2


@pytest.mark.parametrize(
    ("headers", "match"),
    [(_headers(None), "Sforce-Locator"), (_headers("x", None), "Sforce-NumberOfRecords"),
     (_headers("x", "-1"), "not a count")],
)
def test_pager_refuses_a_page_missing_what_it_needs(headers, match) -> None:
    with pytest.raises(SalesforceProtocolError, match=match):
        ResultPager("c").next_locator(headers)


def test_pager_stops_a_locator_loop() -> None:
    pager = ResultPager("c")
    pager.next_locator(_headers("A"))
    pager.next_locator(_headers("B"))
    with pytest.raises(SalesforceProtocolError, match="repeated after 3 pages"):
        pager.next_locator(_headers("A"))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"soql": "  "}, "soql"), ({"soql": "SELECT Id FROM Account", "column_delimiter": "comma;"}, "column_delimiter"),
     ({"soql": "SELECT Id FROM Account", "line_ending": "CR"}, "line_ending")],
)
def test_a_request_names_the_bad_parameter(kwargs, field) -> None:
    with pytest.raises(SalesforceConfigError) as err:
        BulkRequest(**kwargs).checked("c")
    assert err.value.field == field


def test_a_request_body_is_what_salesforce_expects() -> None:
    body = BulkRequest(" SELECT Id FROM Account ", True, "tab", "crlf").checked("c").body()
    assert body == {"operation": "queryAll", "query": "SELECT Id FROM Account", "contentType": "CSV",
                    "columnDelimiter": "TAB", "lineEnding": "CRLF"}
