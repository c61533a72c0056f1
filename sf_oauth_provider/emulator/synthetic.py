"""The synthetic large object: ``n`` extra rows of an object, made on demand, never stored.

``--synthetic Opportunity=1000000`` (CLI) or ``POST /__emulator/synthetic {"object":
"Opportunity", "rows": n}`` (admin API) adds ``n`` Opportunities after the seeded ones. Row ``i``
is a pure function of the org seed, ``i``, the seeded Accounts and the moment the object was
configured (its audit dates lie in the year before that moment), so the emulator's memory does
not grow with ``n``: queries walk the rows through :class:`SyntheticRows`, a sequence whose items
are computed when read.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, overload

__all__ = ["SUPPORTED", "SyntheticObjects", "SyntheticRows", "synthetic_id"]

SUPPORTED = ("Opportunity",)
_MASK = (1 << 64) - 1
_STAGES = (
    "Prospecting", "Qualification", "Needs Analysis", "Value Proposition", "Proposal/Price Quote",
    "Negotiation/Review", "Closed Won", "Closed Lost",
)
_YEAR_MS = 365 * 86400 * 1000
_UTC = dt.timezone.utc


def _mix(x: int) -> int:
    """splitmix64: a well-spread 64-bit hash of ``x``."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def synthetic_id(prefix: str, i: int) -> str:
    """The 18-character id of synthetic row ``i``: ``006SY`` and ``i`` in ten digits (never a
    seeded id). The case-checksum suffix depends only on the letters, so it is computed once."""
    return f"{prefix}SY{i:010d}{_suffix(prefix)}"


@lru_cache(maxsize=8)
def _suffix(prefix: str) -> str:
    from .state import sf_id18  # state imports this module

    return sf_id18(f"{prefix}SY{0:010d}")[15:]


@dataclass(frozen=True)
class _Spec:
    rows: int
    anchor: float  # org time when configured: the audit dates lie in the year before it


class SyntheticRows(Sequence[dict[str, Any]]):
    """The seeded rows followed by ``n`` synthetic Opportunity rows made on demand.

    :param seeded: the seeded rows (copied by the caller)
    :param n: how many synthetic rows follow them
    :param seed: the org seed
    :param account_ids: the seeded Accounts' ids (the synthetic rows' parents)
    :param anchor: org time the object was configured
    """

    def __init__(
        self, seeded: list[dict[str, Any]], n: int, seed: int, account_ids: list[str], anchor: float
    ) -> None:
        self.seeded = seeded
        self.n = n
        self.key = _mix(seed * 7919 + 17)
        self.account_ids = account_ids
        self.anchor_ms = int(anchor * 1000)
        self.today = dt.datetime.fromtimestamp(anchor, _UTC).date()

    def __len__(self) -> int:
        return len(self.seeded) + self.n

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        if index < len(self.seeded):
            return self.seeded[index]
        return self.row(index - len(self.seeded))

    def by_id(self, record_id: str) -> dict[str, Any] | None:
        """The row with this 15- or 18-character id, found without a scan for a synthetic one."""
        id15 = record_id[:15]
        if id15.startswith("006SY") and id15[5:].isdigit():
            i = int(id15[5:])
            return self.row(i) if i < self.n and synthetic_id("006", i)[:15] == id15 else None
        return next((r for r in self.seeded if r.get("Id") and r["Id"][:15] == id15), None)

    def row(self, i: int) -> dict[str, Any]:
        """Synthetic row ``i`` (0-based), a pure function of the constructor's arguments and ``i``."""
        h = _mix(self.key ^ i)
        h2 = _mix(h)
        stage = _STAGES[h % len(_STAGES)]
        account = self.account_ids[(h >> 8) % len(self.account_ids)] if self.account_ids else None
        created_ms = self.anchor_ms - 3_600_000 - (h2 % _YEAR_MS)
        span = max(0, self.anchor_ms - 600_000 - created_ms)
        modified_ms = created_ms + (h2 >> 32) * span // (1 << 32) if (h2 >> 30) & 3 else created_ms
        closed = stage.startswith("Closed")
        close_days = ((h >> 20) % 365) - 364 if closed else ((h >> 20) % 180) + 1
        return {
            "Id": synthetic_id("006", i),
            "Name": f"Synthetic Deal {i + 1:07d}",
            "AccountId": account,
            "Amount": float(((h >> 32) % 100_000) * 50) + ((h >> 50) % 100) / 100,
            "StageName": stage,
            "CloseDate": self.today + dt.timedelta(days=close_days),
            "IsWon": stage == "Closed Won",
            "IsClosed": closed,
            "CreatedDate": dt.datetime.fromtimestamp(created_ms / 1000, _UTC),
            "LastModifiedDate": dt.datetime.fromtimestamp(modified_ms / 1000, _UTC),
            "SystemModstamp": dt.datetime.fromtimestamp(modified_ms / 1000, _UTC),
        }


class SyntheticObjects:
    """Which objects have synthetic rows, how many, and since when; :meth:`reset` returns to
    what the command line configured."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._initial: dict[str, _Spec] = {}
        self._specs: dict[str, _Spec] = {}

    def configure(self, obj: str, rows: int, now: float, initial: bool = False) -> None:
        """Serve ``rows`` synthetic rows of ``obj`` (0 removes them); ``initial``: also after a reset."""
        name = next((s for s in SUPPORTED if s.lower() == obj.lower()), None)
        if name is None:
            raise ValueError(f"no synthetic rows for {obj!r}; supported: {', '.join(SUPPORTED)}")
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
            raise ValueError("rows is a whole number >= 0")
        with self._lock:
            targets = (self._specs, self._initial) if initial else (self._specs,)
            for specs in targets:
                if rows:
                    specs[name] = _Spec(rows, now)
                else:
                    specs.pop(name, None)

    def reset(self) -> None:
        """Back to the command line's configuration."""
        with self._lock:
            self._specs = dict(self._initial)

    def summary(self) -> dict[str, int]:
        """``{object: rows}``."""
        with self._lock:
            return {k: v.rows for k, v in self._specs.items()}

    def rows(
        self, obj: str, seeded: list[dict[str, Any]], seed: int, account_ids: list[str]
    ) -> Sequence[dict[str, Any]]:
        """``seeded``, followed by the synthetic rows of ``obj`` if it has any."""
        with self._lock:
            spec = self._specs.get(obj)
        if spec is None:
            return seeded
        return SyntheticRows(seeded, spec.rows, seed, account_ids, spec.anchor)
