"""Record DML on the emulated org: insert, update, upsert and delete of Accounts and
Opportunities, with Salesforce's validation and error codes. Shared by the REST ``sobjects``
routes and Bulk API 2.0 ingest jobs; every function takes the org lock.

Values arrive either from JSON (REST: numbers, strings, ``null``) or from CSV (Bulk: strings, an
empty cell means "no value", ``#N/A`` sets a field to null). Errors are :class:`DmlError` with the
``errorCode``, message and fields Salesforce reports.
"""

from __future__ import annotations

import datetime as dt
import secrets
import string
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .state import sf_id18

if TYPE_CHECKING:  # pragma: no cover
    from .state import Org

__all__ = [
    "WRITABLE",
    "DmlError",
    "ObjectSpec",
    "delete",
    "find",
    "find_by_external_id",
    "insert",
    "spec_of",
    "update",
]

_ALNUM = string.ascii_letters + string.digits
_NULL_CSV = "#N/A"
#: system audit fields: set by every write, never writable (Salesforce needs a special permission)
_AUDIT_FIELDS = ("CreatedDate", "LastModifiedDate", "SystemModstamp")


class DmlError(Exception):
    """A DML failure: Salesforce's ``errorCode``, message, fields and the REST status."""

    def __init__(self, code: str, message: str, fields: list[str] | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = fields or []
        self.status = status

    def body(self) -> list[dict[str, Any]]:
        """The REST error body ``[{"message", "errorCode", "fields"}]``."""
        return [{"message": self.message, "errorCode": self.code, "fields": self.fields}]

    def bulk_text(self) -> str:
        """The ``sf__Error`` cell of a Bulk API 2.0 failed result (``CODE:message:fields --``)."""
        return f"{self.code}:{self.message}:{','.join(self.fields)} --"


@dataclass(frozen=True)
class ObjectSpec:
    """What DML may write on one object: field name → type, required fields, external ids,
    read-only fields, the key prefix and the ``org`` attribute holding the rows."""

    name: str
    prefix: str
    rows_attr: str
    writable: dict[str, str]
    required: tuple[str, ...] = ()
    external_ids: tuple[str, ...] = ()
    read_only: tuple[str, ...] = ("Id", *_AUDIT_FIELDS)
    references: dict[str, str] = field(default_factory=dict)


WRITABLE: dict[str, ObjectSpec] = {
    "Account": ObjectSpec(
        "Account", "001", "accounts",
        {"Name": "string", "Industry": "string", "External_Id__c": "string"},
        required=("Name",), external_ids=("External_Id__c",),
    ),
    "Opportunity": ObjectSpec(
        "Opportunity", "006", "opportunities",
        {"Name": "string", "AccountId": "reference", "Amount": "double", "StageName": "string",
         "CloseDate": "date"},
        required=("Name", "StageName", "CloseDate"), read_only=("Id", "IsWon", "IsClosed", *_AUDIT_FIELDS),
        references={"AccountId": "Account"},
    ),
}
#: objects the emulator knows but DML refuses (Salesforce's ``entity type cannot be …``)
READ_ONLY_OBJECTS = ("User", "Profile", "Organization", "OauthToken")


def spec_of(name: str) -> ObjectSpec | None:
    """The DML spec of an object name (case-insensitive)."""
    for key, spec in WRITABLE.items():
        if key.lower() == name.lower():
            return spec
    return None


def _rows(org: Org, spec: ObjectSpec) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = getattr(org, spec.rows_attr)
    return rows


class _Index:
    """Lookups over one object's rows: id (15 characters) → row, and per external id field the
    lowered value → rows. Kept current by this module's writes; rebuilt when the row list was
    replaced or changed size behind its back (seeding, ``reset``)."""

    def __init__(self, rows: list[dict[str, Any]], external_ids: tuple[str, ...]) -> None:
        self.rows = rows
        self.size = len(rows)
        self.by_id = {r["Id"][:15]: r for r in rows}
        self.by_ext: dict[str, dict[str, list[dict[str, Any]]]] = {f: {} for f in external_ids}
        for row in rows:
            self.add_ext(row)

    def add_ext(self, row: dict[str, Any]) -> None:
        for name, values in self.by_ext.items():
            if row.get(name):
                values.setdefault(str(row[name]).lower(), []).append(row)

    def drop_ext(self, row: dict[str, Any]) -> None:
        for name, values in self.by_ext.items():
            if row.get(name):
                key = str(row[name]).lower()
                values[key] = [r for r in values.get(key, []) if r is not row]

    def add(self, row: dict[str, Any]) -> None:
        self.by_id[row["Id"][:15]] = row
        self.add_ext(row)
        self.size += 1

    def remove(self, row: dict[str, Any]) -> None:
        self.by_id.pop(row["Id"][:15], None)
        self.drop_ext(row)
        self.size -= 1


def _index(org: Org, spec: ObjectSpec) -> _Index:
    rows = _rows(org, spec)
    idx: _Index | None = org.record_indexes.get(spec.name)
    if idx is None or idx.rows is not rows or idx.size != len(rows):
        idx = org.record_indexes[spec.name] = _Index(rows, spec.external_ids)
    return idx


def check_id(spec: ObjectSpec, record_id: str) -> None:
    """``MALFORMED_ID`` unless ``record_id`` is a 15/18-character id of this object."""
    if len(record_id) not in (15, 18) or not record_id.isalnum():
        raise DmlError("MALFORMED_ID", f"{spec.name} ID: id value of incorrect type: {record_id}", ["Id"])
    if record_id[:3] != spec.prefix:
        raise DmlError("MALFORMED_ID", f"{spec.name} ID: id value of incorrect type: {record_id}", ["Id"])


def find(org: Org, spec: ObjectSpec, record_id: str) -> dict[str, Any]:
    """The live row with this id; ``ENTITY_IS_DELETED`` / ``NOT_FOUND`` (404) otherwise."""
    check_id(spec, record_id)
    with org.lock:
        row = _index(org, spec).by_id.get(record_id[:15])
        if row is not None:
            return row
        if record_id[:15] in org.deleted_records:
            raise DmlError("ENTITY_IS_DELETED", "entity is deleted", [], 404)
    raise DmlError("NOT_FOUND", "The requested resource does not exist", [], 404)


def find_by_external_id(org: Org, spec: ObjectSpec, field_name: str, value: str) -> list[dict[str, Any]]:
    """Rows whose external id field equals ``value`` (case-insensitive, as Salesforce matches
    text external ids); ``NOT_FOUND`` 404 when the field is not an external id of the object."""
    canonical = _canonical(spec, field_name)
    if canonical == "Id":
        try:
            return [find(org, spec, value)]
        except DmlError:
            return []
    if canonical not in spec.external_ids:
        raise DmlError(
            "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {field_name}", [], 404
        )
    with org.lock:
        return list(_index(org, spec).by_ext[canonical].get(value.lower(), []))


def _canonical(spec: ObjectSpec, name: str) -> str | None:
    for known in (*spec.read_only, *spec.writable):
        if known.lower() == name.lower():
            return known
    return None


def _to_value(org: Org, spec: ObjectSpec, name: str, raw: Any, from_csv: bool) -> Any:
    typ = spec.writable[name]
    if raw is None or (from_csv and raw == _NULL_CSV):
        return None
    try:
        if typ == "double":
            if isinstance(raw, bool):
                raise ValueError(raw)
            return float(raw)
        if typ == "date":
            return dt.date.fromisoformat(str(raw)[:10])
    except ValueError:
        if from_csv:
            raise DmlError(
                "INVALID_TYPE_ON_FIELD_IN_RECORD", f"{name}: value not of required type: {raw}", [name]
            ) from None
        raise DmlError(
            "JSON_PARSER_ERROR",
            f"Cannot deserialize instance of {typ} from VALUE_STRING value {raw} or request may be "
            "missing a required field",
        ) from None
    value = str(raw)
    if typ == "reference" and value:
        target = WRITABLE[spec.references[name]]
        try:
            check_id(target, value)
        except DmlError:
            raise DmlError("MALFORMED_ID", f"{_label(name)}: id value of incorrect type: {value}", [name]) from None
        with org.lock:
            if value[:15] not in _index(org, target).by_id:
                raise DmlError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [name])
        return sf_id18(value) if len(value) == 15 else value
    return value


def _label(name: str) -> str:
    return name[:-2] + " ID" if name.endswith("Id") else name


def relationship(spec: ObjectSpec, name: str) -> tuple[str, ObjectSpec] | None:
    """``(foreign key field, target spec)`` when ``name`` is a relationship of the object
    (``Account`` → ``AccountId`` on Opportunity)."""
    for fk, target in spec.references.items():
        if fk[:-2].lower() == name.lower():
            return fk, WRITABLE[target]
    return None


def _by_foreign_external_id(org: Org, spec: ObjectSpec, name: str, raw: Any) -> tuple[str, str] | None:
    """Resolve a reference by the parent's external id: JSON ``{"Account": {"External_Id__c": v}}``
    or a CSV column ``Account.External_Id__c``; returns ``(foreign key field, parent id)``."""
    if isinstance(raw, dict):
        rel_name, pairs = name, [(k, v) for k, v in raw.items() if k != "attributes"]
    elif "." in name and isinstance(raw, str):
        rel_name, _, ext = name.partition(".")
        pairs = [(ext, raw)]
    else:
        return None
    rel = relationship(spec, rel_name)
    if rel is None or len(pairs) != 1:
        raise DmlError("INVALID_FIELD", f"No such column '{name}' on sobject of type {spec.name}", [name])
    (fk, target), (ext, value) = rel, pairs[0]
    matches = find_by_external_id(org, target, ext, str(value))
    if not matches:
        raise DmlError(
            "INVALID_FIELD", f"Foreign key external ID: {value} not found for field {ext} in entity {target.name}",
            [fk],
        )
    if len(matches) > 1:
        ids = ", ".join(r["Id"] for r in matches)
        raise DmlError("DUPLICATE_EXTERNAL_ID", f"{ext}: more than one record found for external id field: [{ids}]",
                       [fk])
    return fk, str(matches[0]["Id"])


def _fields(org: Org, spec: ObjectSpec, values: dict[str, Any], from_csv: bool) -> dict[str, Any]:
    """Validate names and convert values; CSV cells left empty are skipped."""
    out: dict[str, Any] = {}
    for name, raw in values.items():
        if name == "attributes" or (from_csv and raw == ""):
            continue
        ref = _by_foreign_external_id(org, spec, name, raw)
        if ref is not None:
            out[ref[0]] = ref[1]
            continue
        canonical = _canonical(spec, name)
        if canonical is None:
            raise DmlError("INVALID_FIELD", f"No such column '{name}' on sobject of type {spec.name}", [name])
        if canonical in spec.read_only:
            raise DmlError(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {canonical}. Please check the security settings of this field "
                "and verify that it is read/write for your profile or permission set.",
                [canonical],
            )
        out[canonical] = _to_value(org, spec, canonical, raw, from_csv)
    return out


def _stamp(org: Org, row: dict[str, Any], created: bool) -> None:
    now = dt.datetime.fromtimestamp(org.clock.now(), dt.timezone.utc)
    if created:
        row["CreatedDate"] = now
    row["LastModifiedDate"] = row["SystemModstamp"] = now


def _derive(spec: ObjectSpec, row: dict[str, Any]) -> None:
    if spec.name == "Opportunity":
        stage = row.get("StageName") or ""
        row["IsWon"] = stage == "Closed Won"
        row["IsClosed"] = stage in ("Closed Won", "Closed Lost")


def _missing(spec: ObjectSpec, row: dict[str, Any]) -> None:
    missing = [f for f in spec.required if row.get(f) in (None, "")]
    if missing:
        raise DmlError("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing)


def _new_id(spec: ObjectSpec) -> str:
    # "5h" keeps generated ids apart from the seed's "5g" ids; 62**10 random bodies make a clash
    # negligible without scanning the rows (a 10,000-row ingest job stays linear)
    return sf_id18(spec.prefix + "5h" + "".join(secrets.choice(_ALNUM) for _ in range(10)))


def insert(org: Org, spec: ObjectSpec, values: dict[str, Any], from_csv: bool = False) -> str:
    """Create a record; returns its 18-character id."""
    with org.lock:
        row: dict[str, Any] = {name: None for name in spec.writable}
        row.update(_fields(org, spec, values, from_csv))
        _missing(spec, row)
        row["Id"] = _new_id(spec)
        _derive(spec, row)
        _stamp(org, row, created=True)
        idx = _index(org, spec)
        _rows(org, spec).append(row)
        idx.add(row)
        return str(row["Id"])


def update(org: Org, spec: ObjectSpec, record_id: str, values: dict[str, Any], from_csv: bool = False) -> str:
    """Update the record ``record_id``; returns its 18-character id."""
    with org.lock:
        row = find(org, spec, record_id)
        changes = _fields(org, spec, values, from_csv)
        merged = {**row, **changes}
        _missing(spec, merged)
        touches_ext = any(name in changes for name in spec.external_ids)
        if touches_ext:
            _index(org, spec).drop_ext(row)
        row.update(changes)
        if touches_ext:
            _index(org, spec).add_ext(row)
        _derive(spec, row)
        _stamp(org, row, created=False)
        return str(row["Id"])


def delete(org: Org, spec: ObjectSpec, record_id: str) -> str:
    """Delete a record (an Account takes its Opportunities with it, as Salesforce cascades)."""
    with org.lock:
        row = find(org, spec, record_id)
        idx = _index(org, spec)
        _remove(_rows(org, spec), row)
        idx.remove(row)
        org.deleted_records[row["Id"][:15]] = (spec.name, row)
        if spec.name == "Account":
            children = [o for o in org.opportunities if o.get("AccountId") == row["Id"]]
            for opp in children:
                _remove(org.opportunities, opp)
                org.deleted_records[opp["Id"][:15]] = ("Opportunity", opp)
            # the Opportunity index sees the changed size and rebuilds itself
        return str(row["Id"])


def _remove(rows: list[dict[str, Any]], row: dict[str, Any]) -> None:
    """Remove ``row`` by identity (``list.remove`` compares dicts by value)."""
    for i, candidate in enumerate(rows):
        if candidate is row:
            del rows[i]
            return


def upsert(
    org: Org, spec: ObjectSpec, field_name: str, value: str, values: dict[str, Any], from_csv: bool = False
) -> tuple[str, bool]:
    """Insert or update by external id; returns ``(id, created)``. Several matches raise
    ``MULTIPLE_CHOICES`` (status 300)."""
    with org.lock:
        matches = find_by_external_id(org, spec, field_name, value)
        if len(matches) > 1:
            raise DmlError("MULTIPLE_CHOICES", f"Multiple records found for {field_name}={value}", [], 300)
        canonical = _canonical(spec, field_name) or field_name
        if matches:
            return update(org, spec, matches[0]["Id"], values, from_csv), False
        if canonical == "Id":
            raise DmlError("NOT_FOUND", "The requested resource does not exist", [], 404)
        return insert(org, spec, {**values, canonical: value}, from_csv), True
