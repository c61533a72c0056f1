"""hooks: :class:`SalesforceOAuthHook`, loaded on first use (operators and the sensor build it when
a task runs, as ``hooks.SalesforceOAuthHook``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sf_oauth_provider._lazy import attach

if TYPE_CHECKING:
    from sf_oauth_provider.hooks import salesforce_oauth  # noqa: F401
    from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

__all__ = ["SalesforceOAuthHook"]

__getattr__, __dir__ = attach(
    __name__, submodules=("salesforce_oauth",), attributes={"SalesforceOAuthHook": "salesforce_oauth"}
)
