"""API versions (listed through the current release, retired ones 410, unknown ones 404) and the
one 405 answer for an unserved method on any served path, over a real loopback HTTP server."""

from __future__ import annotations

import pytest

from sf_oauth_provider.client.config import DEFAULT_API_VERSION
from sf_oauth_provider.emulator import RunningEmulator
from sf_oauth_provider.emulator.versions import bulk_version_error

from ._util import HTTP, jwt_token


@pytest.fixture
def tok(emulator: RunningEmulator) -> str:
    return jwt_token(emulator)["access_token"]


def test_versions_list_runs_from_31_to_winter_27(emulator: RunningEmulator) -> None:
    listed = HTTP.get(f"{emulator.base_url}/services/data").json()
    assert [v["version"] for v in listed] == [f"{n}.0" for n in range(31, 69)]
    by_version = {v["version"]: v for v in listed}
    assert by_version["31.0"] == {"label": "Summer '14", "url": "/services/data/v31.0", "version": "31.0"}
    assert by_version["64.0"]["label"] == "Summer '25"
    assert by_version["66.0"]["label"] == "Spring '26"
    assert listed[-1] == {"label": "Winter '27", "url": "/services/data/v68.0", "version": "68.0"}
    # the provider's default version is one the org serves
    assert DEFAULT_API_VERSION in by_version


@pytest.mark.parametrize("version", ["7.0", "20.0", "21.0", "30.0"])
def test_retired_versions_answer_410(emulator: RunningEmulator, tok: str, version: str) -> None:
    for path in ("", "/query?q=SELECT+Id+FROM+Account", "/limits", "/sobjects/Account/describe"):
        r = HTTP.get(f"{emulator.base_url}/services/data/v{version}{path}", headers={"Authorization": f"Bearer {tok}"})
        assert r.status_code == 410, (path, r.text)
        [err] = r.json()
        assert err["errorCode"] == "GONE" and version in err["message"] and "31.0" in err["message"]
    # retired even without a session: the version is checked first
    assert HTTP.get(f"{emulator.base_url}/services/data/v{version}/limits").status_code == 410


@pytest.mark.parametrize("segment", ["v69.0", "v6.0", "v63.5", "vlatest", "63.0", "v0.0"])
def test_unknown_versions_answer_404(emulator: RunningEmulator, tok: str, segment: str) -> None:
    r = HTTP.get(f"{emulator.base_url}/services/data/{segment}/limits", headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 404
    assert r.json() == [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]


@pytest.mark.parametrize("version", ["31.0", "63.0", "68.0"])
def test_supported_versions_serve(emulator: RunningEmulator, tok: str, version: str) -> None:
    r = HTTP.get(f"{emulator.base_url}/services/data/v{version}/limits", headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 200 and "DailyApiRequests" in r.json()


@pytest.mark.parametrize("segment", ["v30.0", "v20.0", "v99.0"])
def test_bulk_jobs_on_a_retired_or_unknown_version_answer_400_invalid_version(
    emulator: RunningEmulator, tok: str, segment: str
) -> None:
    for path in ("/jobs/query", "/jobs/query/750xx0000000001AAA", "/jobs/ingest"):
        r = HTTP.get(f"{emulator.base_url}/services/data/{segment}{path}", headers={"Authorization": f"Bearer {tok}"})
        assert r.status_code == 400, r.text
        [err] = r.json()
        assert err["errorCode"] == "InvalidVersion" and segment[1:] in err["message"]
    assert bulk_version_error("v64.0") is None
    # a supported version before Bulk 2.0 query jobs (47.0) is not found, as before
    r = HTTP.get(f"{emulator.base_url}/services/data/v46.0/jobs/query", headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 404


def test_resource_list_names_identity_and_search(emulator: RunningEmulator, tok: str) -> None:
    body = jwt_token(emulator)
    auth = {"Authorization": f"Bearer {body['access_token']}"}
    res = HTTP.get(f"{emulator.base_url}/services/data/v64.0/", headers=auth).json()
    assert res["identity"] == body["id"]  # absolute identity URL of the caller, as jsforce reads it
    assert res["search"] == "/services/data/v64.0/search"
    assert res["parameterizedSearch"] == "/services/data/v64.0/parameterizedSearch"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", "/services/data/v64.0/query", "HEAD,GET"),
        ("DELETE", "/services/data/v64.0/limits", "HEAD,GET"),
        ("PUT", "/services/data/v64.0/search", "HEAD,GET"),
        ("PATCH", "/services/data/v64.0/parameterizedSearch", "HEAD,GET,POST"),
        ("POST", "/services/data", "HEAD,GET"),
        ("DELETE", "/services/data/", "HEAD,GET"),
        ("GET", "/services/oauth2/token", "POST"),
        ("GET", "/login/services/oauth2/introspect", "POST"),
        ("DELETE", "/test/services/oauth2/revoke", "HEAD,GET,POST"),
        ("PUT", "/services/oauth2/userinfo", "HEAD,GET,POST"),
        ("POST", "/.well-known/openid-configuration", "HEAD,GET"),
        ("DELETE", "/login/id/keys", "HEAD,GET"),
    ],
)
def test_unserved_method_answers_405_with_allow(
    emulator: RunningEmulator, tok: str, method: str, path: str, allowed: str
) -> None:
    r = HTTP.request(method, f"{emulator.base_url}{path}", headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 405, r.text
    assert r.headers["Allow"] == allowed
    assert r.json() == [
        {"errorCode": "METHOD_NOT_ALLOWED", "message": f"HTTP Method '{method}' not allowed. Allowed are {allowed}"}
    ]


def test_head_is_served_where_get_is(emulator: RunningEmulator, tok: str) -> None:
    r = HTTP.head(f"{emulator.base_url}/services/data/v64.0/limits", headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 200
    assert HTTP.head(f"{emulator.base_url}/services/data").status_code == 200
