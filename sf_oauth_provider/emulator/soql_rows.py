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
from dataclasses import dataclass
from typing import Any, Callable, Iterator

# the resolver, compiler and sort key are the engine's own: one evaluation of SOQL, two drivers
from .soql import Query, Table, _compile, _Resolver, _sort_key, _table_of, format_value

__all__ = ["CHECKPOINT", "ResultIndex", "RowPlan", "csv_text", "index_result"]

#: a row index is kept for every this many matching rows
CHECKPOINT = 2000

UTC = dt.timezone.utc


def _csv_datetime(value: dt.datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


_CSV_FORMATS: dict[type, Callable[[Any], str]] = {
    bool: lambda v: "true" if v else "false",
    dt.datetime: _csv_datetime,
    dt.date: dt.date.isoformat,
}


def csv_text(value: Any) -> str | None:
    """A field value as Bulk API 2.0 writes it in CSV (``None`` for null: an empty field)."""
    if value is None or type(value) is str:
        return value
    fmt = _CSV_FORMATS.get(type(value))
    if fmt is not None:
        return fmt(value)
    if isinstance(value, dt.datetime):  # subclasses
        return _csv_datetime(value)
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
        """Indices of the matching rows in ``ORDER BY`` order (an array of ints: 8 bytes a row;
        each sort key is read once per row)."""
        res = self.resolver
        keyed = [i for i, _ in self.matching()]
        rows = self.table.rows
        for path, desc, nulls_first in reversed(self.query.order):
            nf = (not desc) if nulls_first is None else nulls_first
            values = [(i, res.value(rows[i], path)[0]) for i in keyed]
            present = [(i, v) for i, v in values if v is not None]
            missing = [i for i, v in values if v is None]
            present.sort(key=lambda iv: _sort_key(iv[1]), reverse=desc)
            ordered = [i for i, _ in present]
            keyed = missing + ordered if nf else ordered + missing
        return array("q", keyed)

    def json_record(self, row: dict[str, Any], api_version: str) -> dict[str, Any]:
        """``row`` as the REST API serializes a query record (``attributes``, nested parents)."""

        def attrs(t: Table, r: dict[str, Any]) -> dict[str, Any]:
            a: dict[str, Any] = {"type": t.name}
            if t.url_ids and r.get("Id"):
                a["url"] = f"/services/data/v{api_version}/sobjects/{t.name}/{r['Id']}"
            return a

        rec: dict[str, Any] = {"attributes": attrs(self.table, row)}
        for rel, f, _ in self.selected:
            if rel is None:
                rec[f] = format_value(row.get(f))
                continue
            other = self.resolver.related(row, rel)
            if other is None:
                rec[rel] = None
                continue
            nested = rec.get(rel)
            if not isinstance(nested, dict):
                nested = rec[rel] = {"attributes": attrs(self.tables[self.table.relationships[rel][0]], other)}
            nested[f] = format_value(other.get(f))
        return rec

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


@dataclass
class ResultIndex:
    """Where a query's records are, without the records: their count, and either the row index
    of every :data:`CHECKPOINT` th match (``None``: no ``WHERE``, record k is row k) or, for
    ``ORDER BY``, every match's row index in order."""

    plan: RowPlan
    total: int
    checkpoints: list[int] | None = None
    ordered: array | None = None

    def rows(self, offset: int, count: int) -> Iterator[dict[str, Any]]:
        """Records ``offset`` … ``offset + count - 1`` (as table rows)."""
        table_rows = self.plan.table.rows
        end = min(offset + count, self.total)
        if self.ordered is not None or self.checkpoints is None:
            for k in range(offset, end):
                yield table_rows[self.ordered[k] if self.ordered is not None else k]
            return
        if offset >= end:
            return
        k = (offset // CHECKPOINT) * CHECKPOINT
        for _, row in self.plan.matching(self.checkpoints[offset // CHECKPOINT]):
            if k >= end:
                return
            if k >= offset:
                yield row
            k += 1


def index_result(plan: RowPlan) -> ResultIndex:
    """Run ``plan`` once to count its records and remember where to find them."""
    limit = plan.query.limit
    if plan.query.order:
        ordered = plan.ordered_indices()
        if limit is not None and len(ordered) > limit:
            ordered = ordered[:limit]
        return ResultIndex(plan, len(ordered), ordered=ordered)
    if plan.predicate is None:
        n = len(plan.table.rows)
        return ResultIndex(plan, n if limit is None else min(n, limit))
    total, checkpoints = 0, []
    for i, _ in plan.matching():
        if limit is not None and total >= limit:
            break
        if total % CHECKPOINT == 0:
            checkpoints.append(i)
        total += 1
    return ResultIndex(plan, total, checkpoints)
