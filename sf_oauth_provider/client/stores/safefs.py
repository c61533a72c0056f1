"""Files on a host other users share: trust only what this user owns and nobody else can write.

Rules (DESIGN §5, "Files"): never trust a directory or file another user owns or can write;
never chmod or delete what this process did not create (only its own temp names); never follow
a planted symlink; never block on a FIFO (``O_NONBLOCK``, then a regular-file check on the open
descriptor). Whatever breaks a rule becomes a :class:`Rejected` — the one way a cache file is
refused — which the store reports once (:func:`warn_once`) and treats as a miss.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets
import stat
import time
from pathlib import Path
from typing import Any

__all__ = [
    "Rejected",
    "warn_once",
    "private_directory",
    "read_private_file",
    "write_private_file",
    "remove_own_stale_temps",
    "TEMP_PREFIX",
]

#: every temp file this package writes starts with this (and ends with ``.tmp``): the only
#: names it ever deletes besides its own token files
TEMP_PREFIX = ".sfoauth-"
_TEMP_RE = re.compile(r"\.sfoauth-[A-Za-z0-9_.-]+\.[0-9a-f]{16}\.tmp")
_STALE_TEMP_SECONDS = 600.0
_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH
_WARNED: set[tuple[Any, ...]] = set()


class Rejected(Exception):
    """A cache directory or file that must not be used.

    :param message: what is wrong and what happens instead (no secret)
    :param marker: identifies the thing and its state, so it is reported once per process
    """

    def __init__(self, message: str, marker: tuple[Any, ...]) -> None:
        super().__init__(message)
        self.message = message
        self.marker = marker


def warn_once(logger: logging.Logger, marker: tuple[Any, ...], msg: str, *args: Any) -> None:
    """Log a warning once per marker per process (a broken file is reported once, not per call)."""
    if marker in _WARNED:
        return
    if len(_WARNED) > 4096:
        _WARNED.clear()
    _WARNED.add(marker)
    logger.warning(msg, *args)


def _describe_owner(uid: int) -> str:
    try:
        import pwd

        return f"user {pwd.getpwuid(uid).pw_name!r} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def _check_owned(path: Path, st: os.stat_result, what: str, strict: bool = False) -> None:
    """Raise :class:`Rejected` unless ``st`` is owned by this user and not writable by others.

    :param strict: also refuse what others can *read* (a key file)
    """
    marker = ("unsafe", str(path), st.st_ino, st.st_uid, st.st_mode)
    if st.st_uid != os.geteuid():
        raise Rejected(f"{what} {path} belongs to {_describe_owner(st.st_uid)}, not to this user", marker)
    if st.st_mode & (0o077 if strict else _OTHERS_WRITE):
        raise Rejected(
            f"{what} {path} has mode {stat.S_IMODE(st.st_mode):04o}: other users can "
            f"{'read or write' if strict else 'write'} it", marker,
        )


def private_directory(requested: Path) -> Path:
    """The directory to keep cache files in: ``requested``, or a subdirectory of it this user
    owns when ``requested`` is a shared sticky directory such as ``/tmp``.

    :raises Rejected: when the directory belongs to another user or others can write it
    :raises OSError: when it cannot be created
    """
    requested = requested.expanduser()
    if requested.exists() and not requested.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory", str(requested))
    # Only directories that do not exist yet are created (mode 0700); nothing existing is chmodded.
    requested.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.stat(requested)  # the path the user configured may be a symlink they made
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory", str(requested))
    if st.st_mode & stat.S_ISVTX and st.st_mode & _OTHERS_WRITE:
        # A shared sticky directory: others cannot remove or rename what we create in it, so a
        # subdirectory of our own is private. Never lstat-follow: a planted symlink is refused.
        own = requested / f"sf-oauth-cache-{os.geteuid()}"
        try:
            os.mkdir(own, 0o700)
        except FileExistsError:
            pass
        sub = os.lstat(own)
        if stat.S_ISLNK(sub.st_mode) or not stat.S_ISDIR(sub.st_mode):
            raise Rejected(f"token cache directory {own} is not a directory (a symlink or file was put there)",
                           ("unsafe", str(own), sub.st_ino, sub.st_mode))
        _check_owned(own, sub, "token cache directory")
        return own
    _check_owned(requested, st, "token cache directory")
    return requested


def read_private_file(path: Path, max_bytes: int, what: str, strict: bool = False) -> bytes | None:
    """The content of ``path`` if it is a regular file this user owns (see :func:`_check_owned`).

    :returns: None when it does not exist
    :raises Rejected: a symlink, FIFO, device, foreign or writable-by-others file, or too large
    :raises OSError: it cannot be read
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Rejected(f"{what} {path} is a symbolic link", ("symlink", str(path))) from None
        raise
    try:
        st = os.fstat(fd)
        marker = ("bad", str(path), st.st_ino, st.st_mtime_ns, st.st_size)
        if not stat.S_ISREG(st.st_mode):
            raise Rejected(f"{what} {path} is not a regular file", marker)
        _check_owned(path, st, what, strict=strict)
        raw = os.read(fd, max_bytes + 1)
        if len(raw) > max_bytes:
            raise Rejected(f"{what} {path} is larger than {max_bytes} bytes", marker)
        return raw
    finally:
        os.close(fd)


def _temp_name(label: str) -> str:
    return f"{TEMP_PREFIX}{label}.{secrets.token_hex(8)}.tmp"


def write_private_file(
    directory: Path, name: str, data: bytes, *, fsync: bool = True, publish: str = "replace"
) -> None:
    """Write ``data`` to ``directory/name`` atomically, 0600, through a new temp file of our own
    (``O_EXCL | O_NOFOLLOW``).

    :param publish: ``replace`` (rename over ``name``), ``link`` (a hard link that fails if
        ``name`` exists: the first writer wins) or ``probe`` (only check that we can write here)
    :raises FileExistsError: with ``publish="link"``, when ``name`` exists
    :raises OSError: when it cannot be written
    """
    tmp = directory / _temp_name(name.lstrip("."))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    published = False
    try:
        try:
            os.fchmod(fd, 0o600)  # the umask may have cleared bits, never added: make it exact
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        if publish == "replace":
            os.replace(tmp, directory / name)
            published = True
        elif publish == "link":
            try:
                os.link(tmp, directory / name)
            except FileExistsError:
                raise
            except OSError:  # a filesystem without hard links: exclusive create
                _create_exclusive(directory / name, data)
    finally:
        if not published:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass


def _create_exclusive(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_own_stale_temps(directory: Path) -> None:
    """Delete temp files a process of ours left when killed mid-write (our names, our files only)."""
    cutoff = time.time() - _STALE_TEMP_SECONDS
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    me = os.geteuid()
    for entry in entries:
        if not _TEMP_RE.fullmatch(entry.name):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(st.st_mode) and st.st_uid == me and st.st_mtime < cutoff:
                os.unlink(entry.path)
        except OSError:
            continue
