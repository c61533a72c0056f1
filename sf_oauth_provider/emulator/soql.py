"""A small SOQL evaluator for the emulator's data API (the parser is :mod:`.soql_parse`).

Supported subset::

    SELECT f1, f2, Rel.Field | COUNT()
    FROM Object
    [WHERE cond {AND|OR cond} ...]      -- NOT and parentheses allowed
    [ORDER BY f [ASC|DESC] [NULLS FIRST|LAST], ...]
    [LIMIT n] [OFFSET n]

Conditions: ``field (= | != | <> | < | <= | > | >=) literal``, ``field [NOT] LIKE 'pat%'``,
``field [NOT] IN (literal, ...)``. Literals: ``'strings'`` (backslash escapes), numbers,
``true``/``false``, ``null``, ``2026-01-31``, ``2026-01-31T00:00:00Z`` (or ``+hh:mm``), and the
date literals ``TODAY``, ``YESTERDAY``, ``TOMORROW``, ``LAST_N_DAYS:n``, ``NEXT_N_DAYS:n``,
``N_DAYS_AGO:n`` (UTC days of the org clock). Keywords and field names are case-insensitive;
string comparison with ``=``/``LIKE`` is case-insensitive, as in Salesforce.

Errors are :class:`SoqlError` with a Salesforce ``errorCode``: ``MALFORMED_QUERY``,
``INVALID_TYPE`` (unknown object), ``INVALID_FIELD`` (unknown field) or
``INVALID_QUERY_FILTER_OPERATOR`` (literal of the wrong type).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .soql_parse import BoolOp, Cond, DateRange, Query, SoqlError, parse

if TYPE_CHECKING:  # pragma: no cover
    from .state import Org, User

__all__ = [
    "find_table",
    "selected_columns",
    "DateRange",
    "Query",
    "SoqlError",
    "Table",
    "build_tables",
    "execute",
    "format_value",
    "parse",
]

UTC = dt.timezone.utc


@dataclass
class Table:
    """One queryable sObject: canonical field names → type, relationships, rows."""

    name: str
    fields: dict[str, str]
    relationships: dict[str, tuple[str, str]] = field(default_factory=dict)
    rows: Sequence[dict[str, Any]] = field(default_factory=list)
    url_ids: bool = True


# ---------------------------------------------------------------------- evaluation
def format_value(value: Any) -> Any:
    """Salesforce JSON serialization of a field value."""
    if isinstance(value, dt.datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


class _Resolver:
    def __init__(self, tables: dict[str, Table], table: Table) -> None:
        self.tables = tables
        self.table = table
        self.index: dict[str, dict[str, dict[str, Any]]] = {}
        self.cache: dict[str, tuple[str | None, str, str]] = {}

    def resolve(self, path: str) -> tuple[str | None, str, str]:
        """``(relationship or None, canonical field, type)``."""
        key = path.lower()
        if key in self.cache:
            return self.cache[key]
        parts = path.split(".")
        res: tuple[str | None, str, str]
        if len(parts) == 1:
            res = (None, *self._field(self.table, parts[0]))
        elif len(parts) == 2:
            rel = next((r for r in self.table.relationships if r.lower() == parts[0].lower()), None)
            if rel is None:
                raise SoqlError(
                    "INVALID_FIELD",
                    f"Didn't understand relationship '{parts[0]}' in field path. If you are attempting to use a "
                    "custom relationship, be sure to append the '__r' after the custom relationship name.",
                )
            target = self.tables[self.table.relationships[rel][0]]
            res = (rel, *self._field(target, parts[1]))
        else:
            raise SoqlError("INVALID_FIELD", f"No such column '{path}' on entity '{self.table.name}'.")
        self.cache[key] = res
        return res

    @staticmethod
    def _field(table: Table, name: str) -> tuple[str, str]:
        for f, typ in table.fields.items():
            if f.lower() == name.lower():
                return f, typ
        raise SoqlError(
            "INVALID_FIELD",
            f"No such column '{name}' on entity '{table.name}'. If you are attempting to use a custom field, be "
            "sure to append the '__c' after the custom field name. Please reference your WSDL or the describe "
            "call for the appropriate names.",
        )

    def related(self, row: dict[str, Any], rel: str) -> dict[str, Any] | None:
        target_name, fk = self.table.relationships[rel]
        idx = self.index.get(target_name)
        if idx is None:
            idx = {r["Id"]: r for r in self.tables[target_name].rows if r.get("Id")}
            self.index[target_name] = idx
        fk_val = row.get(fk)
        return idx.get(fk_val) if fk_val else None

    def value(self, row: dict[str, Any], path: str) -> tuple[Any, str]:
        rel, f, typ = self.resolve(path)
        if rel is None:
            return row.get(f), typ
        other = self.related(row, rel)
        return (None if other is None else other.get(f)), typ


def _as_dt(v: Any) -> dt.datetime:
    if isinstance(v, dt.datetime):
        return v
    return dt.datetime(v.year, v.month, v.day, tzinfo=UTC)


def _type_error(path: str, typ: str) -> SoqlError:
    return SoqlError(
        "INVALID_QUERY_FILTER_OPERATOR",
        f"value of filter criterion for field '{path}' must be of type {typ} and should not be enclosed in quotes",
    )


def _check_literal(path: str, typ: str, lit: Any) -> None:
    if lit is None:
        return
    if typ in ("date", "datetime"):
        if not isinstance(lit, DateRange):
            raise _type_error(path, typ)
    elif typ == "boolean":
        if not isinstance(lit, bool):
            raise _type_error(path, typ)
    elif typ in ("int", "double"):
        if isinstance(lit, bool) or not isinstance(lit, (int, float)):
            raise _type_error(path, typ)
    elif not isinstance(lit, str):
        raise _type_error(path, "string")


def _cmp(v: Any, op: str, lit: Any) -> bool:
    if op in ("=", "!="):
        if lit is None or v is None:
            eq = v is None and lit is None
        elif isinstance(lit, DateRange):
            d = _as_dt(v)
            eq = lit.start <= d < lit.end
        elif isinstance(lit, str):
            eq = str(v).casefold() == lit.casefold()
        else:
            eq = v == lit
        return eq if op == "=" else not eq
    if v is None or lit is None:
        return False
    if isinstance(lit, DateRange):
        d = _as_dt(v)
        return {
            "<": d < lit.start,
            "<=": d < lit.end,
            ">": d >= lit.end,
            ">=": d >= lit.start,
        }[op]
    if isinstance(lit, str):
        a, b = str(v).casefold(), lit.casefold()
    else:
        a, b = v, lit
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _like(v: Any, pattern: str) -> bool:
    if v is None:
        return False
    rx = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, str(v), re.IGNORECASE | re.DOTALL) is not None


def _compile(node: Any, res: _Resolver) -> Callable[[dict[str, Any]], bool]:
    if isinstance(node, BoolOp):
        subs = [_compile(a, res) for a in node.args]
        if node.op == "AND":
            return lambda r: all(s(r) for s in subs)
        if node.op == "OR":
            return lambda r: any(s(r) for s in subs)
        return lambda r: not subs[0](r)
    cond: Cond = node
    _, _, typ = res.resolve(cond.path)
    lits = cond.value if isinstance(cond.value, list) else [cond.value]
    for lit in lits:
        _check_literal(cond.path, typ, lit)
    path, op, lit_value = cond.path, cond.op, cond.value
    if op in ("IN", "NOT IN"):
        def f_in(r: dict[str, Any]) -> bool:
            v = res.value(r, path)[0]
            hit = any(_cmp(v, "=", x) for x in lit_value)
            return hit if op == "IN" else (v is not None and not hit)
        return f_in
    if op in ("LIKE", "NOT LIKE"):
        def f_like(r: dict[str, Any]) -> bool:
            v = res.value(r, path)[0]
            hit = _like(v, lit_value)
            return hit if op == "LIKE" else (v is not None and not hit)
        return f_like
    return lambda r: _cmp(res.value(r, path)[0], op, lit_value)


def _sort_key(v: Any) -> Any:
    if isinstance(v, str):
        return v.casefold()
    if isinstance(v, dt.datetime):
        return v.timestamp()
    if isinstance(v, dt.date):
        return _as_dt(v).timestamp()
    return v


def find_table(tables: dict[str, Table], name: str) -> Table | None:
    """The table called ``name`` (case-insensitive, as Salesforce matches object names)."""
    return next((t for n, t in tables.items() if n.lower() == name.lower()), None)


def _table_of(q: Query, tables: dict[str, Table]) -> Table:
    table = find_table(tables, q.obj)
    if table is None:
        raise SoqlError(
            "INVALID_TYPE",
            f"sObject type '{q.obj}' is not supported. If you are attempting to use a custom object, be sure to "
            "append the '__c' after the entity name. Please reference your WSDL or the describe call for the "
            "appropriate names.",
        )
    return table


def selected_columns(q: Query, tables: dict[str, Table]) -> tuple[Table, list[tuple[str | None, str, str]]]:
    """The queried table and ``(relationship or None, canonical field, type)`` per selected path
    (validated as :func:`execute` would)."""
    table = _table_of(q, tables)
    res = _Resolver(tables, table)
    return table, [res.resolve(p) for p in q.fields]


def execute(q: Query, tables: dict[str, Table], api_version: str) -> tuple[int, list[dict[str, Any]]]:
    """Run a parsed query; returns ``(totalSize, serialized records)``."""
    table = _table_of(q, tables)
    res = _Resolver(tables, table)
    selected = [res.resolve(p) for p in q.fields]  # validates every field first
    for path, _, _ in q.order:
        res.resolve(path)
    pred = _compile(q.where, res) if q.where is not None else None
    rows = [r for r in table.rows if pred is None or pred(r)]
    for path, desc, nulls_first in reversed(q.order):
        nf = (not desc) if nulls_first is None else nulls_first
        present = [r for r in rows if res.value(r, path)[0] is not None]
        missing = [r for r in rows if res.value(r, path)[0] is None]
        present.sort(key=lambda r: _sort_key(res.value(r, path)[0]), reverse=desc)
        rows = missing + present if nf else present + missing
    rows = rows[q.offset :]
    if q.limit is not None:
        rows = rows[: q.limit]
    if q.count_only:
        return len(rows), []

    def attrs(t: Table, row: dict[str, Any]) -> dict[str, Any]:
        a: dict[str, Any] = {"type": t.name}
        if t.url_ids and row.get("Id"):
            a["url"] = f"/services/data/v{api_version}/sobjects/{t.name}/{row['Id']}"
        return a

    out: list[dict[str, Any]] = []
    for row in rows:
        rec: dict[str, Any] = {"attributes": attrs(table, row)}
        for rel, f, _ in selected:
            if rel is None:
                rec[f] = format_value(row.get(f))
                continue
            other = res.related(row, rel)
            if other is None:
                rec[rel] = None
                continue
            nested = rec.get(rel)
            if not isinstance(nested, dict):
                nested = {"attributes": attrs(tables[table.relationships[rel][0]], other)}
                rec[rel] = nested
            nested[f] = format_value(other.get(f))
        out.append(rec)
    return len(out), out


#: the audit fields every seeded record carries
_AUDIT = {"CreatedDate": "datetime", "LastModifiedDate": "datetime", "SystemModstamp": "datetime"}


def build_tables(org: Org, viewer: User) -> dict[str, Table]:
    """The org's queryable objects as seen by ``viewer`` (OauthToken rows of other users are
    visible only with the Customize Application permission)."""

    def ts(epoch: float | None) -> dt.datetime | None:
        return None if epoch is None else dt.datetime.fromtimestamp(epoch, UTC)

    with org.lock:
        apps = org.apps
        token_rows = []
        for a in org.oauth_token_rows():
            if not viewer.customize_application and a.user_id != viewer.id:
                continue
            app = apps.get(a.app_key)
            token_rows.append(
                {
                    "Id": None,
                    "AppName": app.name if app else None,
                    "UserId": a.user_id,
                    "CreatedDate": ts(a.created),
                    "LastUsedDate": ts(a.last_used),
                    "UseCount": a.use_count,
                    "DeleteToken": a.refresh_token,
                    "AccessToken": a.last_access_mask,
                    "RequestToken": None,
                    "AppMenuItemId": app.app_menu_item_id if app else None,
                }
            )
        user_rows = [
            {
                "Id": u.id,
                "Username": u.username,
                "Name": u.name,
                "FirstName": u.first_name,
                "LastName": u.last_name,
                "Email": u.email,
                "IsActive": u.is_active,
                "ProfileId": u.profile_id,
                "UserType": "Standard",
                "TimeZoneSidKey": u.timezone,
            }
            for u in org.users.values()
        ]
        profile_rows = [{"Id": k, "Name": v} for k, v in org.profiles.items()]
        org_row = {
            "Id": org.org_id,
            "Name": org.settings.org_name,
            "IsSandbox": org.settings.is_sandbox,
            "OrganizationType": "Developer Edition",
            "InstanceName": "EMU1",
            "NamespacePrefix": None,
            "TrialExpirationDate": None,
            "LanguageLocaleKey": "en_US",
            "TimeZoneSidKey": "America/Los_Angeles",
            "DefaultLocaleSidKey": "en_US",
        }
        account_rows = [dict(r) for r in org.accounts]
        opp_rows = org.synthetic.rows(
            "Opportunity", [dict(r) for r in org.opportunities], org.seed, [r["Id"] for r in org.accounts]
        )
    return {
        "OauthToken": Table(
            "OauthToken",
            {
                "Id": "id", "AppName": "string", "UserId": "reference", "CreatedDate": "datetime",
                "LastUsedDate": "datetime", "UseCount": "int", "DeleteToken": "string",
                "AccessToken": "string", "RequestToken": "string", "AppMenuItemId": "reference",
            },
            {"User": ("User", "UserId")},
            token_rows,
            url_ids=False,
        ),
        "User": Table(
            "User",
            {
                "Id": "id", "Username": "string", "Name": "string", "FirstName": "string",
                "LastName": "string", "Email": "string", "IsActive": "boolean", "ProfileId": "reference",
                "UserType": "string", "TimeZoneSidKey": "string",
            },
            {"Profile": ("Profile", "ProfileId")},
            user_rows,
        ),
        "Profile": Table("Profile", {"Id": "id", "Name": "string"}, {}, profile_rows),
        "Organization": Table(
            "Organization",
            {
                "Id": "id", "Name": "string", "IsSandbox": "boolean", "OrganizationType": "string",
                "InstanceName": "string", "NamespacePrefix": "string", "TrialExpirationDate": "datetime",
                "LanguageLocaleKey": "string", "TimeZoneSidKey": "string", "DefaultLocaleSidKey": "string",
            },
            {},
            [org_row],
        ),
        "Account": Table(
            "Account", {"Id": "id", "Name": "string", "Industry": "string", "External_Id__c": "string", **_AUDIT}, {},
            account_rows,
        ),
        "Opportunity": Table(
            "Opportunity",
            {
                "Id": "id", "Name": "string", "AccountId": "reference", "Amount": "double",
                "StageName": "string", "CloseDate": "date", "IsWon": "boolean", "IsClosed": "boolean", **_AUDIT,
            },
            {"Account": ("Account", "AccountId")},
            opp_rows,
        ),
    }
