"""Extra ``ca_bundle`` (DESIGN §2): a CA file for TLS verification, checked before any request."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sf_oauth_provider.client import OAuthConfig
from sf_oauth_provider.client.errors import SalesforceConfigError
from sf_oauth_provider.client.oauth import SalesforceOAuthClient
from sf_oauth_provider.emulator import RunningEmulator
from tests.helpers.other_users import OtherUserPython


def _fields(emu: RunningEmulator, ca_bundle: str) -> dict:
    d = emu.org.demo
    return {
        "host": emu.base_url, "login": d.cc_consumer_key, "password": d.cc_consumer_secret,
        "extra": {"auth_flow": "client_credentials", "ca_bundle": ca_bundle},
    }


def test_token_over_https_with_the_ca_bundle(tls_emulator: RunningEmulator) -> None:
    config = OAuthConfig.from_connection_fields("sf_tls", **_fields(tls_emulator, tls_emulator.ca_bundle))
    with SalesforceOAuthClient(config) as client:
        token = client.fetch_token()
    assert token.access_token in tls_emulator.org.issued_tokens()


def test_missing_ca_bundle_is_a_config_error_naming_the_field(tls_emulator: RunningEmulator, tmp_path: Path) -> None:
    with pytest.raises(SalesforceConfigError) as info:
        OAuthConfig.from_connection_fields("sf_tls", **_fields(tls_emulator, str(tmp_path / "nope.pem")))
    assert info.value.field == "extra.ca_bundle"
    assert "sf_tls" in str(info.value) and "ca_bundle" in str(info.value)


def test_ca_bundle_unreadable_for_the_worker_user(
    tls_emulator: RunningEmulator, tmp_path: Path, other_user_python: OtherUserPython
) -> None:
    # root's 0600 CA file, read by a worker running as another real user
    secret_ca = Path("/tmp") / f"sf-emu-ca-{os.getpid()}.pem"
    secret_ca.write_text(Path(tls_emulator.ca_bundle).read_text())
    secret_ca.chmod(0o600)
    try:
        code = (
            "import json, sys\n"
            "from sf_oauth_provider.client import OAuthConfig\n"
            "from sf_oauth_provider.client.errors import SalesforceConfigError\n"
            "try:\n"
            "    OAuthConfig.from_connection_fields('sf_tls', **json.loads(sys.argv[1]))\n"
            "except SalesforceConfigError as e:\n"
            "    print(e.field)\n"
        )
        out = other_user_python.run(
            (65534, 65534), ["-c", code, json.dumps(_fields(tls_emulator, str(secret_ca)))],
            timeout=60, env={"HOME": "/tmp"},
        )
        assert out.stdout.strip() == "extra.ca_bundle", out.stderr
    finally:
        secret_ca.unlink()
