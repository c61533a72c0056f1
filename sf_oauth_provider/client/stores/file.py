"""FileStore: one encrypted file per cache key, shared by every process of this user on a host.

``<dir>/<key>.token`` (0600, Fernet-encrypted, replaced atomically), locked by an exclusive
flock on ``<dir>/<key>.lock``. The directory and files are checked by :mod:`.safefs`; a file
that fails a check, cannot be decrypted or is not ours is reported once and read as a miss.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import AsyncIterator, Iterator

from cryptography.fernet import Fernet, MultiFernet

from sf_oauth_provider.client.stores.base import BlockingStore, forget_access_token, replaces
from sf_oauth_provider.client.stores.keyfile import decode_token, encode_token, load_local_key, parse_fernet_keys
from sf_oauth_provider.client.stores.locks import acquire_flock, task_locked, thread_locked
from sf_oauth_provider.client.stores.safefs import (
    Rejected,
    private_directory,
    read_private_file,
    remove_own_stale_temps,
    warn_once,
    write_private_file,
)
from sf_oauth_provider.client.token import SalesforceToken

__all__ = ["FileStore"]

_MAX_FILE_BYTES = 1 << 20
_log = logging.getLogger("sf_oauth_provider.client.cache")


class FileStore(BlockingStore):
    """The host layer.

    Building one does I/O (directory checks, the key file, a probe write): build it once per
    provider, off the event loop.

    :param directory: where to keep files; a shared sticky directory (``/tmp``) gets a private
        subdirectory of this user
    :param fernet_key: Airflow's Fernet key (or ``new,old`` list); encrypts the files when valid
    :param logger: where warnings go
    :raises Rejected: the directory is another user's or others can write it, or the key file
        cannot be trusted and no Fernet key is configured
    :raises OSError: the directory cannot be created or written
    """

    name = "file"
    shared = True

    def __init__(
        self, directory: str | os.PathLike[str], *, fernet_key: str | bytes | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self._log = logger or _log
        primary: list[Fernet] = []
        # An empty key means "not configured" (Airflow's default), not a broken one.
        if fernet_key is not None and fernet_key.strip():
            primary, invalid = parse_fernet_keys(fernet_key)
            if invalid:
                self._log.warning(
                    "Token cache: the configured Fernet key %s not a valid Fernet key (32 url-safe "
                    "base64-encoded bytes); %s",
                    f"has {invalid} part(s) that are" if primary else "is",
                    "ignoring those parts" if primary else "encrypting with the local cache key instead",
                )
        self.directory = private_directory(Path(directory))
        try:
            local: Fernet | None = load_local_key(self.directory, self._replaced_key)
        except Rejected as exc:
            if not primary:
                raise
            # Never decrypt with a key another user could have planted: Airflow's key only.
            warn_once(self._log, exc.marker, "Token cache: %s; not using it, encrypting with Airflow's "
                      "Fernet key only (remove the file to share the cache with plain scripts)", exc.message)
            local = None
        remove_own_stale_temps(self.directory)
        self.namespace = os.path.realpath(self.directory)
        keys = [*primary, *([local] if local else [])]
        self._encrypt_with = keys[0]
        self._decrypt_with = MultiFernet(keys)

    def _replaced_key(self, path: Path) -> None:
        self._log.warning(
            "Token cache: key file %s is not a valid Fernet key; replacing it (cached tokens "
            "encrypted with it will be fetched again)", path,
        )

    def __repr__(self) -> str:
        return f"FileStore({str(self.directory)!r})"

    def _path(self, key: str, suffix: str) -> Path:
        return self.directory / f"{key}{suffix}"

    # ---- the store interface -----------------------------------------------------------------
    def get(self, key: str) -> SalesforceToken | None:
        path = self._path(key, ".token")
        try:
            raw = read_private_file(path, _MAX_FILE_BYTES, "token cache file")
            if raw is None:
                return None
            return decode_token(key, raw, self._decrypt_with, path, ("bad", str(path), len(raw), hash(raw)))
        except Rejected as exc:
            self._rejected(exc)
        except OSError as exc:
            warn_once(self._log, ("read", str(path), exc.errno),
                      "Token cache: cannot read %s (%s); treating it as a miss, it will be rebuilt",
                      path, exc.strerror or type(exc).__name__)
        return None

    def _rejected(self, exc: Rejected) -> None:
        message = exc.message if "rebuilt" in exc.message else f"{exc.message}; ignoring it, it will be rebuilt"
        warn_once(self._log, exc.marker, "Token cache: %s", message)

    def put(self, key: str, token: SalesforceToken) -> None:
        path = self._path(key, ".token")
        if not replaces(self.get(key), token):
            return
        try:
            write_private_file(self.directory, path.name, encode_token(key, token, self._encrypt_with))
        except OSError as exc:
            warn_once(self._log, ("write", str(self.directory), exc.errno),
                      "Token cache: cannot write %s (%s); the token is cached in this process only",
                      path, exc.strerror or type(exc).__name__)

    def invalidate(self, key: str, access_token: str | None) -> None:
        kept = forget_access_token(self.get(key), access_token)
        if kept is False:
            return
        if kept is not None:
            self.put(key, kept)
            return
        path = self._path(key, ".token")
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            warn_once(self._log, ("unlink", str(path), exc.errno),
                      "Token cache: cannot remove %s (%s); the token stays cached until replaced",
                      path, exc.strerror or type(exc).__name__)

    # ---- for operators (``sf-oauth cache list / purge``) -------------------------------------
    def keys(self) -> list[str]:
        """The cache keys that have a token file here (sorted)."""
        suffix = ".token"
        return sorted(entry.name[: -len(suffix)] for entry in os.scandir(self.directory)
                      if entry.name.endswith(suffix) and not entry.name.startswith(".") and entry.is_file())

    def remove(self, key: str) -> bool:
        """Delete ``key``'s entry, refresh token included (call it under :meth:`lock`).

        :returns: whether there was one
        """
        try:
            self._path(key, ".token").unlink()
        except FileNotFoundError:
            return False
        return True

    def _lock_failed(self, key: str):
        def report(reason: str) -> None:
            self._log.warning(
                "Token cache: could not take the refresh lock for cache key %s (%s); requesting a "
                "token without it", key, reason,
            )

        return report

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float) -> Iterator[bool]:
        path = self._path(key, ".lock")
        with thread_locked((self.namespace, key), timeout, lambda: acquire_flock(path, timeout),
                           self._lock_failed(key)) as held:
            yield held

    @contextlib.asynccontextmanager
    async def alock(self, key: str, timeout: float) -> AsyncIterator[bool]:
        async with task_locked((self.namespace, key), timeout, self._path(key, ".lock"),
                               self._lock_failed(key)) as held:
            yield held
