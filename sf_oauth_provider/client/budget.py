"""The login budget: token requests per (org, user) per rolling hour, refused before Salesforce's limit.

Salesforce allows 3,600 logins per user per rolling hour; past that it answers
``LOGIN_RATE_EXCEEDED`` to *every* integration of that user until the hour has rolled on. So each
token request is counted before it is sent, in the widest store the connection uses — process
memory (cache ``memory`` / ``none``), a small file under the cache directory with an flock (every
process on the host: cache ``file``), or a Redis sorted set (every host: cache ``redis`` / ``auto``
with a Redis URL; a failing Redis falls back to the host's file). At ``warn`` × 3,600 (default
0.8: 2,880) each further login logs a warning; at ``cap`` (default 3,000; 0: never refuse) the
request is refused with :class:`~sf_oauth_provider.client.errors.SalesforceLoginBudgetExceeded`,
which says when the budget frees up. Every attempt counts, refused or failed by Salesforce too:
Salesforce counts failed logins as well.

Whose budget (:func:`budget_key`), hashed so no name reaches a file name or a Redis key:

* ``jwt_bearer``: the token host and the JWT subject (the user) — every connection and app of
  that user shares it, as Salesforce's limit does;
* ``client_credentials``: the token host and the consumer key (the run-as user is set in the
  app, not visible to the client);
* ``refresh_token``: the connection: the token host and the configured refresh token (hashed).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Protocol

from sf_oauth_provider.client.errors import SalesforceConfigError, SalesforceLoginBudgetExceeded
from sf_oauth_provider.client.stores.locks import acquire_flock, release_flock
from sf_oauth_provider.client.stores.safefs import Rejected, read_private_file, warn_once, write_private_file

if TYPE_CHECKING:
    from sf_oauth_provider.client.config import OAuthConfig
    from sf_oauth_provider.client.metrics import Metrics

__all__ = [
    "SALESFORCE_LOGINS_PER_HOUR", "WINDOW", "BudgetSettings", "Admission", "BudgetLedger", "MemoryLedger",
    "FileLedger", "LoginBudget", "budget_key", "CAP_ENV", "WARN_ENV",
]

#: Salesforce's limit: logins per user per rolling hour
SALESFORCE_LOGINS_PER_HOUR = 3600
#: the rolling window, seconds
WINDOW = 3600.0
#: environment variables read outside Airflow (Airflow reads ``[sf_oauth] login_budget_cap/_warn``)
CAP_ENV = "SF_OAUTH_LOGIN_BUDGET_CAP"
WARN_ENV = "SF_OAUTH_LOGIN_BUDGET_WARN"
_MAX_FILE_BYTES = 1 << 20
_log = logging.getLogger("sf_oauth_provider.client.budget")


@dataclass(frozen=True)
class BudgetSettings:
    """:param cap: logins per rolling hour after which requests are refused (0: never)
    :param warn: fraction of Salesforce's 3,600 from which each login logs a warning (0: never)
    """

    cap: int = 3000
    warn: float = 0.8

    @property
    def warn_at(self) -> int | None:
        """The count from which a login warns (None: never)."""
        return max(int(self.warn * SALESFORCE_LOGINS_PER_HOUR + 0.5), 1) if self.warn > 0 else None

    @classmethod
    def parse(cls, cap: object, warn: object, *, cap_name: str = "[sf_oauth] login_budget_cap",
              warn_name: str = "[sf_oauth] login_budget_warn") -> BudgetSettings:
        """Settings from text (config or environment); None or empty: the default.

        :raises SalesforceConfigError: a value that is not a number in range, naming the setting
        """
        defaults = cls()
        try:
            cap_value = defaults.cap if cap is None or str(cap).strip() == "" else int(str(cap).strip())
        except ValueError:
            cap_value = -1
        if cap_value < 0:
            raise SalesforceConfigError(f"{cap_name} must be a whole number of logins per hour (0: no cap); "
                                        f"got {cap!r}", field=cap_name, hint=f"set {cap_name} to e.g. 3000")
        try:
            warn_value = defaults.warn if warn is None or str(warn).strip() == "" else float(str(warn).strip())
        except ValueError:
            warn_value = -1.0
        if not 0.0 <= warn_value <= 1.0:
            raise SalesforceConfigError(f"{warn_name} must be a fraction of Salesforce's 3,600 logins per hour "
                                        f"between 0 and 1 (0: no warning); got {warn!r}", field=warn_name,
                                        hint=f"set {warn_name} to e.g. 0.8")
        return cls(cap=cap_value, warn=warn_value)

    @classmethod
    def from_env(cls) -> BudgetSettings:
        """``$SF_OAUTH_LOGIN_BUDGET_CAP`` / ``$SF_OAUTH_LOGIN_BUDGET_WARN`` (outside Airflow)."""
        return cls.parse(os.environ.get(CAP_ENV), os.environ.get(WARN_ENV), cap_name=CAP_ENV, warn_name=WARN_ENV)


@dataclass(frozen=True)
class Admission:
    """A ledger's answer.

    :param admitted: the login was counted and may be sent
    :param count: logins counted in the window (this one included when admitted)
    :param oldest: when the oldest counted login happened (epoch seconds; None: none counted)
    """

    admitted: bool
    count: int
    oldest: float | None


class BudgetLedger(Protocol):
    """Counts logins per budget key in a rolling window, atomically for everyone sharing it."""

    name: str

    def admit(self, key: str, now: float, cap: int) -> Admission:
        """Drop logins older than the window; unless ``cap`` (> 0) are counted, count one at ``now``."""

    async def aadmit(self, key: str, now: float, cap: int) -> Admission:
        """:meth:`admit` without blocking the event loop."""

    def count(self, key: str, now: float) -> Admission:
        """The logins counted in the window, counting none (``admitted`` is False)."""


def _admitted(times: list[float], now: float, cap: int) -> tuple[list[float], Admission]:
    kept = sorted(t for t in times if t > now - WINDOW)
    if cap > 0 and len(kept) >= cap:
        return kept, Admission(False, len(kept), kept[0] if kept else None)
    kept.append(now)
    kept.sort()
    return kept, Admission(True, len(kept), kept[0])


class MemoryLedger:
    """This process only (cache ``memory`` or ``none``)."""

    name = "memory"
    _TIMES: dict[str, list[float]] = {}
    _GUARD = threading.Lock()

    def admit(self, key: str, now: float, cap: int) -> Admission:
        with self._GUARD:
            kept, answer = _admitted(self._TIMES.get(key, []), now, cap)
            self._TIMES[key] = kept
            return answer

    async def aadmit(self, key: str, now: float, cap: int) -> Admission:
        return self.admit(key, now, cap)  # no I/O

    def count(self, key: str, now: float) -> Admission:
        with self._GUARD:
            kept = [t for t in self._TIMES.get(key, []) if t > now - WINDOW]
            return Admission(False, len(kept), min(kept) if kept else None)


class FileLedger:
    """Every process of this user on the host: ``<cache dir>/<key>.logins`` (a JSON list of
    times, 0600, replaced atomically) under an flock on ``<key>.logins.lock``.

    A file that cannot be read, locked or written is reported once and the process's memory
    counts instead: the budget never fails a task on its own.

    :param directory: the token cache's (already checked) directory
    :param lock_timeout: seconds to wait for another process's update
    """

    name = "file"

    def __init__(self, directory: Path, *, lock_timeout: float = 10.0, logger: logging.Logger | None = None) -> None:
        self.directory = directory
        self._lock_timeout = lock_timeout
        self._log = logger or _log
        self._fallback = MemoryLedger()

    def __repr__(self) -> str:
        return f"FileLedger({str(self.directory)!r})"

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[bool]:
        fd, reason = acquire_flock(self.directory / f"{key}.logins.lock", self._lock_timeout)
        if fd is None:
            self._unusable("lock", reason or "unknown")
        try:
            yield fd is not None
        finally:
            if fd is not None:
                release_flock(fd)

    def _unusable(self, doing: str, reason: str) -> None:
        warn_once(self._log, ("login budget file", str(self.directory), doing),
                  "Login budget: cannot %s the login count in %s (%s); counting this process's logins only",
                  doing, self.directory, reason)

    def _read(self, key: str) -> list[float] | None:
        path = self.directory / f"{key}.logins"
        try:
            raw = read_private_file(path, _MAX_FILE_BYTES, "login budget file")
        except (Rejected, OSError) as exc:
            self._unusable("read", exc.message if isinstance(exc, Rejected) else exc.strerror or type(exc).__name__)
            return None
        if raw is None:
            return []
        try:
            times = json.loads(raw)
            return [float(t) for t in times if isinstance(t, (int, float))] if isinstance(times, list) else []
        except ValueError:  # a torn or foreign file: started afresh
            return []

    def admit(self, key: str, now: float, cap: int) -> Admission:
        with self._locked(key) as held:
            times = self._read(key) if held else None
            if times is None:
                return self._fallback.admit(key, now, cap)
            kept, answer = _admitted(times, now, cap)
            if answer.admitted:
                try:
                    write_private_file(self.directory, f"{key}.logins", json.dumps(kept).encode())
                except OSError as exc:
                    self._unusable("write", exc.strerror or type(exc).__name__)
            return answer

    async def aadmit(self, key: str, now: float, cap: int) -> Admission:
        return await asyncio.to_thread(self.admit, key, now, cap)

    def count(self, key: str, now: float) -> Admission:
        times = self._read(key)
        if times is None:
            return self._fallback.count(key, now)
        kept = [t for t in times if t > now - WINDOW]
        return Admission(False, len(kept), min(kept) if kept else None)


def budget_key(config: OAuthConfig) -> str:
    """Whose logins a connection's token requests count against (see the module docstring)."""
    host = config.host.lower().rstrip("/")
    if config.auth_flow == "jwt_bearer":
        who = ("user", (config.username or "").lower())
    elif config.auth_flow == "client_credentials":
        who = ("app", config.consumer_key)
    else:  # refresh_token and any flow added later: the connection's own subject
        who = (config.auth_flow, config.subject)
    raw = "\x1f".join(("login budget", host, *who))
    return "lb-" + hashlib.sha256(raw.encode("utf-8")).hexdigest()[:32]


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="seconds")


class LoginBudget:
    """One connection's login budget.

    :param ledger: where logins are counted
    :param settings: cap and warning threshold
    :param key: whose budget (:func:`budget_key`)
    :param conn_id: the connection, for messages and the gauge
    :param clock: epoch seconds now (tests move it instead of waiting an hour)
    :param logger: where the warning goes
    :param metrics: gets ``logins_last_hour`` after each count
    """

    def __init__(self, ledger: BudgetLedger, settings: BudgetSettings, *, key: str, conn_id: str,
                 clock: Callable[[], float] = time.time, logger: logging.Logger | None = None,
                 metrics: Metrics | None = None) -> None:
        self.ledger = ledger
        self.settings = settings
        self.key = key
        self.conn_id = conn_id
        self._clock = clock
        self._log = logger or _log
        self._metrics = metrics

    def __repr__(self) -> str:
        return f"LoginBudget(conn_id={self.conn_id!r}, ledger={self.ledger!r}, cap={self.settings.cap})"

    def used(self) -> Admission:
        """The logins counted in the last hour (nothing counted)."""
        return self.ledger.count(self.key, self._clock())

    def admit(self) -> int:
        """Count one login, or refuse it before anything is sent.

        :returns: the logins counted in the last hour, this one included
        :raises SalesforceLoginBudgetExceeded: ``cap`` logins are already counted
        """
        now = self._clock()
        answer = self.ledger.admit(self.key, now, self.settings.cap)
        return self._judge(answer)

    async def aadmit(self) -> int:
        """:meth:`admit` without blocking the event loop (files in a thread, Redis on redis.asyncio)."""
        answer = await self.ledger.aadmit(self.key, self._clock(), self.settings.cap)
        return self._judge(answer)

    def _judge(self, answer: Admission) -> int:
        if self._metrics is not None:
            self._metrics.logins_last_hour(self.conn_id, answer.count)
        if not answer.admitted:
            raise self._refusal(answer)
        warn_at = self.settings.warn_at
        if warn_at is not None and answer.count >= warn_at:
            self._log.warning(
                "Login budget: connection %r made %d token requests for its Salesforce user in the last hour "
                "(warning from %d, %g%% of Salesforce's %d; refused from %s, [sf_oauth] login_budget_cap): "
                "find what requests tokens so often (a cache mode of 'none', a task that forces refreshes)",
                self.conn_id, answer.count, warn_at, self.settings.warn * 100, SALESFORCE_LOGINS_PER_HOUR,
                self.settings.cap or "never",
            )
        return answer.count

    def _refusal(self, answer: Admission) -> SalesforceLoginBudgetExceeded:
        frees = (answer.oldest or self._clock()) + WINDOW
        return SalesforceLoginBudgetExceeded(
            f"login budget used up: {answer.count} token requests for this Salesforce user in the last hour, "
            f"and the cap is {self.settings.cap} (Salesforce refuses every login of the user past "
            f"{SALESFORCE_LOGINS_PER_HOUR} an hour with LOGIN_RATE_EXCEEDED, for all its integrations). "
            f"No request was sent. The budget frees up at {_iso(frees)}, when the oldest counted login "
            "leaves the hour",
            hint="find what requests tokens so often (a connection with cache 'none', tasks forcing refreshes), "
            "or raise Airflow config [sf_oauth] login_budget_cap (env AIRFLOW__SF_OAUTH__LOGIN_BUDGET_CAP; "
            f"{CAP_ENV} outside Airflow; 0 turns the cap off)",
            conn_id=self.conn_id, count=answer.count, cap=self.settings.cap, frees_up_at=frees,
        )
