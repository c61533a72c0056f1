"""How the commands print: tables for people (``tabulate``, which Airflow installs), JSON for scripts."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import Any, Sequence

__all__ = ["iso", "table", "print_json", "use_utf8"]


def use_utf8() -> None:
    """Never crash on ✓/✗ when the terminal's encoding cannot show them."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def iso(epoch: float | None) -> str | None:
    """``2026-12-05T18:00:00Z`` (None stays None)."""
    if not epoch:
        return None
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """A plain-text table of ``rows`` with ``columns`` = ``(key, header)`` pairs."""
    from tabulate import tabulate

    body = [["" if row.get(key) is None else row.get(key) for key, _ in columns] for row in rows]
    return tabulate(body, headers=[header for _, header in columns], tablefmt="simple", disable_numparse=True)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=False, default=str))
