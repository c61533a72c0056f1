"""The connected app's certificate (connection extra ``jwt_certificate``): when it expires, and
whether it belongs to the connection's private key. Salesforce verifies JWT assertions with this
certificate, so an expired or mismatched one breaks every ``jwt_bearer`` login.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sf_oauth_provider.client.errors import SalesforceConfigError

__all__ = ["ConnectedAppCertificate", "check_not_expired", "load_certificate"]

_BEGIN = "-----BEGIN CERTIFICATE-----"
_END = "-----END CERTIFICATE-----"
_FIELD = "extra.jwt_certificate"


@dataclass(frozen=True)
class ConnectedAppCertificate:
    """A loaded X.509 certificate.

    :param certificate: the ``cryptography`` certificate object
    """

    certificate: Any

    @property
    def not_after(self) -> datetime:
        """End of validity (UTC)."""
        cert = self.certificate
        value = getattr(cert, "not_valid_after_utc", None)
        return value if value is not None else cert.not_valid_after.replace(tzinfo=timezone.utc)

    @property
    def subject(self) -> str:
        """The subject, e.g. ``CN=airflow-integration,O=Acme``."""
        return self.certificate.subject.rfc4514_string()

    def days_left(self, now: datetime | None = None) -> float:
        """Days until it expires (negative: expired)."""
        now = now or datetime.now(timezone.utc)
        return (self.not_after - now).total_seconds() / 86400

    def matches(self, private_key: Any) -> bool:
        """Whether ``private_key`` (an RSA private key) is this certificate's key."""
        return private_key.public_key().public_numbers() == self.certificate.public_key().public_numbers()

    def status(self, private_key: Any | None, now: datetime | None = None) -> dict[str, Any]:
        """JSON-ready facts for reports: subject, ``not_after``, ``days_left``, ``matches_key``
        (``None`` when there is no private key to compare).

        :param private_key: the connection's private key, if it has one
        :param now: the time to count from
        """
        return {
            "subject": self.subject,
            "not_after": self.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "days_left": int(self.days_left(now) // 1),
            "matches_key": None if private_key is None else self.matches(private_key),
        }


def _unflatten(text: str) -> str:
    """PEM text as web forms flatten it (literal ``\\n``, spaces instead of newlines) made whole."""
    text = text.replace("\\n", "\n").replace("\r", "").strip()
    if "\n" in text:
        return text
    body = text.replace(_BEGIN, "").replace(_END, "").split()
    return "\n".join([_BEGIN, *body, _END]) + "\n"


def load_certificate(value: str, conn_id: str) -> ConnectedAppCertificate:
    """The certificate from PEM text (newline-flattened forms too) or from a PEM file path.

    :param value: the extra's value
    :param conn_id: the connection, for error messages
    """
    from cryptography import x509

    text = value.strip()
    if _BEGIN not in text:
        path = os.path.expanduser(text)
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read(1024 * 1024)
        except (OSError, UnicodeDecodeError) as exc:
            raise SalesforceConfigError(
                f"Connection {conn_id!r}: extra 'jwt_certificate' is neither PEM text nor a readable file "
                f"({type(exc).__name__}): paste the connected app's certificate (-----BEGIN CERTIFICATE-----) or "
                "give the path of its .crt file",
                field=_FIELD,
            ) from None
    try:
        cert = x509.load_pem_x509_certificate(_unflatten(text).encode("ascii", "replace"))
    except ValueError:
        raise SalesforceConfigError(
            f"Connection {conn_id!r}: extra 'jwt_certificate' is not a PEM certificate: use the certificate "
            "uploaded to the connected app (Setup → App Manager → the app → Use digital signatures)",
            field=_FIELD,
        ) from None
    return ConnectedAppCertificate(cert)


def check_not_expired(value: str, conn_id: str, now: datetime | None = None) -> None:
    """Raise :class:`SalesforceConfigError` (permanent) when the certificate has expired.

    :param value: the extra ``jwt_certificate`` (PEM text or path)
    :param conn_id: the connection, for the message
    :param now: the time to compare with
    """
    cert = load_certificate(value, conn_id)
    if cert.days_left(now) <= 0:
        raise SalesforceConfigError(
            f"Connection {conn_id!r}: the connected app's certificate in extra 'jwt_certificate' ({cert.subject}) "
            f"expired on {cert.not_after:%Y-%m-%d %H:%M} UTC, so Salesforce refuses every JWT login: create a new "
            "key and certificate, upload the certificate to the connected app (App Manager → Edit → Use digital "
            "signatures) and put both in the connection",
            field=_FIELD,
        )
