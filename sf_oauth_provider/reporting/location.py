"""Where report files go: a local folder, or any ``ObjectStoragePath`` URI.

A local folder (a path, or a ``file://`` URI) is written the way DESIGN §5 asks of files on a
shared host: the folder must belong to this user (or root) and be writable by nobody else; each
file is written through a new temp name opened with ``O_CREAT | O_EXCL | O_NOFOLLOW`` relative to
the opened folder, then renamed over the final name, so a planted symlink (at the temp name or the
final name) is never written through. Files and the folders created for them follow the process
umask, as Airflow's own outputs do (umask 022: 0644 files in 0755 folders, readable by a reporting
group; umask 077: private), but never give group or others write (a folder they can write is
refused, since they could swap a report); ``file_mode`` sets an exact mode instead.

Anything else with a scheme (``s3://aws_default@bucket/audits``, ``gs://…``, ``memory://…``) goes
through Airflow's object storage (``airflow.sdk.ObjectStoragePath``), so reports survive ephemeral
workers. Object stores write whole objects, so there is no partial file to protect there.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote, urlsplit

__all__ = ["ReportFolder", "ReportLocationError"]

#: A previous report larger than this is not read back (it is only used for the comparison).
MAX_READ_BYTES = 64 * 1024 * 1024


class ReportLocationError(ValueError):
    """The report location cannot be used safely; the message says what to change."""


class ReportFolder:
    """A folder that receives report files.

    :param location: a local path, a ``file://`` URI, an ``ObjectStoragePath`` or any URI it accepts
    :param what: the parameter that named the location, for error messages (e.g. ``report_dir``)
    :param file_mode: exact permission bits of local files; default ``None``: 0644 less the
        process umask (and folders 0755 less the umask)
    """

    def __init__(
        self, location: str | os.PathLike[str] | Any, what: str = "report_dir", file_mode: int | None = None
    ) -> None:
        self.what = what
        self.file_mode = None if file_mode is None else int(file_mode)
        if self.file_mode is not None and self.file_mode & ~0o777:
            raise ReportLocationError(f"{what}: file mode {oct(self.file_mode)} is not a permission mode like 0o640")
        self.local: Path | None = None
        self.remote: Any = None  # ObjectStoragePath
        #: the location as the user wrote it, for messages (ObjectStoragePath's str() differs by release)
        self.shown = str(location)
        protocol = getattr(location, "protocol", None)
        if protocol is not None:  # an ObjectStoragePath already
            if protocol in ("file", "local"):
                self.local = Path(str(location.path))  # type: ignore[union-attr]  # has .protocol: an ObjectStoragePath
            else:
                self.remote = location
            return
        text = os.fspath(location) if isinstance(location, os.PathLike) else str(location)
        if not text.strip():
            raise ReportLocationError(f"{what} is empty: give a folder or an object storage URI such as s3://bucket/path")
        parts = urlsplit(text)
        if parts.scheme == "file":
            self.local = Path(unquote(parts.path))
        elif "://" in text:
            from airflow.sdk import ObjectStoragePath

            try:
                self.remote = ObjectStoragePath(text)
            except ValueError:  # "Unsupported filesystem: …"
                raise ReportLocationError(
                    f"{what} {text!r}: Airflow has no object storage for {parts.scheme!r}; install the provider "
                    "that serves it (e.g. apache-airflow-providers-amazon for s3://) or use a local folder"
                ) from None
        else:
            self.local = Path(text).expanduser()

    def __str__(self) -> str:
        return str(self.local) if self.local is not None else str(self.remote)

    def child(self, name: str) -> ReportFolder:
        """The sub-folder ``name`` (same checks and file mode).

        :param name: a plain folder name
        """
        if "/" in name or name in ("", ".", ".."):
            raise ValueError(f"not a plain folder name: {name!r}")
        return ReportFolder(self.local / name if self.local is not None else self.remote / name, self.what,
                            self.file_mode)

    def location_of(self, name: str) -> str:
        """The path (local) or URI (object storage) of the file ``name`` in this folder."""
        return str(self.local / name) if self.local is not None else str(self.remote / name)

    # ---- local folder --------------------------------------------------------------------------
    def _folder_mode(self) -> int:
        """Mode of folders created here (the umask still applies): 0755, or, with an exact file
        mode, search permission wherever the files are readable (0640 → 0750)."""
        if self.file_mode is None:
            return 0o755
        return (self.file_mode | 0o700 | ((self.file_mode & 0o044) >> 2)) & ~0o022

    def _make_dirs(self, folder: Path) -> None:
        """Create ``folder`` and missing parents, each with :meth:`_folder_mode` (``Path.mkdir``
        gives parents 0777 less the umask: group-writable under umask 002)."""
        missing = []
        while not folder.exists() and folder.parent != folder:
            missing.append(folder)
            folder = folder.parent
        for path in reversed(missing):
            try:
                os.mkdir(path, self._folder_mode())
            except FileExistsError:
                pass

    @contextlib.contextmanager
    def _opened_dir(self) -> Iterator[int]:
        """The local folder, created (umask-following, see :meth:`_folder_mode`) if missing,
        opened and checked; yields its fd."""
        assert self.local is not None
        folder = self.local
        try:
            self._make_dirs(folder)
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise ReportLocationError(
                f"{self.what} {str(folder)!r} cannot be used as a folder ({exc.strerror}): give a folder this "
                "user can create or write"
            ) from None
        try:
            info = os.fstat(fd)
            if info.st_uid not in (os.geteuid(), 0):
                raise ReportLocationError(
                    f"{self.what} {str(folder)!r} is owned by another user (uid {info.st_uid}): reports there "
                    "could be read or replaced by that user; use a folder of your own"
                )
            if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                raise ReportLocationError(
                    f"{self.what} {str(folder)!r} is a folder other users can write (mode "
                    f"{oct(stat.S_IMODE(info.st_mode))}): they could plant links or replace reports; use a "
                    f"folder only you can write (e.g. a sub-folder with mode 0700) or run chmod go-w on it"
                )
            yield fd
        finally:
            os.close(fd)

    def prepare(self) -> None:
        """Create and check the folder now (errors before any work is done)."""
        if self.local is not None:
            with self._opened_dir():
                pass
            return
        try:
            self.remote.mkdir(parents=True, exist_ok=True)
        except ValueError:  # Airflow's "No filesystem registered for scheme …"
            raise ReportLocationError(
                f"{self.what} {self.shown!r}: Airflow has no object storage for {self.remote.protocol!r}; "
                "install the provider that serves it (e.g. apache-airflow-providers-amazon for s3://, "
                "-google for gs://) or use a local folder"
            ) from None

    def write_text(self, name: str, text: str) -> str:
        """Write ``name`` (replacing an older file atomically); returns its location.

        :param name: a plain file name (no folders)
        :param text: the content (UTF-8)
        """
        with self.open_atomic(name) as fh:
            fh.write(text.encode("utf-8"))
        return self.location_of(name)

    @contextlib.contextmanager
    def open_atomic(self, name: str) -> Iterator[Any]:
        """A binary file to write ``name`` through: a temporary name beside it, renamed over
        ``name`` only when the block ends without an error (an error, a kill or a full disk never
        leaves a partial file under ``name``; the temporary one is removed when Python can).

        :param name: a plain file name (no folders)
        """
        if "/" in name or name in ("", ".", ".."):
            raise ValueError(f"not a plain file name: {name!r}")
        tmp = f".{name}.{secrets.token_hex(8)}.part"
        if self.remote is not None:
            self.remote.mkdir(parents=True, exist_ok=True)
            part = self.remote / tmp
            try:
                with part.open("wb") as fh:
                    yield fh
                part.rename(self.remote / name)  # object stores: copy then delete, whole objects only
            except BaseException:
                with contextlib.suppress(Exception):
                    part.unlink()
                raise
            return
        with self._opened_dir() as dir_fd:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            # default: 0644 less the umask; never group/other-writable, whatever the umask
            fd = os.open(tmp, flags, 0o644 if self.file_mode is None else self.file_mode, dir_fd=dir_fd)
            try:
                if self.file_mode is not None:
                    os.fchmod(fd, self.file_mode)  # exact mode, whatever the umask
                with os.fdopen(fd, "wb", closefd=False) as fh:
                    yield fh
                os.fsync(fd)
                os.close(fd)
                fd = -1
                os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except BaseException:
                if fd >= 0:
                    os.close(fd)
                os.unlink(tmp, dir_fd=dir_fd)
                raise

    def read_text(self, name: str) -> str | None:
        """The content of ``name``, or ``None`` when it is missing, not a regular file, a symlink,
        or larger than :data:`MAX_READ_BYTES`.

        :param name: a plain file name
        """
        if self.remote is not None:
            path = self.remote / name
            try:
                if not path.exists():
                    return None
                with path.open("rb") as fh:
                    data = fh.read(MAX_READ_BYTES + 1)
            except FileNotFoundError:
                return None
            return None if len(data) > MAX_READ_BYTES else data.decode("utf-8", "replace")
        assert self.local is not None  # no remote: __init__ set a local folder
        if not self.local.is_dir():
            return None
        with self._opened_dir() as dir_fd:
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
            except OSError:  # missing, a symlink (ELOOP), ...
                return None
            with os.fdopen(fd, "rb") as fh:
                if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                    return None  # a FIFO or device must never block or feed the comparison
                data = fh.read(MAX_READ_BYTES + 1)
        return None if len(data) > MAX_READ_BYTES else data.decode("utf-8", "replace")
