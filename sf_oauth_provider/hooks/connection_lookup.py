"""A connection id that Airflow does not know: a permanent error naming the closest one that exists.

Airflow says only "The conn_id 'sf_prdo' isn't defined", an ``AirflowNotFoundException`` that
the task runner retries like an outage. A typo does not fix itself, so the hook raises
:class:`SalesforceConnectionNotFound` instead: a :class:`SalesforceConfigError` (permanent: the
operators and the sensor fail without Airflow retries) that is also an ``AirflowNotFoundException``
(code that catches Airflow's error keeps working), naming the closest ``salesforce_oauth``
connection among those this process can list:

* ``AIRFLOW_CONN_*`` environment variables — always;
* the secrets backends Airflow itself searches in this process, where they can list: a local
  connections file (``LocalFilesystemBackend``) and the metadata DB (``MetastoreBackend``: the
  scheduler, the API server, a shell with ``_AIRFLOW_PROCESS_CONTEXT=server``).

A task on a worker reaches the metadata DB only through Airflow's execution API, which fetches a
connection by id and cannot list them; other backends (Vault, AWS Secrets Manager, …) cannot list
either. The message then says where to look (``airflow connections list``). Listing never fails
the lookup: a backend that errors is skipped. Only connection ids are shown, never a value.
"""

from __future__ import annotations

import difflib
import json
import os
from typing import Any, Iterable
from urllib.parse import urlsplit

from sf_oauth_provider._compat import NOT_FOUND_ERRORS
from sf_oauth_provider.client.errors import SalesforceConfigError

__all__ = ["SalesforceConnectionNotFound", "is_not_found", "listable_connection_ids", "not_found_error"]

CONN_TYPE = "salesforce_oauth"
_ENV_PREFIX = "AIRFLOW_CONN_"
#: most candidates named when no id is close (the hint stays one line)
_MAX_LISTED = 10
_MAX_DB_ROWS = 5000


#: the not-found classes to inherit from (a class another one already derives from is left out: MRO)
_NOT_FOUND_BASES = tuple(
    c for c in NOT_FOUND_ERRORS if not any(o is not c and issubclass(o, c) for o in NOT_FOUND_ERRORS)
)


class SalesforceConnectionNotFound(SalesforceConfigError, *_NOT_FOUND_BASES):  # type: ignore[misc]
    """The connection id names no connection: fix the id (or create the connection); never retried.

    :param candidates: the ``salesforce_oauth`` connection ids this process could list
    """

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None,
                 conn_id: str | None = None, candidates: tuple[str, ...] = ()) -> None:
        self.candidates = tuple(candidates)
        super().__init__(message, field=field, hint=hint, conn_id=conn_id)

    def __reduce__(self):
        return (_rebuild, (self.message, self.field, self.hint, self.conn_id, self.candidates))


def _rebuild(message, field, hint, conn_id, candidates):
    exc = SalesforceConnectionNotFound(message, field=field, hint=hint, candidates=candidates)
    exc.conn_id = conn_id  # already in the message
    return exc


def _is_our_type(conn_type: Any) -> bool:
    return isinstance(conn_type, str) and conn_type.strip().lower().replace("-", "_") == CONN_TYPE


def _type_of_env_value(value: str) -> str | None:
    text = value.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            return None
        return data.get("conn_type") if isinstance(data, dict) else None
    try:
        return urlsplit(text).scheme or None
    except ValueError:
        return None


def _from_environment() -> set[str]:
    found = set()
    for name, value in os.environ.items():
        suffix = name[len(_ENV_PREFIX):]
        if name.startswith(_ENV_PREFIX) and suffix and not suffix.startswith("_") and _is_our_type(
            _type_of_env_value(value)
        ):
            found.add(suffix.lower())
    return found


def _from_metastore() -> set[str]:
    from airflow.models import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(Connection.conn_id, Connection.conn_type).limit(_MAX_DB_ROWS)
        ).all()
    return {conn_id for conn_id, conn_type in rows if _is_our_type(conn_type)}


def _loaded_backends() -> list[Any]:
    """The secrets backends Airflow searched for the connection in this process.

    The task SDK's list; in a server process (scheduler, API server: ``_AIRFLOW_PROCESS_CONTEXT``
    ``server``) also the core list, which is where Airflow 3.0 keeps the metadata DB backend.
    """
    backends: list[Any] = []
    try:
        from airflow.sdk.execution_time.supervisor import ensure_secrets_backend_loaded

        backends += list(ensure_secrets_backend_loaded())
    except Exception:  # noqa: BLE001 - another release's layout, or no backend loads: the environment still lists
        pass
    if os.environ.get("_AIRFLOW_PROCESS_CONTEXT") == "server":
        from sf_oauth_provider._compat import core_secrets_backends

        backends += core_secrets_backends()
    return list({type(b).__name__: b for b in reversed(backends)}.values())[::-1]  # one of each kind


def listable_connection_ids() -> tuple[tuple[str, ...], bool]:
    """(``salesforce_oauth`` connection ids this process can list, whether the metadata DB was listed)."""
    found = _from_environment()
    db_listed = False
    for backend in _loaded_backends():
        kind = type(backend).__name__
        try:
            if kind == "MetastoreBackend":
                found |= _from_metastore()
                db_listed = True
            elif kind == "LocalFilesystemBackend":
                found |= {cid for cid, conn in backend._local_connections.items() if _is_our_type(conn.conn_type)}
        except Exception:  # listing is a courtesy: never let it hide the real error
            continue
    return tuple(sorted(found)), db_listed


def _closest(conn_id: str, candidates: Iterable[str]) -> str | None:
    lowered = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(conn_id.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[close[0]] if close else None


def not_found_error(conn_id: str, exc: BaseException, field: str) -> SalesforceConnectionNotFound:
    """The error to raise instead of Airflow's "not defined" for ``conn_id``.

    :param conn_id: the id that was asked for
    :param exc: Airflow's ``AirflowNotFoundException`` (its text is kept)
    :param field: the parameter that holds the id (``salesforce_oauth_conn_id``)
    """
    candidates, db_listed = listable_connection_ids()
    closest = _closest(conn_id, candidates)
    said = str(exc).rstrip(".")
    if closest:
        message = f"{said}; did you mean {closest!r}?"
        hint = f"set {field} to {closest!r}, or create connection {conn_id!r}; Airflow does not retry this"
    else:
        listed = ", ".join(candidates[:_MAX_LISTED]) + (", …" if len(candidates) > _MAX_LISTED else "")
        message = f"{said}; " + (
            f"the {CONN_TYPE} connections this process can see are: {listed}" if candidates
            else f"this process sees no {CONN_TYPE} connection"
        )
        hint = f"fix {field} or create connection {conn_id!r} (conn_type {CONN_TYPE!r}); Airflow does not retry this"
    if not db_listed:
        hint += (
            "; connections stored in the metadata DB or a secrets backend are not listed from here: "
            "`airflow connections list` shows them"
        )
    return SalesforceConnectionNotFound(message, field=field, hint=hint, conn_id=conn_id, candidates=candidates)


def is_not_found(exc: BaseException) -> bool:
    """Whether ``exc`` is Airflow's "connection not defined" (of any Airflow 3 release)."""
    return isinstance(exc, NOT_FOUND_ERRORS) and not isinstance(exc, SalesforceConnectionNotFound)
