"""TokenCache: one Salesforce token per connection, shared by every task process on a host.

Layers, cheapest first::

    process memory (dict lookup)  →  encrypted file <dir>/<key>.token  →  fetch() (a token request)

Refreshes are single-flight: a per-key ``threading.Lock`` (or ``asyncio.Lock`` per event loop)
inside the process, and an exclusive ``fcntl.flock`` on ``<dir>/<key>.lock`` across processes.
Whoever gets the lock first fetches; the others find the fresh token under the lock and reuse it,
so N tasks starting at once cost one login, not N (Salesforce allows 3,600 per user per hour).

Cache files are Fernet-encrypted (Airflow's key when given, else a key kept in
``<dir>/.cache.key``), 0600 in a 0700 directory, replaced atomically. A corrupt or foreign file
is logged and treated as a miss; an unusable directory degrades the cache to process memory.
Nothing here decides whether a token is still good: callers pass ``is_usable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fcntl
import json
import logging
import os
import re
import stat
import tempfile
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from sf_oauth_provider.client.token import SalesforceToken

__all__ = ["TokenCache", "default_cache_dir", "CACHE_MODES"]

CACHE_MODES: tuple[str, ...] = ("file", "memory", "none")

_FILE_VERSION = 1
_KEY_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")
_KEY_FILE = ".cache.key"
_MAX_FILE_BYTES = 1 << 20
_STALE_TEMP_SECONDS = 600.0
_POLL_FIRST = 0.001
_POLL_MAX = 0.05

_log = logging.getLogger(__name__)

# Process-wide state shared by every TokenCache instance, so that several hooks for one
# connection in one process share tokens and locks. Memory is namespaced by cache directory
# (None for memory mode) so that caches pointing at different directories stay separate.
_MEMORY: dict[str | None, dict[str, SalesforceToken]] = {}
_MEMORY_GUARD = threading.Lock()
_REGISTRY_GUARD = threading.Lock()
_THREAD_LOCKS: dict[tuple[str | None, str], threading.Lock] = {}
_ASYNC_LOCKS: Any = weakref.WeakKeyDictionary()  # event loop -> {(namespace, key): asyncio.Lock}
_ASYNC_LOCKS_STRONG: dict[int, tuple[asyncio.AbstractEventLoop, dict[Any, asyncio.Lock]]] = {}
_WARNED: set[tuple[Any, ...]] = set()

# Keys whose lock the current thread / task already holds: lets a fetch callback call back into
# the cache (e.g. invalidate, or a nested get_or_fetch) without deadlocking on its own lock.
_HELD: contextvars.ContextVar[frozenset[tuple[str | None, str]]] = contextvars.ContextVar(
    "sf_oauth_cache_held", default=frozenset()
)


def _reset_after_fork() -> None:
    # A lock held by another thread at fork time would stay held forever in the child.
    global _MEMORY_GUARD, _REGISTRY_GUARD, _THREAD_LOCKS, _ASYNC_LOCKS, _ASYNC_LOCKS_STRONG
    _MEMORY_GUARD = threading.Lock()
    _REGISTRY_GUARD = threading.Lock()
    _THREAD_LOCKS = {}
    _ASYNC_LOCKS = weakref.WeakKeyDictionary()
    _ASYNC_LOCKS_STRONG = {}


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def default_cache_dir() -> Path:
    """``$SF_OAUTH_CACHE_DIR`` if set, else ``$AIRFLOW_HOME/sf_oauth_cache`` (``~/airflow``).

    Read at call time, so a test or a task that sets the variable later is honoured.
    """
    explicit = os.environ.get("SF_OAUTH_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    airflow_home = os.environ.get("AIRFLOW_HOME") or "~/airflow"
    return Path(airflow_home).expanduser() / "sf_oauth_cache"


def _check_key(key: str) -> None:
    if not isinstance(key, str) or _KEY_RE.fullmatch(key) is None:
        raise ValueError(
            "Token cache key must be 1-128 characters of [A-Za-z0-9_-] (a hash of the connection), "
            f"got {type(key).__name__} of length {len(key) if isinstance(key, str) else '?'}"
        )


def _warn_once(logger: logging.Logger, marker: tuple[Any, ...], msg: str, *args: Any) -> None:
    """Log a warning once per marker per process (a broken file is reported once, not per call)."""
    if marker in _WARNED:
        return
    if len(_WARNED) > 4096:
        _WARNED.clear()
    _WARNED.add(marker)
    logger.warning(msg, *args)


def _thread_lock(lock_id: tuple[str | None, str]) -> threading.Lock:
    lock = _THREAD_LOCKS.get(lock_id)
    if lock is None:
        with _REGISTRY_GUARD:
            lock = _THREAD_LOCKS.setdefault(lock_id, threading.Lock())
    return lock


def _async_lock(lock_id: tuple[str | None, str]) -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    with _REGISTRY_GUARD:
        try:
            locks = _ASYNC_LOCKS.get(loop)
            if locks is None:
                locks = _ASYNC_LOCKS[loop] = {}
        except TypeError:  # a loop implementation that cannot be weakly referenced
            entry = _ASYNC_LOCKS_STRONG.get(id(loop))
            if entry is None or entry[0] is not loop:
                entry = _ASYNC_LOCKS_STRONG[id(loop)] = (loop, {})
            locks = entry[1]
        lock = locks.get(lock_id)
        if lock is None:
            lock = locks[lock_id] = asyncio.Lock()
    return lock


def _acquire_flock(
    path: Path, timeout: float, cancelled: threading.Event | None = None
) -> tuple[int | None, str | None]:
    """Take an exclusive flock on ``path``, polling until ``timeout`` seconds have passed.

    Polling (LOCK_NB + short sleeps) rather than a blocking flock keeps the wait bounded.
    flock belongs to the open file description, so each call opens its own fd: two threads of
    one process exclude each other just like two processes do.

    :returns: ``(fd, None)`` when locked, ``(None, reason)`` otherwise
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        return None, f"cannot open lock file ({exc.strerror or type(exc).__name__})"
    deadline = time.monotonic() + max(timeout, 0.0)
    delay = _POLL_FIRST
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd, None
        except BlockingIOError:
            pass
        except OSError as exc:
            os.close(fd)
            return None, f"cannot lock ({exc.strerror or type(exc).__name__})"
        if cancelled is not None and cancelled.is_set():
            os.close(fd)
            return None, "cancelled"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            os.close(fd)
            return None, f"still held by another process after {timeout:g}s"
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, _POLL_MAX)


def _release_flock(fd: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    with contextlib.suppress(OSError):
        os.close(fd)


def _parse_fernet_keys(raw: str | bytes) -> tuple[list[Fernet], int]:
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


class TokenCache:
    """Memory → encrypted file → fetch, with one refresh at a time per key.

    :param mode: ``file`` (memory plus an encrypted file shared by all processes on the host),
        ``memory`` (this process only) or ``none`` (every call fetches)
    :param cache_dir: directory for the file cache; default :func:`default_cache_dir`
    :param fernet_key: Airflow's Fernet key (or ``new,old`` list); encrypts the cache when valid
    :param lock_timeout: seconds to wait for another refresh before fetching anyway
    :param logger: where warnings go; default this module's logger
    """

    def __init__(
        self,
        mode: str = "file",
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        fernet_key: str | bytes | None = None,
        lock_timeout: float = 120.0,
        logger: logging.Logger | None = None,
    ) -> None:
        normalized = str(mode).strip().lower()
        if normalized not in CACHE_MODES:
            raise ValueError(f"Token cache mode must be one of {', '.join(CACHE_MODES)}; got {mode!r}")
        self._log = logger or _log
        self._lock_timeout = float(lock_timeout)
        self._mode = normalized
        self._dir: Path | None = None
        self._encrypt_with: Fernet | None = None
        self._decrypt_with: MultiFernet | None = None
        namespace: str | None = None
        if normalized == "file":
            directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
            directory = directory.expanduser()
            primary: list[Fernet] = []
            # An empty key means "not configured" (Airflow's default), not a broken one.
            if fernet_key is not None and fernet_key.strip():
                primary, invalid = _parse_fernet_keys(fernet_key)
                if invalid:
                    self._log.warning(
                        "Token cache: the configured Fernet key %s not a valid Fernet key (32 "
                        "url-safe base64-encoded bytes); %s",
                        f"has {invalid} part(s) that are" if primary else "is",
                        "ignoring those parts" if primary else "encrypting with the local cache key instead",
                    )
            try:
                self._prepare_dir(directory)
                local = self._load_or_create_local_key(directory)
                self._remove_stale_temp_files(directory)
            except OSError as exc:
                self._log.warning(
                    "Token cache directory %s is not usable (%s); caching tokens in this "
                    "process's memory only (set SF_OAUTH_CACHE_DIR to a writable directory to "
                    "share tokens between tasks)",
                    directory,
                    exc.strerror or type(exc).__name__,
                )
                self._mode = "memory"
            else:
                self._dir = directory
                self._encrypt_with = primary[0] if primary else local
                self._decrypt_with = MultiFernet([*primary, local])
                namespace = os.path.realpath(directory)
        self._namespace = namespace
        if self._mode == "none":
            self._mem: dict[str, SalesforceToken] = {}
        else:
            with _MEMORY_GUARD:
                self._mem = _MEMORY.setdefault(namespace, {})

    # ------------------------------------------------------------------ properties

    @property
    def mode(self) -> str:
        """The effective mode: ``file`` degrades to ``memory`` when its directory is unusable."""
        return self._mode

    @property
    def cache_dir(self) -> Path | None:
        """The directory of the file cache, or None when not in file mode."""
        return self._dir

    def __repr__(self) -> str:
        return f"TokenCache(mode={self._mode!r}, cache_dir={str(self._dir) if self._dir else None!r})"

    # ------------------------------------------------------------------ plain access

    def get(self, key: str) -> SalesforceToken | None:
        """The cached token for ``key`` (memory, then file), usable or not; None on a miss."""
        _check_key(key)
        if self._mode == "none":
            return None
        token = self._mem.get(key)
        if token is not None:
            return token
        if self._dir is not None:
            token = self._read_file(key)
            if token is not None:
                self._mem[key] = token
        return token

    def put(self, key: str, token: SalesforceToken) -> None:
        """Store ``token`` for ``key`` in memory and, in file mode, in the file."""
        _check_key(key)
        if self._mode == "none":
            return
        self._store(key, token)

    def invalidate(self, key: str, access_token: str | None = None) -> None:
        """Drop the cached token for ``key`` from memory and file.

        :param access_token: drop only if the cached token is this one, so a process that saw
            a dead token does not throw away a newer one another process already fetched
        """
        _check_key(key)
        if self._mode == "none":
            return
        with _MEMORY_GUARD:
            current = self._mem.get(key)
            if current is not None and (access_token is None or current.access_token == access_token):
                del self._mem[key]
        if self._dir is None:
            return
        path = self._token_path(key)
        if access_token is not None:
            on_disk = self._read_file(key)
            if on_disk is None or on_disk.access_token != access_token:
                return
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            _warn_once(
                self._log,
                ("unlink", str(path), exc.errno),
                "Token cache: cannot remove %s (%s); the token stays cached until replaced",
                path,
                exc.strerror or type(exc).__name__,
            )

    # ------------------------------------------------------------------ single-flight

    def get_or_fetch(
        self,
        key: str,
        fetch: Callable[[], SalesforceToken],
        *,
        is_usable: Callable[[SalesforceToken], bool],
        force: bool = False,
        stale_token: str | None = None,
    ) -> SalesforceToken:
        """The cached token if usable, else the result of one ``fetch()`` across all callers.

        :param fetch: gets a new token (a token request); called at most once per refresh
            among all threads and processes sharing the cache; its exceptions propagate
            unchanged and nothing is cached
        :param is_usable: whether a cached token may be handed out (e.g. fresh with a leeway)
        :param force: skip the cached token (e.g. Salesforce just rejected it)
        :param stale_token: with ``force``, the access token that was rejected: when the cache
            already holds a different usable token (another caller refreshed meanwhile), that
            token is returned instead of fetching again
        """
        _check_key(key)
        if self._mode == "none":
            return fetch()
        if not force:
            token = self._mem.get(key)
            if token is not None and is_usable(token):
                return token
            if self._dir is not None:
                token = self._read_file(key)
                if token is not None and is_usable(token):
                    self._mem[key] = token
                    return token
        with self._locked(key):
            token = self._lookup_locked(key, is_usable, force, stale_token)
            if token is not None:
                return token
            token = fetch()
            self._store(key, token)
            self._log.debug("Token cache: stored new token %s", token.fingerprint)
            return token

    async def aget_or_fetch(
        self,
        key: str,
        fetch: Callable[[], Awaitable[SalesforceToken]],
        *,
        is_usable: Callable[[SalesforceToken], bool],
        force: bool = False,
        stale_token: str | None = None,
    ) -> SalesforceToken:
        """Async :meth:`get_or_fetch`: file I/O and lock waits run in threads, never on the loop."""
        _check_key(key)
        if self._mode == "none":
            return await fetch()
        if not force:
            token = self._mem.get(key)
            if token is not None and is_usable(token):
                return token
            if self._dir is not None:
                token = await asyncio.to_thread(self._read_file, key)
                if token is not None and is_usable(token):
                    self._mem[key] = token
                    return token
        async with self._alocked(key):
            if self._dir is not None:
                token = await asyncio.to_thread(self._lookup_locked, key, is_usable, force, stale_token)
            else:
                token = self._lookup_locked(key, is_usable, force, stale_token)
            if token is not None:
                return token
            token = await fetch()
            if self._dir is not None:
                await asyncio.to_thread(self._store, key, token)
            else:
                self._store(key, token)
            self._log.debug("Token cache: stored new token %s", token.fingerprint)
            return token

    # ------------------------------------------------------------------ internals: lookup/store

    def _lookup_locked(
        self,
        key: str,
        is_usable: Callable[[SalesforceToken], bool],
        force: bool,
        stale_token: str | None,
    ) -> SalesforceToken | None:
        """Under the lock: a token someone else already put there, if acceptable."""
        if force and stale_token is None:
            return None
        from_memory = self._mem.get(key)
        from_file = self._read_file(key) if self._dir is not None else None
        # When forced, the file is the freshest view (another process may have refreshed);
        # otherwise memory is as good and cheaper to trust.
        candidates = (from_file, from_memory) if force else (from_memory, from_file)
        for token in candidates:
            if token is None or not is_usable(token):
                continue
            if force and token.access_token == stale_token:
                continue
            if token is not from_memory:
                self._mem[key] = token
            return token
        return None

    def _store(self, key: str, token: SalesforceToken) -> None:
        with _MEMORY_GUARD:
            self._mem[key] = token
        if self._dir is not None:
            self._write_file(key, token)

    # ------------------------------------------------------------------ internals: locks

    def _lock_path(self, key: str) -> Path:
        assert self._dir is not None
        return self._dir / f"{key}.lock"

    def _token_path(self, key: str) -> Path:
        assert self._dir is not None
        return self._dir / f"{key}.token"

    def _lock_wait_warning(self, key: str, reason: str) -> None:
        self._log.warning(
            "Token cache: could not take the refresh lock for cache key %s (%s); requesting a "
            "token without it",
            key,
            reason,
        )

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        lock_id = (self._namespace, key)
        held = _HELD.get()
        if lock_id in held:
            yield
            return
        thread_lock = _thread_lock(lock_id)
        have_thread_lock = thread_lock.acquire(timeout=max(self._lock_timeout, 0.0))
        if not have_thread_lock:
            self._lock_wait_warning(key, f"another thread held it for {self._lock_timeout:g}s")
        fd: int | None = None
        try:
            if self._dir is not None:
                fd, reason = _acquire_flock(self._lock_path(key), self._lock_timeout)
                if fd is None:
                    self._lock_wait_warning(key, reason or "unknown")
            marker = _HELD.set(held | {lock_id})
            try:
                yield
            finally:
                _HELD.reset(marker)
        finally:
            if fd is not None:
                _release_flock(fd)
            if have_thread_lock:
                thread_lock.release()

    @contextlib.asynccontextmanager
    async def _alocked(self, key: str) -> AsyncIterator[None]:
        lock_id = (self._namespace, key)
        held = _HELD.get()
        if lock_id in held:
            yield
            return
        task_lock = _async_lock(lock_id)
        # No timeout here: its holder is itself bounded (flock wait + fetch), and wait_for
        # around Lock.acquire can lose an acquisition on timeout in older Pythons.
        await task_lock.acquire()
        fd: int | None = None
        try:
            if self._dir is not None:
                fd, reason = await self._aacquire_flock(key, self._lock_timeout)
                if fd is None:
                    self._lock_wait_warning(key, reason or "unknown")
            marker = _HELD.set(held | {lock_id})
            try:
                yield
            finally:
                _HELD.reset(marker)
        finally:
            if fd is not None:
                _release_flock(fd)
            task_lock.release()

    async def _aacquire_flock(self, key: str, timeout: float) -> tuple[int | None, str | None]:
        cancelled = threading.Event()
        waiter = asyncio.ensure_future(
            asyncio.to_thread(_acquire_flock, self._lock_path(key), timeout, cancelled)
        )
        try:
            return await asyncio.shield(waiter)
        except asyncio.CancelledError:
            # The polling thread may win the lock after we gave up: release it when it does.
            cancelled.set()

            def _release_if_taken(done: asyncio.Future[tuple[int | None, str | None]]) -> None:
                if done.cancelled() or done.exception() is not None:
                    return
                fd, _ = done.result()
                if fd is not None:
                    _release_flock(fd)

            waiter.add_done_callback(_release_if_taken)
            raise

    # ------------------------------------------------------------------ internals: files

    def _prepare_dir(self, directory: Path) -> None:
        if directory.exists() and not directory.is_dir():
            raise NotADirectoryError(20, "Not a directory", str(directory))
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = directory.stat()
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(20, "Not a directory", str(directory))
        if st.st_mode & 0o077 and st.st_uid == os.geteuid():
            with contextlib.suppress(OSError):
                os.chmod(directory, 0o700)

    def _read_key_file(self, path: Path) -> Fernet | None:
        """The local key, or None if the file is missing; retries briefly on a partial file."""
        for attempt in range(20):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            except FileNotFoundError:
                return None
            try:
                raw = os.read(fd, 4096)
            finally:
                os.close(fd)
            try:
                return Fernet(raw.strip())
            except Exception:  # noqa: BLE001 - malformed key material
                if attempt < 19:
                    time.sleep(0.025)  # another process may be between create and write
        raise ValueError("invalid key file")

    def _load_or_create_local_key(self, directory: Path) -> Fernet:
        """Read ``<dir>/.cache.key``, creating it (0600, atomically) when missing or invalid."""
        path = directory / _KEY_FILE
        for _ in range(5):
            try:
                existing = self._read_key_file(path)
            except ValueError:
                self._log.warning(
                    "Token cache: key file %s is not a valid Fernet key; replacing it (cached "
                    "tokens encrypted with it will be fetched again)",
                    path,
                )
                new_key = Fernet.generate_key()
                tmp = self._write_temp(directory, ".cache.key.", new_key)
                os.replace(tmp, path)
                return Fernet(new_key)
            if existing is not None:
                with contextlib.suppress(OSError):
                    if os.stat(path).st_mode & 0o077:
                        os.chmod(path, 0o600)
                # A probe write: a directory we can read but not write must degrade now, not
                # fail on every put later.
                probe = self._write_temp(directory, ".probe.", b"")
                with contextlib.suppress(OSError):
                    os.unlink(probe)
                return existing
            new_key = Fernet.generate_key()
            tmp = self._write_temp(directory, ".cache.key.", new_key)
            try:
                # link() publishes the fully written file or fails with EEXIST: no reader can
                # see a half-written key, and the first creator wins.
                os.link(tmp, path)
                return Fernet(new_key)
            except FileExistsError:
                continue
            except OSError:
                # A filesystem without hard links: exclusive create, readers retry on partial.
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                except FileExistsError:
                    continue
                try:
                    os.fchmod(fd, 0o600)
                    os.write(fd, new_key)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                return Fernet(new_key)
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        raise OSError(0, "cannot create the cache key file", str(path))

    @staticmethod
    def _write_temp(directory: Path, prefix: str, data: bytes) -> str:
        """Write ``data`` to a new 0600 temp file in ``directory``, fsynced; returns its path."""
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)  # O_EXCL, 0600
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.close(fd)
        return tmp

    def _remove_stale_temp_files(self, directory: Path) -> None:
        """Temp files left by a process killed mid-write."""
        cutoff = time.time() - _STALE_TEMP_SECONDS
        with contextlib.suppress(OSError):
            for entry in os.scandir(directory):
                if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                    with contextlib.suppress(OSError):
                        if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                            os.unlink(entry.path)

    def _write_file(self, key: str, token: SalesforceToken) -> bool:
        assert self._dir is not None and self._encrypt_with is not None
        payload = json.dumps(
            {"v": _FILE_VERSION, "key": key, "token": token.to_dict(), "written_at": time.time()},
            separators=(",", ":"),
        ).encode("utf-8")
        blob = self._encrypt_with.encrypt(payload)
        path = self._token_path(key)
        try:
            tmp = self._write_temp(self._dir, f".{key}.", blob)
            try:
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            _warn_once(
                self._log,
                ("write", str(self._dir), exc.errno),
                "Token cache: cannot write %s (%s); the token is cached in this process only",
                path,
                exc.strerror or type(exc).__name__,
            )
            return False
        return True

    def _read_file(self, key: str) -> SalesforceToken | None:
        """The token in ``<dir>/<key>.token``, or None (missing, unreadable, corrupt, foreign)."""
        assert self._dir is not None and self._decrypt_with is not None
        path = self._token_path(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as exc:
            _warn_once(
                self._log,
                ("open", str(path), exc.errno),
                "Token cache: cannot read %s (%s); treating it as a miss, it will be rebuilt",
                path,
                exc.strerror or type(exc).__name__,
            )
            return None
        try:
            st = os.fstat(fd)
            raw = os.read(fd, _MAX_FILE_BYTES + 1) if stat.S_ISREG(st.st_mode) else None
        except OSError as exc:
            raw, st = None, None
            _warn_once(
                self._log,
                ("read", str(path), exc.errno),
                "Token cache: cannot read %s (%s); treating it as a miss, it will be rebuilt",
                path,
                exc.strerror or type(exc).__name__,
            )
            return None
        finally:
            os.close(fd)
        marker = ("bad", str(path), st.st_ino, st.st_mtime_ns, st.st_size)
        if raw is None or len(raw) > _MAX_FILE_BYTES:
            _warn_once(
                self._log,
                marker,
                "Token cache: %s is not a regular file of sensible size; ignoring it, it will be rebuilt",
                path,
            )
            return None
        try:
            payload = self._decrypt_with.decrypt(raw.strip())
        except InvalidToken:
            _warn_once(
                self._log,
                marker,
                "Token cache: %s cannot be decrypted (corrupt, truncated, or written with another "
                "Fernet key); ignoring it, it will be rebuilt",
                path,
            )
            return None
        try:
            data = json.loads(payload)
        except ValueError:
            _warn_once(
                self._log, marker, "Token cache: %s holds invalid JSON; ignoring it, it will be rebuilt", path
            )
            return None
        if not isinstance(data, dict) or data.get("v") != _FILE_VERSION:
            version = data.get("v") if isinstance(data, dict) else None
            _warn_once(
                self._log,
                marker,
                "Token cache: %s has format version %r (expected %d); ignoring it, it will be rebuilt",
                path,
                version if isinstance(version, (int, str)) else type(version).__name__,
                _FILE_VERSION,
            )
            return None
        if data.get("key") != key:
            _warn_once(
                self._log,
                marker,
                "Token cache: %s belongs to another cache key; ignoring it, it will be rebuilt",
                path,
            )
            return None
        try:
            token_data = data["token"]
            if not isinstance(token_data, dict) or not isinstance(token_data.get("access_token"), str):
                raise TypeError("token entry")
            return SalesforceToken.from_dict(token_data)
        except (KeyError, TypeError, ValueError):
            _warn_once(
                self._log,
                marker,
                "Token cache: %s holds an incomplete token entry; ignoring it, it will be rebuilt",
                path,
            )
            return None
