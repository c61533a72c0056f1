"""Interop: existing simple-salesforce code runs on the hook's cached token."""

from __future__ import annotations

from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook


def test_get_simple_salesforce_uses_the_cached_token(emulator, sf_connections):
    hook = SalesforceOAuthHook()
    sf = hook.get_simple_salesforce()
    token = hook.get_token()
    assert sf.session_id == token.access_token
    assert sf.sf_version == hook.config.api_version
    assert token.instance_url.endswith(sf.sf_instance)
    # simple-salesforce always builds https:// URLs; the emulator speaks plain http on loopback.
    sf.base_url = sf.base_url.replace("https://", "http://", 1)
    result = sf.query("SELECT Id, Name FROM Account LIMIT 2")
    assert result["totalSize"] == 2
    assert emulator.org.count("token") == 1  # no login of its own
