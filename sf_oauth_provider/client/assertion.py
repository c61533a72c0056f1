"""RS256 JWT bearer assertions and private key loading."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Callable

import jwt

from sf_oauth_provider.client.errors import SalesforceConfigError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

__all__ = ["load_private_key", "normalize_pem", "build_assertion", "ASSERTION_LIFETIME"]

#: Salesforce accepts an ``exp`` at most 3 minutes ahead.
ASSERTION_LIFETIME = 180

#: A PEM file or pasted key larger than this is refused unread: an RSA key is a few KB.
MAX_PEM_BYTES = 1024 * 1024
#: PEM boundary lines. The block is found in three linear scans (every END line, then the BEGIN
#: lines up to the first one whose END follows, then that END); a single regex with a
#: back-reference, ``BEGIN (label)(.*?)END \1``, retried from every BEGIN line and took ~23 s to
#: refuse 272 KB of repeated ``-----BEGIN A-----``.
_BEGIN_RE = re.compile(r"-----BEGIN ([A-Z0-9 ]{1,64})-----")
_END_RE = re.compile(r"-----END ([A-Z0-9 ]{1,64})-----")


def _pem_block(text: str) -> tuple[str, str] | None:
    """Label and body of the first BEGIN line that has a matching END line after it."""
    last_end = {m.group(1): m.start() for m in _END_RE.finditer(text)}
    for begin in _BEGIN_RE.finditer(text):
        label = begin.group(1)
        if last_end.get(label, -1) >= begin.end():
            return label, text[begin.end():text.find(f"-----END {label}-----", begin.end())]
    return None


def normalize_pem(text: str) -> str:
    """Rebuild a PEM that a web form flattened.

    Tolerates literal ``\\n`` sequences, newlines replaced by spaces, CRLF and surrounding
    quotes or whitespace. Returns the text unchanged when it holds no PEM block.
    """
    text = text.strip().strip('"').strip("'").replace("\\r", "").replace("\\n", "\n").replace("\r", "")
    block = _pem_block(text)
    if block is None:
        return text
    label, body = block
    headers = ""
    if "Proc-Type:" in body:  # traditional encrypted PEM: keep its header lines
        head, _, rest = body.partition("\n\n")
        if rest:
            headers, body = head.strip() + "\n\n", rest
        else:  # headers flattened too: split header fields from base64
            lines = body.split()
            keep = [ln for ln in lines if ":" in ln or "," in ln]
            b64_lines = [ln for ln in lines if ln not in keep]
            headers = " ".join(keep).replace(" DEK-Info:", "\nDEK-Info:") + "\n\n"
            body = "".join(b64_lines)
    b64 = "".join(body.split())
    wrapped = "\n".join(b64[i : i + 64] for i in range(0, len(b64), 64))
    return f"-----BEGIN {label}-----\n{headers}{wrapped}\n-----END {label}-----\n"


def load_private_key(
    pem: str | bytes | None,
    *,
    path: str | None = None,
    passphrase: str | None = None,
    conn_id: str = "?",
    on_pem: Callable[[str], None] | None = None,
) -> RSAPrivateKey:
    """Load an RSA private key from PEM text or a file; every failure names the field to fix.

    :param on_pem: called with the PEM text (as read, before it is parsed), so that the caller
        can register a key that came from a file with the secrets masker
    """
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    field = "extra.private_key"
    if pem is None or (isinstance(pem, str) and not pem.strip()):
        if not path:
            raise SalesforceConfigError(
                f"Connection {conn_id!r}: extra 'private_key' or 'jwt_key_file' is required for auth_flow 'jwt_bearer'",
                field=field,
                hint="paste the PEM private key whose certificate is uploaded to the connected app",
            )
        field = "extra.jwt_key_file"
        try:
            with open(path, "rb") as fh:
                pem = fh.read(MAX_PEM_BYTES + 1)
        except OSError as exc:
            raise SalesforceConfigError(
                f"Connection {conn_id!r}: extra 'jwt_key_file' cannot be read "
                f"({exc.strerror or type(exc).__name__}: {path})",
                field=field,
                hint="give a path readable by the worker and triggerer, or paste the key into 'private_key'",
            ) from None
    if len(pem) > MAX_PEM_BYTES:
        name = field.removeprefix("extra.")
        raise SalesforceConfigError(
            f"Connection {conn_id!r}: extra {name!r} holds more than 1 MiB, so it is not a private key "
            "(a PEM RSA key is a few KB)",
            field=field,
            hint="point 'jwt_key_file' at the PEM key file itself" if name == "jwt_key_file"
            else "paste only the PEM private key",
        )
    if isinstance(pem, bytes):
        try:
            pem = pem.decode("utf-8")
        except UnicodeDecodeError:
            raise SalesforceConfigError(
                f"Connection {conn_id!r}: {field} is not PEM text", field=field,
                hint="export the key as PEM (-----BEGIN PRIVATE KEY-----)",
            ) from None
    if on_pem is not None:
        on_pem(pem)
    text = normalize_pem(pem)
    if "PRIVATE KEY-----" not in text:
        raise SalesforceConfigError(
            f"Connection {conn_id!r}: {field} holds no PEM private key",
            field=field,
            hint="expected a block starting '-----BEGIN PRIVATE KEY-----' or '-----BEGIN RSA PRIVATE KEY-----'",
        )
    password = passphrase.encode("utf-8") if passphrase else None
    try:
        # The RSA consistency check costs ~35 ms per process and guards against nothing a
        # signature Salesforce refuses ("invalid assertion", with its hint) would not show.
        key = load_pem_private_key(
            text.encode("ascii", "ignore"), password=password, unsafe_skip_rsa_key_validation=True
        )
    except TypeError:
        if password is None:
            raise SalesforceConfigError(
                f"Connection {conn_id!r}: {field} is encrypted but extra 'private_key_passphrase' is empty",
                field="extra.private_key_passphrase",
                hint="set extra 'private_key_passphrase'",
            ) from None
        raise SalesforceConfigError(
            f"Connection {conn_id!r}: extra 'private_key_passphrase' is set but {field} is not encrypted",
            field="extra.private_key_passphrase",
            hint="remove the passphrase",
        ) from None
    except ValueError:
        if password is not None and "ENCRYPTED" in text:
            raise SalesforceConfigError(
                f"Connection {conn_id!r}: extra 'private_key_passphrase' does not decrypt {field}",
                field="extra.private_key_passphrase",
                hint="check the passphrase",
            ) from None
        raise SalesforceConfigError(
            f"Connection {conn_id!r}: {field} cannot be read as a PEM private key",
            field=field,
            hint="check that the whole key was pasted, including its BEGIN/END lines",
        ) from None
    except Exception:  # cryptography raises a few others on garbage (UnsupportedAlgorithm, ...)
        raise SalesforceConfigError(
            f"Connection {conn_id!r}: {field} cannot be read as a PEM private key",
            field=field,
            hint="check that the whole key was pasted, including its BEGIN/END lines",
        ) from None
    if not isinstance(key, RSAPrivateKey):
        raise SalesforceConfigError(
            f"Connection {conn_id!r}: {field} is a {type(key).__name__.lstrip('_')}, not an RSA key",
            field=field,
            hint="Salesforce's JWT bearer flow signs with RS256: generate an RSA key (2048 bits or more)",
        )
    return key


def build_assertion(
    key: RSAPrivateKey,
    *,
    consumer_key: str,
    username: str,
    audience: str,
    now: float | None = None,
    lifetime: int = ASSERTION_LIFETIME,
) -> str:
    """Sign the JWT bearer assertion Salesforce expects (RS256; iss, sub, aud, exp)."""
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": consumer_key,
        "sub": username,
        "aud": audience,
        "exp": issued + min(lifetime, ASSERTION_LIFETIME),
    }
    return jwt.encode(claims, key, algorithm="RS256")
