"""``airflow sf-oauth …``: Airflow >= 3.2 loads the provider's CLI group from the provider info's
``cli`` key (the worktree's virtualenv runs 3.3); on older releases ``sf-oauth`` says so."""

from __future__ import annotations

import pytest

from tests.airflow_compat import airflow_release
from tests.cli.conftest import AIRFLOW, Cli

pytestmark = pytest.mark.timeout(600)


def test_airflow_sf_oauth_doctor(cli: Cli, emulator) -> None:
    if airflow_release() < (3, 2):  # the compat matrix: the group does not exist, `sf-oauth` does
        refused = cli.run("sf-oauth", "doctor", program=AIRFLOW)
        assert refused.returncode != 0 and "sf-oauth" in refused.stderr
        assert cli.run("doctor").returncode == 0
        return
    healthy = cli.run("sf-oauth", "doctor", "salesforce_oauth_default", program=AIRFLOW)
    assert healthy.returncode == 0, healthy.output
    assert "all checks passed" in healthy.stdout and "✓   token exchange" in healthy.stdout

    extra = {"auth_flow": "jwt_bearer", "username": "integration@demo.example"}
    cli.connections["sf_no_key"] = {**cli.connections["salesforce_oauth_default"], "extra": extra}
    broken = cli.run("sf-oauth", "doctor", "sf_no_key", "--json", program=AIRFLOW)
    assert broken.returncode == 1, broken.output
    key = next(c for c in broken.json()["checks"] if c["name"] == "key")
    assert key["status"] == "fail" and "'private_key' or 'jwt_key_file' is required" in key["detail"]


def test_sf_oauth_help_says_where_the_airflow_group_works(cli: Cli) -> None:
    result = cli.run("--help")
    assert result.returncode == 0
    if airflow_release() >= (3, 2):
        assert "run as `airflow sf-oauth …`" in result.stdout
    else:
        assert "`airflow sf-oauth …` needs Airflow >= 3.2" in result.stdout
