"""triggers: :class:`SalesforceTokenTrigger` and :class:`SalesforceBulkJobTrigger`, loaded on first
use (the sensor and the Bulk operator build them when they defer, as ``triggers.<name>``; the modules
import Airflow's ``airflow.triggers.base``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sf_oauth_provider._lazy import attach

if TYPE_CHECKING:
    from sf_oauth_provider.triggers import bulk, token  # noqa: F401
    from sf_oauth_provider.triggers.bulk import SalesforceBulkJobTrigger
    from sf_oauth_provider.triggers.token import SalesforceTokenTrigger

__all__ = ["SalesforceBulkJobTrigger", "SalesforceTokenTrigger"]

__getattr__, __dir__ = attach(__name__, submodules=("bulk", "token"),
                              attributes={"SalesforceTokenTrigger": "token", "SalesforceBulkJobTrigger": "bulk"})
