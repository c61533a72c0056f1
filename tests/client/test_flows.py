"""The auth-flow registry: every flow is one class, and config, token call and provider info follow it."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from sf_oauth_provider.client import flows
from sf_oauth_provider.client.config import OAuthConfig
from sf_oauth_provider.client.errors import SalesforceConfigError
from sf_oauth_provider.client.oauth import SalesforceOAuthClient


def test_the_three_salesforce_flows_are_registered_in_form_order():
    assert list(flows.FLOWS) == ["jwt_bearer", "client_credentials", "refresh_token"]
    assert flows.DEFAULT_FLOW == "jwt_bearer"
    assert [f.keeps_refresh_token for f in flows.FLOWS.values()] == [False, False, True]


def test_provider_info_offers_exactly_the_registered_flows():
    from sf_oauth_provider.get_provider_info import CONN_FIELDS

    schema = CONN_FIELDS["auth_flow"]["schema"]
    assert schema["enum"] == list(flows.FLOWS) and schema["default"] == flows.DEFAULT_FLOW


@pytest.fixture
def fourth_flow() -> Iterator[type[flows.AuthFlow]]:
    """A flow added the way a contributor would: one class, registered."""

    class SecretInBodyFlow(flows.AuthFlow):
        name = "test_secret_in_body"
        summary = "test flow"

        def check(self, fields: flows.ConnectionFields) -> dict[str, Any]:
            if not fields.password:
                raise fields.fail("'password' is required for auth_flow 'test_secret_in_body'", "password")
            return {}

        def subject(self, config: OAuthConfig) -> str:
            return "app"

        def grant_form(self, config, *, refresh_token, now, on_secret) -> dict[str, str]:
            return {"grant_type": "client_credentials", "client_id": config.consumer_key,
                    "client_secret": config.consumer_secret or ""}

    flows.register(SecretInBodyFlow)
    try:
        yield SecretInBodyFlow
    finally:
        flows.FLOWS.pop(SecretInBodyFlow.name)


def test_a_fourth_flow_needs_only_its_class(fourth_flow, emulator):
    demo = emulator.org.demo
    fields = dict(host=emulator.base_url, login=demo.cc_consumer_key, extra={"auth_flow": fourth_flow.name})
    with pytest.raises(SalesforceConfigError) as info:
        OAuthConfig.from_connection_fields("sf_new", password=None, **fields)
    assert info.value.field == "password"
    config = OAuthConfig.from_connection_fields("sf_new", password=demo.cc_consumer_secret, **fields)
    with SalesforceOAuthClient(config) as client:
        token = client.fetch_token()
    assert token.access_token in emulator.org.issued_tokens()
    other = OAuthConfig.from_connection_fields(
        "sf_cc", password=demo.cc_consumer_secret, **{**fields, "extra": {"auth_flow": "client_credentials"}}
    )
    assert config.cache_key != other.cache_key  # another flow, another cached identity


def test_an_unknown_flow_lists_the_registered_ones():
    with pytest.raises(SalesforceConfigError, match="jwt_bearer, client_credentials, refresh_token"):
        OAuthConfig.from_connection_fields("c", host="https://x.my.salesforce.com", login="k", password="s",
                                           extra={"auth_flow": "password"})


def test_jwt_request_identity_is_the_audience():
    from tests.keys import pem, rsa_key

    cfg = OAuthConfig.from_connection_fields(
        "c", host="https://login.salesforce.com", login="k", password=None,
        extra={"username": "u@x.com", "private_key": pem(rsa_key()), "audience": "https://test.salesforce.com"},
    )
    assert cfg.flow.request_identity(cfg) == ("https://test.salesforce.com",)
