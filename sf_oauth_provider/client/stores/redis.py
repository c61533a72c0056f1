"""RedisStore: the layer shared by every host of a deployment (Celery workers, Kubernetes pods).

One entry per cache key, ``sf_oauth:v1:<cache key>`` (the cache key is already a hash: the name
reveals neither the org nor the user), holding a Fernet token of the same JSON as the file
store. The Fernet key is derived with HKDF from the connection's credentials (the credential
digest and, for the JWT flow, the private key itself), so someone who can read Redis but does
not hold the connection's credentials cannot use what is stored there. Entries expire with the
token (plus a margin; an entry carrying a refresh token is kept longer, so a rotated refresh
token survives pods that come and go).

Single-flight across hosts: redis-py's :class:`~redis.lock.Lock` on ``sf_oauth:v1:<key>:lock``,
which expires (a holder killed mid-fetch blocks the others at most ``lock_expiry`` seconds) and
is released only by its owner.

A cache never fails a task: every Redis error (down, stalled, read-only, out of memory) is
logged once per process and answered as a miss / a skipped write / a lock not held, and Redis is
then left alone for ``retry_after`` seconds so that a stalled server costs a task at most one
socket timeout per period. The refresh flow then takes the host's file lock instead.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import threading
import time
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterator
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sf_oauth_provider.client.stores.base import forget_access_token
from sf_oauth_provider.client.stores.safefs import warn_once
from sf_oauth_provider.client.token import SalesforceToken

if TYPE_CHECKING:
    from sf_oauth_provider.client.config import OAuthConfig

__all__ = ["RedisStore", "REDIS_URL_ENV", "KEY_PREFIX", "redis_available", "redacted_url", "shared_layers_for"]

#: the environment variable read outside Airflow (Airflow reads ``[sf_oauth] redis_url``)
REDIS_URL_ENV = "SF_OAUTH_REDIS_URL"
#: every key this store writes starts with this
KEY_PREFIX = "sf_oauth:v1:"
_FORMAT = 1
#: Redis URL -> monotonic time until which it is left alone (every store of this process on that
#: Redis: a stalled server costs one socket timeout per period, not one per hook)
_DOWN_UNTIL: dict[str, float] = {}
_log = logging.getLogger("sf_oauth_provider.client.cache")


def redis_available() -> bool:
    """Whether redis-py is installed (the ``sf-oauth-provider[redis]`` extra)."""
    try:
        import redis  # noqa: F401
    except ImportError:
        return False
    return True


#: A query parameter whose name holds one of these carries a credential: redis-py hands every
#: query parameter to the connection, so ``?password=`` (and ``?ssl_password=``, the TLS key's
#: passphrase) work as well as ``user:pass@``.
_SECRET_PARAM = re.compile(r"pass|secret|token", re.IGNORECASE)


def _redacted_query(query: str) -> str:
    # redis-py splits on "&" only; splitting on ";" too hides a value that merely looks like one
    pieces = re.split(r"([&;])", query)
    for i, piece in enumerate(pieces):
        name, eq, _value = piece.partition("=")
        if eq and _SECRET_PARAM.search(unquote_plus(name)):  # redis-py decodes the name: pass%77ord
            pieces[i] = f"{name}=***"
    return "".join(pieces)


def redacted_url(url: str) -> str:
    """``url`` without its passwords, for logs and messages: the one in ``user:pass@`` and every
    credential query parameter (``?password=``, ``?ssl_password=``). An unparseable URL is shown
    as its scheme only."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url.split(":", 1)[0][:16] + "://***"
    netloc = parts.netloc
    if password is not None:
        host = netloc.rsplit("@", 1)[1]
        netloc = (f"{parts.username}:***@" if parts.username else "***@") + host
    query = _redacted_query(parts.query)
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _key_material(config: OAuthConfig) -> bytes:
    """The connection's secrets, as input to HKDF: the credential digest (consumer secret,
    refresh token, public key) and the private key, which the digest holds only the public half of."""
    material = config.credential_digest.encode("ascii")
    if config.private_key is not None:
        material += config.private_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    return material


class RedisStore:
    """The deployment layer: one Redis shared by every host.

    Building one does no I/O (the client connects on first use).

    :param url: ``redis://[:password@]host:port/db`` or ``rediss://`` for TLS
    :param config: the connection whose tokens this store holds (its credentials key the encryption)
    :param logger: where the one warning per process goes
    :param connect_timeout: seconds to connect before counting Redis as down
    :param op_timeout: seconds per command before counting Redis as stalled
    :param lock_expiry: seconds after which the refresh lock frees itself (a killed holder)
    :param retry_after: seconds to leave Redis alone after an error
    :param access_margin: seconds an entry outlives its access token
    :param refresh_ttl: seconds an entry that carries a refresh token is kept
    """

    name = "redis"
    shared = True

    def __init__(
        self,
        url: str,
        config: OAuthConfig,
        *,
        logger: logging.Logger | None = None,
        connect_timeout: float = 1.0,
        op_timeout: float = 2.0,
        lock_expiry: float = 60.0,
        retry_after: float = 30.0,
        access_margin: float = 300.0,
        refresh_ttl: float = 30 * 86400.0,
    ) -> None:
        self.url = url
        self._shown_url = redacted_url(url)
        self._log = logger or _log
        self._connect_timeout = connect_timeout
        self._op_timeout = op_timeout
        self.lock_expiry = float(lock_expiry)
        self._retry_after = retry_after
        self._access_margin = access_margin
        self._refresh_ttl = refresh_ttl
        self._material = _key_material(config)
        self._fernets: dict[str, Fernet] = {}
        self._guard = threading.Lock()
        self._client: Any = None
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"RedisStore({self._shown_url!r})"

    # ---- helpers -----------------------------------------------------------------------------
    def _name(self, key: str) -> str:
        return KEY_PREFIX + key

    def _fernet(self, key: str) -> Fernet:
        fernet = self._fernets.get(key)
        if fernet is None:
            derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"sf_oauth redis store",
                           info=f"v{_FORMAT} {key}".encode()).derive(self._material)
            fernet = self._fernets[key] = Fernet(base64.urlsafe_b64encode(derived))
        return fernet

    def _encode(self, key: str, token: SalesforceToken) -> bytes:
        payload = {"v": _FORMAT, "key": key, "token": token.to_dict(), "written_at": time.time()}
        return self._fernet(key).encrypt(json.dumps(payload, separators=(",", ":")).encode())

    def _decode(self, key: str, raw: bytes | None) -> SalesforceToken | None:
        if raw is None:
            return None
        try:
            data = json.loads(self._fernet(key).decrypt(raw))
            if not isinstance(data, dict) or data.get("v") != _FORMAT or data.get("key") != key:
                raise ValueError("other format or key")
            return SalesforceToken.from_dict(data["token"])
        except (InvalidToken, ValueError, TypeError, KeyError):
            # written with other credentials (a rotated secret hashes to another cache key, so
            # this is corruption or tampering): a miss, overwritten by the next refresh
            warn_once(self._log, ("redis bad entry", self._shown_url, key),
                      "Token cache: the Redis entry %s%s cannot be decrypted; ignoring it, it will be rebuilt",
                      KEY_PREFIX, key)
            return None

    def _ttl(self, token: SalesforceToken) -> int:
        left = max(token.expires_at - time.time(), 0.0)
        ttl = max(left + self._access_margin, self._refresh_ttl if token.refresh_token else 0.0)
        return max(int(ttl), 1)

    def _usable(self) -> bool:
        return time.monotonic() >= _DOWN_UNTIL.get(self.url, 0.0)

    def _failed(self, exc: BaseException, doing: str) -> None:
        _DOWN_UNTIL[self.url] = time.monotonic() + self._retry_after
        # one warning per process for this Redis, whatever goes wrong later
        warn_once(self._log, ("redis", self._shown_url),
                  "Token cache: Redis at %s failed while %s (%s); using this host's cache and fetching "
                  "tokens directly when needed (tasks are not affected; retried every %ds)",
                  self._shown_url, doing, type(exc).__name__, int(self._retry_after))

    def _errors(self) -> tuple[type[BaseException], ...]:
        import redis

        # ValueError: a URL redis-py cannot parse (e.g. a database that is not a number)
        return (redis.RedisError, OSError, ValueError)

    def _sync(self) -> Any:
        if self._client is None or self._pid != os.getpid():
            import redis

            with self._guard:
                if self._client is None or self._pid != os.getpid():
                    # a forked child must not share its parent's sockets
                    self._pid = os.getpid()
                    self._client = redis.Redis.from_url(
                        self.url, socket_connect_timeout=self._connect_timeout,
                        socket_timeout=self._op_timeout, retry_on_timeout=False, retry=None,
                    )
        return self._client

    @contextlib.asynccontextmanager
    async def _async(self) -> AsyncIterator[Any]:
        """A redis.asyncio client for one operation, closed after it.

        Its connections belong to the running loop, and callers often run each call in a loop
        of its own (``asyncio.run``); a client kept across loops would be closed on a dead one.
        One connect per operation is cheap beside a token request, and the memory layer serves
        the hot path.
        """
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(
            self.url, socket_connect_timeout=self._connect_timeout,
            socket_timeout=self._op_timeout, retry_on_timeout=False, retry=None,
        )
        try:
            yield client
        finally:
            closing = getattr(client, "aclose", None) or client.close  # aclose: redis-py >= 5.0.1
            with contextlib.suppress(*self._errors()):
                await closing()

    # ---- the store interface -----------------------------------------------------------------
    def get(self, key: str) -> SalesforceToken | None:
        if not self._usable():
            return None
        try:
            raw = self._sync().get(self._name(key))
        except self._errors() as exc:
            self._failed(exc, "reading a token")
            return None
        return self._decode(key, raw)

    def put(self, key: str, token: SalesforceToken) -> None:
        if not self._usable():
            return
        try:
            self._sync().set(self._name(key), self._encode(key, token), ex=self._ttl(token))
        except self._errors() as exc:
            self._failed(exc, "writing a token")

    def invalidate(self, key: str, access_token: str | None) -> None:
        # called under this store's lock (invalidate_flow), so read-then-write is not racy
        kept = forget_access_token(self.get(key), access_token)
        if kept is False or not self._usable():
            return
        if kept is not None:
            self.put(key, kept)
            return
        try:
            self._sync().delete(self._name(key))
        except self._errors() as exc:
            self._failed(exc, "removing a token")

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float) -> Iterator[bool]:
        if not self._usable():
            yield False
            return
        lock = None
        try:
            lock = self._sync().lock(self._name(key) + ":lock", timeout=self.lock_expiry, sleep=0.05,
                                     blocking_timeout=timeout, thread_local=False)
            held = bool(lock.acquire())
        except self._errors() as exc:
            self._failed(exc, "taking the refresh lock")
            held = False
        try:
            yield held
        finally:
            if held and lock is not None:  # held: the lock was made and acquired
                try:
                    lock.release()
                except self._errors() as exc:  # expired and taken by another, or Redis died
                    self._release_failed(exc)

    def _release_failed(self, exc: BaseException) -> None:
        import redis

        if isinstance(exc, redis.exceptions.LockError):
            # the refresh outlived the lock's expiry: another host may have refreshed too
            warn_once(self._log, ("redis lock expired", self._shown_url),
                      "Token cache: a token refresh took longer than the Redis lock expiry (%ds)",
                      int(self.lock_expiry))
        else:
            self._failed(exc, "releasing the refresh lock")

    async def aget(self, key: str) -> SalesforceToken | None:
        if not self._usable():
            return None
        try:
            async with self._async() as client:
                raw = await client.get(self._name(key))
        except self._errors() as exc:
            self._failed(exc, "reading a token")
            return None
        return self._decode(key, raw)

    async def aput(self, key: str, token: SalesforceToken) -> None:
        if not self._usable():
            return
        try:
            async with self._async() as client:
                await client.set(self._name(key), self._encode(key, token), ex=self._ttl(token))
        except self._errors() as exc:
            self._failed(exc, "writing a token")

    async def ainvalidate(self, key: str, access_token: str | None) -> None:
        kept = forget_access_token(await self.aget(key), access_token)
        if kept is False or not self._usable():
            return
        if kept is not None:
            await self.aput(key, kept)
            return
        try:
            async with self._async() as client:
                await client.delete(self._name(key))
        except self._errors() as exc:
            self._failed(exc, "removing a token")

    @contextlib.asynccontextmanager
    async def alock(self, key: str, timeout: float) -> AsyncIterator[bool]:
        if not self._usable():
            yield False
            return
        async with self._async() as client:  # the lock's client lives until it is released
            lock = None
            try:
                lock = client.lock(self._name(key) + ":lock", timeout=self.lock_expiry, sleep=0.05,
                                   blocking_timeout=timeout, thread_local=False)
                held = bool(await lock.acquire())
            except self._errors() as exc:
                self._failed(exc, "taking the refresh lock")
                held = False
            try:
                yield held
            finally:
                if held and lock is not None:  # held: the lock was made and acquired
                    try:
                        await lock.release()
                    except self._errors() as exc:
                        self._release_failed(exc)

    def close(self) -> None:
        """Close the sync client's connections (async operations close theirs as they end)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()


def shared_layers_for(config: OAuthConfig, redis_url: str | None, *,
                      logger: logging.Logger | None = None) -> tuple[RedisStore, ...]:
    """The layers wider than the file for ``config.cache``: Redis or none.

    ``auto``: Redis when a URL is configured and redis-py is installed (else the file store, with
    one warning when only the package is missing); ``redis``: Redis, or a configuration error.

    :param redis_url: the deployment's Redis (Airflow ``[sf_oauth] redis_url`` or
        ``$SF_OAUTH_REDIS_URL``); empty or None: not configured
    :raises SalesforceConfigError: ``cache`` is ``redis`` but no URL is set or redis-py is missing
    """
    from sf_oauth_provider.client.errors import SalesforceConfigError

    mode = config.cache
    url = (redis_url or "").strip()
    if mode not in ("auto", "redis"):
        return ()
    if not url:
        if mode == "redis":
            raise SalesforceConfigError(
                f"Connection {config.conn_id!r}: extra 'cache' is 'redis' but no Redis URL is configured",
                field="extra.cache",
                hint=f"set Airflow config [sf_oauth] redis_url (env AIRFLOW__SF_OAUTH__REDIS_URL), or "
                f"{REDIS_URL_ENV} outside Airflow, e.g. redis://127.0.0.1:6379/0; or set 'cache' to 'auto'",
            )
        return ()
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("redis", "rediss", "unix"):
        message = (f"Connection {config.conn_id!r}: the Redis URL {redacted_url(url)!r} is not a "
                   "redis://, rediss:// or unix:// URL")
        hint = "fix Airflow config [sf_oauth] redis_url (or SF_OAUTH_REDIS_URL), e.g. redis://127.0.0.1:6379/0"
        if mode == "redis":
            raise SalesforceConfigError(message, field="extra.cache", hint=hint)
        warn_once(logger or _log, ("redis bad url", redacted_url(url)),
                  "Token cache: %s; caching tokens per host only (%s)", message, hint)
        return ()
    if not redis_available():
        if mode == "redis":
            raise SalesforceConfigError(
                f"Connection {config.conn_id!r}: extra 'cache' is 'redis' but the redis package is not installed",
                field="extra.cache", hint="pip install 'sf-oauth-provider[redis]', or set 'cache' to 'auto'",
            )
        warn_once(logger or _log, ("redis missing",),
                  "Token cache: a Redis URL is configured but the redis package is not installed; caching "
                  "tokens per host only (pip install 'sf-oauth-provider[redis]')")
        return ()
    return (RedisStore(url, config, logger=logger),)
