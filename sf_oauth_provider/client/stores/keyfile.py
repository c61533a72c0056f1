"""Encryption keys of the file store, and the format of its token files.

Keys: Airflow's Fernet key when configured (``new,old`` lists allowed), plus a local key in
``<dir>/.cache.key`` (created 0600 on first use, atomically: the first creator wins) so that a
plain script and an Airflow task on one host read each other's files. A key file that is not
this user's own private regular file is never used (:class:`~.safefs.Rejected`).

Token file (``<dir>/<key>.token``): Fernet token of the JSON
``{"v": 1, "key": <cache key>, "token": {...}, "written_at": <epoch>}``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from sf_oauth_provider.client.stores.safefs import Rejected, read_private_file, write_private_file
from sf_oauth_provider.client.token import SalesforceToken

__all__ = ["KEY_FILE", "FILE_VERSION", "parse_fernet_keys", "load_local_key", "encode_token", "decode_token"]

KEY_FILE = ".cache.key"
FILE_VERSION = 1


def parse_fernet_keys(raw: str | bytes) -> tuple[list[Fernet], int]:
    """Airflow's ``fernet_key`` may list several keys (rotation): ``new,old``.

    :returns: the valid keys, and how many parts were invalid
    """
    text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw)
    valid: list[Fernet] = []
    invalid = 0
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            valid.append(Fernet(part.encode("ascii")))
        except Exception:  # noqa: BLE001 - any malformed key (ValueError, binascii.Error, ...)
            invalid += 1
    return valid, invalid


def _read_key(path: Path) -> Fernet | None | str:
    """The key in ``path``; None when missing; ``"invalid"`` when it holds no valid key.

    :raises Rejected: the file is not this user's private regular file
    """
    for attempt in range(20):
        raw = read_private_file(path, 4096, "token cache key file", strict=True)
        if raw is None:
            return None
        try:
            return Fernet(raw.strip())
        except Exception:  # noqa: BLE001 - malformed key material
            if attempt < 19:
                time.sleep(0.025)  # a writer without hard links may be between create and write
    return "invalid"


def load_local_key(directory: Path, on_replaced) -> Fernet:
    """Read ``<dir>/.cache.key``, creating it when missing and replacing our own invalid one.

    :param on_replaced: called (with the path) when an invalid key file of ours is replaced
    :raises Rejected: the key file belongs to another user or others can read or write it
    :raises OSError: the directory is not writable
    """
    path = directory / KEY_FILE
    for _ in range(5):
        existing = _read_key(path)
        if isinstance(existing, Fernet):
            # A probe write: a directory we can read but not write must degrade now, not
            # fail on every put later.
            write_private_file(directory, "probe", b"", fsync=False, publish="probe")
            return existing
        new_key = Fernet.generate_key()
        if existing == "invalid":
            on_replaced(path)
            write_private_file(directory, KEY_FILE, new_key)
            return Fernet(new_key)
        try:
            # link() publishes the fully written file or fails: no reader sees half a key
            write_private_file(directory, KEY_FILE, new_key, publish="link")
            return Fernet(new_key)
        except FileExistsError:
            continue
    raise OSError(0, "cannot create the cache key file", str(path))


def encode_token(key: str, token: SalesforceToken, fernet: Fernet) -> bytes:
    payload = {"v": FILE_VERSION, "key": key, "token": token.to_dict(), "written_at": time.time()}
    return fernet.encrypt(json.dumps(payload, separators=(",", ":")).encode("utf-8"))


def decode_token(key: str, raw: bytes, fernets: MultiFernet, path: Path, marker: tuple) -> SalesforceToken:
    """The token in a token file's content.

    :raises Rejected: corrupt, truncated, foreign key, other format version, other cache key
    """

    def reject(why: str) -> Rejected:
        return Rejected(f"{path} {why}; ignoring it, it will be rebuilt", marker)

    try:
        payload = fernets.decrypt(raw.strip())
    except InvalidToken:
        raise reject("cannot be decrypted (corrupt, truncated, or written with another Fernet key)") from None
    try:
        data = json.loads(payload)
    except ValueError:
        raise reject("holds invalid JSON") from None
    if not isinstance(data, dict) or data.get("v") != FILE_VERSION:
        version = data.get("v") if isinstance(data, dict) else None
        shown = version if isinstance(version, (int, str)) else type(version).__name__
        raise reject(f"has format version {shown!r} (expected {FILE_VERSION})")
    if data.get("key") != key:
        raise reject("belongs to another cache key")
    token_data = data.get("token")
    try:
        if not isinstance(token_data, dict) or not isinstance(token_data.get("access_token"), str):
            raise TypeError("token entry")
        return SalesforceToken.from_dict(token_data)
    except (TypeError, ValueError):
        raise reject("holds an incomplete token entry") from None
