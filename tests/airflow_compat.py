"""Airflow names the tests need, found the same way on every Airflow 3 release we support.

Tests import from here instead of from a path that only some releases have. Each helper tries
the public (or newest) path first and falls back, per release, to where older releases keep the
same thing. The exception classes are the provider's own (``sf_oauth_provider._compat``): the
ones the installed release's task runner catches, so ``pytest.raises`` sees what users see.
"""

from __future__ import annotations

import sys
from typing import Any

from sf_oauth_provider._compat import (
    AIRFLOW_VERSION,
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    TaskDeferred,
)

__all__ = [
    "AIRFLOW_VERSION",
    "AirflowException",
    "AirflowFailException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "TaskDeferred",
    "airflow_drops_connections_with_a_broken_extra",
    "airflow_release",
    "provider_hooks",
    "redact",
    "reset_secrets_masker",
    "serialize_rendered_fields",
]


def airflow_release() -> tuple[int, int]:
    """The installed Airflow's (major, minor), for tests that pin a per-release behaviour."""
    major, minor = AIRFLOW_VERSION.split(".")[:2]
    return int(major), int(minor)


def airflow_drops_connections_with_a_broken_extra() -> bool:
    """3.0's and 3.1's secrets backends drop a connection whose extra is not a JSON object (the
    hook then sees "not defined", which the provider's shim explains); 3.2+ hand it to the provider."""
    return airflow_release() < (3, 2)


def redact(value: Any, name: str | None = None) -> Any:
    """What Airflow's secrets masker makes of ``value`` before it reaches a log.

    :param value: text or a structure of values
    :param name: the field/key name; sensitive names (``tokens``, ``password``) hide the value
    """
    try:  # 3.1+: public in the SDK's log module
        from airflow.sdk.log import redact as _redact
    except ImportError:  # 3.0
        from airflow.sdk.execution_time.secrets_masker import redact as _redact
    return _redact(value, name)


# Where this process's masker lives: 3.1+ moved it to airflow.sdk._shared (the 3.0 home stays as a
# deprecated shim that warns on import, so it is only the fallback).
_MASKER_MODULES = ("airflow.sdk._shared.secrets_masker", "airflow.sdk.execution_time.secrets_masker")


def reset_secrets_masker() -> None:
    """Forget every secret registered with this process's masker (Airflow has no public reset).

    Only resets a masker already loaded: a test that never masked anything costs nothing.
    """
    for name in _MASKER_MODULES:
        module = sys.modules.get(name)
        if module is not None:
            module.reset_secrets_masker()
            return


def provider_hooks() -> dict[str, Any]:
    """Connection type -> hook info, as the task runtime sees it (what ``get_hook`` resolves)."""
    try:  # 3.2+: the task SDK's own providers manager (the core one's ``hooks`` is deprecated)
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

        return dict(ProvidersManagerTaskRuntime().hooks)
    except ImportError:  # 3.0, 3.1
        from airflow.providers_manager import ProvidersManager

        return dict(ProvidersManager().hooks)


def serialize_rendered_fields(task: Any) -> Any:
    """The rendered template fields exactly as the task runner stores them (same in 3.0–3.3).

    There is no public API for this; the task runner's own function is the only faithful one.
    """
    from airflow.sdk.execution_time.task_runner import _serialize_rendered_fields

    rendered = _serialize_rendered_fields(task)
    if airflow_release() < (3, 1):
        # 3.0's task runner sends them unredacted; the API server redacts each field as it stores
        # it (RenderedTaskInstanceFields._redact: redact(value, field_name)). The e2e leak scan
        # checks what a real 3.0 stack stored.
        rendered = {name: redact(value, name) for name, value in rendered.items()}
    return rendered
