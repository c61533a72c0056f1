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
#: GitHub's Markdown (cmark-gfm's autolink extension) links bare ``scheme://`` URLs, ``www.``
#: names and e-mail addresses (``mailto:``/``xmpp:`` ones too) with no markup at all. It looks
#: for ``://`` and ``www.`` in the source text, so escaping the ``:`` or the ``.`` (``https\://``,
#: ``www\.``) stops those links and renders the very same text. No escape or entity stops an
#: e-mail link (the extension finds ``@`` after escapes are resolved): an address goes into a
#: code span, where Markdown makes no links. (Whole-cell code spans would stop all three, but
#: would also show every escape literally and need their own rules for backticks and pipes.)
_URL_SCHEME = re.compile(r":(?=//)")
_WWW = re.compile(r"(www)\.", re.IGNORECASE)
#: cmark-gfm's e-mail address (a superset of it). The look-behind starts a match only at the start
#: of a run of address characters, which keeps the search linear in the length of the text.
_EMAIL = re.compile(r"(?<![A-Za-z0-9._+-])[A-Za-z0-9._+-]+@[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)+")


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


def _md_text(text: str) -> str:
    text = _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))
    return _WWW.sub(r"\1\\.", _URL_SCHEME.sub(r"\\:", text))


def md_cell(value: Any) -> str:
    """Text that Markdown renders as itself: no HTML, links (autolinks included), images,
    emphasis or cell breaks. E-mail addresses are shown as code.

    :param value: a cell value (``None`` becomes empty)
    """
    text = "" if value is None else _WHITESPACE.sub(" ", str(value))
    parts, pos = [], 0
    for address in _EMAIL.finditer(text):  # address characters hold no backtick, pipe or space
        parts += [_md_text(text[pos:address.start()]), f"`{address.group()}`"]
        pos = address.end()
    parts.append(_md_text(text[pos:]))
    return "".join(parts)


def text_cell(value: Any) -> str:
    """A value for a plain-text report line (a summary file, a chat message): one line, no control
    characters, links defanged (``https://x`` → ``https[:]//x``, ``www.x`` → ``www[.]x``: no chat
    or mail client turns them into links), and a formula start neutralised with ``'`` as in CSV.

    :param value: a value from Salesforce (``None`` becomes empty)
    """
    text = " ".join(_CONTROL.sub(" ", "" if value is None else str(value)).split())
    text = _WWW.sub(r"\1[.]", _SCHEME_SEP.sub("[:]//", text))
    return str(csv_cell(text))
