"""Registering secrets with Airflow's secrets masker — once each, in every text form, in bulk.

``mask_secret`` recompiles the masker's pattern for every new secret, so masking thousands of
tokens one at a time is quadratic (measured: ~40 s for 500 tokens). Small batches go through
``mask_secret`` / ``amask_secret`` (which also tell the supervisor process); larger ones are added
to this process's masker with one recompilation. The task process redacts its own log events
before they reach the supervisor, so log lines are covered either way.
"""

from __future__ import annotations

import re
from typing import Iterable

from sf_oauth_provider.client.masking import secret_forms

__all__ = ["MAX_MESSAGE_CHARS", "amask_secrets", "mask_secrets", "redact_secrets"]

#: Up to this many new values are masked one by one through the public API.
_BULK_THRESHOLD = 32
#: every value (in every form) this process already registered
_masked: set[str] = set()


def _new_forms(values: Iterable[str | None]) -> list[str]:
    forms: dict[str, None] = {}
    for value in values:
        if value and value not in _masked:
            forms.update(dict.fromkeys(f for f in secret_forms(value) if f not in _masked))
    return list(forms)


def _bulk_mask(values: list[str]) -> bool:
    """Add many literal secrets to the in-process masker, compiling its pattern once."""
    try:
        from sf_oauth_provider._compat import secrets_masker as _secrets_masker

        masker = _secrets_masker()
        patterns: set[str] = masker.patterns
        min_length = int(getattr(masker, "min_length_to_mask", 5))
    except Exception:  # masker internals moved: the caller falls back to the public, slower path
        return False
    added = False
    for value in values:
        if len(value) < min_length or value.lower() == "airflow":
            continue
        pattern = re.escape(value)
        if pattern not in patterns:
            patterns.add(pattern)
            added = True
    if added:
        masker.replacer = re.compile("|".join(patterns))
    return True


def mask_secrets(values: Iterable[str | None]) -> None:
    """Register secrets (tokens, DeleteTokens, keys, ...) with the secrets masker.

    :param values: secrets; empty values and values already masked are skipped
    """
    new = _new_forms(values)
    if not new:
        return
    if not (len(new) > _BULK_THRESHOLD and _bulk_mask(new)):
        from sf_oauth_provider._compat import mask_secret

        for value in new:
            mask_secret(value)
    _masked.update(new)


async def amask_secrets(values: Iterable[str | None]) -> None:
    """:func:`mask_secrets` for code on an event loop (uses ``amask_secret``)."""
    new = _new_forms(values)
    if not new:
        return
    if not (len(new) > _BULK_THRESHOLD and _bulk_mask(new)):
        from sf_oauth_provider._compat import amask_secret

        for value in new:
            await amask_secret(value)
    _masked.update(new)


# ---- text that leaves the process (reports, XCom) ----------------------------------------------
#: Strings that look like credentials whatever we know about them: a Salesforce access token
#: (``00D…!…``), a JWT, or a long run of base64/hex characters holding letters and digits.
_TOKEN_LIKE = re.compile(
    r"00D[A-Za-z0-9]{12,15}![A-Za-z0-9._~+/=-]+"
    r"|eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"
    r"|(?<![A-Za-z0-9+/=_-])(?=[A-Za-z0-9+/=_-]*[0-9])(?=[A-Za-z0-9+/=_-]*[A-Za-z])[A-Za-z0-9+/=_-]{32,}"
)
#: Messages are cut to this many characters before they go into reports.
MAX_MESSAGE_CHARS = 2000


def redact_secrets(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` (e.g. an error message quoting Salesforce) with known secrets and anything that
    looks like a token replaced by ``***`` — before it reaches a report or XCom.

    A server may echo what it was sent (the consumer secret, an assertion) in its
    ``error_description``; the secrets masker only protects logs.

    :param text: the message
    :param secrets: the secrets known to the caller (consumer secret, tokens, DeleteTokens, ...)
    """
    out = str(text)[:MAX_MESSAGE_CHARS]
    forms = {form for secret in secrets for form in secret_forms(secret) if len(form) >= 5}
    for form in sorted(forms, key=len, reverse=True):
        out = out.replace(form, "***")
    return _TOKEN_LIKE.sub("***", out)
