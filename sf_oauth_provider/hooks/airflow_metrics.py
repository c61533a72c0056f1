"""The client's metrics onto Airflow's ``Stats``: whatever the deployment configured in ``[metrics]``.

``Stats`` is StatsD (``statsd_on``; the ``statsd`` package of ``apache-airflow[statsd]``),
OpenTelemetry (``otel_on``) or nothing. Names arrive with Airflow's prefix (``[metrics]
statsd_prefix`` / ``otel_prefix``, default ``airflow``): ``airflow.sf_oauth.cache_miss``. Tags reach
OpenTelemetry as attributes, StatsD only with ``statsd_influxdb_enabled`` (``name,tag=value``) or
Datadog; plain StatsD drops them, which is why every dimension is also a dotted suffix of the
name (:mod:`sf_oauth_provider.client.metrics`). Durations go as ``timedelta``: StatsD then sends
milliseconds, OpenTelemetry records milliseconds.

Metrics from api-server code (a plugin page) are dropped by Airflow 3.2.2 (apache/airflow#68077):
the hook emits them from tasks, triggers and the CLI.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Mapping

from sf_oauth_provider._compat import stats

__all__ = ["AirflowStatsSink"]


def _tags(tags: Mapping[str, str] | None) -> dict[str, Any] | None:
    return dict(tags) if tags else None


class AirflowStatsSink:
    """A :class:`~sf_oauth_provider.client.metrics.MetricsSink` onto Airflow's ``Stats``."""

    def __repr__(self) -> str:
        return "AirflowStatsSink()"

    def incr(self, name: str, count: int = 1, tags: Mapping[str, str] | None = None) -> None:
        stats().incr(name, count, tags=_tags(tags))

    def timing(self, name: str, seconds: float, tags: Mapping[str, str] | None = None) -> None:
        stats().timing(name, timedelta(seconds=seconds), tags=_tags(tags))

    def gauge(self, name: str, value: float, tags: Mapping[str, str] | None = None) -> None:
        stats().gauge(name, value, tags=_tags(tags))
