"""Turning Salesforce HTTP responses into values or typed errors (no I/O here).

Sync and async clients both hand a finished response (status, headers, capped body) to these
functions, so every rule about what Salesforce sends is written once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import time
import zlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sf_oauth_provider.client.config import is_loopback_host
from sf_oauth_provider.client.errors import (
    SalesforceAuthError,
    SalesforceHostError,
    SalesforceOAuthError,
    SalesforceProtocolError,
    SalesforceRateLimitError,
    SalesforceRequestError,
    SalesforceSessionExpired,
    SalesforceUnavailableError,
    error_from_oauth_response,
)
from sf_oauth_provider.client.token import IntrospectionResult, SalesforceToken

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_EPOCH",
    "Reply",
    "BodyReader",
    "safe_excerpt",
    "parse_token_response",
    "parse_introspection",
    "parse_revoke",
    "parse_json_reply",
    "error_for",
]

#: Larger bodies are not read: Salesforce never sends one this big on these endpoints. The cap
#: holds on the decoded body too (see :class:`BodyReader`).
MAX_BODY_BYTES = 4 * 1024 * 1024
#: The last second of the year 9999: no Salesforce time (``exp``, ``iat``, ``issued_at``) is later.
MAX_EPOCH = 253402300799
#: An error page is excerpted from its first bytes only: the excerpt is 160 characters anyway.
EXCERPT_SCAN_BYTES = 8192
#: Most bytes one decompression step may produce: a gzip bomb never grows past cap + this.
_DECODE_STEP = 64 * 1024
_OAUTH_PATH = "/services/oauth2/"

_SECRETISH_RE = re.compile(r"00D\w{12,15}![\w.\-]+|[A-Za-z0-9+/_\-.=!]{32,}")


@dataclass
class Reply:
    """A finished HTTP exchange as the parsers see it.

    :param truncated: the body was longer than :data:`MAX_BODY_BYTES` and was cut
    :param url: the URL asked (no query string), for messages
    :param login_host: the request went to the connection's ``host`` (token, introspect, revoke,
        userinfo), so a reply that is not Salesforce means the host is wrong
    """

    status_code: int
    content_type: str
    body: bytes | bytearray = field(repr=False)
    truncated: bool = False
    url: str = ""
    login_host: bool = False

    def __post_init__(self) -> None:
        self.content_type = self.content_type.lower()

    def text(self) -> str:
        return bytes(self.body).decode("utf-8", "replace")


class BodyReader:
    """Collects a response body from raw wire chunks, capped at ``cap`` bytes *after* decoding.

    The clients ask for ``Accept-Encoding: identity``; a server that compresses anyway is decoded
    here step by step (at most :data:`_DECODE_STEP` bytes at a time), so a gzip bomb costs at most
    the cap plus one step of memory, never its decoded size.

    :param content_encoding: the response's ``Content-Encoding`` header
    :param cap: most bytes kept; one more marks the body as truncated
    """

    def __init__(self, content_encoding: str, cap: int = MAX_BODY_BYTES) -> None:
        encoding = content_encoding.strip().lower()
        self.cap = cap
        self.body = bytearray()
        self.truncated = False
        self.unsupported: str | None = None
        self._inflate: Any = None
        if encoding in ("gzip", "x-gzip", "deflate"):
            self._inflate = zlib.decompressobj(32 + zlib.MAX_WBITS)  # gzip or zlib header, auto-detected
        elif encoding not in ("", "identity"):
            self.unsupported = encoding

    def feed(self, raw: bytes) -> bool:
        """Add one wire chunk; True once the cap is exceeded (stop reading, the body is cut).

        :raises zlib.error: the compressed body is corrupt
        """
        if self.unsupported is not None:
            return True
        if self._inflate is None:
            self.body += raw[: self.cap + 1 - len(self.body)]
        else:
            data = raw
            while data and len(self.body) <= self.cap:
                self.body += self._inflate.decompress(data, min(_DECODE_STEP, self.cap + 1 - len(self.body)))
                data = self._inflate.unconsumed_tail
        self.truncated = len(self.body) > self.cap
        if self.truncated:
            del self.body[self.cap :]
        return self.truncated


def _strip_markup(text: str) -> tuple[str, str]:
    """(title, text without tags, scripts and styles) in one left-to-right pass.

    Every search starts where the previous one ended, so the work is linear in the text even
    for hostile pages (thousands of unclosed ``<script>`` tags).
    """
    low = text.lower()
    title, out, i, n = "", [], 0, len(text)
    while i < n:
        lt = low.find("<", i)
        if lt < 0:
            out.append(text[i:])
            break
        out.append(text[i:lt])
        gt = low.find(">", lt)
        if gt < 0:
            break  # an unclosed tag: nothing readable follows
        words = low[lt + 1 : gt].split(None, 1)
        name = words[0].rstrip("/") if words else ""
        i = gt + 1
        if name in ("script", "style", "title"):
            close = low.find("</" + name, i)
            if close < 0:
                break
            if name == "title" and not title:
                title = text[i:close]
            end = low.find(">", close)
            i = n if end < 0 else end + 1
        out.append(" ")
    return title, "".join(out)


def safe_excerpt(body: bytes | bytearray | str, limit: int = 160) -> str:
    """A short, single-line excerpt of a body with markup and anything token-like removed.

    Only the first :data:`EXCERPT_SCAN_BYTES` are read, in linear time.
    """
    head = body[:EXCERPT_SCAN_BYTES]
    text = bytes(head).decode("utf-8", "replace") if isinstance(head, (bytes, bytearray)) else head
    title, rest = _strip_markup(text)
    text = " ".join(f"{title} {rest}".split())
    text = _SECRETISH_RE.sub("[redacted]", text)
    return text[:limit] + ("…" if len(text) > limit else "")


_NOT_JSON = object()


def _decode_json(reply: Reply) -> Any:
    """The JSON of a reply, or ``_NOT_JSON`` (no exception: nothing of the body is kept in a
    ``__context__`` that a traceback formatter could print)."""
    if reply.truncated or not reply.body.strip():
        return _NOT_JSON
    try:
        return json.loads(reply.body)
    except ValueError:
        return _NOT_JSON


def _describe_body(reply: Reply, text: str) -> str:
    if "<html" in text[:500].lower() or "html" in reply.content_type:
        return "an HTML page"
    return "an empty body" if not text else "a body that is not Salesforce JSON"


_HOST_HINT = (
    "set 'host' to https://login.salesforce.com, https://test.salesforce.com or your My Domain URL "
    "(https://<domain>.my.salesforce.com), without an endpoint path"
)


def _host_error(reply: Reply, action: str, text: str) -> SalesforceHostError:
    """The error for a login-host request that reached something other than Salesforce."""
    url, status = reply.url or "the host", reply.status_code
    path = urlsplit(reply.url).path
    base_path = path[: path.rfind(_OAUTH_PATH)] if _OAUTH_PATH in path else path
    if _OAUTH_PATH.rstrip("/") in base_path:
        # the host already ended with an endpoint path: the client added it a second time
        pasted = base_path[base_path.find(_OAUTH_PATH.rstrip("/")) :]
        base = reply.url[: reply.url.find(pasted)]
        return SalesforceHostError(
            f"no OAuth {action.split()[0]} endpoint at {url} (HTTP {status}): 'host' ends with {pasted}, "
            "which the client adds itself",
            status_code=status,
            hint=f"remove {pasted} from 'host' (set it to {base})",
        )
    if status == 404:
        endpoint = path.rsplit("/", 1)[-1] or action
        return SalesforceHostError(
            f"no OAuth {endpoint} endpoint at {url} (HTTP 404)",
            status_code=status,
            hint=f"check the host: {_HOST_HINT}",
        )
    excerpt = safe_excerpt(reply.body)
    return SalesforceHostError(
        f"the {action} reply from {url} is not a Salesforce answer (HTTP {status} with "
        f"{_describe_body(reply, text)}" + (f": {excerpt!r})" if excerpt else ")"),
        status_code=status,
        hint=f"'host' must lead to Salesforce itself, not a web page, proxy or login portal: {_HOST_HINT}",
    )


def error_for(reply: Reply, action: str, now: float | None = None) -> SalesforceOAuthError:
    """The typed error for a non-2xx reply (or an unreadable 2xx one).

    :param now: epoch seconds the reply came (default: now), for errors that say when to try again
    """
    status = reply.status_code
    if reply.truncated:
        return SalesforceUnavailableError(
            f"Salesforce sent an oversized body for the {action} (HTTP {status}, over {MAX_BODY_BYTES} bytes)",
            status_code=status,
            hint="not a Salesforce answer: check the host and any proxy in between; retried automatically",
        )
    data = _decode_json(reply)
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        desc = data.get("error_description")
        return error_from_oauth_response(status, data["error"], desc if isinstance(desc, str) else None, action=action,
                                         now=now)
    if isinstance(data, list) and data and isinstance(data[0], dict) and "errorCode" in data[0]:
        return _rest_error(status, str(data[0].get("errorCode")), str(data[0].get("message", "")), action)
    text = reply.text().strip()
    if status == 403 and text.startswith("Bad_OAuth_Token"):
        return SalesforceSessionExpired(
            f"Salesforce rejected the access token for the {action} (HTTP 403 Bad_OAuth_Token)",
            error="Bad_OAuth_Token",
            status_code=status,
            hint="the token expired or was revoked; a new one is fetched automatically",
        )
    if status == 401:
        return SalesforceSessionExpired(
            f"Salesforce rejected the access token for the {action} (HTTP 401)",
            status_code=status,
            hint="the token expired or was revoked; a new one is fetched automatically",
        )
    if status == 429:
        return SalesforceRateLimitError(
            f"Salesforce is rate limiting the {action} (HTTP 429)", status_code=status, error="rate_limit_exceeded",
            hint="wait before trying again; retried automatically with backoff",
        )
    if reply.login_host and (status == 404 or (200 <= status < 300 and text)):
        # Salesforce answers its OAuth endpoints with JSON; a 404 or a 2xx page is someone else
        return _host_error(reply, action, text)
    kind = _describe_body(reply, text)
    excerpt = safe_excerpt(reply.body)
    return SalesforceUnavailableError(
        f"Salesforce answered the {action} with HTTP {status} and {kind}" + (f": {excerpt!r}" if excerpt else ""),
        status_code=status,
        hint=(
            "Salesforce may be in maintenance or the org may be inactive; retried automatically"
            if status >= 500 or status == 200
            else "check that 'host' points at a Salesforce login or My Domain URL"
        ),
    )


def _rest_error(status: int, code: str, message: str, action: str) -> SalesforceOAuthError:
    said = f"{code}: {message}" if message else code
    text = f"Salesforce refused the {action} (HTTP {status}) — Salesforce says: {said}"
    if code == "INVALID_SESSION_ID":
        return SalesforceSessionExpired(text, error=code, error_description=message, status_code=status,
                                        hint="the token expired or was revoked; a new one is fetched automatically")
    if code in ("REQUEST_LIMIT_EXCEEDED", "API_CURRENTLY_DISABLED") or status == 429:
        return SalesforceRateLimitError(text, error=code, error_description=message, status_code=status,
                                        hint="the org's API request limit is reached; wait or raise the limit")
    if status >= 500 or code in ("SERVER_UNAVAILABLE", "UNKNOWN_EXCEPTION"):
        return SalesforceUnavailableError(text, error=code, error_description=message, status_code=status,
                                          hint="retried automatically")
    hints = {
        "MALFORMED_QUERY": "fix the SOQL statement",
        "INVALID_FIELD": "check the field names against the object (Setup → Object Manager)",
        "INVALID_TYPE": "check the object name, and that the user can see it",
        "API_DISABLED_FOR_ORG": "the org's edition or the user's profile does not allow API access",
        "INSUFFICIENT_ACCESS": "the user lacks permission for this request",
    }
    return SalesforceRequestError(text, error=code, error_description=message, status_code=status, hint=hints.get(code))


def parse_json_reply(reply: Reply, action: str, now: float | None = None) -> Any:
    """JSON of a 2xx reply, or the typed error (``now``: see :func:`error_for`)."""
    if not 200 <= reply.status_code < 300:
        raise error_for(reply, action, now)
    data = _decode_json(reply)
    if data is _NOT_JSON:
        raise error_for(reply, action, now)
    return data


def _str(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    return value if isinstance(value, str) and value else None


def _epoch_millis(raw: Any) -> int | None:
    """``issued_at`` (a string of epoch milliseconds) as an int in range, else None."""
    text = str(raw)
    if isinstance(raw, bool) or not text.isdigit() or len(text) > 15:
        return None
    millis = int(text)
    return millis if millis <= MAX_EPOCH * 1000 else None


def _checked_instance_url(raw: str, status: int) -> str:
    """The token's ``instance_url`` if the bearer token may go there: https, or http on loopback.

    Checked when the token arrives, so a token bound to a plain-http (or non-URL) instance is never
    cached or handed out; the bearer check before each request (``check_bearer_target``) stays.
    """
    url = raw.rstrip("/")
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
        parts.port  # noqa: B018 — a malformed port raises here
    except ValueError:
        parts, hostname = None, None
    scheme = parts.scheme.lower() if parts is not None else ""
    if hostname and (scheme == "https" or (scheme == "http" and is_loopback_host(hostname))):
        return url
    shown = safe_excerpt(url, 120)
    problem = "uses plain http to a non-loopback host" if scheme == "http" and hostname else "is not an https URL"
    raise SalesforceProtocolError(
        f"Salesforce's token response field 'instance_url' {shown!r} {problem}: the access token would travel "
        "unencrypted or to no real host, so it is refused and nothing is cached",
        status_code=status, error="invalid_instance_url",
        hint="Salesforce always answers with an https instance_url: check 'host' and any proxy rewriting the "
        "token response",
    )


def parse_token_response(
    reply: Reply,
    *,
    session_timeout: float,
    consumer_secret: str | None = None,
    now: float | None = None,
) -> SalesforceToken:
    """A token endpoint reply -> :class:`SalesforceToken`, or the typed error.

    Salesforce sends no ``expires_in``: expiry starts as ``issued_at`` (or now) + session timeout.
    When a ``signature`` is present and the consumer secret is known, it is verified.
    """
    data = parse_json_reply(reply, "token request", now)
    if not isinstance(data, dict) or not _str(data, "access_token") or not _str(data, "instance_url"):
        raise SalesforceUnavailableError(
            "Salesforce's token response lacks access_token or instance_url",
            status_code=reply.status_code,
            hint="not a Salesforce token response: check the host",
        )
    instance_url = _checked_instance_url(data["instance_url"], reply.status_code)
    received = time.time() if now is None else now
    issued_at = received
    raw_issued = data.get("issued_at")
    if raw_issued is not None:
        millis = _epoch_millis(raw_issued)
        if millis is None:
            raise SalesforceUnavailableError(
                "Salesforce's token response has a malformed or out-of-range issued_at "
                "(not epoch milliseconds between 1970 and 9999)",
                status_code=reply.status_code,
            )
        issued_at = millis / 1000.0
    signature = _str(data, "signature")
    id_url = _str(data, "id")
    if signature and consumer_secret and id_url and raw_issued is not None:
        expected = base64.b64encode(
            hmac.new(consumer_secret.encode(), (id_url + str(raw_issued)).encode(), hashlib.sha256).digest()
        ).decode()
        if not hmac.compare_digest(expected, signature):
            raise SalesforceAuthError(
                "Salesforce's token response signature does not verify",
                status_code=reply.status_code,
                error="invalid_signature",
                hint="'password' is not the consumer secret of this connected app (or a proxy altered the response)",
            )
    # Never trust a clock from the far past/future: it would make the token look fresh forever.
    if abs(issued_at - received) > 86400:
        issued_at = received
    return SalesforceToken(
        access_token=data["access_token"],
        instance_url=instance_url,
        id_url=id_url,
        issued_at=issued_at,
        expires_at=issued_at + session_timeout,
        scope=_str(data, "scope"),
        token_type=_str(data, "token_type") or "Bearer",
        refresh_token=_str(data, "refresh_token"),
    )


def parse_introspection(reply: Reply) -> IntrospectionResult:
    data = parse_json_reply(reply, "introspection")
    if not isinstance(data, dict) or not isinstance(data.get("active"), bool):
        raise SalesforceUnavailableError(
            "Salesforce's introspection response has no boolean 'active'", status_code=reply.status_code
        )

    def integer(name: str) -> int | None:
        """An epoch-seconds field: absent -> None; out of range (1e400, NaN, -1) -> the error."""
        value = data.get(name)
        if value is None:
            return None
        if isinstance(value, str) and value.isdigit() and len(value) <= 12:
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and not math.isfinite(value)
        ) or not 0 <= value <= MAX_EPOCH:
            raise SalesforceUnavailableError(
                f"Salesforce's introspection response has a malformed or out-of-range {name!r} "
                "(not epoch seconds between 1970 and 9999)",
                status_code=reply.status_code,
                hint="not what Salesforce sends: check 'host' and any proxy in between; retried automatically",
            )
        return int(value)

    return IntrospectionResult(
        active=data["active"],
        scope=_str(data, "scope"),
        client_id=_str(data, "client_id"),
        username=_str(data, "username"),
        sub=_str(data, "sub"),
        token_type=_str(data, "token_type"),
        exp=integer("exp"),
        iat=integer("iat"),
        nbf=integer("nbf"),
    )


def parse_revoke(reply: Reply) -> bool:
    """True: revoked now. False: Salesforce says the token is already invalid."""
    if 200 <= reply.status_code < 300:
        return True
    if reply.status_code == 400 and not reply.truncated and b"invalid_token" in reply.body[:2000]:
        return False
    raise error_for(reply, "revocation")
