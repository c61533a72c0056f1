"""The token audit: operator, rules (one function per finding kind), report and writers.

* :mod:`.operator` — :class:`SalesforceTokenAuditOperator` (thin: parameters, order of steps)
* :mod:`.sources` — what is audited: OauthToken rows, raw tokens, connections; introspection
* :mod:`.findings` — :class:`TokenRecord`, :class:`Finding`, the kinds and their severities
* :mod:`.rules` — one function per finding kind, and :func:`~.rules.evaluate`
* :mod:`.report` — the ``audit.json`` document, comparison with the last run, the XCom value
* :mod:`.render` — CSV, Markdown (tabulate) and HTML (Jinja2) from that document

Each loads on first use (:mod:`sf_oauth_provider._lazy`): a DAG file that imports the operator
loads :mod:`.operator` only; the operator reads the other modules as ``audit.<module>`` when its
task runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sf_oauth_provider._lazy import attach

if TYPE_CHECKING:
    from sf_oauth_provider.operators.audit import findings, operator, render, report, rules, sources  # noqa: F401
    from sf_oauth_provider.operators.audit.findings import FINDING_KINDS, SEVERITIES, Finding, TokenRecord
    from sf_oauth_provider.operators.audit.operator import SalesforceTokenAuditOperator

__all__ = ["FINDING_KINDS", "SEVERITIES", "Finding", "SalesforceTokenAuditOperator", "TokenRecord"]

__getattr__, __dir__ = attach(
    __name__,
    submodules=("findings", "operator", "render", "report", "rules", "sources"),
    attributes={
        "SalesforceTokenAuditOperator": "operator",
        **dict.fromkeys(("FINDING_KINDS", "SEVERITIES", "Finding", "TokenRecord"), "findings"),
    },
)
