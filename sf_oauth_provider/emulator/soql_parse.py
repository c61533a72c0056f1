"""The SOQL parser of the emulator's data API: tokens, the grammar of :mod:`.soql`'s supported
subset, literals (date and datetime ranges). Errors are :class:`SoqlError` with Salesforce's
``errorCode``."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BoolOp", "Cond", "DateRange", "Query", "SoqlError", "parse"]

UTC = dt.timezone.utc


class SoqlError(Exception):
    """A query error with a Salesforce ``errorCode``."""

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


@dataclass(frozen=True)
class DateRange:
    """A half-open datetime interval ``[start, end)`` (a point literal has ``end = start + 1µs``)."""

    start: dt.datetime
    end: dt.datetime
    is_date: bool = True


@dataclass
class Cond:
    """``field op value``."""

    path: str
    op: str
    value: Any


@dataclass
class BoolOp:
    """``AND`` / ``OR`` / ``NOT`` node."""

    op: str
    args: list[Any]


@dataclass
class Query:
    """A parsed query."""

    fields: list[str]
    obj: str
    where: Any = None
    order: list[tuple[str, bool, bool | None]] = field(default_factory=list)
    limit: int | None = None
    offset: int = 0
    count_only: bool = False


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:\\.|[^'\\])*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),:])
    """,
    re.VERBOSE,
)

_KEYWORDS = {
    "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "ORDER", "BY", "ASC", "DESC", "NULLS",
    "FIRST", "LAST", "LIMIT", "OFFSET", "LIKE", "IN", "TRUE", "FALSE", "NULL", "COUNT",
}
_DATE_LITERALS = {"TODAY", "YESTERDAY", "TOMORROW"}
_DATE_N_LITERALS = {"LAST_N_DAYS", "NEXT_N_DAYS", "N_DAYS_AGO"}


@dataclass
class _Tok:
    kind: str
    text: str
    pos: int


def _tokenize(q: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(q):
        m = _TOKEN_RE.match(q, pos)
        if not m:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{q[pos:pos + 10].split()[0]}'")
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append(_Tok(kind, m.group(), pos))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, q: str, now: float) -> None:
        self.toks = _tokenize(q)
        self.i = 0
        self.now = now

    # helpers
    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def kw(self, word: str) -> bool:
        t = self.peek()
        if t is not None and t.kind == "ident" and t.text.upper() == word:
            self.i += 1
            return True
        return False

    def expect_kw(self, word: str) -> None:
        if not self.kw(word):
            self.fail()

    def punct(self, ch: str) -> bool:
        t = self.peek()
        if t is not None and t.kind == "punct" and t.text == ch:
            self.i += 1
            return True
        return False

    def fail(self) -> None:
        t = self.peek()
        if t is None:
            raise SoqlError("MALFORMED_QUERY", "unexpected end of query")
        raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{t.text}'")

    def ident(self) -> str:
        t = self.peek()
        if t is None or t.kind != "ident" or t.text.upper() in _KEYWORDS:
            self.fail()
        assert t is not None
        self.i += 1
        return t.text

    def integer(self) -> int:
        t = self.peek()
        if t is None or t.kind != "number" or not t.text.isdigit():
            self.fail()
        assert t is not None
        self.i += 1
        return int(t.text)

    # grammar
    def query(self) -> Query:
        self.expect_kw("SELECT")
        fields: list[str] = []
        count_only = False
        if self.kw("COUNT"):
            if not (self.punct("(") and self.punct(")")):
                self.fail()
            count_only = True
        else:
            fields.append(self.ident())
            while self.punct(","):
                fields.append(self.ident())
        self.expect_kw("FROM")
        obj = self.ident()
        q = Query(fields=fields, obj=obj, count_only=count_only)
        if self.kw("WHERE"):
            q.where = self.or_expr()
        if self.kw("ORDER"):
            self.expect_kw("BY")
            while True:
                path = self.ident()
                desc = False
                if self.kw("DESC"):
                    desc = True
                else:
                    self.kw("ASC")
                nulls_first: bool | None = None
                if self.kw("NULLS"):
                    if self.kw("FIRST"):
                        nulls_first = True
                    else:
                        self.expect_kw("LAST")
                        nulls_first = False
                q.order.append((path, desc, nulls_first))
                if not self.punct(","):
                    break
        if self.kw("LIMIT"):
            q.limit = self.integer()
        if self.kw("OFFSET"):
            q.offset = self.integer()
        if self.peek() is not None:
            self.fail()
        return q

    def or_expr(self) -> Any:
        args = [self.and_expr()]
        while self.kw("OR"):
            args.append(self.and_expr())
        return args[0] if len(args) == 1 else BoolOp("OR", args)

    def and_expr(self) -> Any:
        args = [self.not_expr()]
        while self.kw("AND"):
            args.append(self.not_expr())
        return args[0] if len(args) == 1 else BoolOp("AND", args)

    def not_expr(self) -> Any:
        if self.kw("NOT"):
            return BoolOp("NOT", [self.not_expr()])
        if self.punct("("):
            e = self.or_expr()
            if not self.punct(")"):
                self.fail()
            return e
        return self.cond()

    def cond(self) -> Cond:
        path = self.ident()
        negate = self.kw("NOT")
        if self.kw("IN"):
            if not self.punct("("):
                self.fail()
            values = [self.literal()]
            while self.punct(","):
                values.append(self.literal())
            if not self.punct(")"):
                self.fail()
            return Cond(path, "NOT IN" if negate else "IN", values)
        if self.kw("LIKE"):
            lit = self.literal()
            if not isinstance(lit, str):
                raise SoqlError("INVALID_QUERY_FILTER_OPERATOR", "LIKE needs a string literal")
            return Cond(path, "NOT LIKE" if negate else "LIKE", lit)
        if negate:
            self.fail()
        t = self.peek()
        if t is None or t.kind != "op":
            self.fail()
        assert t is not None
        self.i += 1
        op = "!=" if t.text == "<>" else t.text
        return Cond(path, op, self.literal())

    def literal(self) -> Any:
        t = self.peek()
        if t is None:
            self.fail()
        assert t is not None
        self.i += 1
        if t.kind == "string":
            return re.sub(r"\\(.)", r"\1", t.text[1:-1])
        if t.kind == "number":
            return float(t.text) if "." in t.text else int(t.text)
        if t.kind == "date":
            return _date_literal(t.text)
        if t.kind == "datetime":
            return _datetime_literal(t.text)
        if t.kind == "ident":
            word = t.text.upper()
            if word == "TRUE":
                return True
            if word == "FALSE":
                return False
            if word == "NULL":
                return None
            today = dt.datetime.fromtimestamp(self.now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            day = dt.timedelta(days=1)
            if word in _DATE_LITERALS:
                offset = {"TODAY": 0, "YESTERDAY": -1, "TOMORROW": 1}[word]
                return DateRange(today + offset * day, today + (offset + 1) * day)
            if word in _DATE_N_LITERALS:
                if not self.punct(":"):
                    self.fail()
                n = self.integer()
                if word == "LAST_N_DAYS":
                    return DateRange(today - n * day, today + day)
                if word == "NEXT_N_DAYS":
                    return DateRange(today + day, today + (n + 1) * day)
                return DateRange(today - n * day, today - (n - 1) * day)
        self.i -= 1
        self.fail()
        raise AssertionError("unreachable")


def _date_literal(literal: str) -> DateRange:
    """The whole UTC day of a date literal such as ``2024-05-01``."""
    try:
        d = dt.date.fromisoformat(literal)
    except ValueError:
        raise SoqlError("MALFORMED_QUERY", f"invalid date: {literal}") from None
    start = dt.datetime(d.year, d.month, d.day, tzinfo=UTC)
    return DateRange(start, start + dt.timedelta(days=1), True)


def _datetime_literal(literal: str) -> DateRange:
    """The instant of a datetime literal such as ``2024-05-01T10:00:00Z`` or ``…+0200``."""
    text = literal.replace("Z", "+00:00")
    if re.search(r"[+-]\d{4}$", text):
        text = text[:-2] + ":" + text[-2:]
    try:
        when = dt.datetime.fromisoformat(text).astimezone(UTC)
    except ValueError:
        raise SoqlError("MALFORMED_QUERY", f"invalid datetime: {literal}") from None
    return DateRange(when, when + dt.timedelta(microseconds=1), False)


def parse(q: str, now: float) -> Query:
    """Parse a SOQL string (``now``: org clock, epoch seconds, for relative date literals)."""
    if not q or not q.strip():
        raise SoqlError("MALFORMED_QUERY", "empty query")
    return _Parser(q, now).query()
