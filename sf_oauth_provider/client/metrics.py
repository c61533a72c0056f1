"""Metrics of the token client: a tiny sink protocol and the names it emits.

The client is framework-free, so it does not know Airflow's ``Stats``: a :class:`TokenProvider`
takes a :class:`MetricsSink` (default :data:`NO_METRICS`, which drops everything) and the Airflow
hook passes an adapter onto ``Stats``. Every name starts with ``sf_oauth.``; the dimensions are
sent twice, as dotted suffixes (plain StatsD has no tags) **and** as tags (for backends that
have them: OpenTelemetry, DogStatsD, StatsD with InfluxDB tags)::

    sf_oauth.token_request.<flow>.<outcome>     counter  tags flow, outcome
    sf_oauth.cache_hit.<layer>                  counter  tag layer (memory, file, redis)
    sf_oauth.cache_miss                         counter
    sf_oauth.lock_wait                          timer    tag layer (whose lock was waited for)
    sf_oauth.refresh_rotated                    counter
    sf_oauth.permanent_error.<code>             counter  tag code (Salesforce's error code)
    sf_oauth.logins_last_hour.<conn_id>         gauge    tag conn_id

``outcome`` is ``ok``, ``transient_error``, ``permanent_error`` or ``budget_refused`` (the login
budget refused it before anything was sent). A suffix is cut to the characters every backend
accepts (letters, digits, ``_`` and ``-``; anything else becomes ``_``).
"""

from __future__ import annotations

import logging
import re
from typing import Mapping, Protocol

__all__ = ["MetricsSink", "NoMetrics", "NO_METRICS", "PREFIX", "metric_part", "Metrics"]

PREFIX = "sf_oauth."
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_log = logging.getLogger(__name__)


class MetricsSink(Protocol):
    """Where metrics go (e.g. an adapter onto Airflow's ``Stats``, a StatsD client)."""

    def incr(self, name: str, count: int = 1, tags: Mapping[str, str] | None = None) -> None:
        """Add ``count`` to the counter ``name``."""

    def timing(self, name: str, seconds: float, tags: Mapping[str, str] | None = None) -> None:
        """Record a duration of ``seconds`` under ``name``."""

    def gauge(self, name: str, value: float, tags: Mapping[str, str] | None = None) -> None:
        """Set the gauge ``name`` to ``value``."""


class NoMetrics:
    """The default sink: drops everything."""

    def incr(self, name: str, count: int = 1, tags: Mapping[str, str] | None = None) -> None:
        return None

    def timing(self, name: str, seconds: float, tags: Mapping[str, str] | None = None) -> None:
        return None

    def gauge(self, name: str, value: float, tags: Mapping[str, str] | None = None) -> None:
        return None


NO_METRICS = NoMetrics()


def metric_part(value: object) -> str:
    """``value`` as one dotted-name segment every backend accepts (at most 64 characters)."""
    text = _UNSAFE.sub("_", str(value if value is not None else "unknown"))[:64]
    return text or "unknown"


class Metrics:
    """The client's metrics, by meaning, onto a :class:`MetricsSink`.

    A failing sink never fails a token request: its error is logged once at debug level.

    :param sink: where they go
    """

    def __init__(self, sink: MetricsSink | None = None) -> None:
        self.sink: MetricsSink = sink if sink is not None else NO_METRICS
        self._failed = False

    @property
    def enabled(self) -> bool:
        return self.sink is not NO_METRICS

    def _send(self, kind: str, name: str, value: float, tags: dict[str, str]) -> None:
        try:
            if kind == "incr":
                self.sink.incr(name, int(value), tags)
            elif kind == "timing":
                self.sink.timing(name, value, tags)
            else:
                self.sink.gauge(name, value, tags)
        except Exception as exc:  # noqa: BLE001 - metrics never fail a task
            if not self._failed:
                self._failed = True
                _log.debug("Metrics sink %r failed (%s); metrics may be missing", self.sink, type(exc).__name__)

    def token_request(self, flow: str, outcome: str) -> None:
        flow, outcome = metric_part(flow), metric_part(outcome)
        self._send("incr", f"{PREFIX}token_request.{flow}.{outcome}", 1, {"flow": flow, "outcome": outcome})

    def cache_hit(self, layer: str) -> None:
        layer = metric_part(layer)
        self._send("incr", f"{PREFIX}cache_hit.{layer}", 1, {"layer": layer})

    def cache_miss(self) -> None:
        self._send("incr", f"{PREFIX}cache_miss", 1, {})

    def lock_wait(self, layer: str, seconds: float) -> None:
        self._send("timing", f"{PREFIX}lock_wait", max(seconds, 0.0), {"layer": metric_part(layer)})

    def refresh_rotated(self) -> None:
        self._send("incr", f"{PREFIX}refresh_rotated", 1, {})

    def permanent_error(self, code: str | None) -> None:
        code = metric_part(code or "unknown")
        self._send("incr", f"{PREFIX}permanent_error.{code}", 1, {"code": code})

    def logins_last_hour(self, conn_id: str, count: int) -> None:
        conn = metric_part(conn_id)
        self._send("gauge", f"{PREFIX}logins_last_hour.{conn}", int(count), {"conn_id": conn})
