"""Salesforce's token errors explained for the person fixing them: the Setup page and the setting.

The package's own hint (:func:`sf_oauth_provider.client.errors.hint_for`) says what is wrong; this
adds where to change it, for both kinds of app: a Connected App (Salesforce no longer lets orgs
create new ones from Spring '26) and an External Client App (what new integrations use).
Sources: Salesforce Help "Configure External Client App Policies" (Permitted Users: *Admin approved
users are pre-authorized*, Manage Profiles / Permission Sets) and the ExtlClntAppOauthConfigurablePolicies
metadata (``clientCredentialsFlowUser``: the execution user, which must have *API Only*).
"""

from __future__ import annotations

from sf_oauth_provider.client.errors import SalesforceOAuthError

__all__ = ["setup_fix"]

_CA = "Connected App: Setup → App Manager → the app ▾ → "
_ECA = "External Client App: Setup → External Client App Manager → the app ▾ → "
_PREAUTH = (
    "pre-authorise the user: " + _CA + "Manage → Edit Policies → OAuth Policies → Permitted Users: 'Admin approved "
    "users are pre-authorized', then Manage Profiles / Manage Permission Sets and add the user's profile or a "
    "permission set the user has; " + _ECA + "Edit Policies → OAuth Policies → Permitted Users: 'Admin approved "
    "users are pre-authorized' and select the user's profiles / permission sets"
)
_CONSUMER = (
    _CA + "View → Manage Consumer Details; " + _ECA + "Edit Settings → OAuth Settings → Consumer Key and Secret"
)
_FLOWS = (
    "enable the flow on the app: " + _CA + "Edit → API (Enable OAuth Settings): 'Use digital signatures' (upload the "
    "certificate) for jwt_bearer, 'Enable Client Credentials Flow' for client_credentials; " + _ECA + "Edit Settings "
    "→ OAuth Settings → Flow Enablement"
)
_RUN_AS = (
    "choose the user the tokens are issued for: " + _CA + "Manage → Edit Policies → Client Credentials Flow → Run As; "
    + _ECA + "Edit Policies → OAuth Policies → Enable Client Credentials Flow → Run As (a user with 'API Only')"
)

#: (error, fragment of error_description or None, Setup path)
_SETUP: list[tuple[str, str | None, str]] = [
    ("invalid_grant", "user hasn't approved this consumer", _PREAUTH),
    ("invalid_app_access", None, "the app admits admin-approved users only and this user is not one: " + _PREAUTH),
    ("invalid_grant", "audience is invalid",
     "set extra 'audience' to https://login.salesforce.com for production and Developer Edition orgs or "
     "https://test.salesforce.com for sandboxes — or remove it: the default follows the host"),
    ("invalid_grant", "expired authorization code",
     "the JWT 'exp' was already past on Salesforce's clock: synchronise this host's clock (NTP: chrony, "
     "systemd-timesyncd); see the clock check above"),
    ("invalid_grant", "invalid assertion",
     "the private key must belong to the certificate uploaded to the app (" + _CA + "Edit → API → 'Use digital "
     "signatures'; " + _ECA + "Edit Settings → OAuth Settings → Enable JWT Bearer Flow), and 'login' must be that "
     "app's consumer key"),
    ("invalid_grant", "request not supported on this domain",
     "client credentials are served on your My Domain only: set host to https://<name>.my.salesforce.com "
     "(Setup → My Domain shows it)"),
    ("invalid_grant", "no client credentials user enabled", _RUN_AS),
    ("invalid_grant", "invalid user",
     "extra 'username' must be the username of an active user of this org (Setup → Users); a sandbox "
     "username carries the sandbox suffix (user@acme.com.uat) and needs host "
     "https://test.salesforce.com or the sandbox My Domain"),
    ("invalid_grant", "expired access/refresh token",
     "the refresh token was revoked, expired (" + _ECA + "Edit Policies → Refresh Token Policy) or rotated away: "
     "authorise again and put the new refresh token in extra 'refresh_token'"),
    ("invalid_client_id", None,
     "'login' must be the consumer key of an app of the org the host points at (production vs sandbox): "
     + _CONSUMER + "; a new app can take up to 10 minutes before Salesforce accepts it"),
    ("invalid_client", None, "'password' must be the consumer secret of that app: " + _CONSUMER),
    ("unsupported_grant_type", None, _FLOWS),
]


def setup_fix(exc: SalesforceOAuthError) -> str | None:
    """Where to fix what Salesforce refused (falls back to the error's own hint).

    :param exc: the error of a token request
    """
    code = (exc.error or "").lower()
    description = (exc.error_description or "").lower()
    for error, fragment, fix in _SETUP:
        if code == error and (fragment is None or fragment in description):
            return fix
    return exc.hint
