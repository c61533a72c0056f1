"""RedisStore: the layer shared by every host of a deployment (Celery workers, Kubernetes pods).

One entry per cache key, ``sf_oauth:v1:<cache key>`` (the cache key is already a hash: the name
reveals neither the org nor the user), holding ``v2:<generation>:`` and a Fernet token of the
same JSON as the file store. The Fernet key is derived with HKDF from the connection's
credentials (the credential digest and, for the JWT flow, the private key itself), so someone who
can read Redis but does not hold the connection's credentials cannot use what is stored there.

Rotation safety (DESIGN §5): every write is a compare-and-set (a Lua script) that never replaces
an entry of a higher generation, and raises ``<key>:gen``, the highest generation ever written —
a key apart from the entry, so that putting back an older copy of the entry alone is recognised
and refused. ``<key>:rotated`` records that Salesforce rotated the connection's refresh token:
the configured one is then never sent again. An entry that carries a refresh token (or records
one of these facts) never expires; one with only an access token expires with it (plus a margin).

Single-flight across hosts: redis-py's :class:`~redis.lock.Lock` on ``sf_oauth:v1:<key>:lock``,
released only by its owner, which expires (a holder killed mid-fetch blocks the others at most
``lock_expiry`` seconds) and is extended every third of that while its holder lives, so that a
slow refresh never loses it to another host.

A cache never fails a task: every Redis error (down, stalled, read-only, out of memory) is
logged once per process and answered as a miss / a skipped write / a lock not held, and Redis is
then left alone for ``retry_after`` seconds so that a stalled server costs a task at most one
socket timeout per period. The refresh flow then takes the host's file lock instead.
"""

from __future__ import annotations

import asyncio
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

from sf_oauth_provider.client.stores.base import forget_access_token, marker_token
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
#: an entry's value: this, its generation, ":", then the Fernet token (entries written before
#: generations existed are a bare Fernet token: generation 0)
_HEADER = b"v2:"
#: compare-and-set: KEYS entry, gen, rotated; ARGV generation, value, ttl (0: persistent), rotated
_PUT_SCRIPT = """
local current = redis.call('GET', KEYS[1])
local held = 0
if current then
  local g = string.match(current, '^v2:(%d+):')
  if g then held = tonumber(g) end
end
local seen = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
local generation = tonumber(ARGV[1])
if generation < held or generation < seen then return 0 end
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
if generation > seen then redis.call('SET', KEYS[2], ARGV[1]) end
if ARGV[4] == '1' then redis.call('SET', KEYS[3], '1') end
return 1
"""
#: maxmemory policies that may evict a key without an expiry (the newest refresh token)
_EVICTS_PERSISTENT = ("allkeys-lru", "allkeys-lfu", "allkeys-random")
#: Redis URL -> monotonic time until which it is left alone (every store of this process on that
#: Redis: a stalled server costs one socket timeout per period, not one per hook)
_DOWN_UNTIL: dict[str, float] = {}
_log = logging.getLogger("sf_oauth_provider.client.cache")
_SETTINGS_CHECKED: set[tuple[str, str]] = set()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def settings_problems(policy: str, aof: str, save: str) -> dict[str, str]:
    """What in these Redis settings may lose the newest refresh token: ``{"eviction"|"persistence": message}``."""
    problems = {}
    if policy in _EVICTS_PERSISTENT:
        problems["eviction"] = (f"maxmemory-policy {policy} may evict the newest rotated refresh token (then the "
                                "connection must be re-authorised); use noeviction or a volatile-* policy")
    if aof == "no" and not save.strip():
        problems["persistence"] = ("it keeps no data on disk (appendonly no, save \"\"): a restart loses the newest "
                                   "rotated refresh token (then the connection must be re-authorised); turn on AOF "
                                   "or RDB snapshots")
    return problems


def _warn_settings(log: logging.Logger, shown_url: str, policy: str, aof: str, save: str) -> None:
    for kind, message in settings_problems(policy, aof, save).items():
        warn_once(log, (f"redis {kind}", shown_url), "Token cache: Redis at %s: %s", shown_url, message)


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
    :param refresh_ttl: unused: an entry that carries a refresh token never expires (kept for
        callers of earlier releases)
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
        lock_expiry: float = 30.0,
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
        sealed = self._fernet(key).encrypt(json.dumps(payload, separators=(",", ":")).encode())
        return _HEADER + str(int(token.generation)).encode() + b":" + sealed

    def _decode(self, key: str, raw: bytes | None) -> SalesforceToken | None:
        if raw is None:
            return None
        generation, sealed = 0, raw
        if raw.startswith(_HEADER):
            number, _, sealed = raw[len(_HEADER):].partition(b":")
            generation = int(number) if number.isdigit() and len(number) < 19 else -1
        try:
            data = json.loads(self._fernet(key).decrypt(sealed))
            if not isinstance(data, dict) or data.get("v") != _FORMAT or data.get("key") != key:
                raise ValueError("other format or key")
            token = SalesforceToken.from_dict(data["token"])
            if token.generation != generation:  # the clear-text generation was changed
                raise ValueError("generation mismatch")
            return token
        except (InvalidToken, ValueError, TypeError, KeyError):
            # written with other credentials (a rotated secret hashes to another cache key, so
            # this is corruption or tampering): a miss, overwritten by the next refresh
            warn_once(self._log, ("redis bad entry", self._shown_url, key),
                      "Token cache: the Redis entry %s%s cannot be decrypted; ignoring it, it will be rebuilt",
                      KEY_PREFIX, key)
            return None

    def _answer(self, key: str, raw: bytes | None, seen: bytes | None, rotated: bytes | None) -> SalesforceToken | None:
        """What ``get`` returns for the entry and its ``:gen`` / ``:rotated`` keys."""
        highest = int(seen) if seen is not None and seen.isdigit() else 0
        was_rotated = rotated == b"1"
        token = self._decode(key, raw)
        if token is not None and token.generation >= highest:
            return token
        if token is not None:
            warn_once(self._log, ("redis rolled back", self._shown_url, key),
                      "Token cache: the Redis entry %s%s is older (generation %d) than one already written there "
                      "(%d): someone put back an earlier copy; refusing it", KEY_PREFIX, key, token.generation, highest)
            return marker_token("rolled_back", highest, rotated=was_rotated or token.rotated, like=token)
        if highest > 0:  # the entry is gone (evicted, deleted, expired) but the store had one
            return marker_token("missing", highest, rotated=was_rotated)
        return None

    def _ttl(self, token: SalesforceToken) -> int:
        """Seconds to keep ``token``: 0 (never expires) when it carries a refresh token or a fact."""
        if token.refresh_token or token.marker or token.rotated:
            return 0
        left = max(token.expires_at - time.time(), 0.0)
        return max(int(left + self._access_margin), 1)

    def _keys(self, key: str) -> list[str]:
        """The entry, its highest generation written, its "rotated" flag."""
        name = self._name(key)
        return [name, name + ":gen", name + ":rotated"]

    def _put_args(self, key: str, token: SalesforceToken) -> tuple[list[str], list[Any]]:
        return self._keys(key), [int(token.generation), self._encode(key, token), self._ttl(token),
                                 "1" if token.rotated else "0"]

    def _check_settings(self, client: Any) -> None:
        """Warn once when the server may lose the newest refresh token (CONFIG GET, where allowed)."""
        if ("redis settings", self.url) in _SETTINGS_CHECKED:
            return
        _SETTINGS_CHECKED.add(("redis settings", self.url))
        try:
            policy = client.config_get("maxmemory-policy").get("maxmemory-policy", "")
            aof = client.config_get("appendonly").get("appendonly", "")
            save = client.config_get("save").get("save", "")
        except self._errors() as exc:  # managed Redis often disables CONFIG
            self._log.debug("Token cache: cannot read Redis settings at %s (%s)", self._shown_url, type(exc).__name__)
            return
        _warn_settings(self._log, self._shown_url, _text(policy), _text(aof), _text(save))

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
            raw, seen, rotated = self._sync().mget(self._keys(key))
        except self._errors() as exc:
            self._failed(exc, "reading a token")
            return None
        return self._answer(key, raw, seen, rotated)

    def put(self, key: str, token: SalesforceToken) -> None:
        if not self._usable():
            return
        try:
            client = self._sync()
            keys, args = self._put_args(key, token)
            written = client.eval(_PUT_SCRIPT, len(keys), *keys, *args)
            if written and token.refresh_token and token.marker is None:
                self._check_settings(client)
        except self._errors() as exc:
            self._failed(exc, "writing a token")
            return
        if not written:
            self._log.debug("Token cache: Redis holds a newer entry for %s; not replaced", key)

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
        if not held or lock is None:
            yield False
            return
        stop = threading.Event()
        keeper = threading.Thread(target=self._keep, args=(lock, stop), name="sf-oauth-redis-lock", daemon=True)
        keeper.start()
        try:
            yield True
        finally:
            stop.set()
            keeper.join(self._op_timeout + 1.0)
            try:
                lock.release()
            except self._errors() as exc:  # expired and taken by another, or Redis died
                self._release_failed(exc)

    def _keep(self, lock: Any, stop: threading.Event) -> None:
        """Extend ``lock`` to its full expiry every third of it until ``stop``: the lock outlives
        the refresh it guards, however slow, while a killed holder frees it within the expiry."""
        while not stop.wait(self.lock_expiry / 3):
            try:
                lock.reacquire()
            except self._errors() as exc:
                self._keep_failed(exc)
                return

    def _keep_failed(self, exc: BaseException) -> None:
        import redis

        if isinstance(exc, redis.exceptions.LockError):
            warn_once(self._log, ("redis lock lost", self._shown_url),
                      "Token cache: the Redis refresh lock expired while held (the process was paused longer than "
                      "%ds); entries carry generations, so no older token replaces a newer one", int(self.lock_expiry))
        else:
            self._failed(exc, "extending the refresh lock")

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
                raw, seen, rotated = await client.mget(self._keys(key))
        except self._errors() as exc:
            self._failed(exc, "reading a token")
            return None
        return self._answer(key, raw, seen, rotated)

    async def aput(self, key: str, token: SalesforceToken) -> None:
        if not self._usable():
            return
        try:
            async with self._async() as client:
                keys, args = self._put_args(key, token)
                written = await client.eval(_PUT_SCRIPT, len(keys), *keys, *args)
        except self._errors() as exc:
            self._failed(exc, "writing a token")
            return
        if written and token.refresh_token and token.marker is None:
            await asyncio.to_thread(self._check_settings, self._sync())

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
            if not held or lock is None:
                yield False
                return
            keeper = asyncio.ensure_future(self._akeep(lock))
            try:
                yield True
            finally:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
                try:
                    await lock.release()
                except self._errors() as exc:
                    self._release_failed(exc)

    async def _akeep(self, lock: Any) -> None:
        """Async :meth:`_keep` (cancelled when the lock is released)."""
        while True:
            await asyncio.sleep(self.lock_expiry / 3)
            try:
                await lock.reacquire()
            except self._errors() as exc:
                self._keep_failed(exc)
                return

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
