"""SalesforceTokenTrigger, and the one token check it shares with SalesforceTokenSensor.

The check is written once, as a generator (:func:`token_check_flow`) in the style of httpx's
``Auth.auth_flow``: it yields what it needs (:class:`GetToken`, :class:`Probe`) and receives the
answers. The sensor drives it with the hook's sync calls (:func:`run_flow`), the trigger with the
hook's async calls (:func:`arun_flow`); neither re-states the rules.

This module imports only the standard library and ``airflow.triggers.base`` at import time; the
hook, httpx and the client are imported where they are used.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Generator, Union

from airflow.triggers.base import BaseTrigger, TriggerEvent

if TYPE_CHECKING:
    from sf_oauth_provider.client.token import IntrospectionResult, SalesforceToken
    from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

__all__ = [
    "CHECKS",
    "GetToken",
    "Liveness",
    "Probe",
    "SalesforceTokenTrigger",
    "TokenCheckOutcome",
    "arun_flow",
    "judge",
    "resolve_check",
    "run_flow",
    "token_check_flow",
    "validate_check",
]

#: accepted values of ``check``: ``auto`` introspects when the connection has a consumer secret
CHECKS = ("auto", "introspect", "userinfo")


# ---- the check, written once ------------------------------------------------------------------
@dataclass(frozen=True)
class GetToken:
    """Step: get the connection's access token (from the cache, or a new one if ``force_refresh``)."""

    force_refresh: bool = False


@dataclass(frozen=True)
class Probe:
    """Step: ask Salesforce whether ``token`` is alive, by ``check`` (``introspect``/``userinfo``).

    The answer sent back is a :class:`Liveness`; a rejected token may instead be thrown in as
    :class:`~sf_oauth_provider.client.errors.SalesforceSessionExpired`.
    """

    token: SalesforceToken = field(repr=False)
    check: str


Step = Union[GetToken, Probe]


@dataclass(frozen=True)
class Liveness:
    """What Salesforce said about one token (no token inside).

    :param active: Salesforce accepts the token
    :param exp: epoch seconds of expiry, when Salesforce said (introspection)
    :param username: the token's user name
    :param user_id: the token's user id
    :param scope: the token's scopes
    """

    active: bool
    exp: float | None = None
    username: str | None = None
    user_id: str | None = None
    scope: str | None = None

    @classmethod
    def from_introspection(cls, result: IntrospectionResult) -> Liveness:
        """:param result: the introspection of the token"""
        return cls(
            active=bool(result.active),
            exp=float(result.exp) if result.exp is not None else None,
            username=result.username,
            user_id=result.user_id,
            scope=result.scope,
        )

    @classmethod
    def from_userinfo(cls, info: dict[str, Any]) -> Liveness:
        """:param info: the OpenID userinfo answered for the token (an answer means it is alive)"""
        return cls(
            active=True,
            username=info.get("preferred_username") or info.get("username"),
            user_id=info.get("user_id"),
        )


@dataclass(frozen=True)
class TokenCheckOutcome:
    """The result of one check.

    :param reason: ``ok`` (alive, long enough), ``inactive`` (Salesforce refuses the token) or
        ``short`` (alive, but fewer than ``min_remaining`` seconds left)
    :param message: why, for the log and the trigger event (no secret)
    :param payload: non-secret facts about the token (the XCom value on success)
    """

    reason: str
    message: str
    payload: dict[str, Any]

    @property
    def done(self) -> bool:
        return self.reason == "ok"


def validate_check(check: str, owner: str) -> str:
    """Return ``check`` if it is one of :data:`CHECKS`, else raise a ``ValueError`` naming it.

    :param check: the requested check
    :param owner: the class whose parameter this is, for the message
    """
    if check not in CHECKS:
        raise ValueError(f"{owner}: parameter 'check' must be one of {', '.join(map(repr, CHECKS))}; got {check!r}")
    return check


def resolve_check(check: str, has_consumer_secret: bool) -> str:
    """``introspect`` or ``userinfo``: ``auto`` introspects only when the app's secret is known.

    :param check: one of :data:`CHECKS`
    :param has_consumer_secret: whether the connection has a consumer secret (needed to introspect)
    """
    if check == "auto":
        return "introspect" if has_consumer_secret else "userinfo"
    return check


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="seconds")


def judge(
    token: SalesforceToken, liveness: Liveness, *, check: str, min_remaining: float, now: float, refreshed: bool
) -> TokenCheckOutcome:
    """Decide whether ``token`` passes: alive at Salesforce and ``min_remaining`` seconds left.

    The expiry is Salesforce's introspection ``exp`` when known, else the token's own estimate.

    :param token: the token that was probed
    :param liveness: what Salesforce said about it
    :param check: how it was probed (``introspect``/``userinfo``), reported in the payload
    :param min_remaining: seconds the token must still have
    :param now: the current epoch time
    :param refreshed: whether the token was fetched anew by this check
    """
    expires_at = liveness.exp if liveness.exp is not None else token.expires_at
    seconds_left = int(expires_at - now)
    payload: dict[str, Any] = {
        "fingerprint": token.fingerprint,
        "instance_url": token.instance_url,
        "org_id": token.org_id,
        "user_id": liveness.user_id or token.user_id,
        "username": liveness.username,
        "scope": liveness.scope or token.scope,
        "expires_at": _iso(expires_at),
        "expires_at_source": "introspection" if liveness.exp is not None else token.expires_at_source,
        "seconds_left": seconds_left,
        "check": check,
        "refreshed": refreshed,
    }
    if not liveness.active:
        return TokenCheckOutcome("inactive", f"Salesforce does not accept token {token.fingerprint} ({check})", payload)
    if seconds_left < min_remaining:
        return TokenCheckOutcome(
            "short",
            f"Token {token.fingerprint} has {seconds_left} s left, less than min_remaining {min_remaining:g} s",
            payload,
        )
    return TokenCheckOutcome(
        "ok", f"Token {token.fingerprint} is alive at Salesforce ({check}) with {seconds_left} s left", payload
    )


def token_check_flow(
    check: str, min_remaining: float, *, clock: Callable[[], float] = time.time
) -> Generator[Step, Any, TokenCheckOutcome]:
    """One check: get the token, confirm it at Salesforce; if it is dead or short-lived, refresh
    and confirm once more.

    Raises :class:`~sf_oauth_provider.client.errors.SalesforcePermanentError` when even a fresh
    token lives shorter than ``min_remaining`` (waiting cannot help; refreshing on every poke would
    only burn the login budget).

    :param check: ``introspect`` or ``userinfo`` (see :func:`resolve_check`)
    :param min_remaining: seconds the token must still have
    :param clock: current epoch time
    """
    from sf_oauth_provider.client.errors import SalesforcePermanentError, SalesforceSessionExpired

    def confirm(token: SalesforceToken, refreshed: bool) -> Generator[Step, Any, TokenCheckOutcome]:
        try:
            liveness = yield Probe(token, check)
        except SalesforceSessionExpired:
            liveness = Liveness(active=False)
        return judge(token, liveness, check=check, min_remaining=min_remaining, now=clock(), refreshed=refreshed)

    outcome = yield from confirm((yield GetToken()), refreshed=False)
    if outcome.done:
        return outcome
    outcome = yield from confirm((yield GetToken(force_refresh=True)), refreshed=True)
    if outcome.reason == "short":
        payload = outcome.payload
        raise SalesforcePermanentError(
            f"A freshly issued token ({payload['fingerprint']}) has only {payload['seconds_left']} s left, "
            f"less than min_remaining {min_remaining:g} s",
            hint="lower the sensor's min_remaining below the connected app's session timeout "
            "(or raise that session timeout, or the connection's extra 'session_timeout')",
        )
    return outcome


def run_flow(flow: Generator[Step, Any, TokenCheckOutcome], perform: Callable[[Step], Any]) -> TokenCheckOutcome:
    """Drive ``flow`` with a sync ``perform(step)``; its exceptions are thrown into the flow.

    :param flow: from :func:`token_check_flow`
    :param perform: does one step and returns the answer
    """
    advance: Callable[[Any], Step] = flow.send
    answer: Any = None
    for _ in range(16):  # the flow takes four steps; a bound keeps a faulty flow from spinning
        try:
            step = advance(answer)
        except StopIteration as stop:
            return stop.value
        try:
            answer, advance = perform(step), flow.send
        except Exception as exc:
            answer, advance = exc, flow.throw
    raise RuntimeError("token check flow did not finish")


async def arun_flow(
    flow: Generator[Step, Any, TokenCheckOutcome], perform: Callable[[Step], Awaitable[Any]]
) -> TokenCheckOutcome:
    """:func:`run_flow` with an async ``perform(step)``.

    :param flow: from :func:`token_check_flow`
    :param perform: does one step and returns the answer
    """
    advance: Callable[[Any], Step] = flow.send
    answer: Any = None
    for _ in range(16):
        try:
            step = advance(answer)
        except StopIteration as stop:
            return stop.value
        try:
            answer, advance = await perform(step), flow.send
        except Exception as exc:
            answer, advance = exc, flow.throw
    raise RuntimeError("token check flow did not finish")


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
        self.check = validate_check(check, type(self).__name__)
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
        from sf_oauth_provider.client.oauth import RetryPolicy
        from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

        return SalesforceOAuthHook(
            self.salesforce_oauth_conn_id, retry=RetryPolicy.from_numbers(self.retry_attempts, self.retry_backoff)
        )

    async def check_once(self, hook: SalesforceOAuthHook) -> TokenCheckOutcome:
        """One check with async I/O (raises the client's errors).

        :param hook: the hook to use
        """
        config = await hook.aconfig()
        check = resolve_check(self.check, bool(config.consumer_secret))

        async def perform(step: Step) -> SalesforceToken | Liveness:
            if isinstance(step, GetToken):
                return await hook.aget_token(force_refresh=step.force_refresh)
            if step.check == "introspect":
                return Liveness.from_introspection(await hook.aintrospect(step.token.access_token))
            return Liveness.from_userinfo(await hook.auserinfo(access_token=step.token.access_token))

        return await arun_flow(token_check_flow(check, self.min_remaining_seconds), perform)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Check, sleep ``poke_interval``, repeat; one event on success, permanent error or ``end_at``."""
        from sf_oauth_provider.client.errors import SalesforceOAuthError, retry_may_help

        hook = self._hook()
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
