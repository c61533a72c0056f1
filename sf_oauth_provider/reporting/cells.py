"""Cells for people and spreadsheets: app names and usernames come from Salesforce, and whoever
registers a connected app chooses its name."""

from __future__ import annotations

import csv
import html
import io
import re
from typing import Any, Iterable, Mapping, Sequence

__all__ = ["csv_cell", "csv_text", "md_cell", "text_cell"]

#: A cell starting with one of these is run as a formula by Excel, LibreOffice or Google Sheets
#: (OWASP "CSV injection"); tab and carriage return hide such a start.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: Markdown punctuation that could start emphasis, code, links or images, or end a table cell.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]()!|~])")
_WHITESPACE = re.compile(r"[\r\n\t\f\v]+")
#: every control character and Unicode line break: one value stays on one line of a text file
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SCHEME_SEP = re.compile(r"://")
_WWW = re.compile(r"(?i)\b(www)\.")


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


def text_cell(value: Any) -> str:
    """A value for a plain-text report line (a summary file, a chat message): one line, no control
    characters, links defanged (``https://x`` → ``https[:]//x``, ``www.x`` → ``www[.]x``: no chat
    or mail client turns them into links), and a formula start neutralised with ``'`` as in CSV.

    :param value: a value from Salesforce (``None`` becomes empty)
    """
    text = " ".join(_CONTROL.sub(" ", "" if value is None else str(value)).split())
    text = _WWW.sub(r"\1[.]", _SCHEME_SEP.sub("[:]//", text))
    return str(csv_cell(text))
