"""SOSL, the search language of ``…/search?q=FIND {…}`` and ``…/parameterizedSearch``: a search
term matched word by word over the text fields of the searchable objects, then each object's
``RETURNING`` clause run as SOQL over the matching rows (so fields, ``WHERE``, ``ORDER BY`` and
``LIMIT`` inside it mean what they mean in a query, with the same errors).

Served: ``FIND {term}`` (words, ``"phrases"``, ``*`` and ``?`` wildcards, ``AND`` / ``OR`` /
``AND NOT``), ``IN ALL|NAME|EMAIL|PHONE|SIDEBAR FIELDS``, ``RETURNING Obj[(fields [WHERE …]
[ORDER BY …] [LIMIT n] [OFFSET n])], …``, an overall ``LIMIT`` (default 2000) and ``OFFSET``.
``WITH …`` clauses and ``UPDATE TRACKING|VIEWSTAT`` are accepted and ignored. Results come in
``RETURNING`` order, not by relevance.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from .soql import SoqlError, Table, execute, find_table, parse

__all__ = ["ObjectSpec", "SearchPlan", "SoslError", "parse_sosl", "run_search", "searchable"]

OVERALL_LIMIT = 2000
GROUPS = ("ALL", "NAME", "EMAIL", "PHONE", "SIDEBAR")
_NOT_SEARCHABLE = {"Organization", "Profile", "OauthToken"}
_NAME_FIELDS = {"Name", "FirstName", "LastName"}
_TEXT_TYPES = {"string", "email", "phone", "textarea", "picklist", "url"}
_STOP_RE = re.compile(r"\s(WITH|LIMIT|OFFSET|UPDATE)\b", re.I)
_NO_TERM = "No search term found. The search term must be enclosed in braces."
_CLAUSE_RE = re.compile(r"\s*(?:(IN)\s+(\w+)\s+FIELDS\b|(RETURNING)\b|(LIMIT|OFFSET)\s+(\d+)|(WITH|UPDATE)\b)", re.I)


class SoslError(SoqlError):
    """A search error with a Salesforce ``errorCode`` (``MALFORMED_SEARCH``, ``INVALID_SEARCH``,
    ``INVALID_TYPE``, or a SOQL code from a ``RETURNING`` clause)."""


@dataclass(frozen=True)
class ObjectSpec:
    """One object to return: its name and the SOQL tail run over its matching rows."""

    name: str
    soql: str  # "SELECT … FROM Obj [WHERE …] [ORDER BY …] [LIMIT n]"


@dataclass
class SearchPlan:
    """A parsed search: the term, the field group, the objects, the overall limit and offset."""

    term: str
    group: str = "ALL"
    objects: list[ObjectSpec] = field(default_factory=list)
    limit: int = OVERALL_LIMIT
    offset: int = 0


def _read_term(q: str) -> tuple[str, str]:
    """The text between ``FIND {`` and its closing brace (``\\}`` escapes one), and the rest."""
    m = re.match(r"\s*FIND\s*\{", q, re.I)
    if m is None:
        raise SoslError("MALFORMED_SEARCH", _NO_TERM)
    i, out = m.end(), []
    while i < len(q):
        ch = q[i]
        if ch == "\\" and i + 1 < len(q):
            out.append(q[i + 1])
            i += 2
            continue
        if ch == "}":
            return "".join(out), q[i + 1 :]
        out.append(ch)
        i += 1
    raise SoslError("MALFORMED_SEARCH", _NO_TERM)


def _split_top(text: str) -> tuple[list[str], str]:
    """``RETURNING`` specs split on top-level commas; stops at a top-level ``WITH``, ``LIMIT``,
    ``OFFSET`` or ``UPDATE``; returns the specs and the rest."""
    depth, start, specs = 0, 0, []
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise SoslError("MALFORMED_SEARCH", "unexpected token: ')'")
        elif ch == "," and depth == 0:
            specs.append(text[start:i])
            start = i + 1
        elif depth == 0 and ch.isspace() and _STOP_RE.match(text, i):
            specs.append(text[start:i])
            return specs, text[i:]
    if depth:
        raise SoslError("MALFORMED_SEARCH", "unexpected end of search: missing ')'")
    specs.append(text[start:])
    return specs, ""


def _object_spec(spec: str) -> ObjectSpec:
    m = re.fullmatch(r"\s*([A-Za-z_]\w*)\s*(?:\((.*)\))?\s*", spec, re.S)
    if m is None:
        raise SoslError("MALFORMED_SEARCH", f"unexpected token: '{spec.strip()[:40]}'")
    name, inner = m.group(1), (m.group(2) or "").strip()
    tail = re.search(r"\b(WHERE|ORDER\s+BY|LIMIT|OFFSET)\b", inner, re.I)
    fields = (inner[: tail.start()] if tail else inner).strip() or "Id"
    rest = inner[tail.start() :] if tail else ""
    return ObjectSpec(name, f"SELECT {fields} FROM {name} {rest}".strip())


def parse_sosl(q: str) -> SearchPlan:
    """Parse a SOSL statement."""
    term, rest = _read_term(q)
    plan = SearchPlan(term)
    seen: set[str] = set()
    while rest.strip():
        m = _CLAUSE_RE.match(rest)
        if m is None:
            raise SoslError("MALFORMED_SEARCH", f"unexpected token: '{rest.strip().split()[0]}'")
        rest = rest[m.end() :]
        key = (m.group(1) or m.group(3) or m.group(4) or m.group(6)).upper()
        if key in seen and key != "WITH":
            raise SoslError("MALFORMED_SEARCH", f"duplicate clause: {key}")
        seen.add(key)
        if key == "IN":
            plan.group = m.group(2).upper()
            if plan.group not in GROUPS:
                raise SoslError("MALFORMED_SEARCH", f"unexpected token: '{m.group(2)}'")
        elif key == "RETURNING":
            specs, rest = _split_top(rest)
            plan.objects = [_object_spec(s) for s in specs]
        elif key in ("LIMIT", "OFFSET"):
            setattr(plan, key.lower(), int(m.group(5)))
        else:  # WITH … / UPDATE …: accepted, not modelled (divisions, snippets, tracking)
            _, rest = _split_top(rest)
    return plan


#: a search word (wildcards kept) and a word of a field value: letters and digits of any script
_TERM_WORD = re.compile(r"(?:[^\W_]|[*?])+")
_VALUE_WORD = re.compile(r"[^\W_]+")
Phrase = list[str]  # lower-cased word patterns that must match consecutive words


def _phrases(text: str) -> list[Phrase]:
    """``Acme "big corp"`` -> ``[["acme"], ["big", "corp"]]`` (operators dropped)."""
    out = []
    for token in re.findall(r'"[^"]*"|\S+', text):
        if token in ("AND", "OR", "NOT"):
            continue
        words = [w.lower() for w in _TERM_WORD.findall(token)]
        if words:
            out.append(words)
    return out


def _matcher(term: str) -> list[tuple[list[Phrase], list[Phrase]]]:
    """Alternatives (``OR``) of (phrases that must all match, phrases that must not)."""
    bare = re.sub(r'[*?"]|\b(AND|OR|NOT)\b', "", term).strip()
    if len(bare) < 2:
        raise SoslError("INVALID_SEARCH", f"search term must be longer than one character: {term.strip()}")
    alternatives = []
    for alt in re.split(r"\s+OR\s+", term.strip()):
        positive, _, negative = alt.partition(" AND NOT ")
        alternatives.append((_phrases(positive), _phrases(negative)))
    return alternatives


def _has(words: list[str], phrase: Phrase) -> bool:
    """Whether ``phrase`` matches consecutive ``words`` (``*`` any run of characters, ``?`` one;
    :func:`fnmatch.fnmatchcase` matches without catastrophic backtracking)."""
    n = len(phrase)
    return any(
        all(fnmatchcase(words[i + k], phrase[k]) for k in range(n)) for i in range(len(words) - n + 1)
    )


def _fields_in(table: Table, group: str) -> list[str]:
    text = [n for n, t in table.fields.items() if t in _TEXT_TYPES]
    if group == "NAME":
        return [n for n in text if n in _NAME_FIELDS]
    if group == "EMAIL":
        return [n for n in text if "email" in n.lower() or table.fields[n] == "email"]
    if group == "PHONE":
        return [n for n in text if "phone" in n.lower() or table.fields[n] == "phone"]
    return text


def searchable(tables: dict[str, Table]) -> list[Table]:
    """The objects a search without ``RETURNING`` covers (records with ids and a name)."""
    return [t for t in tables.values() if t.url_ids and "Name" in t.fields and t.name not in _NOT_SEARCHABLE]


def _in_any(values: list[list[str]], phrase: Phrase) -> bool:
    return any(_has(words, phrase) for words in values)


def _matching_rows(table: Table, group: str, matcher: list[Any]) -> list[dict[str, Any]]:
    names = _fields_in(table, group)
    out = []
    for row in table.rows:
        values = [_VALUE_WORD.findall(str(row[n]).lower()) for n in names if row.get(n) is not None]
        for must, must_not in matcher:
            if all(_in_any(values, p) for p in must) and not any(_in_any(values, p) for p in must_not):
                out.append(row)
                break
    return out


def run_search(plan: SearchPlan, tables: dict[str, Table], api_version: str, now: float) -> list[dict[str, Any]]:
    """The ``searchRecords`` of ``plan`` (``now``: the org clock, for date literals in ``WHERE``)."""
    matcher = _matcher(plan.term)
    specs = plan.objects or [ObjectSpec(t.name, f"SELECT Id FROM {t.name}") for t in searchable(tables)]
    records: list[dict[str, Any]] = []
    for spec in specs:
        table = find_table(tables, spec.name)
        if table is None:
            raise SoslError("INVALID_TYPE", f"sObject type '{spec.name}' is not supported.")
        if table not in searchable(tables):
            raise SoslError("INVALID_TYPE", f"entity type {table.name} does not support search")
        hits = Table(table.name, table.fields, table.relationships, _matching_rows(table, plan.group, matcher))
        _, found = execute(parse(spec.soql, now), {**tables, table.name: hits}, api_version)
        records += found
    return records[plan.offset : plan.offset + plan.limit]
