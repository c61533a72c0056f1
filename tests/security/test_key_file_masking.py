"""The PEM text read from ``jwt_key_file`` is a secret like a pasted ``private_key``: masked as soon
as the hook reads the connection (before the fix only the pasted form was)."""

from __future__ import annotations

import pytest

from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook
from tests.airflow_compat import redact


@pytest.mark.parametrize("path", ["sync", "async"])
async def test_private_key_read_from_a_file_is_masked(emulator, sf_connections, path):
    conn = sf_connections["salesforce_oauth_default"]
    assert "jwt_key_file" in conn["extra"] and "private_key" not in conn["extra"]
    pem_lines = emulator.org.demo.jwt_private_key_pem.strip().splitlines()[1:-1]
    hook = SalesforceOAuthHook()
    if path == "sync":
        hook.config  # noqa: B018 — reading the connection is what registers its secrets
    else:
        await hook.aconfig()
    for line in (pem_lines[0], pem_lines[len(pem_lines) // 2]):
        assert redact(f"key line {line}") == "key line ***"
    assert emulator.org.count("token") == 0  # masked on reading, before any request
