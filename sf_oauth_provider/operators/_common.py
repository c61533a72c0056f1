"""How the revocation and audit operators run many Salesforce calls: bounded concurrency with
progress, and client errors turned into Airflow outcomes (no Airflow task logic here).

The operator modules, which DAG files import, read this module as ``operators._common`` when a
task runs. Reading the ``OauthToken`` inventory is :mod:`.inventory`; redacting text from
Salesforce is :func:`sf_oauth_provider.masking.redact_secrets`; parameter parsing, which runs
when a DAG file is parsed, is :mod:`._params`.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Sequence, TypeVar

from sf_oauth_provider._compat import AirflowFailException
from sf_oauth_provider.client.errors import retry_may_help
from sf_oauth_provider.masking import mask_secrets

if TYPE_CHECKING:
    import logging

    from airflow.sdk import Context

    from sf_oauth_provider.client.errors import SalesforceOAuthError

__all__ = ["Progress", "bounded_map", "fail_if_permanent", "mask_secrets", "push_return_value"]

T = TypeVar("T")
R = TypeVar("R")


# ---- running many calls ----------------------------------------------------------------------
class Progress:
    """Logs ``"<verb> 2,000/5,000 tokens"`` about every 10 % of ``total``."""

    def __init__(self, log: logging.Logger | Any, total: int, verb: str) -> None:
        self.log = log
        self.total = total
        self.verb = verb
        self.done = 0
        self.step = max(1, math.ceil(total / 10))

    def tick(self) -> None:
        self.done += 1
        if self.done % self.step == 0 or self.done == self.total:
            self.log.info("%s %s/%s tokens", self.verb, f"{self.done:,}", f"{self.total:,}")


async def bounded_map(
    items: Sequence[T], call: Callable[[T], Awaitable[R]], concurrency: int, progress: Progress | None = None
) -> list[R]:
    """``call`` on every item, at most ``concurrency`` at a time; results in input order.

    ``call`` should turn expected failures into results: an exception it raises stops the batch.
    """
    semaphore = asyncio.Semaphore(max(1, concurrency))

    async def one(item: T) -> R:
        async with semaphore:
            result = await call(item)
        if progress is not None:
            progress.tick()
        return result

    return list(await asyncio.gather(*(one(item) for item in items)))


def fail_if_permanent(exc: SalesforceOAuthError, what: str) -> None:
    """Raise ``AirflowFailException`` (no Airflow retries) for a permanent error; return for a
    transient one so the caller re-raises it and Airflow retries.

    :param what: what was attempted, e.g. ``"Reading the OauthToken inventory"``
    """
    if not retry_may_help(exc):
        raise AirflowFailException(f"{what} failed: {exc}") from exc


def push_return_value(context: Context | dict[str, Any], value: Any) -> None:
    """Push ``value`` as the task's return value before the task fails (Airflow only pushes the
    return value of a task that succeeds)."""
    ti = context.get("ti") if hasattr(context, "get") else None
    if ti is not None:
        ti.xcom_push(key="return_value", value=value)
