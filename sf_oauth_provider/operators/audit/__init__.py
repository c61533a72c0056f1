"""The token audit: operator, rules (one function per finding kind), report and writers.

* :mod:`.operator` — :class:`SalesforceTokenAuditOperator` (thin: parameters, order of steps)
* :mod:`.sources` — what is audited: OauthToken rows, raw tokens, connections; introspection
* :mod:`.findings` — :class:`TokenRecord`, :class:`Finding`, the kinds and their severities
* :mod:`.rules` — one function per finding kind, and :func:`~.rules.evaluate`
* :mod:`.report` — the ``audit.json`` document, comparison with the last run, the XCom value
* :mod:`.render` — CSV, Markdown (tabulate) and HTML (Jinja2) from that document
"""

from __future__ import annotations

from sf_oauth_provider.operators.audit.findings import FINDING_KINDS, SEVERITIES, Finding, TokenRecord
from sf_oauth_provider.operators.audit.operator import SalesforceTokenAuditOperator

__all__ = ["FINDING_KINDS", "SEVERITIES", "Finding", "SalesforceTokenAuditOperator", "TokenRecord"]
