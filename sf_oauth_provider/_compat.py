"""The one place that knows where each Airflow 3 release keeps the names this provider uses.

Every Airflow-facing module (hooks, operators, sensors, triggers, masking) imports these names
from here, so no release check lives anywhere else. Each name is looked up where the newest
release documents it first, then where older releases keep it (measured on 3.0.6, 3.1.8, 3.2.2
and 3.3.2; see the README's "Supported versions")::

    name                      3.0        3.1        3.2        3.3        fallback here
    BaseHook                  core       sdk        sdk        sdk        airflow.hooks.base
    BaseHook.aget_connection  missing    sdk        sdk        sdk        get_connection in a worker thread
    extra not a JSON object   "not defined" "not defined" passed on   passed on  "not defined" says so
    conf                      core       core       sdk        sdk        airflow.configuration
    AirflowFailException,     core       core       sdk        sdk        airflow.exceptions
      AirflowSkipException, TaskDeferred, AirflowSensorTimeout (same as AirflowFailException)
    AirflowException          core       sdk        sdk        sdk        airflow.exceptions
    mask_secret               sdk.log    sdk.log    sdk.log    sdk.log    this process's masker under ``dags test``
    amask_secret              missing    missing    missing    sdk.log    mask_secret in a worker thread
    Stats                     core       core       sdk.observability  sdk.observability  airflow.stats

The task runner of each release catches the exception classes that release defines, so the
provider must raise exactly those: on 3.0 and 3.1 ``airflow.exceptions``, from 3.2 on the SDK's
(which ``airflow.exceptions`` re-exports). A feature that needs an API no fallback can give
raises :class:`AirflowVersionError` naming the release it needs, when used, never at import.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

import airflow
from airflow.sdk.log import mask_secret as _mask_secret

try:  # 3.1+
    from airflow.sdk import BaseHook as _SdkBaseHook
except ImportError:  # 3.0: the task SDK has no BaseHook yet
    # 3.0-only branch: the checked release (3.3) keeps no BaseHook in airflow.hooks.base
    from airflow.hooks.base import BaseHook as _SdkBaseHook  # type: ignore[no-redef,assignment,attr-defined]

try:  # 3.2+
    from airflow.sdk import conf
except ImportError:  # 3.0, 3.1
    # 3.0/3.1-only branch: core's parser type differs from the SDK's the checker sees
    from airflow.configuration import conf  # type: ignore[no-redef,assignment]

try:  # 3.2+: the SDK defines them and airflow.exceptions re-exports the same classes
    from airflow.sdk.exceptions import (
        AirflowFailException,
        AirflowSensorTimeout,
        AirflowSkipException,
        TaskDeferred,
    )
except ImportError:  # 3.0, 3.1: the task runner catches airflow.exceptions' classes
    from airflow.exceptions import (  # type: ignore[no-redef,assignment]
        AirflowFailException,
        AirflowSensorTimeout,
        AirflowSkipException,
        TaskDeferred,
    )

try:  # 3.1+
    from airflow.sdk.exceptions import AirflowException
except ImportError:  # 3.0
    from airflow.exceptions import AirflowException  # type: ignore[no-redef,assignment]

# "connection not defined": the SDK raises its own class from 3.1 on, core's before; both, once
from airflow.exceptions import AirflowNotFoundException as _CoreNotFound

try:  # 3.1+
    from airflow.sdk.exceptions import AirflowNotFoundException as _SdkNotFound
except ImportError:  # 3.0
    _SdkNotFound = _CoreNotFound  # type: ignore[misc,assignment]
#: the classes ``get_connection`` raises for an unknown conn_id on the installed release
NOT_FOUND_ERRORS: tuple[type[Exception], ...] = tuple(dict.fromkeys((_SdkNotFound, _CoreNotFound)))

try:  # 3.3+
    from airflow.sdk.log import amask_secret as _amask_secret
except ImportError:  # 3.0 to 3.2
    _amask_secret = None  # type: ignore[assignment]  # 3.0 to 3.2 have no async masker; checked below

if TYPE_CHECKING:
    from airflow.sdk import Connection

__all__ = [
    "core_secrets_backends",
    "AIRFLOW_VERSION",
    "AirflowException",
    "AirflowFailException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "AirflowVersionError",
    "BaseHook",
    "NOT_FOUND_ERRORS",
    "TaskDeferred",
    "amask_secret",
    "conf",
    "mask_secret",
    "requires_airflow",
    "secrets_masker",
    "stats",
]

#: the installed Airflow release, e.g. ``"3.1.8"`` (also right for apache-airflow-core alone)
AIRFLOW_VERSION: str = airflow.__version__


def _release(version: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in version.split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


class AirflowVersionError(AirflowException):
    """A feature of this provider needs a newer Airflow release than the one installed."""


def core_secrets_backends() -> list[Any]:
    """The core secrets backends of a server process (where Airflow 3.0 keeps the metadata DB
    backend); an empty list where the release has none or they cannot be loaded."""
    try:
        from airflow.configuration import ensure_secrets_loaded  # core, every 3.x release so far

        return list(ensure_secrets_loaded())
    except Exception:  # noqa: BLE001 - listing backends is a courtesy for a hint
        return []


def requires_airflow(minimum: str, feature: str) -> None:
    """Raise :class:`AirflowVersionError` unless the installed Airflow is at least ``minimum``.

    For features that need an Airflow API older releases lack: the provider still imports and
    everything else works; only using the feature fails, with a message saying what to upgrade.

    :param minimum: the first Airflow release with the API, e.g. ``"3.2.0"``
    :param feature: what the user tried to use, for the message
    """
    if _release(AIRFLOW_VERSION) < _release(minimum):
        raise AirflowVersionError(
            f"{feature} needs Apache Airflow {minimum} or newer; this environment has {AIRFLOW_VERSION}. "
            f"Upgrade apache-airflow to use it."
        )


#: before 3.2, Airflow's secrets backends drop a connection whose extra is not a JSON object
#: (logging "Encountered non-JSON in `extra` field") and report it as not defined
_DROPS_BROKEN_EXTRA = _release(AIRFLOW_VERSION) < (3, 2)
_HAS_AGET_CONNECTION = hasattr(_SdkBaseHook, "aget_connection")  # 3.1+


def _not_found_explained(conn_id: str, exc: Exception) -> Exception:
    from airflow.exceptions import AirflowNotFoundException

    return AirflowNotFoundException(
        f"{exc}. On Airflow {AIRFLOW_VERSION} this also happens when the connection's extra is not a JSON "
        f"object (the log says \"Encountered non-JSON in `extra` field\"): fix connection '{conn_id}', "
        f"field 'extra', or upgrade to Airflow 3.2+, where this provider names what is wrong in it"
    )


def _under_in_process_supervisor() -> bool:
    """Whether this task runs under ``airflow dags test`` / ``dag.test()``: its supervisor is an
    ``InProcessSupervisorComms`` in this very process (every release 3.0–3.3)."""
    task_runner = sys.modules.get("airflow.sdk.execution_time.task_runner")
    supervisor = sys.modules.get("airflow.sdk.execution_time.supervisor")
    in_process = getattr(supervisor, "InProcessSupervisorComms", None)
    return in_process is not None and isinstance(getattr(task_runner, "SUPERVISOR_COMMS", None), in_process)


class _LocalMaskComms:
    """In front of ``dags test``'s in-process supervisor channel while a connection is read.

    Airflow masks the connection's password and extra as it reads them, with a ``MaskSecret``
    request that the in-process supervisor logs with the secret in it (see :func:`mask_secret`).
    Here such a request goes straight to this process's masker — which is all that supervisor
    does with it — and every other request (``GetConnection`` …) goes on unchanged.
    """

    def __init__(self, comms: Any) -> None:
        self._comms = comms

    @staticmethod
    def _mask_here(msg: Any) -> bool:
        from airflow.sdk.execution_time.comms import MaskSecret

        if not isinstance(msg, MaskSecret):
            return False
        secrets_masker().add_mask(msg.value, msg.name)
        return True

    def send(self, msg: Any) -> Any:
        return None if self._mask_here(msg) else self._comms.send(msg)

    async def asend(self, msg: Any) -> Any:
        return None if self._mask_here(msg) else await self._comms.asend(msg)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._comms, name)


@contextmanager
def _connection_masked_quietly() -> Iterator[None]:
    """Under ``airflow dags test``, route Airflow's own masking of a connection being read to this
    process's masker instead of the supervisor's DEBUG log; elsewhere, change nothing."""
    if not _under_in_process_supervisor():
        yield
        return
    task_runner: Any = sys.modules["airflow.sdk.execution_time.task_runner"]
    real = task_runner.SUPERVISOR_COMMS
    quiet = _LocalMaskComms(real)
    task_runner.SUPERVISOR_COMMS = quiet  # what Airflow's own set_supervisor_comms does
    try:
        yield
    finally:
        if task_runner.SUPERVISOR_COMMS is quiet:
            task_runner.SUPERVISOR_COMMS = real


class BaseHook(_SdkBaseHook):
    """Airflow's ``BaseHook`` (the SDK's from 3.1) whose connection reads keep secrets out of
    ``airflow dags test``'s DEBUG output (every release), plus what 3.2+ offer on older releases:
    ``aget_connection`` (3.0 has none) and a "not defined" that says it may be a broken extra."""

    @classmethod
    def get_connection(cls, conn_id: str) -> Connection:
        """Airflow's ``get_connection``; on 3.0/3.1 "not defined" says what else it can mean.

        :param conn_id: the connection id
        """
        from airflow.exceptions import AirflowNotFoundException

        try:
            with _connection_masked_quietly():
                return super().get_connection(conn_id)
        except AirflowNotFoundException as exc:
            if not _DROPS_BROKEN_EXTRA:
                raise
            raise _not_found_explained(conn_id, exc) from exc

    @classmethod
    async def aget_connection(cls, conn_id: str) -> Connection:
        """Get a connection from code on an event loop.

        The release's own ``aget_connection`` is used where it exists (3.1+). 3.0's
        ``get_connection`` asks the triggerer's supervisor through ``async_to_sync``, which refuses
        to run on the event loop's own thread; asgiref's ``sync_to_async`` runs it in a worker
        thread and bridges the request back onto this loop.

        :param conn_id: the connection id
        """
        from airflow.exceptions import AirflowNotFoundException

        if not _HAS_AGET_CONNECTION:
            from asgiref.sync import sync_to_async

            return await sync_to_async(cls.get_connection)(conn_id)
        try:
            with _connection_masked_quietly():
                return await super().aget_connection(conn_id)
        except AirflowNotFoundException as exc:
            if not _DROPS_BROKEN_EXTRA:
                raise
            raise _not_found_explained(conn_id, exc) from exc


def mask_secret(secret: Any, name: str | None = None) -> None:
    """Airflow's ``mask_secret``, except under ``airflow dags test``.

    There the supervisor runs in this process and logs every request at DEBUG with its body,
    ``Sending request msg=MaskSecret(value='<the secret>')`` (``InProcessSupervisorComms.send``;
    a real supervisor writes "body omitted"). All that request would do is add the value to this
    process's masker — so the value goes there directly and the request is not sent.

    :param secret: the value (or a dict/list of values) to mask
    :param name: only mask if this key name is a sensitive one
    """
    if _under_in_process_supervisor():
        secrets_masker().add_mask(secret, name)
        return
    _mask_secret(secret, name)


async def amask_secret(secret: Any, name: str | None = None) -> None:
    """``mask_secret`` for code on an event loop; the value is masked when this returns.

    3.3+ has ``amask_secret``. Before it, ``mask_secret`` tells the supervisor through
    ``async_to_sync``, which raises on the event loop's thread — on 3.0 before the local masker
    learned the value, so the secret would reach the trigger's log unmasked. Run in a worker thread
    by asgiref's ``sync_to_async``, the message is bridged back onto this loop and both the local
    masker and the supervisor's learn the value before we continue.

    :param secret: the value (or a dict/list of values) to mask
    :param name: only mask if this key name is a sensitive one (as ``mask_secret``)
    """
    if _under_in_process_supervisor():  # `airflow dags test`: see mask_secret
        secrets_masker().add_mask(secret, name)
        return
    if _amask_secret is not None:
        await _amask_secret(secret, name)
        return
    from asgiref.sync import sync_to_async

    await sync_to_async(mask_secret)(secret, name)


def secrets_masker() -> Any:
    """This process's secrets masker object (what ``mask_secret`` adds to), for bulk additions.

    Airflow has no public handle on it; its home moved in 3.1 (``airflow.sdk._shared``). Raises
    ``ImportError`` where neither home exists, so callers fall back to :func:`mask_secret`.
    """
    try:  # 3.1+
        from airflow.sdk._shared.secrets_masker import _secrets_masker
    except ImportError:  # 3.0
        from airflow.sdk.execution_time.secrets_masker import _secrets_masker  # type: ignore[no-redef]
    return _secrets_masker()


def stats() -> Any:
    """Airflow's ``Stats`` (StatsD, OpenTelemetry or nothing, as ``[metrics]`` configures it).

    3.2 moved it for task code to ``airflow.sdk.observability.stats`` (``airflow.stats`` is a
    deprecated re-export there, warning on import); 3.0 and 3.1 keep it in ``airflow.stats``.
    Imported on first use: DAG parsing never pays for it.
    """
    try:  # 3.2+
        from airflow.sdk.observability.stats import Stats
    except ImportError:  # 3.0, 3.1
        from airflow.stats import Stats  # type: ignore[no-redef,attr-defined]
    return Stats
