"""sObject metadata built from the queryable tables: describeGlobal, describe, the basic sObject
resource and SOQL ``columns=true`` column metadata (REST API Developer Guide, "Describe Global",
"sObject Describe", "Query")."""

from __future__ import annotations

import re
from typing import Any

from .records import spec_of
from .soql import Table

__all__ = ["column_metadata", "describe_global", "describe_sobject", "key_prefix", "sobject_basic"]

_KEY_PREFIXES = {"Account": "001", "Opportunity": "006", "User": "005", "Profile": "00e", "Organization": "00D"}
_SOAP_TYPES = {
    "id": "tns:ID", "reference": "tns:ID", "string": "xsd:string", "boolean": "xsd:boolean",
    "int": "xsd:int", "double": "xsd:double", "date": "xsd:date", "datetime": "xsd:dateTime",
}
_PLURALS = {"Opportunity": "Opportunities", "OauthToken": "OAuth Tokens", "Organization": "Organizations"}


def key_prefix(table: Table) -> str | None:
    """The 3-character id prefix of the object (``None`` for objects without ids)."""
    return _KEY_PREFIXES.get(table.name)


def _label(name: str) -> str:
    if name == "Id":
        return "Record ID"
    words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name)
    return re.sub(r" Id$", " ID", words)


def _urls(table: Table, version: str) -> dict[str, str]:
    base = f"/services/data/v{version}/sobjects/{table.name}"
    return {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"}


def sobject_basic(table: Table, version: str) -> dict[str, Any]:
    """One entry of describeGlobal (also the ``objectDescribe`` of the basic sObject resource)."""
    return {
        "name": table.name,
        "label": _label(table.name),
        "labelPlural": _PLURALS.get(table.name, _label(table.name) + "s"),
        "keyPrefix": key_prefix(table),
        "custom": False,
        "queryable": True,
        "retrieveable": table.url_ids,
        "searchable": False,
        # what record DML (records.py) writes
        "createable": spec_of(table.name) is not None,
        "updateable": spec_of(table.name) is not None,
        "deletable": spec_of(table.name) is not None,
        "layoutable": False,
        "urls": _urls(table, version),
    }


def describe_global(tables: dict[str, Table], version: str) -> dict[str, Any]:
    """``GET /sobjects``."""
    return {
        "encoding": "UTF-8",
        "maxBatchSize": 200,
        "sobjects": [sobject_basic(t, version) for t in sorted(tables.values(), key=lambda t: t.name)],
    }


def _field(table: Table, name: str, typ: str) -> dict[str, Any]:
    ref = next(((rel, target) for rel, (target, fk) in table.relationships.items() if fk == name), None)
    spec = spec_of(table.name)
    writable = spec is not None and name in spec.writable
    external = spec is not None and name in spec.external_ids
    return {
        "name": name,
        "label": _label(name),
        "type": typ,
        "soapType": _SOAP_TYPES.get(typ, "xsd:anyType"),
        "length": 255 if typ == "string" else (18 if typ in ("id", "reference") else 0),
        "nillable": name != "Id" and not (spec is not None and name in spec.required),
        "idLookup": name == "Id" or external,
        "externalId": external,
        "filterable": True,
        "sortable": True,
        "groupable": typ not in ("double", "datetime"),
        "createable": writable,
        "updateable": writable,
        "custom": name.endswith("__c"),
        "referenceTo": [ref[1]] if ref else [],
        "relationshipName": ref[0] if ref else None,
    }


def describe_sobject(table: Table, version: str) -> dict[str, Any]:
    """``GET /sobjects/{type}/describe``."""
    return {
        **sobject_basic(table, version),
        "fields": [_field(table, n, t) for n, t in table.fields.items()],
        "childRelationships": [],
        "recordTypeInfos": [],
        "supportedScopes": [{"label": "All", "name": "everything"}],
    }


def _column(name: str, display: str, typ: str, joins: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "aggregate": False,
        "apexType": None if joins else _SOAP_TYPES.get(typ, "xsd:anyType").split(":")[1],
        "booleanType": typ == "boolean",
        "columnName": name,
        "custom": False,
        "displayName": display,
        "foreignKeyName": None,
        "insertable": False,
        "joinColumns": joins or [],
        "numberType": typ in ("int", "double"),
        "textType": typ == "string",
        "updatable": False,
    }


def column_metadata(table: Table, selected: list[tuple[str | None, str, str]]) -> dict[str, Any]:
    """``GET /query?q=...&columns=true``: the columns a query returns, no records."""
    cols: list[dict[str, Any]] = []
    joined: dict[str, dict[str, Any]] = {}
    for rel, name, typ in selected:
        if rel is None:
            cols.append(_column(name, name, typ))
            continue
        parent = joined.get(rel)
        if parent is None:
            parent = joined[rel] = _column(rel, rel, "reference", joins=[])
            cols.append(parent)
        parent["joinColumns"].append(_column(name, f"{rel}.{name}", typ))
    return {
        "columnMetadata": cols,
        "entityName": table.name,
        "groupBy": False,
        "idSelected": any(rel is None and name == "Id" for rel, name, _ in selected),
        "keyPrefix": key_prefix(table),
    }
