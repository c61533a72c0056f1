"""operators: :mod:`.revoke`, :mod:`.audit` and :mod:`.bulk`. Their shared run-time helpers, :mod:`._common`,
load when a task first uses them (the operator modules read them as ``operators._common``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sf_oauth_provider._lazy import attach

if TYPE_CHECKING:
    from sf_oauth_provider.operators import _common, _params, audit, bulk, inventory, revoke  # noqa: F401

__getattr__, __dir__ = attach(__name__, submodules=("_common", "_params", "audit", "bulk", "inventory", "revoke"))
