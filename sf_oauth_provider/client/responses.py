"""Turning Salesforce HTTP responses into values or typed errors (no I/O here).

Sync and async clients both hand a finished response (status, headers, capped body) to these
functions, so every rule about what Salesforce sends is written once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from typing import Any

from sf_oauth_provider.client.errors import (
    SalesforceAuthError,
    SalesforceOAuthError,
    SalesforceRateLimitError,
    SalesforceRequestError,
    SalesforceSessionExpired,
    SalesforceUnavailableError,
    error_from_oauth_response,
)
from sf_oauth_provider.client.token import IntrospectionResult, SalesforceToken

__all__ = [
    "MAX_BODY_BYTES",
    "Reply",
    "safe_excerpt",
    "parse_token_response",
    "parse_introspection",
    "parse_revoke",
    "parse_json_reply",
    "error_for",
]

#: Larger bodies are not read: Salesforce never sends one this big on these endpoints.
MAX_BODY_BYTES = 4 * 1024 * 1024

_TAG_RE = re.compile(r"<(script|style)[^>]*>.*?</\1>|<[^>]+>", re.S | re.I)
_SECRETISH_RE = re.compile(r"00D\w{12,15}![\w.\-]+|[A-Za-z0-9+/_\-.=!]{32,}")


class Reply:
    """A finished HTTP exchange as the parsers see it.

    :param truncated: the body was longer than :data:`MAX_BODY_BYTES` and was cut
    """

    __slots__ = ("status_code", "content_type", "body", "truncated")

    def __init__(self, status_code: int, content_type: str, body: bytes, truncated: bool = False) -> None:
        self.status_code = status_code
        self.content_type = content_type.lower()
        self.body = body
        self.truncated = truncated

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def safe_excerpt(body: bytes | str, limit: int = 160) -> str:
    """A short, single-line excerpt of a body with markup and anything token-like removed."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    title = re.search(r"<title[^>]*>(.*?)</title>", text, re.S | re.I)
    text = _TAG_RE.sub(" ", text)
    if title:
        text = title.group(1) + " " + text
    text = " ".join(text.split())
    text = _SECRETISH_RE.sub("[redacted]", text)
    return text[:limit] + ("…" if len(text) > limit else "")


def _decode_json(reply: Reply) -> Any:
    if reply.truncated or not reply.body.strip():
        raise ValueError("no JSON")
    return json.loads(reply.body)


def error_for(reply: Reply, action: str) -> SalesforceOAuthError:
    """The typed error for a non-2xx reply (or an unreadable 2xx one)."""
    status = reply.status_code
    if reply.truncated:
        return SalesforceUnavailableError(
            f"Salesforce sent an oversized body for the {action} (HTTP {status}, over {MAX_BODY_BYTES} bytes)",
            status_code=status,
            hint="not a Salesforce answer: check the host and any proxy in between; retried automatically",
        )
    try:
        data = _decode_json(reply)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        desc = data.get("error_description")
        return error_from_oauth_response(status, data["error"], desc if isinstance(desc, str) else None, action=action)
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
    kind = "an HTML page" if "<html" in text[:500].lower() or "html" in reply.content_type else (
        "an empty body" if not text else "a body that is not Salesforce JSON"
    )
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


def parse_json_reply(reply: Reply, action: str) -> Any:
    """JSON of a 2xx reply, or the typed error."""
    if not 200 <= reply.status_code < 300:
        raise error_for(reply, action)
    try:
        return _decode_json(reply)
    except ValueError:
        raise error_for(reply, action) from None


def _str(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    return value if isinstance(value, str) and value else None


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
    data = parse_json_reply(reply, "token request")
    if not isinstance(data, dict) or not _str(data, "access_token") or not _str(data, "instance_url"):
        raise SalesforceUnavailableError(
            "Salesforce's token response lacks access_token or instance_url",
            status_code=reply.status_code,
            hint="not a Salesforce token response: check the host",
        )
    received = time.time() if now is None else now
    issued_at = received
    raw_issued = data.get("issued_at")
    if raw_issued is not None:
        try:
            issued_at = int(str(raw_issued)) / 1000.0
        except ValueError:
            raise SalesforceUnavailableError(
                "Salesforce's token response has a malformed issued_at", status_code=reply.status_code
            ) from None
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
        instance_url=data["instance_url"].rstrip("/"),
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
        value = data.get(name)
        if isinstance(value, bool):
            return None
        if isinstance(value, (int, float)):
            return int(value)
        if isinstance(value, str) and value.isdigit():
            return int(value)
        return None

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
