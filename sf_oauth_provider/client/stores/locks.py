"""Single-flight locks: one per (store namespace, cache key), in-process and across processes.

* threads: a ``threading.Lock`` per id; coroutines: an ``asyncio.Lock`` per id and event loop;
* processes: an exclusive ``fcntl.flock`` on ``<dir>/<key>.lock`` (polled, so a wait is bounded);
* fork: the registries are rebuilt in the child (a lock held by another thread at fork time
  would stay held forever there);
* re-entrancy: a caller that already holds a lock (e.g. a fetch that invalidates) passes through.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fcntl
import os
import stat
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["LockId", "thread_locked", "task_locked", "acquire_flock", "release_flock", "aacquire_flock"]

LockId = tuple[str | None, str]

_POLL_FIRST = 0.001
_POLL_MAX = 0.05

_REGISTRY_GUARD = threading.Lock()
_THREAD_LOCKS: dict[LockId, threading.Lock] = {}
_ASYNC_LOCKS: Any = weakref.WeakKeyDictionary()  # event loop -> {LockId: asyncio.Lock}
_ASYNC_LOCKS_STRONG: dict[int, tuple[asyncio.AbstractEventLoop, dict[LockId, asyncio.Lock]]] = {}

# Locks the current thread / task already holds: lets a fetch call back into the cache.
_HELD: contextvars.ContextVar[frozenset[LockId]] = contextvars.ContextVar("sf_oauth_locks_held", default=frozenset())


def _reset_after_fork() -> None:
    global _REGISTRY_GUARD, _THREAD_LOCKS, _ASYNC_LOCKS, _ASYNC_LOCKS_STRONG
    _REGISTRY_GUARD = threading.Lock()
    _THREAD_LOCKS = {}
    _ASYNC_LOCKS = weakref.WeakKeyDictionary()
    _ASYNC_LOCKS_STRONG = {}


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _thread_lock(lock_id: LockId) -> threading.Lock:
    lock = _THREAD_LOCKS.get(lock_id)
    if lock is None:
        with _REGISTRY_GUARD:
            lock = _THREAD_LOCKS.setdefault(lock_id, threading.Lock())
    return lock


def _task_lock(lock_id: LockId) -> asyncio.Lock:
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


@contextlib.contextmanager
def thread_locked(
    lock_id: LockId, timeout: float, cross_process: Callable[[], tuple[int | None, str | None]] | None = None,
    on_wait_failed: Callable[[str], None] | None = None,
) -> Iterator[bool]:
    """Hold the thread lock of ``lock_id`` (and, with ``cross_process``, the flock it opens).

    :param cross_process: takes the cross-process lock: ``(fd, None)`` or ``(None, reason)``
    :param on_wait_failed: told why a lock could not be taken (the caller then goes on without)
    :returns: (yields) whether every lock is held
    """
    held = _HELD.get()
    if lock_id in held:
        yield True
        return
    lock = _thread_lock(lock_id)
    have = lock.acquire(timeout=max(timeout, 0.0))
    if not have and on_wait_failed:
        on_wait_failed(f"another thread held it for {timeout:g}s")
    fd: int | None = None
    try:
        if cross_process is not None:
            fd, reason = cross_process()
            if fd is None and on_wait_failed:
                on_wait_failed(reason or "unknown")
        marker = _HELD.set(held | {lock_id})
        try:
            yield have and (cross_process is None or fd is not None)
        finally:
            _HELD.reset(marker)
    finally:
        if fd is not None:
            release_flock(fd)
        if have:
            lock.release()


@contextlib.asynccontextmanager
async def task_locked(
    lock_id: LockId, timeout: float, path: Path | None = None, on_wait_failed: Callable[[str], None] | None = None,
) -> AsyncIterator[bool]:
    """:func:`thread_locked` for coroutines: an ``asyncio.Lock``, and the flock on ``path``
    taken in a thread (the event loop keeps running while another process holds it)."""
    held = _HELD.get()
    if lock_id in held:
        yield True
        return
    lock = _task_lock(lock_id)
    # No timeout here: its holder is itself bounded (flock wait + fetch), and wait_for around
    # Lock.acquire can lose an acquisition on timeout in older Pythons.
    await lock.acquire()
    fd: int | None = None
    try:
        if path is not None:
            fd, reason = await aacquire_flock(path, timeout)
            if fd is None and on_wait_failed:
                on_wait_failed(reason or "unknown")
        marker = _HELD.set(held | {lock_id})
        try:
            yield path is None or fd is not None
        finally:
            _HELD.reset(marker)
    finally:
        if fd is not None:
            release_flock(fd)
        lock.release()


def acquire_flock(
    path: Path, timeout: float, cancelled: threading.Event | None = None
) -> tuple[int | None, str | None]:
    """Take an exclusive flock on ``path``, polling until ``timeout`` seconds have passed.

    flock belongs to the open file description, so each call opens its own fd: two threads of
    one process exclude each other just like two processes do. The lock file is opened without
    following a symlink and without blocking (a FIFO planted there cannot hang us).

    :returns: ``(fd, None)`` when locked, ``(None, reason)`` otherwise
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)
    except OSError as exc:
        return None, f"cannot open lock file ({exc.strerror or type(exc).__name__})"
    try:
        st = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        return None, f"cannot check lock file ({exc.strerror or type(exc).__name__})"
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        os.close(fd)
        return None, "the lock file is not a regular file of this user"
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


def release_flock(fd: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    with contextlib.suppress(OSError):
        os.close(fd)


async def aacquire_flock(path: Path, timeout: float) -> tuple[int | None, str | None]:
    """:func:`acquire_flock` in a thread; on cancellation, a lock won later is released."""
    cancelled = threading.Event()
    waiter = asyncio.ensure_future(asyncio.to_thread(acquire_flock, path, timeout, cancelled))
    try:
        return await asyncio.shield(waiter)
    except asyncio.CancelledError:
        cancelled.set()

        def _release_if_taken(done: asyncio.Future[tuple[int | None, str | None]]) -> None:
            if done.cancelled() or done.exception() is not None:
                return
            fd, _ = done.result()
            if fd is not None:
                release_flock(fd)

        waiter.add_done_callback(_release_if_taken)
        raise
