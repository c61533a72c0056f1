"""Cells for people and spreadsheets: app names and usernames come from Salesforce, and whoever
registers a connected app chooses its name."""

from __future__ import annotations

import csv
import html
import io
import re
from typing import Any, Iterable, Mapping, Sequence

__all__ = ["csv_cell", "csv_text", "md_cell"]

#: A cell starting with one of these is run as a formula by Excel, LibreOffice or Google Sheets
#: (OWASP "CSV injection"); tab and carriage return hide such a start.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: Markdown punctuation that could start emphasis, code, links or images, or end a table cell.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]()!|~])")
_WHITESPACE = re.compile(r"[\r\n\t\f\v]+")


def csv_cell(value: Any) -> Any:
    """``value``, with a text that a spreadsheet would evaluate prefixed by ``'``.

    Numbers stay numbers; the prefix keeps the text visible instead of dropping it.

    :param value: a cell value
    """
    if isinstance(value, str) and value and (value[0] in _FORMULA_START or value.lstrip()[:1] in _FORMULA_START):
        return "'" + value
    return value


def csv_text(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """CSV with a header row; every cell through :func:`csv_cell`, unknown keys ignored.

    :param rows: one mapping per row
    :param columns: the header, in order
    """
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: csv_cell(v) for k, v in row.items()})
    return buf.getvalue()


def md_cell(value: Any) -> str:
    """Text that Markdown renders as itself: no HTML, links, images, emphasis or cell breaks.

    :param value: a cell value (``None`` becomes empty)
    """
    text = "" if value is None else str(value)
    text = html.escape(_WHITESPACE.sub(" ", text), quote=False)
    return _MD_SPECIAL.sub(r"\\\1", text)
