"""Which layer served a token (``TokenProvider.last_layer``, what ``sf-oauth token`` shows), in process:
Salesforce, then this process's memory, then — for another provider on the same host — the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sf_oauth_provider.client import OAuthConfig, TokenProvider
from sf_oauth_provider.client.stores import forget_process_memory


def test_last_layer_follows_the_token(emulator, emulator_connections: dict[str, dict[str, Any]],
                                      tmp_path: Path) -> None:
    conn = emulator_connections["salesforce_oauth_default"]
    config = OAuthConfig.from_connection_fields("sf_layers", host=conn["host"], login=conn["login"],
                                                password=conn["password"], extra={**conn["extra"], "cache": "file"})
    first = TokenProvider(config, cache_dir=tmp_path / "cache")
    assert first.last_layer is None
    token = first.get_token()
    assert first.last_layer == "salesforce"
    assert first.get_token().fingerprint == token.fingerprint and first.last_layer == "memory"
    forget_process_memory(everything=True)  # as a new process starts
    second = TokenProvider(config, cache_dir=tmp_path / "cache")
    assert second.get_token().fingerprint == token.fingerprint and second.last_layer == "file"
    assert emulator.org.count("token") == 1
    first.close()
    second.close()
