"""triggers: :class:`SalesforceTokenTrigger`, loaded on first use (the sensor builds it when it
defers, as ``triggers.SalesforceTokenTrigger``; the module imports Airflow's ``airflow.triggers.base``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sf_oauth_provider._lazy import attach

if TYPE_CHECKING:
    from sf_oauth_provider.triggers import token  # noqa: F401
    from sf_oauth_provider.triggers.token import SalesforceTokenTrigger

__all__ = ["SalesforceTokenTrigger"]

__getattr__, __dir__ = attach(__name__, submodules=("token",), attributes={"SalesforceTokenTrigger": "token"})
