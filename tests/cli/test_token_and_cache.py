"""``sf-oauth token`` (which layer served the token) and ``sf-oauth cache list / purge`` over the real
file store and a real redis-server: no secret printed, purge keeps the newest refresh token unless
``--include-refresh``, which warns what that costs."""

from __future__ import annotations

from typing import Any

import pytest

from tests.cli.conftest import Cli, issued_secrets

REFRESH = "salesforce_oauth_refresh"
JWT = "salesforce_oauth_default"


def _entries(cli: Cli, conn_id: str) -> dict[str, dict[str, Any]]:
    """``cache list --json`` rows of ``conn_id`` by layer."""
    result = cli.run("cache", "list", "--json")
    assert result.returncode == 0, result.output
    return {row["layer"]: row for row in result.json()["entries"] if row["connection"] == conn_id}


def test_token_is_fetched_from_salesforce_then_served_from_the_file(
    cli: Cli, emulator, emulator_connections_file
) -> None:
    first = cli.run("token", JWT, "--json")
    assert first.returncode == 0, first.output
    info = first.json()
    assert info["layer"] == "salesforce"
    assert info["fingerprint"].startswith("sha256:") and info["org_id"] == emulator.org.org_id
    assert info["user_id"] and info["instance_url"] == emulator.base_url and info["scopes"] == ["api", "id"]
    assert 0 < info["expires_in_seconds"] <= 7200

    # a new process (empty memory; the host's file store has it), reading a local connections file
    cli.connections = {}
    second = cli.run("token", JWT, "--conn-file", str(emulator_connections_file))
    assert second.returncode == 0, second.output
    assert "served by    file" in second.stdout and info["fingerprint"] in second.stdout
    cli.secrets |= issued_secrets(emulator.org)
    cli.assert_no_secret(first)
    cli.assert_no_secret(second)


def test_token_of_an_unknown_connection_says_so(cli: Cli) -> None:
    result = cli.run("token", "salesforce_oauth_defualt")
    assert result.returncode == 1
    assert "did you mean 'salesforce_oauth_default'" in result.stderr


def test_cache_list_names_every_entry_in_file_and_redis_without_secrets(cli: Cli, emulator, redis_url: str) -> None:
    cli.env["SF_OAUTH_REDIS_URL"] = redis_url
    for conn_id in (JWT, REFRESH):
        assert cli.run("token", conn_id).returncode == 0
    listing = cli.run("cache", "list")
    as_json = cli.run("cache", "list", "--json")
    rows = as_json.json()["entries"]
    assert {(r["connection"], r["layer"]) for r in rows} == {(JWT, "file"), (JWT, "redis"), (REFRESH, "file"),
                                                            (REFRESH, "redis")}
    refresh = {r["layer"]: r for r in rows if r["connection"] == REFRESH}
    assert refresh["redis"]["has_refresh"] is True and refresh["file"]["has_refresh"] is True
    assert refresh["redis"]["fingerprint"] == refresh["file"]["fingerprint"]
    assert JWT in listing.stdout and "redis" in listing.stdout and "fingerprint" in listing.stdout
    issued = issued_secrets(emulator.org)
    assert issued, "the emulator issued tokens"
    for secret in issued:  # the access and refresh token strings
        assert secret not in listing.output and secret not in as_json.output


def test_purge_keeps_the_refresh_token_unless_include_refresh(cli: Cli, emulator, redis_url: str) -> None:
    cli.env["SF_OAUTH_REDIS_URL"] = redis_url
    fetched = cli.run("token", REFRESH, "--json").json()
    assert fetched["layer"] == "salesforce"

    purged = cli.run("cache", "purge", REFRESH, "--json")
    assert purged.returncode == 0, purged.output
    outcomes = {row["layer"]: row["outcome"] for row in purged.json()["purged"]}
    assert outcomes == {"file": "access token dropped, refresh token kept",
                        "redis": "access token dropped, refresh token kept"}
    kept = _entries(cli, REFRESH)
    assert all(row["has_refresh"] and row["fingerprint"] is None for row in kept.values()), kept

    # the kept (rotated) refresh token still works: the next token comes from Salesforce, no re-authorisation
    again = cli.run("token", REFRESH, "--json")
    assert again.returncode == 0, again.output
    assert again.json()["layer"] == "salesforce" and again.json()["fingerprint"] != fetched["fingerprint"]

    everything = cli.run("cache", "purge", REFRESH, "--include-refresh")
    assert everything.returncode == 0, everything.output
    assert "WARNING" in everything.stderr and "needs a fresh authorisation" in everything.stderr
    assert "removed (refresh token included)" in everything.stdout
    assert _entries(cli, REFRESH) == {}
    cli.secrets |= issued_secrets(emulator.org)
    for run in (purged, again, everything):
        cli.assert_no_secret(run)


def test_purge_all_empties_the_file_store_and_needs_a_target(cli: Cli, emulator) -> None:
    assert cli.run("token", JWT).returncode == 0
    assert cli.run("cache", "purge").returncode == 2
    result = cli.run("cache", "purge", "--all", "--json")
    assert result.returncode == 0, result.output
    assert {(r["connection"], r["layer"], r["outcome"]) for r in result.json()["purged"]} == {(JWT, "file", "removed")}
    assert _entries(cli, JWT) == {}


@pytest.mark.parametrize("args", [("doctor", "--help"), ("cache", "purge", "--help")])
def test_help_runs_without_airflow_setup(cli: Cli, args: tuple[str, ...]) -> None:
    result = cli.run(*args)
    assert result.returncode == 0 and "usage: sf-oauth" in result.stdout


def test_purge_all_leaves_unknown_redis_entries_unless_include_refresh(cli: Cli, emulator, redis_url: str) -> None:
    cli.env["SF_OAUTH_REDIS_URL"] = redis_url
    assert cli.run("token", JWT).returncode == 0
    cli.connections = {}  # this host no longer knows the connection: its Redis entry cannot be read
    kept = cli.run("cache", "purge", "--all", "--json").json()["purged"]
    redis_rows = [r for r in kept if r["layer"] == "redis"]
    assert len(redis_rows) == 1 and redis_rows[0]["connection"] == "?"
    assert redis_rows[0]["outcome"].startswith("left alone: connection not known here")
    gone = cli.run("cache", "purge", "--all", "--include-refresh", "--json")
    assert {r["outcome"] for r in gone.json()["purged"] if r["layer"] == "redis"} == {"removed"}
    assert "fresh authorisation" in gone.stderr
    listing = cli.run("cache", "list", "--json").json()["entries"]
    assert [r for r in listing if r["layer"] == "redis"] == []


def test_purge_also_clears_the_status_pages_last_error(cli: Cli, emulator, redis_url: str) -> None:
    """A purge is a fresh start: the last permanent error the status page shows goes with the entry."""
    import redis

    from sf_oauth_provider.client.config import OAuthConfig
    from sf_oauth_provider.client.stores.redis import KEY_PREFIX
    from sf_oauth_provider.ui.last_error import REDIS_SUFFIX, read_last_error, record_last_error

    cli.env["SF_OAUTH_REDIS_URL"] = redis_url
    assert cli.run("token", JWT).returncode == 0
    conn = cli.connections[JWT]
    key = OAuthConfig.from_connection_fields(JWT, host=conn["host"], login=conn["login"], password=conn["password"],
                                             extra=conn["extra"]).cache_key
    cache_dir = cli.home / "token-cache"
    record_last_error(cache_dir, key, ValueError("invalid_grant: user hasn't approved this consumer"))
    client = redis.Redis.from_url(redis_url)
    client.set(KEY_PREFIX + key + REDIS_SUFFIX, b"sealed record")
    assert read_last_error(cache_dir, key) is not None

    purged = cli.run("cache", "purge", JWT)
    assert purged.returncode == 0, purged.output
    assert read_last_error(cache_dir, key) is None
    assert client.get(KEY_PREFIX + key + REDIS_SUFFIX) is None
    client.close()
