"""The checks of ``sf-oauth doctor``, in the order they run (:data:`CHECKS`).

Each is a function of the :class:`~sf_oauth_provider.cli.doctor.DoctorContext` that returns a
:class:`~sf_oauth_provider.cli.doctor.Result`; validation reuses the connection's own
(:class:`~sf_oauth_provider.client.config.OAuthConfig`), which names the field at fault.
"""

from __future__ import annotations

import json
import socket
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from sf_oauth_provider.cli.doctor import Check, DoctorContext, Result, fail, not_applicable, ok
from sf_oauth_provider.cli.output import iso
from sf_oauth_provider.client.config import LOGIN_AUDIENCE, TEST_AUDIENCE, OAuthConfig, is_loopback_host
from sf_oauth_provider.client.errors import SalesforceConfigError, SalesforceOAuthError

__all__ = ["CHECKS"]

#: config errors reported by a later check than "fields"
_KEY_FIELDS = ("extra.private_key", "extra.jwt_key_file", "extra.private_key_passphrase")
_HOST_FIELDS = ("host",)
#: beyond this many seconds between the hosts' clocks the check fails (a JWT lives 180 s)
MAX_SKEW = 60.0
CONN_TYPE = "salesforce_oauth"


def _shown_host(host: str | None) -> str:
    """The host without user information (``user:pass@`` never reaches the output)."""
    text = (host or "").strip()
    try:
        parts = urlsplit(text if "://" in text else "https://" + text)
    except ValueError:
        return "(unparseable)"
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{netloc}{parts.path}"


def _message(exc: SalesforceOAuthError) -> str:
    return exc.message


# ---- 1. connection -------------------------------------------------------------------------------
def check_connection(ctx: DoctorContext) -> Result:
    from sf_oauth_provider.hooks.connection_lookup import is_not_found, not_found_error

    try:
        conn = ctx.hook.get_connection(ctx.conn_id)
    except Exception as exc:  # noqa: BLE001 - Airflow's not-found differs between releases
        if not is_not_found(exc):
            raise
        error = not_found_error(ctx.conn_id, exc, "CONN_ID")
        return fail(error.message, error.hint)
    ctx.conn = conn
    conn_type = (conn.conn_type or "").replace("-", "_")
    if conn_type and conn_type != CONN_TYPE:
        return fail(f"connection {ctx.conn_id!r} has conn_type {conn.conn_type!r}",
                    f"set conn_type to {CONN_TYPE!r} (README: 'Migrating from apache-airflow-providers-salesforce')")
    as_object = 'write the extras as a JSON object, e.g. {"auth_flow": "jwt_bearer"}'
    try:
        extra = json.loads(conn.extra) if (conn.extra or "").strip() else {}
    except ValueError:
        return fail("'extra' is not valid JSON", as_object)
    if not isinstance(extra, dict):
        return fail("'extra' is not a JSON object", as_object)
    ctx.extra = extra
    flow = extra.get("auth_flow") or "jwt_bearer"
    return ok(f"found: conn_type {CONN_TYPE}, host {_shown_host(conn.host)}, auth_flow {flow}")


# ---- 2. fields ---------------------------------------------------------------------------------
def check_fields(ctx: DoctorContext) -> Result:
    conn = ctx.conn
    try:
        ctx.config = OAuthConfig.from_connection_fields(
            ctx.conn_id, host=conn.host, login=conn.login, password=conn.password, extra=ctx.extra,
            schema=conn.schema, port=conn.port,
        )
    except SalesforceConfigError as exc:
        ctx.config_error = exc
        if exc.field in _KEY_FIELDS + _HOST_FIELDS:
            return ok(f"valid apart from {exc.field!r} (checked below)")
        return fail(f"{_message(exc)} [field {exc.field}]", exc.hint or f"fix {exc.field!r} of the connection")
    config = ctx.config
    return ok(f"valid: auth_flow {config.auth_flow}, cache {config.cache}, API v{config.api_version}")


def _owned_error(ctx: DoctorContext, fields: tuple[str, ...]) -> Result | None:
    exc = ctx.config_error
    if exc is not None and exc.field in fields:
        return fail(f"{_message(exc)} [field {exc.field}]", exc.hint or f"fix {exc.field!r} of the connection")
    return None


def _no_settings() -> Result:
    return Result("skip", "skipped: needs the connection's settings, which failed above")


def _flow(ctx: DoctorContext) -> str:
    if ctx.config is not None:
        return ctx.config.auth_flow
    return str(ctx.extra.get("auth_flow") or "jwt_bearer").lower()


# ---- 3. key --------------------------------------------------------------------------------------
def check_key(ctx: DoctorContext) -> Result:
    if _flow(ctx) != "jwt_bearer":
        return not_applicable(f"auth_flow {_flow(ctx)} signs nothing")
    owned = _owned_error(ctx, _KEY_FIELDS)
    if owned is not None:
        return owned
    key = ctx.config.private_key if ctx.config is not None else None
    if key is None:
        return fail("no private key was loaded", "set extra 'jwt_key_file' (a PEM file) or 'private_key'")
    source = f"file {ctx.extra.get('jwt_key_file')}" if ctx.extra.get("jwt_key_file") else "extra 'private_key'"
    encrypted = ", encrypted (the passphrase opens it)" if ctx.extra.get("private_key_passphrase") else ""
    return ok(f"RSA {key.key_size}-bit private key from {source}{encrypted}")


# ---- 4. certificate ------------------------------------------------------------------------------
def check_certificate(ctx: DoctorContext) -> Result:
    from sf_oauth_provider.client.certificate import load_certificate

    config = ctx.config
    if config is None:
        return _no_settings()
    if config.auth_flow != "jwt_bearer":
        return not_applicable(f"auth_flow {_flow(ctx)} uses no certificate")
    if not config.jwt_certificate:
        return not_applicable("no extra 'jwt_certificate': add the app's certificate to be warned before it expires")
    try:
        cert = load_certificate(config.jwt_certificate, config.conn_id)
    except SalesforceConfigError as exc:
        return fail(_message(exc), exc.hint or "fix extra 'jwt_certificate'")
    days = cert.days_left()
    upload = ("upload the certificate of this key to the app (Connected App: App Manager → Edit → API → 'Use digital "
              "signatures'; External Client App: Edit Settings → OAuth Settings → Enable JWT Bearer Flow)")
    if config.private_key is not None and not cert.matches(config.private_key):
        return fail(f"certificate {cert.subject} does not belong to the private key: Salesforce will refuse "
                    "every assertion ('invalid assertion')",
                    f"{upload}, or put the key that belongs to this certificate in the connection")
    if days <= 0:
        return fail(f"certificate {cert.subject} expired on {cert.not_after:%Y-%m-%d} ({-int(days)} days ago)",
                    f"create a new key and certificate, {upload}, and put both in the connection")
    note = "renew it soon" if days < 30 else None
    return ok(f"{cert.subject} matches the key; expires {cert.not_after:%Y-%m-%d} ({int(days)} days left)", note)


# ---- 5. host -------------------------------------------------------------------------------------
def check_host(ctx: DoctorContext) -> Result:
    owned = _owned_error(ctx, _HOST_FIELDS)
    if owned is not None:
        return owned
    if ctx.config is None:
        return fail("the host could not be checked", "fix the fields above")
    parts = urlsplit(ctx.config.host)
    hostname = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = sorted({str(info[4][0]) for info in socket.getaddrinfo(hostname, port, type=socket.SOCK_STREAM)})
    except OSError as exc:
        return fail(f"DNS: {hostname} does not resolve ({type(exc).__name__}: {exc})",
                    "check the spelling of 'host'; a My Domain URL is https://<name>.my.salesforce.com (Setup → "
                    "My Domain shows it; a renamed My Domain stops resolving after the old name's redirect ends); "
                    "check this host's DNS and proxy")
    return _reach(ctx, hostname, addresses)


def _reach(ctx: DoctorContext, hostname: str, addresses: list[str]) -> Result:
    import httpx

    config = ctx.config
    assert config is not None
    verify: Any = config.ca_bundle or True
    scheme = urlsplit(config.host).scheme
    try:
        before = ctx.now()
        response = httpx.get(config.host + "/", verify=verify, timeout=min(config.timeout, 15.0),
                             follow_redirects=False)
        after = ctx.now()
    except httpx.ConnectError as exc:
        tls = "SSL" in str(exc) or "certificate" in str(exc).lower()
        if tls:
            return fail(f"TLS: the certificate of {hostname} does not verify ({exc})",
                        "behind a TLS-inspecting proxy, set extra 'ca_bundle' to the proxy's CA bundle (PEM)")
        return fail(f"cannot connect to {hostname} ({', '.join(addresses)}): {exc}",
                    "check that this host may reach Salesforce on port 443 (firewall, proxy)")
    except httpx.HTTPError as exc:
        return fail(f"no answer from {hostname}: {type(exc).__name__}",
                    "check the network path to Salesforce; raise extra 'timeout' on a slow link")
    date = response.headers.get("date")
    if date:
        try:
            ctx.server_date = parsedate_to_datetime(date).timestamp()
            ctx.local_time = (before + after) / 2
        except (TypeError, ValueError):
            ctx.server_date = None
    shown = ", ".join(addresses[:3])
    if scheme == "https":
        return ok(f"https, DNS {hostname} → {shown}, TLS certificate verified")
    return ok(f"plain http allowed for loopback {hostname} (the emulator), DNS → {shown}")


# ---- 6. audience ---------------------------------------------------------------------------------
def _expected_audience(host: str) -> str | None:
    parts = urlsplit(host)
    name = (parts.hostname or "").lower()
    if name == "test.salesforce.com" or name.endswith(".sandbox.my.salesforce.com"):
        return TEST_AUDIENCE
    if name == "login.salesforce.com" or name.endswith(".my.salesforce.com"):
        return LOGIN_AUDIENCE
    if is_loopback_host(name):  # the emulator: /test plays test.salesforce.com, the rest production
        return TEST_AUDIENCE if parts.path.rstrip("/").endswith("/test") else LOGIN_AUDIENCE
    return None


def check_audience(ctx: DoctorContext) -> Result:
    config = ctx.config
    if config is None:
        return _no_settings()
    if config.auth_flow != "jwt_bearer":
        return not_applicable(f"auth_flow {_flow(ctx)} sends no JWT")
    audience = (config.audience or "").rstrip("/")
    expected = _expected_audience(config.host)
    if expected is None or audience in (expected, config.host.rstrip("/")):
        how = "set in extra 'audience'" if ctx.extra.get("audience") else "the default for this host"
        return ok(f"{audience} ({how})")
    kind = "a sandbox" if expected == TEST_AUDIENCE else "a production or Developer Edition org"
    return fail(f"audience {audience} does not fit host {config.host} ({kind}): Salesforce expects {expected} "
                "and answers 'audience is invalid'",
                f"set extra 'audience' to {expected}, or remove it (the default follows the host)")


# ---- 7. clock ------------------------------------------------------------------------------------
def check_clock(ctx: DoctorContext) -> Result:
    if ctx.server_date is None or ctx.local_time is None:
        return not_applicable("the server sent no Date header to compare with")
    skew = ctx.server_date - ctx.local_time
    where = "ahead of" if skew > 0 else "behind"
    said = f"Salesforce's clock is {abs(skew):.0f} s {where} this host's"
    if abs(skew) <= MAX_SKEW:
        return ok(said + f" (within {MAX_SKEW:.0f} s)")
    return fail(said + ": a JWT assertion lives 3 minutes, so Salesforce may find it expired ('expired "
                "authorization code') and token expiry times are off",
                "synchronise this host's clock (NTP: chrony or systemd-timesyncd; `timedatectl status` shows it)")


# ---- 8. token ------------------------------------------------------------------------------------
def check_token(ctx: DoctorContext) -> Result:
    from sf_oauth_provider.cli.explain import setup_fix

    try:
        token = ctx.hook.get_token(force_refresh=True)
    except SalesforceOAuthError as exc:
        said = f"{exc.error}: {exc.error_description}" if exc.error else _message(exc)
        status = f"HTTP {exc.status_code} " if exc.status_code else ""
        return fail(f"Salesforce refused the token request: {status}{said}", setup_fix(exc))
    ctx.token = token
    return ok(f"{_flow(ctx)}: token {token.fingerprint} for user {token.user_id} of org {token.org_id}, "
              f"instance {token.instance_url}, expires {iso(token.expires_at)} ({token.expires_at_source})")


# ---- 9. introspection, 10. userinfo --------------------------------------------------------------
def check_introspection(ctx: DoctorContext) -> Result:
    config, token = ctx.config, ctx.token
    assert config is not None and token is not None
    if not config.consumer_secret:
        return not_applicable("no consumer secret ('password'): introspection needs it (so do audits)")
    try:
        result = ctx.hook.introspect(token)
    except SalesforceOAuthError as exc:
        return fail(f"introspection failed: {_message(exc)}", exc.hint)
    if not result.active:
        return fail("Salesforce says the new token is not active",
                    "the app may introspect only its own tokens: check that 'login' and 'password' belong to one app")
    return ok(f"active, scope {result.scope!r}, user {result.username}, expires {iso(result.exp)}")


def check_userinfo(ctx: DoctorContext) -> Result:
    token = ctx.token
    assert token is not None
    try:
        info = ctx.hook.userinfo(token.access_token)
    except SalesforceOAuthError as exc:
        return fail(f"userinfo failed: {_message(exc)}",
                    exc.hint or "the identity service needs the 'id', 'profile' or 'openid' scope on the app")
    return ok(f"user {info.get('preferred_username') or info.get('user_id')}, org {info.get('organization_id')}")


# ---- 11. Redis -----------------------------------------------------------------------------------
def check_redis(ctx: DoctorContext) -> Result:
    from sf_oauth_provider.client.stores.redis import redacted_url

    config = ctx.config
    if config is None:
        return _no_settings()
    if config.cache not in ("auto", "redis"):
        return not_applicable(f"cache {config.cache}: Redis is not used")
    if not ctx.redis_url:
        if config.cache == "redis":
            return fail("extra 'cache' is 'redis' but no Redis URL is configured",
                        "set [sf_oauth] redis_url (env AIRFLOW__SF_OAUTH__REDIS_URL) or SF_OAUTH_REDIS_URL")
        return not_applicable("no Redis configured ([sf_oauth] redis_url): tokens are shared per host")
    shown = redacted_url(ctx.redis_url)
    try:
        return _redis_checked(ctx, shown)
    except Exception as exc:  # noqa: BLE001 - redis-py's errors, OSError, a URL it cannot parse
        return fail(f"Redis at {shown} is unreachable or failing ({type(exc).__name__})",
                    "start Redis or fix [sf_oauth] redis_url / SF_OAUTH_REDIS_URL; meanwhile tasks still get tokens, "
                    "but every host logs in on its own")


def _redis_checked(ctx: DoctorContext, shown: str) -> Result:
    from sf_oauth_provider.client.stores.redis_admin import lock_works, redis_client, settings_report

    config = ctx.config
    assert config is not None and ctx.redis_url is not None
    client = redis_client(ctx.redis_url)
    try:
        client.ping()
        if not lock_works(client):
            return fail(f"Redis at {shown}: the refresh lock does not exclude a second taker",
                        "use a single Redis primary (not a proxy that splits commands between servers)")
        report = settings_report(client)
    finally:
        client.close()
    problems = report["problems"]
    if problems is None:
        return ok(f"Redis at {shown}: reachable, lock works",
                  "CONFIG GET is refused here: make sure maxmemory-policy is noeviction or volatile-* and that "
                  "AOF or RDB persistence is on")
    detail = f"Redis at {shown}: reachable, lock works, maxmemory-policy {report['policy']}"
    if problems and config.flow.keeps_refresh_token:
        return fail(detail + "; " + "; ".join(problems.values()),
                    "this connection rotates refresh tokens, which only the store keeps: fix the Redis settings "
                    "(redis.conf or CONFIG SET)")
    note = "; ".join(problems.values()) + " (this connection keeps no refresh token)" if problems else None
    return ok(detail, note)


# ---- 12. cache directory -------------------------------------------------------------------------
def check_cache_dir(ctx: DoctorContext) -> Result:
    import os

    from sf_oauth_provider.cli.env import file_store
    from sf_oauth_provider.client.cache import default_cache_dir
    from sf_oauth_provider.client.stores.safefs import Rejected

    config = ctx.config
    if config is None:
        return _no_settings()
    if config.cache in ("memory", "none"):
        return not_applicable(f"cache {config.cache}: no file store")
    directory = default_cache_dir()
    fix = ("set SF_OAUTH_CACHE_DIR (or AIRFLOW_HOME) to a directory of the user running the tasks that no other "
           "user can write (mode 0700)")
    try:
        store = file_store()
    except Rejected as exc:
        return fail(f"{directory}: {exc.message}", fix)
    except OSError as exc:
        return fail(f"{directory}: {exc.strerror or type(exc).__name__}", fix)
    st = os.stat(store.directory)
    return ok(f"{store.directory}: owned by uid {st.st_uid} (this user), mode {st.st_mode & 0o777:04o}")


CHECKS: tuple[Check, ...] = (
    Check("connection", "connection found", check_connection),
    Check("fields", "fields valid", check_fields, ("connection",)),
    Check("key", "private key (readable, RSA, passphrase)", check_key, ("connection",)),
    Check("certificate", "certificate vs key, expiry", check_certificate, ("fields", "key")),
    Check("host", "host (https, DNS, TLS)", check_host, ("fields",)),
    Check("audience", "JWT audience vs host", check_audience, ("fields", "key")),
    Check("clock", "clock skew vs Salesforce", check_clock, ("host",)),
    Check("token", "token exchange", check_token, ("fields", "key", "host")),
    Check("introspection", "introspection", check_introspection, ("token",)),
    Check("userinfo", "userinfo", check_userinfo, ("token",)),
    Check("redis", "Redis (reachable, lock, keeps refresh tokens)", check_redis, ("fields", "key")),
    Check("cache_dir", "cache directory (owner, permissions)", check_cache_dir, ("fields", "key")),
)
