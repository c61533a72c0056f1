"""How the commands print: tables for people (``tabulate``, which Airflow installs), JSON for scripts."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import Any, Sequence

__all__ = ["iso", "table", "print_json", "use_utf8", "terminal_width"]


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


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], *, wrap_last: int | None = None) -> str:
    """A plain-text table of ``rows`` with ``columns`` = ``(key, header)`` pairs.

    :param wrap_last: the width of the whole table the terminal allows: the last column's text is
        wrapped to fit it (None: never wrapped)
    """
    from tabulate import tabulate

    body = [["" if row.get(key) is None else row.get(key) for key, _ in columns] for row in rows]
    widths: list[int | None] | None = None
    if wrap_last is not None and body:
        grid: list[list[Any]] = [[header for _, header in columns], *body]
        used = sum(max(len(str(row[i])) for row in grid) + 2 for i in range(len(columns) - 1))
        widths = [None] * (len(columns) - 1) + [max(60, wrap_last - used)]
    return tabulate(body, headers=[header for _, header in columns], tablefmt="simple", disable_numparse=True,
                    maxcolwidths=widths)


def terminal_width() -> int:
    """Columns of the terminal (``$COLUMNS``; 120 when not a terminal)."""
    import shutil

    return shutil.get_terminal_size((120, 24)).columns


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=False, default=str))
