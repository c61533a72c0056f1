"""Errors raised by the Salesforce OAuth client.

Every error carries what Salesforce said (``error``, ``error_description``, ``status_code``),
what the user should change (``hint``) and whether a retry may help (``transient``)::

    SalesforceOAuthError
    ├── SalesforceConfigError            bad connection settings, found before any request
    ├── SalesforcePermanentError         retrying only burns the login budget
    │   ├── SalesforceAuthError          bad key, unknown client, user not approved, wrong domain
    │   │   └── SalesforceRefreshTokenLost  the live refresh token is in no store (its answer was
    │   │                                lost, an entry evicted or rolled back): re-authorise
    │   ├── SalesforceRequestError       bad SOQL, unsupported token type, other 4xx
    │   ├── SalesforceHostError          'host' is not Salesforce: 404, a pasted token path,
    │   │                                a name that does not resolve, a 200 HTML page
    │   ├── SalesforceLoginRateLimitError  the user's 3,600 logins this hour are used up: a retry
    │   │                                within the task try only extends the lockout
    │   │   └── SalesforceLoginBudgetExceeded  refused before sending: the login budget's cap
    │   │                                ([sf_oauth] login_budget_cap) is reached for this hour
    │   └── SalesforceProtocolError      a reply no Salesforce sends: an off-origin or repeated
    │                                    nextRecordsUrl, a plain-http instance URL
    └── SalesforceTransientError         a retry may help
        ├── SalesforceUnavailableError   5xx, maintenance HTML page, malformed/oversized body
        ├── SalesforceRateLimitError     429, the data API's REQUEST_LIMIT_EXCEEDED
        ├── SalesforceConnectionError    timeout, deadline, connection reset, TLS handshake
        └── SalesforceRefreshInDoubt     a refresh grant may have reached Salesforce, its answer
                                         did not come back: never resent blindly
    SalesforceSessionExpired             401 INVALID_SESSION_ID / 403 Bad_OAuth_Token (a fresh token fixes it)

Whether to try again is decided by one predicate, :func:`retry_may_help` (the ``transient``
flag); code branches on it or on the class, never on the message text. Errors raised by the
clients name their connection (``conn_id``): "Connection 'sf_prod': ...".
"""

from __future__ import annotations

from typing import Iterable
from urllib.parse import quote, quote_plus

__all__ = [
    "SalesforceOAuthError",
    "SalesforceConfigError",
    "SalesforcePermanentError",
    "SalesforceAuthError",
    "SalesforceRequestError",
    "SalesforceBulkJobError",
    "SalesforceBulkTimeout",
    "SalesforceTransientError",
    "SalesforceUnavailableError",
    "SalesforceRateLimitError",
    "SalesforceLoginRateLimitError",
    "SalesforceLoginBudgetExceeded",
    "SalesforceConnectionError",
    "SalesforceRefreshInDoubt",
    "SalesforceRefreshTokenLost",
    "may_have_been_processed",
    "SalesforceSessionExpired",
    "SalesforceHostError",
    "SalesforceProtocolError",
    "retry_may_help",
    "error_from_oauth_response",
    "hint_for",
]


class SalesforceOAuthError(Exception):
    """Base of every error of this package.

    :param message: a one-line description, safe to log (never contains a secret)
    :param error: Salesforce's ``error`` code, when it gave one
    :param error_description: Salesforce's ``error_description``, when it gave one
    :param status_code: HTTP status, when there was a response
    :param hint: what the user should change
    :param conn_id: the connection the error is about; it then opens the message
    """

    transient: bool = False
    #: the connection named at the start of ``message`` (None: not named yet)
    conn_id: str | None = None

    def __init__(
        self,
        message: str,
        *,
        error: str | None = None,
        error_description: str | None = None,
        status_code: int | None = None,
        hint: str | None = None,
        conn_id: str | None = None,
    ) -> None:
        self.message = message
        self.error = error
        self.error_description = error_description
        self.status_code = status_code
        self.hint = hint
        super().__init__(str(self))
        if conn_id is not None:
            self.for_connection(conn_id)

    def for_connection(self, conn_id: str) -> SalesforceOAuthError:
        """Name the connection at the start of the message, once (a second call changes nothing).

        :param conn_id: the Airflow connection id (or the name an :class:`OAuthConfig` was given)
        """
        if self.conn_id is None:
            self.conn_id = conn_id
            self.message = f"Connection {conn_id!r}: {self.message}"
            self.args = (str(self),)
        return self

    def redact(self, secrets: Iterable[str]) -> SalesforceOAuthError:
        """Replace every secret the request carried (raw or URL-encoded) in the message and in
        Salesforce's fields by ``[redacted]``: a server that echoes the request must not put the
        client secret, the assertion or a token into logs, reports or XCom.

        :param secrets: the secret values of the request that got this reply
        """
        forms = sorted(
            {f for s in secrets if s and len(s) >= 6 for f in (s, quote(s, safe=""), quote_plus(s))},
            key=len, reverse=True,
        )
        if not forms:
            return self

        def clean(text: str | None) -> str | None:
            if text is None:
                return None
            for form in forms:
                text = text.replace(form, "[redacted]")
            return text

        self.message = clean(self.message) or ""
        self.error = clean(self.error)
        self.error_description = clean(self.error_description)
        self.hint = clean(self.hint)
        self.args = (str(self),)
        return self

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} — {self.hint}"
        return self.message

    def __reduce__(self):  # keep keyword-only attributes through pickling (multiprocessing, Airflow)
        return (
            _rebuild,
            (type(self), self.message, self.error, self.error_description, self.status_code, self.hint,
             self.conn_id),
        )


def _rebuild(cls, message, error, error_description, status_code, hint, conn_id=None):
    exc = cls(message, error=error, error_description=error_description, status_code=status_code, hint=hint)
    exc.conn_id = conn_id  # already in the message: do not prefix it again
    return exc


class SalesforceConfigError(SalesforceOAuthError, ValueError):
    """The connection's settings are wrong; nothing was sent to Salesforce.

    :param field: the connection field at fault (``login``, ``extra.username``, ...)
    """

    def __init__(
        self, message: str, *, field: str | None = None, hint: str | None = None, conn_id: str | None = None
    ) -> None:
        self.field = field
        super().__init__(message, hint=hint, conn_id=conn_id)

    def __reduce__(self):
        return (_rebuild_config, (self.message, self.field, self.hint, self.conn_id))


def _rebuild_config(message, field, hint, conn_id=None):
    exc = SalesforceConfigError(message, field=field, hint=hint)
    exc.conn_id = conn_id
    return exc


class SalesforcePermanentError(SalesforceOAuthError):
    """Salesforce refused the request for a reason a retry cannot change."""


class SalesforceAuthError(SalesforcePermanentError):
    """Authentication was refused (wrong key, unknown client, user not approved, ...)."""


class SalesforceRequestError(SalesforcePermanentError):
    """A request other than authentication was refused (bad SOQL, bad token type, ...)."""


class SalesforceBulkJobError(SalesforceRequestError):
    """A Bulk API 2.0 job Salesforce will not finish: ``Failed`` (its ``errorMessage`` quoted),
    ``Aborted`` by someone else, or SOQL that Bulk 2.0 refuses. The job id opens the message."""


class SalesforceHostError(SalesforcePermanentError):
    """The connection's ``host`` does not lead to a Salesforce login endpoint.

    A typo, a pasted endpoint path, a name that does not resolve, or a web server that is not
    Salesforce: no retry can fix it, so the sensor fails at its first check instead of waiting.
    """


class SalesforceProtocolError(SalesforcePermanentError):
    """Salesforce (or what answers in its place) sent a reply that breaks its own protocol in a
    way that is unsafe to follow: an off-origin or repeated ``nextRecordsUrl``, a plain-http
    instance URL. Nothing is sent on."""


class SalesforceLoginRateLimitError(SalesforcePermanentError):
    """The user has used up Salesforce's logins for the hour (``LOGIN_RATE_EXCEEDED``, 3,600 logins
    per user per rolling hour). Permanent for the task try: Salesforce counts refused logins too,
    so retrying within seconds only burns the budget; the limit frees up as the hour rolls on.

    :param frees_up_at: epoch seconds by which the limit has freed up at the latest (an hour
        after this refusal: every login counted then is over an hour old)
    """

    def __init__(self, message: str, *, frees_up_at: float | None = None, **kwargs) -> None:
        self.frees_up_at = frees_up_at
        super().__init__(message, **kwargs)

    def __reduce__(self):
        return (_rebuild_login_limit, (self.message, self.error, self.error_description, self.status_code,
                                       self.hint, self.conn_id, self.frees_up_at))


def _rebuild_login_limit(message, error, error_description, status_code, hint, conn_id, frees_up_at):
    exc = SalesforceLoginRateLimitError(message, error=error, error_description=error_description,
                                        status_code=status_code, hint=hint, frees_up_at=frees_up_at)
    exc.conn_id = conn_id
    return exc


class SalesforceLoginBudgetExceeded(SalesforceLoginRateLimitError):
    """The connection's login budget refused a token request before it was sent: ``count`` token
    requests for this Salesforce user in the rolling hour reached ``cap`` (``[sf_oauth]
    login_budget_cap``). Permanent for now: it frees up at ``frees_up_at``, when the oldest
    counted login leaves the hour. Salesforce was not asked.

    :param count: logins counted in the last hour
    :param cap: the configured cap
    """

    def __init__(self, message: str, *, count: int = 0, cap: int = 0, frees_up_at: float | None = None,
                 **kwargs) -> None:
        self.count = count
        self.cap = cap
        kwargs.setdefault("error", "login_budget_exceeded")
        super().__init__(message, frees_up_at=frees_up_at, **kwargs)

    def __reduce__(self):
        return (_rebuild_login_budget, (self.message, self.error, self.hint, self.conn_id, self.frees_up_at,
                                        self.count, self.cap))


def _rebuild_login_budget(message, error, hint, conn_id, frees_up_at, count, cap):
    exc = SalesforceLoginBudgetExceeded(message, error=error, hint=hint, frees_up_at=frees_up_at, count=count,
                                        cap=cap)
    exc.conn_id = conn_id
    return exc


class SalesforceTransientError(SalesforceOAuthError):
    """Salesforce could not answer now; the same request may succeed later."""

    transient = True


class SalesforceUnavailableError(SalesforceTransientError):
    """5xx, maintenance page, or a body that is not what Salesforce sends."""


class SalesforceRateLimitError(SalesforceTransientError):
    """Too many requests or logins; wait before trying again."""


class SalesforceConnectionError(SalesforceTransientError):
    """No answer: timeout, reset, refused connection, TLS failure.

    :ivar request_sent: False only when the request provably never left this host (the
        connection could not be made): then Salesforce cannot have acted on it
    """

    request_sent: bool = True


class SalesforceRefreshInDoubt(SalesforceTransientError):
    """A refresh-token grant may have reached Salesforce but no usable answer came back (a read
    timeout, a reset after the request was written, a 5xx from a proxy, a 200 that could not be
    read). With rotation on, Salesforce may have retired the refresh token it carried; sending it
    again would make Salesforce revoke the live one, so it is not resent until Salesforce says
    (introspection) that it is still active."""


class SalesforceRefreshTokenLost(SalesforceAuthError):
    """The refresh token Salesforce accepts is in no store this process can read, and the one it
    could send is retired (rotated away): sending it would revoke the live one. A person must
    restore the store or re-authorise the connected app."""


class SalesforceBulkTimeout(SalesforceTransientError):
    """A Bulk API 2.0 job did not finish (or its results did not arrive) within the extract's
    ``timeout``; the job was aborted. Transient: a later try may find Salesforce less busy."""


class SalesforceSessionExpired(SalesforceOAuthError):
    """The access token is no longer valid; getting a new one fixes it."""

    transient = True


def may_have_been_processed(exc: BaseException) -> bool:
    """Whether Salesforce may have acted on a request that ended in ``exc`` (for a rotating
    refresh grant: may have retired the refresh token it carried).

    Safe (False): the connection was never made; Salesforce answered that it did not do it (an
    OAuth error body, 503 unavailable, 429 / rate limit). In doubt (True): anything after the
    request may have been delivered — a read timeout, a reset, a 500/502/504 (a proxy may have
    forwarded it), or a 200 whose body could not be used.
    """
    if not isinstance(exc, SalesforceOAuthError):
        return True
    if isinstance(exc, SalesforceConnectionError):
        return exc.request_sent
    if isinstance(exc, SalesforceRateLimitError):
        return False
    if exc.status_code == 200:
        return True
    if isinstance(exc, SalesforceUnavailableError):
        return exc.status_code != 503
    return False


def retry_may_help(exc: BaseException, *, same_request: bool = False) -> bool:
    """The one answer to "may trying again succeed?" — used by the client's retries, the sensor,
    the trigger and the operators alike.

    It is the error's ``transient`` flag: transient errors (outage, rate limit, timeout, an
    expired session) may pass; permanent ones (bad key, wrong host) never do. An expired
    session is fixed by a *new token*, not by sending the same request again: ``same_request``
    asks the narrower question the client's own retry loop asks.

    :param exc: any exception; only this package's errors may be retried
    :param same_request: True when the very same request (same bearer token) would be resent
    """
    if not isinstance(exc, SalesforceOAuthError) or not exc.transient:
        return False
    return not (same_request and isinstance(exc, SalesforceSessionExpired))


_RATE_HINT = (
    "Salesforce is throttling requests: retried with backoff; if it persists, the org's API request "
    "limit is reached (Setup → Company Information → API Requests)"
)

# (error, description fragment or None) -> (class, hint). The description is matched as
# Salesforce sends it (lower-case); None matches any description for that error code.
_KNOWN: list[tuple[str, str | None, type[SalesforceOAuthError], str]] = [
    (
        "invalid_grant",
        "user hasn't approved this consumer",
        SalesforceAuthError,
        "pre-authorize the user's profile or permission set on the connected app "
        "(Manage → Edit Policies → Permitted Users: 'Admin approved users are pre-authorized', "
        "then add the profile or permission set)",
    ),
    (
        "invalid_grant",
        "audience is invalid",
        SalesforceAuthError,
        "set extra 'audience' to https://login.salesforce.com (production) or "
        "https://test.salesforce.com (sandbox); with a My Domain host the audience stays login/test",
    ),
    (
        "invalid_grant",
        "expired authorization code",
        SalesforceAuthError,
        "the JWT 'exp' was already past when Salesforce read it: check this host's clock (NTP)",
    ),
    (
        "invalid_grant",
        "invalid assertion",
        SalesforceAuthError,
        "the JWT signature did not verify: the private key must match the certificate uploaded "
        "to the connected app (Use digital signatures), and 'login' must be that app's consumer key",
    ),
    (
        "invalid_grant",
        "request not supported on this domain",
        SalesforceAuthError,
        "client credentials only work on your My Domain: set host to https://<yourdomain>.my.salesforce.com",
    ),
    (
        "invalid_grant",
        "no client credentials user enabled",
        SalesforceAuthError,
        "enable the client credentials flow on the connected app and choose a 'Run As' user "
        "(Manage → Edit Policies → Client Credentials Flow)",
    ),
    (
        "invalid_grant",
        "expired access/refresh token",
        SalesforceAuthError,
        "the refresh token was revoked, expired or rotated away: authorize again and store the "
        "new refresh token in extra 'refresh_token'",
    ),
    (
        "invalid_grant",
        "invalid user",
        SalesforceAuthError,
        "extra 'username' must be the Salesforce username of an active user of this org",
    ),
    (
        "invalid_grant",
        "authentication failure",
        SalesforceAuthError,
        "check the username, that the user is active, and the host (production vs sandbox)",
    ),
    (
        "invalid_grant",
        None,
        SalesforceAuthError,
        "Salesforce refused the grant: check the connected app, the user and the host",
    ),
    (
        "invalid_app_access",
        None,
        SalesforceAuthError,
        "the connected app requires admin approval: add the user's profile or permission set "
        "to the app (Manage → Profiles / Permission Sets)",
    ),
    (
        "invalid_client_id",
        None,
        SalesforceAuthError,
        "'login' must be the connected app's consumer key (it can take up to 10 minutes after "
        "creating an app before Salesforce accepts it)",
    ),
    (
        "invalid_client",
        None,
        SalesforceAuthError,
        "'password' must be the connected app's consumer secret for the consumer key in 'login'",
    ),
    (
        "inactive_user",
        None,
        SalesforceAuthError,
        "the user is inactive: activate it or use another user",
    ),
    (
        "inactive_org",
        None,
        SalesforceAuthError,
        "the org is locked, inactive or expired (a lapsed sandbox or trial?)",
    ),
    (
        "unsupported_grant_type",
        None,
        SalesforceAuthError,
        "use auth_flow 'jwt_bearer', 'client_credentials' or 'refresh_token' and enable that "
        "flow on the connected app",
    ),
    (
        "invalid_scope",
        None,
        SalesforceAuthError,
        "the connected app does not grant the requested scope: edit its OAuth scopes",
    ),
    # Salesforce's OAuth error list: rate_limit_exceeded = "number of login attempts exceeded"
    ("rate_limit_exceeded", None, SalesforceLoginRateLimitError, _RATE_HINT),
    (
        "invalid_token",
        None,
        SalesforceRequestError,
        "the token is already invalid (revoked, expired or never issued)",
    ),
    (
        "unsupported_token_type",
        None,
        SalesforceRequestError,
        "pass an access token, a refresh token or an OauthToken DeleteToken",
    ),
    (
        "invalid_request",
        None,
        SalesforceRequestError,
        "the request is missing a parameter Salesforce needs",
    ),
    (
        "server_error",
        None,
        SalesforceUnavailableError,
        "Salesforce had an internal error: it is retried automatically",
    ),
    (
        "temporarily_unavailable",
        None,
        SalesforceUnavailableError,
        "Salesforce is temporarily unavailable: it is retried automatically",
    ),
]


def hint_for(error: str | None, description: str | None) -> tuple[type[SalesforceOAuthError], str | None]:
    """Class and hint for a Salesforce ``error``/``error_description`` pair."""
    code = (error or "").strip().lower()
    desc = (description or "").strip().lower()
    if "login_rate_exceeded" in desc or "login_rate_exceeded" in code:  # whatever the error code
        return SalesforceLoginRateLimitError, _RATE_HINT
    for known_error, fragment, cls, hint in _KNOWN:
        if code == known_error and (fragment is None or fragment in desc):
            return cls, hint
    if "request_limit_exceeded" in code:
        return SalesforceRateLimitError, _RATE_HINT
    return SalesforcePermanentError, None


#: Salesforce counts logins per user over a rolling hour
LOGIN_WINDOW_SECONDS = 3600


def _login_limit_error(
    status_code: int, error: str | None, description: str | None, said: str, action: str, now: float | None
) -> SalesforceLoginRateLimitError:
    import time
    from datetime import datetime, timezone

    frees_up_at = (time.time() if now is None else now) + LOGIN_WINDOW_SECONDS
    at = datetime.fromtimestamp(frees_up_at, timezone.utc).strftime("%H:%M UTC on %Y-%m-%d")
    return SalesforceLoginRateLimitError(
        f"Salesforce refused the {action} (HTTP {status_code}) — Salesforce says: {said}; this user's logins "
        f"for the hour are used up, and they free up as the hour rolls on: by {at} at the latest",
        error=error, error_description=description, status_code=status_code, frees_up_at=frees_up_at,
        hint="Salesforce allows 3,600 logins per user per rolling hour and counts refused ones too, so this "
        "task try is not retried. Find what logs in this often (Setup → Login History, filtered by the user), "
        "let tasks share one token (extra 'cache': 'file', or 'redis' for many hosts), then run the task again",
    )


def error_from_oauth_response(
    status_code: int, error: str | None, description: str | None, *, action: str, now: float | None = None
) -> SalesforceOAuthError:
    """Build the typed error for a JSON OAuth error response.

    :param action: what was attempted, e.g. ``"token request"``; goes first in the message
    :param now: epoch seconds of the reply (default: now): the login limit says when it frees up
    """
    cls, hint = hint_for(error, description)
    login_limit = cls is SalesforceLoginRateLimitError and (
        # a bare 429 is throttling (Salesforce's edge, a proxy): transient, whatever the code says
        status_code != 429 or "login_rate_exceeded" in f"{error} {description}".lower()
    )
    if status_code >= 500 and not cls.transient:
        cls = SalesforceUnavailableError
    if status_code == 429:
        cls = SalesforceRateLimitError
    said = error or "error"
    if description:
        said = f"{said}: {description}"
    if login_limit and status_code < 500:
        return _login_limit_error(status_code, error, description, said, action, now)
    return cls(
        f"Salesforce refused the {action} (HTTP {status_code}) — Salesforce says: {said}",
        error=error,
        error_description=description,
        status_code=status_code,
        hint=hint,
    )
