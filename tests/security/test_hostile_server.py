"""The client against a lying, dripping, looping Salesforce (DESIGN §5, issue 12 and 11).

Every test serves a real socket on 127.0.0.1 port 0 (:mod:`tests.security.hostile_server`) and
drives the real clients against it; a DNS failure is simulated by patching ``socket.getaddrinfo``.
Threats covered:

* a host that is not Salesforce (404, a pasted token path, a name that does not resolve, a 200
  HTML page): a permanent error naming the connection and the host, after exactly one request;
* a server that drips bytes: each request and the retries together end at a wall-clock deadline;
* a gzip bomb: the body cap holds after decompression, without holding the decoded body;
* an absolute ``nextRecordsUrl`` on another origin, or a paging loop: the bearer token never
  leaves the instance origin and the loop stops at once;
* a traceback formatter: no httpx exception (with its request) and no secret in the chain.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import traceback
import tracemalloc
import zlib

import httpx
import pytest

from sf_oauth_provider.client import errors as E
from sf_oauth_provider.client.config import OAuthConfig
from sf_oauth_provider.client.oauth import AsyncSalesforceOAuthClient, RetryPolicy, SalesforceOAuthClient
from sf_oauth_provider.client.token import SalesforceToken
from sf_oauth_provider.data import rest
from tests.keys import pem, rsa_key
from tests.security.hostile_server import HostileServer, head, reply

RETRY = RetryPolicy(attempts=3, initial_backoff=0.01, max_backoff=0.02, max_total=30)
TOKEN_PATH = "/services/oauth2/token"


def cc_config(host: str, **extra) -> OAuthConfig:
    return OAuthConfig.from_connection_fields(
        "sf_hostile", host=host, login="3MVG9hostile", password="consumer-s3cret-value",
        extra={"auth_flow": "client_credentials", **extra},
    )


def token_at(base: str) -> SalesforceToken:
    return SalesforceToken(access_token="00Dxx0000000001!AQhostilebearer", instance_url=base, id_url=None,
                           issued_at=0, expires_at=2e9)


def is_permanent(err: E.SalesforceOAuthError) -> bool:
    return not err.transient


# ---- a wrong host is a configuration error, not an outage (issue 11) ----------------------------
def test_404_on_the_token_endpoint_is_permanent_and_names_the_host():
    with HostileServer(reply(404, b"<html><title>Not Found</title></html>", {"Content-Type": "text/html"})) as srv:
        with pytest.raises(E.SalesforceOAuthError) as info:
            SalesforceOAuthClient(cc_config(srv.url), retry=RETRY).fetch_token()
        assert len(srv.requests) == 1  # no retry of a configuration error
    err = info.value
    assert is_permanent(err), repr(err)
    assert str(err).startswith("Connection 'sf_hostile': ")
    assert f"no OAuth token endpoint at {srv.url}{TOKEN_PATH}" in str(err)
    assert "'host'" in str(err)


def test_a_pasted_token_path_in_the_host_is_named():
    """Caught when the connection is validated: no request is made at all."""
    with HostileServer(reply(404, b"Not Found", {"Content-Type": "text/plain"})) as srv:
        with pytest.raises(E.SalesforceConfigError) as info:
            SalesforceOAuthClient(cc_config(srv.url + TOKEN_PATH), retry=RETRY).fetch_token()
        assert srv.requests == []
    assert is_permanent(info.value) and info.value.field == "host"
    assert f"includes the API path {TOKEN_PATH!r}" in str(info.value)
    assert srv.url in (info.value.hint or "")
    assert "'sf_hostile'" in str(info.value)


def test_a_200_html_page_is_not_salesforce():
    page = b"<html><head><title>Welcome to nginx!</title></head><body>hello</body></html>"
    with HostileServer(reply(200, page, {"Content-Type": "text/html"})) as srv:
        with pytest.raises(E.SalesforceOAuthError) as info:
            SalesforceOAuthClient(cc_config(srv.url), retry=RETRY).fetch_token()
        assert len(srv.requests) == 1
    assert is_permanent(info.value)
    assert "not a Salesforce" in str(info.value) and srv.url in str(info.value)
    assert "'sf_hostile'" in str(info.value)


def test_a_maintenance_page_stays_transient():
    page = b"<html><title>Down for maintenance</title></html>"
    with HostileServer(reply(503, page, {"Content-Type": "text/html"})) as srv:
        with pytest.raises(E.SalesforceOAuthError) as info:
            SalesforceOAuthClient(cc_config(srv.url), retry=RETRY).fetch_token()
        assert len(srv.requests) == 3
    assert info.value.transient and "Down for maintenance" in str(info.value)


def _refuse_to_resolve(monkeypatch, code: int) -> list[str]:
    asked: list[str] = []

    def getaddrinfo(host, *args, **kwargs):
        asked.append(host.decode() if isinstance(host, bytes) else host)  # anyio passes IDNA bytes
        raise socket.gaierror(code, "Name or service not known" if code == socket.EAI_NONAME else "Temporary failure")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def test_a_host_that_does_not_resolve_is_permanent(monkeypatch):
    asked = _refuse_to_resolve(monkeypatch, socket.EAI_NONAME)
    with pytest.raises(E.SalesforceOAuthError) as info:
        SalesforceOAuthClient(cc_config("https://login.salesforce.con"), retry=RETRY).introspect("x")
    assert asked == ["login.salesforce.con"]  # one try: retrying a typo cannot help
    assert is_permanent(info.value)
    assert "could not resolve 'login.salesforce.con'" in str(info.value)
    assert str(info.value).startswith("Connection 'sf_hostile': ")


async def test_a_host_that_does_not_resolve_is_permanent_async(monkeypatch):
    asked = _refuse_to_resolve(monkeypatch, socket.EAI_NONAME)
    async with AsyncSalesforceOAuthClient(cc_config("https://login.salesforce.con"), retry=RETRY) as client:
        with pytest.raises(E.SalesforceOAuthError) as info:
            await client.introspect("x")
    assert asked == ["login.salesforce.con"]
    assert is_permanent(info.value) and "could not resolve 'login.salesforce.con'" in str(info.value)


def test_a_resolver_that_is_down_for_now_is_transient(monkeypatch):
    asked = _refuse_to_resolve(monkeypatch, socket.EAI_AGAIN)
    with pytest.raises(E.SalesforceOAuthError) as info:
        SalesforceOAuthClient(cc_config("https://login.salesforce.con"), retry=RETRY).introspect("x")
    assert len(asked) == 3 and info.value.transient


# ---- a server that drips bytes cannot hold a worker ---------------------------------------------
def _drip_body(seen, send, stop: threading.Event) -> None:
    send(head(200, {"Content-Type": "application/json"}, length=1_000_000))
    while not stop.wait(0.2):  # one byte every 0.2 s: each read is well within the timeout
        send(b" ")


def _drip_head(seen, send, stop: threading.Event) -> None:
    for byte in head(200, {"Content-Type": "application/json"}, length=2) + b"{}":
        if stop.wait(0.2):
            return
        send(bytes([byte]))


@pytest.mark.timeout(30)
@pytest.mark.parametrize("behave", [_drip_body, _drip_head], ids=["body", "headers"])
def test_a_dripping_server_meets_the_deadline(behave):
    retry = RetryPolicy(attempts=2, initial_backoff=0.01, max_backoff=0.01, max_total=30)
    with HostileServer(behave) as srv:
        with pytest.raises(E.SalesforceConnectionError) as info:
            SalesforceOAuthClient(cc_config(srv.url, timeout=1), retry=retry).introspect("x")
        assert len(srv.requests) == 2  # each try was cut by its deadline, then retried once
    assert "'sf_hostile'" in str(info.value)


@pytest.mark.timeout(30)
async def test_a_dripping_server_meets_the_deadline_async():
    retry = RetryPolicy(attempts=2, initial_backoff=0.01, max_backoff=0.01, max_total=30)
    with HostileServer(_drip_body) as srv:
        async with AsyncSalesforceOAuthClient(cc_config(srv.url, timeout=1), retry=retry) as client:
            with pytest.raises(E.SalesforceConnectionError):
                await client.introspect("x")
        assert len(srv.requests) == 2


@pytest.mark.timeout(30)
def test_retries_share_one_deadline():
    # many tries allowed, but all of them within max_total: the drip cannot multiply it
    retry = RetryPolicy(attempts=50, initial_backoff=0.01, max_backoff=0.01, max_total=2.5)
    with HostileServer(_drip_body) as srv:
        with pytest.raises(E.SalesforceConnectionError):
            SalesforceOAuthClient(cc_config(srv.url, timeout=10), retry=retry).introspect("x")
        assert len(srv.requests) == 1  # the first try already used the whole budget


# ---- a gzip bomb is capped after decompression, incrementally ------------------------------------
@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """256 MiB of spaces, gzip-compressed to well under 1 MiB."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b" " * (1 << 20)
    return b"".join([packer.compress(block) for _ in range(256)] + [packer.flush()])


@pytest.mark.timeout(60)
def test_a_gzip_bomb_is_capped_without_being_held(gzip_bomb):
    body = gzip_bomb
    with HostileServer(reply(200, body, {"Content-Type": "application/json", "Content-Encoding": "gzip"})) as srv:
        client = SalesforceOAuthClient(cc_config(srv.url), retry=RetryPolicy(attempts=1))
        tracemalloc.start()
        try:
            with pytest.raises(E.SalesforceOAuthError) as info:
                client.introspect("x")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        seen = srv.requests[0]
    print(f"gzip bomb: {len(gzip_bomb)} bytes on the wire, peak traced memory {peak / 2**20:.1f} MiB")
    assert "oversized" in str(info.value)
    assert seen.headers.get("accept-encoding") == "identity"  # we never ask for compression
    assert peak < 16 * 2**20  # cap (4 MiB) + one chunk, never the decoded 256 MiB


def test_a_small_gzip_body_is_still_read():
    body = gzip.compress(json.dumps({"active": True, "scope": "api"}).encode())
    with HostileServer(reply(200, body, {"Content-Type": "application/json", "Content-Encoding": "gzip"})) as srv:
        result = SalesforceOAuthClient(cc_config(srv.url), retry=RETRY).introspect("x")
    assert result.active and result.scope == "api"


# ---- the bearer token stays on the instance origin -----------------------------------------------
def _page(next_url: str | None, done: bool = False) -> bytes:
    page = {"totalSize": 100, "done": done, "records": [{"Id": "001"}]}
    if next_url:
        page["nextRecordsUrl"] = next_url
    return json.dumps(page).encode()


def test_an_off_origin_next_records_url_never_gets_the_token():
    with HostileServer(reply(200, _page(None, done=True))) as evil:
        with HostileServer(reply(200, _page(evil.url + "/steal"))) as instance:
            client = SalesforceOAuthClient(cc_config(instance.url), retry=RETRY)
            with pytest.raises(E.SalesforceOAuthError) as info:
                rest.query(client, token_at(instance.url), "SELECT Id FROM Account")
            assert len(instance.requests) == 1
        assert evil.requests == []  # not even a request without the header
    assert is_permanent(info.value)
    assert "another origin" in str(info.value) and "'sf_hostile'" in str(info.value)
    assert "AQhostilebearer" not in str(info.value)


def test_a_repeated_next_records_url_stops_at_once():
    locator = "/services/data/v63.0/query/01gLOOP-2000"
    with HostileServer(reply(200, _page(locator))) as srv:
        client = SalesforceOAuthClient(cc_config(srv.url), retry=RETRY)
        with pytest.raises(E.SalesforceOAuthError) as info:
            rest.query(client, token_at(srv.url), "SELECT Id FROM Account")
        assert len(srv.requests) == 2  # the first page, and the locator once
    assert is_permanent(info.value) and "repeated" in str(info.value)


# ---- a traceback formatter finds no secret --------------------------------------------------------
def _reset(seen, send, stop) -> None:
    raise OSError("close without an answer")


class _Secrets(list):
    """The secrets the client reported; its repr hides them (this test formats locals too)."""

    def __repr__(self) -> str:
        return f"<{len(self)} secrets>"


def test_connection_error_chain_holds_no_request_or_secret():
    secrets = _Secrets()
    with HostileServer(_reset) as srv:
        cfg = OAuthConfig.from_connection_fields(
            "sf_hostile", host=srv.url, login="3MVG9hostile", password="consumer-s3cret-value",
            extra={"auth_flow": "jwt_bearer", "username": "u@example.com", "private_key": pem(rsa_key())},
        )
        client = SalesforceOAuthClient(cfg, retry=RetryPolicy(attempts=1), on_secret=secrets.append)
        with pytest.raises(E.SalesforceConnectionError) as info:
            client.fetch_token()
    err = info.value
    chain, seen = [], err
    while seen is not None:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    assert not [e for e in chain if isinstance(e, httpx.HTTPError)], chain
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__, chain=True))
    text += "".join(traceback.TracebackException.from_exception(err, capture_locals=True).format())
    assert len(secrets) >= 2  # the consumer secret and the signed assertion
    for secret in secrets:
        assert secret not in text


# ---- the sensor fails at its first check, naming the connection and the host once ----------------
@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferrable"])
def test_sensor_fails_at_first_check_on_a_wrong_host(deferrable, set_connection, cache_dir):
    from sf_oauth_provider.sensors.token import SalesforceTokenSensor
    from tests.airflow_compat import AirflowFailException

    with HostileServer(reply(404, b"<html>Not Found</html>", {"Content-Type": "text/html"})) as srv:
        set_connection("sf_typo", {"conn_type": "salesforce_oauth", "host": srv.url, "login": "3MVG9hostile",
                                   "password": "consumer-s3cret-value", "extra": {"auth_flow": "client_credentials"}})
        sensor = SalesforceTokenSensor(task_id="wait", salesforce_oauth_conn_id="sf_typo", deferrable=deferrable,
                                       timeout=3600, poke_interval=60, retry_attempts=3, retry_backoff=0.01)
        with pytest.raises(AirflowFailException) as info:
            sensor.execute({})
        assert len(srv.requests) == 1
    message = str(info.value)
    assert message.count("sf_typo") == 1, message  # named once, not once by the sensor and once by the client
    assert f"no OAuth token endpoint at {srv.url}{TOKEN_PATH}" in message


@pytest.mark.timeout(30)
def test_get_conn_requests_meet_the_deadline_too(set_connection, cache_dir, monkeypatch):
    from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

    with HostileServer(_drip_body) as srv:
        set_connection("sf_drip", {"conn_type": "salesforce_oauth", "host": srv.url, "login": "3MVG9hostile",
                                   "password": "consumer-s3cret-value",
                                   "extra": {"auth_flow": "client_credentials", "timeout": 1}})
        hook = SalesforceOAuthHook("sf_drip")
        monkeypatch.setattr(hook, "get_token", lambda *a, **k: token_at(srv.url))  # the drip is on the REST API
        with hook.get_conn() as http:
            with pytest.raises(httpx.TimeoutException):
                http.get("/services/data/v63.0/limits")
        assert len(srv.requests) == 1


# ---- a server that echoes the request cannot put a secret in the error --------------------------
def _echo(seen, send, stop) -> None:
    body = json.dumps({"error": "invalid_grant", "error_description": "you sent: " + seen.body.decode()}).encode()
    send(head(400, {"Content-Type": "application/json"}, length=len(body)) + body)
    raise OSError("close")


@pytest.mark.parametrize("flow", ["jwt_bearer", "client_credentials", "refresh_token"])
def test_a_secret_echoed_in_error_description_is_redacted(flow):
    from urllib.parse import quote

    secrets = _Secrets()
    extra = {"auth_flow": flow}
    if flow == "jwt_bearer":
        extra.update(username="u@example.com", private_key=pem(rsa_key()))
    if flow == "refresh_token":
        extra["refresh_token"] = "5Aep861refresh-token-value"
    with HostileServer(_echo) as srv:
        cfg = OAuthConfig.from_connection_fields("sf_hostile", host=srv.url, login="3MVG9hostile",
                                                 password="consumer-s3cret-value", extra=extra)
        with pytest.raises(E.SalesforceAuthError) as info:
            SalesforceOAuthClient(cfg, retry=RETRY, on_secret=secrets.append).fetch_token()
    err = info.value
    assert "you sent" in str(err) and "[redacted]" in str(err)
    for secret in secrets:
        for form in (secret, quote(secret, safe=""), quote(secret)):
            assert form not in str(err) and form not in (err.error_description or "")


# ---- a token bound to a plain-http instance URL is refused when it arrives (issue 27) ------------
def test_a_plain_http_instance_url_is_refused_at_receipt_and_nothing_is_cached(set_connection, cache_dir):
    import json

    from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

    body = json.dumps({"access_token": "00Dxx0000000001!AQplainhttpinstance", "instance_url": "http://acme.example.com",
                       "id": "https://login.salesforce.com/id/00Dxx0000000001AAA/005xx0000000001AAA",
                       "token_type": "Bearer"}).encode()
    with HostileServer(reply(200, body, {"Content-Type": "application/json"})) as srv:
        set_connection("sf_http", {"conn_type": "salesforce_oauth", "host": srv.url, "login": "3MVG9hostile",
                                   "extra": {"auth_flow": "client_credentials", "cache": "file"},
                                   "password": "consumer-s3cret-value"})
        hook = SalesforceOAuthHook("sf_http", retry=RETRY)
        with pytest.raises(E.SalesforceProtocolError) as info:
            hook.get_token()
        with pytest.raises(E.SalesforceProtocolError):
            SalesforceOAuthHook("sf_http", retry=RETRY).get_token()  # a new hook: nothing was cached anywhere
        assert len(srv.requests) == 2  # one per call: permanent, never retried
    assert "'instance_url'" in str(info.value) and "http://acme.example.com" in str(info.value)
    assert not [p for p in cache_dir.rglob("*.token")]
