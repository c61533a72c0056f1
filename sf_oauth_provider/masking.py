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

__all__ = ["mask_secrets", "amask_secrets"]

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
