"""Streaming evaluation of a parsed SOQL query, for results too large to hold as a list.

:func:`~.soql.execute` builds the whole answer; a Bulk API 2.0 query job (and a REST query over
the synthetic large object) instead walks the table row by row. A :class:`RowPlan` resolves the
selected columns and compiles the ``WHERE`` clause once, then yields ``(row index, row)`` pairs
from any start index, so a results page resumes where the previous one ended without building
the rows before it. The table's ``rows`` may be any sequence, including one that generates row
``i`` on demand (:mod:`.synthetic`).
"""

from __future__ import annotations

import datetime as dt
from array import array
from typing import Any, Callable, Iterator

# the resolver, compiler and sort key are the engine's own: one evaluation of SOQL, two drivers
from .soql import Query, Table, _compile, _Resolver, _sort_key, _table_of

__all__ = ["RowPlan", "csv_text"]

UTC = dt.timezone.utc


def csv_text(value: Any) -> str | None:
    """A field value as Bulk API 2.0 writes it in CSV (``None`` for null: an empty field)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


class RowPlan:
    """One query over one snapshot of the org's tables, evaluated lazily.

    :param query: the parsed query (``COUNT()`` is refused before a plan is made)
    :param tables: the tables as the query's user sees them
    """

    def __init__(self, query: Query, tables: dict[str, Table]) -> None:
        self.query = query
        self.tables = tables
        self.table = _table_of(query, tables)
        self.resolver = _Resolver(tables, self.table)
        self.selected = [self.resolver.resolve(p) for p in query.fields]  # validates every field
        for path, _, _ in query.order:
            self.resolver.resolve(path)
        self.predicate: Callable[[dict[str, Any]], bool] | None = (
            _compile(query.where, self.resolver) if query.where is not None else None
        )

    @property
    def header(self) -> list[str]:
        """Column names as Salesforce writes them: ``Name``, ``Account.Name``."""
        return [f if rel is None else f"{rel}.{f}" for rel, f, _ in self.selected]

    def matching(self, start: int = 0) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(index, row)`` of every row from ``start`` on that the ``WHERE`` clause keeps."""
        rows = self.table.rows
        pred = self.predicate
        for i in range(start, len(rows)):
            row = rows[i]
            if pred is None or pred(row):
                yield i, row

    def ordered_indices(self) -> array:
        """Indices of the matching rows in ``ORDER BY`` order (an array of ints: 8 bytes a row)."""
        res = self.resolver
        keyed = [i for i, _ in self.matching()]
        rows = self.table.rows
        for path, desc, nulls_first in reversed(self.query.order):
            nf = (not desc) if nulls_first is None else nulls_first
            present = [i for i in keyed if res.value(rows[i], path)[0] is not None]
            missing = [i for i in keyed if res.value(rows[i], path)[0] is None]
            present.sort(key=lambda i: _sort_key(res.value(rows[i], path)[0]), reverse=desc)
            keyed = missing + present if nf else present + missing
        return array("q", keyed)

    def csv_values(self, row: dict[str, Any]) -> list[str | None]:
        """The selected values of ``row``, formatted for CSV."""
        out: list[str | None] = []
        for rel, f, _ in self.selected:
            if rel is None:
                out.append(csv_text(row.get(f)))
                continue
            other = self.resolver.related(row, rel)
            out.append(None if other is None else csv_text(other.get(f)))
        return out
