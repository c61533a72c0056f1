"""The token check itself, written once for SalesforceTokenSensor and SalesforceTokenTrigger.

The check is a generator (:func:`token_check_flow`) in the style of httpx's ``Auth.auth_flow``:
it yields what it needs (:class:`GetToken`, :class:`Probe`) and receives the answers. The sensor
drives it with the hook's sync calls (:func:`run_flow`), the trigger with the hook's async calls
(:func:`arun_flow`); neither re-states the rules. No Airflow import. Loaded when a check first
runs (the sensor's and the trigger's parameters are checked by the package's ``__init__``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Generator, Union

from sf_oauth_provider.client.errors import SalesforcePermanentError, SalesforceSessionExpired

if TYPE_CHECKING:
    from sf_oauth_provider.client.token import IntrospectionResult, SalesforceToken

__all__ = [
    "GetToken",
    "Liveness",
    "Probe",
    "Step",
    "TokenCheckOutcome",
    "arun_flow",
    "judge",
    "run_flow",
    "token_check_flow",
]


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
