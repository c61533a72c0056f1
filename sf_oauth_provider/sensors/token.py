"""SalesforceTokenSensor: wait until a connection's token is alive and lives long enough.

DAG files import this module: the hook, the client, the check's flow and the trigger (which pulls
in Airflow's ``airflow.triggers.base``) load when a check first runs, read through their packages.
"""

from __future__ import annotations

import time
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn, Sequence

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from sf_oauth_provider import client as core
from sf_oauth_provider import hooks, token_check, triggers
from sf_oauth_provider._compat import AirflowFailException, AirflowSensorTimeout, AirflowSkipException, conf
from sf_oauth_provider.client.errors import SalesforceOAuthError, retry_may_help

if TYPE_CHECKING:
    from airflow.sdk import Context

    from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook
    from sf_oauth_provider.token_check import Step, TokenCheckOutcome

__all__ = ["SalesforceTokenSensor"]



class SalesforceTokenSensor(BaseSensorOperator):
    """Succeed once the connection's access token is alive at Salesforce with time to spare.

    Each check gets the token (cached, or fetched once for the host), confirms it at Salesforce
    and, when it is dead or has less than ``min_remaining`` left, refreshes it and confirms the new
    one. On success the XCom value describes the token (fingerprint, instance URL, expiry, seconds
    left, user, scope, check used) — never the token itself.

    Transient errors (outage, request throttling, timeout) make the check come back "not yet";
    permanent ones (bad key, unknown client, user not approved, the user's hourly login limit used
    up, a mistyped connection id, ...) fail the task at once with Salesforce's message and a hint,
    without Airflow retries.

    :param salesforce_oauth_conn_id: the ``salesforce_oauth`` connection id
    :param min_remaining: time the token must still have (``timedelta`` or seconds)
    :param check: ``introspect`` (needs the consumer secret), ``userinfo``, or ``auto``:
        introspect when the connection has a consumer secret, else userinfo
    :param deferrable: wait in the triggerer instead of occupying a worker slot
    :param retry_attempts: tries per Salesforce request for a transient error (default: the hook's)
    :param retry_backoff: first backoff in seconds between those tries (default: the hook's)
    :param kwargs: ``poke_interval``, ``timeout``, ``mode``, ``soft_fail`` and other sensor arguments
    """

    template_fields: Sequence[str] = ("salesforce_oauth_conn_id",)
    ui_color = "#cfe8fc"

    def __init__(
        self,
        *,
        salesforce_oauth_conn_id: str = "salesforce_oauth_default",
        min_remaining: timedelta | float = timedelta(minutes=10),
        check: str = "auto",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        retry_attempts: int | None = None,
        retry_backoff: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        token_check.validate_check(check, type(self).__name__)
        seconds = min_remaining.total_seconds() if isinstance(min_remaining, timedelta) else min_remaining
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
            raise ValueError(
                f"{type(self).__name__}: parameter 'min_remaining' must be a non-negative timedelta or "
                f"number of seconds; got {min_remaining!r}"
            )
        self.salesforce_oauth_conn_id = salesforce_oauth_conn_id
        self.min_remaining = timedelta(seconds=seconds)
        self.check = check
        self.deferrable = deferrable
        self.retry_attempts = retry_attempts
        self.retry_backoff = retry_backoff
        #: what the last unfinished check found: the sensor's timeout message carries it
        self._last_problem: str | None = None

    # ---- one check ---------------------------------------------------------------------------
    @cached_property
    def hook(self) -> SalesforceOAuthHook:
        """The hook, made once per task try so its HTTP client is reused by every poke."""
        retry = core.oauth.RetryPolicy.from_numbers(self.retry_attempts, self.retry_backoff)
        return hooks.SalesforceOAuthHook(self.salesforce_oauth_conn_id, retry=retry)

    def check_once(self) -> TokenCheckOutcome:
        """One check with the hook's sync calls (raises the client's errors)."""
        hook = self.hook
        certificate = getattr(hook.config, "jwt_certificate", None)
        if certificate:  # expired: every JWT login fails; say why first
            core.certificate.check_not_expired(certificate, hook.config.conn_id)
        check = token_check.resolve_check(self.check, bool(hook.config.consumer_secret))

        def perform(step: Step) -> Any:
            if isinstance(step, token_check.GetToken):
                return hook.get_token(force_refresh=step.force_refresh)
            if step.check == "introspect":
                return token_check.Liveness.from_introspection(hook.introspect(step.token.access_token))
            return token_check.Liveness.from_userinfo(hook.userinfo(access_token=step.token.access_token))

        return token_check.run_flow(token_check.token_check_flow(check, self.min_remaining.total_seconds()), perform)

    def _fail(self, exc: SalesforceOAuthError) -> NoReturn:
        # str(exc) is Salesforce's message plus the hint, and starts with "Connection '<id>': " (every
        # error of this package names its connection); the client never puts secrets in it.
        # Airflow logs this exception; the client's internal traceback would only bury the hint.
        raise AirflowFailException(f"Salesforce token check failed: {exc}") from None

    def poke(self, context: Context) -> PokeReturnValue:
        """One check: done with a non-secret XCom value, not yet (transient), or fail (permanent).

        :param context: the task context (unused)
        """
        try:
            outcome = self.check_once()
        except SalesforceOAuthError as exc:
            if not retry_may_help(exc):
                self._fail(exc)
            self._last_problem = f"last check of connection {self.salesforce_oauth_conn_id!r} failed: {exc}"
            self.log.warning(
                "Salesforce token check for connection %r failed transiently: %s; checking again later",
                self.salesforce_oauth_conn_id, exc.message,
            )
            return PokeReturnValue(is_done=False)
        if outcome.done:
            self.log.info("%s", outcome.message)
            return PokeReturnValue(is_done=True, xcom_value=outcome.payload)
        self._last_problem = f"last check: {outcome.message}"
        self.log.info("%s; checking again later", outcome.message)
        return PokeReturnValue(is_done=False)

    # ---- deferrable --------------------------------------------------------------------------
    def execute(self, context: Context) -> Any:
        """Poke mode: the usual sensor loop. Deferrable: one check here, then wait in the triggerer.

        :param context: the task context
        """
        try:
            return self._execute(context)
        except AirflowSensorTimeout as exc:
            if self._last_problem is None:
                raise
            # Airflow's message says only that time ran out; say why the token never came
            raise AirflowSensorTimeout(f"{exc} — {self._last_problem}") from None
        finally:
            if "hook" in self.__dict__:  # close the HTTP pool the pokes shared
                self.__dict__.pop("hook").close()

    def _execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        try:
            first = self.poke(context)
        except AirflowFailException as exc:
            if self.soft_fail or getattr(self, "never_fail", False):
                raise AirflowSkipException("Skipping: soft_fail/never_fail is set") from exc
            raise
        if first.is_done:
            return first.xcom_value

        self.defer(
            trigger=triggers.SalesforceTokenTrigger(
                salesforce_oauth_conn_id=self.salesforce_oauth_conn_id,
                min_remaining_seconds=self.min_remaining.total_seconds(),
                check=self.check,
                poke_interval=self.poke_interval,
                retry_attempts=self.retry_attempts,
                retry_backoff=self.retry_backoff,
                end_at=time.time() + self.timeout,
            ),
            method_name="execute_complete",
            # the trigger ends the wait at the sensor's timeout with the last error; Airflow's
            # deferral timeout is a backstop should the triggerer be stuck
            timeout=timedelta(seconds=self.timeout + max(60.0, 2 * self.poke_interval)),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger: the payload on success, ``AirflowFailException`` on error.

        :param context: the task context
        :param event: the trigger's event
        """
        if event and event.get("status") == "timeout":
            message = (
                f"Sensor has timed out after {self.timeout:g} s waiting for a usable Salesforce token — "
                f"{event.get('message')}"
            )
            if self.soft_fail or getattr(self, "never_fail", False):
                raise AirflowSkipException(message)
            raise AirflowSensorTimeout(message)
        if not event or event.get("status") != "success":
            # the trigger's message is the error's text, which already names the connection
            message = (event or {}).get("message") or (
                f"Connection {self.salesforce_oauth_conn_id!r}: the trigger ended without a result")
            raise AirflowFailException(f"Salesforce token check failed: {message}")
        self.log.info("%s", event.get("message"))
        return {k: v for k, v in event.items() if k not in ("status", "message")}
