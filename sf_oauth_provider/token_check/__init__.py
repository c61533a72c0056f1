"""The token check that SalesforceTokenSensor and SalesforceTokenTrigger share, written once.

Here: the ``check`` parameter (what the sensor checks when a DAG file is parsed, so standard
library only). In :mod:`.flow`, loaded when a check first runs: the check itself, a generator both
drive (:func:`~.flow.token_check_flow`, :func:`~.flow.run_flow`, :func:`~.flow.arun_flow`) and its
steps and outcome, also readable from here (``token_check.GetToken``, ``from
sf_oauth_provider.token_check import run_flow``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sf_oauth_provider._lazy import attach

if TYPE_CHECKING:
    from sf_oauth_provider.token_check import flow  # noqa: F401
    from sf_oauth_provider.token_check.flow import (
        GetToken,
        Liveness,
        Probe,
        Step,
        TokenCheckOutcome,
        arun_flow,
        judge,
        run_flow,
        token_check_flow,
    )

__all__ = [
    "CHECKS",
    "GetToken",
    "Liveness",
    "Probe",
    "Step",
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


__getattr__, __dir__ = attach(
    __name__,
    submodules=("flow",),
    attributes=dict.fromkeys(
        ("GetToken", "Liveness", "Probe", "Step", "TokenCheckOutcome", "arun_flow", "judge", "run_flow",
         "token_check_flow"),
        "flow",
    ),
)
