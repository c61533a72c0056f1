"""SalesforceTokenTrigger: wait in the triggerer until a connection's token is alive and lives
long enough. The check itself lives in :mod:`sf_oauth_provider.token_check`, shared with the sensor.

Besides ``airflow.triggers.base``, this module loads only what defining the trigger needs; the
hook, the client and the check's flow load when the trigger first runs, read through their packages.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, AsyncIterator

from airflow.triggers.base import BaseTrigger, TriggerEvent

from sf_oauth_provider import client as core
from sf_oauth_provider import hooks, token_check
from sf_oauth_provider.client.errors import SalesforceOAuthError, retry_may_help

if TYPE_CHECKING:
    from sf_oauth_provider.client.token import SalesforceToken
    from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook
    from sf_oauth_provider.token_check import Liveness, Step, TokenCheckOutcome

__all__ = ["SalesforceTokenTrigger"]


class SalesforceTokenTrigger(BaseTrigger):
    """Wait, with async I/O only, until the connection's token is alive and lives long enough.

    Yields exactly one event: ``{"status": "success", "message": ..., <payload>}`` with the
    non-secret payload of :func:`judge`, or ``{"status": "error", "message": ..., "error": ...,
    "hint": ...}`` at once on a permanent error. Transient errors and short-lived tokens are
    checked again after ``poke_interval`` seconds, until the deferral's timeout ends the wait.

    :param salesforce_oauth_conn_id: the connection id
    :param min_remaining_seconds: seconds the token must still have
    :param check: ``auto``, ``introspect`` or ``userinfo``
    :param poke_interval: seconds between checks
    :param retry_attempts: tries per request for a transient error (default: the hook's)
    :param retry_backoff: first backoff in seconds between those tries (default: the hook's)
    :param end_at: epoch seconds after which the wait ends with a ``{"status": "timeout"}`` event
        that carries the last error and its hint (the sensor's timeout); ``None``: no end of its own
    """

    def __init__(
        self,
        salesforce_oauth_conn_id: str = "salesforce_oauth_default",
        min_remaining_seconds: float = 600.0,
        check: str = "auto",
        poke_interval: float = 60.0,
        retry_attempts: int | None = None,
        retry_backoff: float | None = None,
        end_at: float | None = None,
    ) -> None:
        super().__init__()
        self.salesforce_oauth_conn_id = salesforce_oauth_conn_id
        self.min_remaining_seconds = float(min_remaining_seconds)
        self.check = token_check.validate_check(check, type(self).__name__)
        self.poke_interval = float(poke_interval)
        self.retry_attempts = retry_attempts
        self.retry_backoff = retry_backoff
        self.end_at = None if end_at is None else float(end_at)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and plain kwargs (no secrets: the triggerer reads the connection itself)."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "salesforce_oauth_conn_id": self.salesforce_oauth_conn_id,
                "min_remaining_seconds": self.min_remaining_seconds,
                "check": self.check,
                "poke_interval": self.poke_interval,
                "retry_attempts": self.retry_attempts,
                "retry_backoff": self.retry_backoff,
                "end_at": self.end_at,
            },
        )

    def _hook(self) -> SalesforceOAuthHook:
        retry = core.oauth.RetryPolicy.from_numbers(self.retry_attempts, self.retry_backoff)
        return hooks.SalesforceOAuthHook(self.salesforce_oauth_conn_id, retry=retry)

    async def check_once(self, hook: SalesforceOAuthHook) -> TokenCheckOutcome:
        """One check with async I/O (raises the client's errors).

        :param hook: the hook to use
        """
        config = await hook.aconfig()
        check = token_check.resolve_check(self.check, bool(config.consumer_secret))

        async def perform(step: Step) -> SalesforceToken | Liveness:
            if isinstance(step, token_check.GetToken):
                return await hook.aget_token(force_refresh=step.force_refresh)
            if step.check == "introspect":
                return token_check.Liveness.from_introspection(await hook.aintrospect(step.token.access_token))
            return token_check.Liveness.from_userinfo(await hook.auserinfo(access_token=step.token.access_token))

        return await token_check.arun_flow(token_check.token_check_flow(check, self.min_remaining_seconds), perform)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Check, sleep ``poke_interval``, repeat; one event on success, permanent error or ``end_at``."""
        hook = self._hook()
        async with hook.reusing_connections():  # one HTTP pool for every check of this trigger
            async for event in self._checks(hook):
                yield event
                return

    async def _checks(self, hook: SalesforceOAuthHook) -> AsyncIterator[TriggerEvent]:
        last: str = "no check finished"
        while True:
            try:
                outcome = await self.check_once(hook)
            except SalesforceOAuthError as exc:
                if not retry_may_help(exc):
                    yield TriggerEvent(
                        {"status": "error", "message": str(exc), "error": exc.error, "hint": exc.hint}
                    )
                    return
                last = f"last check of connection {self.salesforce_oauth_conn_id!r} failed: {exc}"
                self.log.warning(
                    "Salesforce token check for connection %r failed transiently: %s; checking again in %g s",
                    self.salesforce_oauth_conn_id, exc.message, self.poke_interval,
                )
            else:
                if outcome.done:
                    self.log.info("%s", outcome.message)
                    yield TriggerEvent({"status": "success", "message": outcome.message, **outcome.payload})
                    return
                last = f"last check: {outcome.message}"
                self.log.info("%s; checking again in %g s", outcome.message, self.poke_interval)
            pause = self.poke_interval
            if self.end_at is not None:
                left = self.end_at - time.time()
                if left <= 0:
                    yield TriggerEvent({"status": "timeout", "message": last})
                    return
                pause = min(pause, left)
            await asyncio.sleep(pause)
