"""Writing the emulator's state files (connections, the demo private key, TLS material) safely.

The state directory must belong to the current user and be writable by nobody else: in a
directory another user can write, that user could swap a file for a symlink between our check
and our write. Each file is written to a fresh ``mkstemp`` name (``O_CREAT | O_EXCL``, mode
0600, so a planted symlink or file is never followed or reused) and renamed over the target;
``rename`` replaces a symlink planted at the target instead of writing through it.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

__all__ = ["UnsafeStateDir", "prepare_state_dir", "write_private_file"]


class UnsafeStateDir(RuntimeError):
    """The state directory could be tampered with by another user."""


def prepare_state_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (mode 0700) if missing; refuse one that is a symlink, not a directory,
    owned by another user, or writable by group or others.

    :param path: the state directory
    :raises UnsafeStateDir: naming the directory and what to change
    """
    p = Path(path)
    try:
        p.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    st = os.lstat(p)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise UnsafeStateDir(f"state dir {str(p)!r} is not a directory (a symlink?): give a directory you own")
    if st.st_uid != os.geteuid():
        raise UnsafeStateDir(
            f"state dir {str(p)!r} belongs to uid {st.st_uid}, not to you: give a directory you own (e.g. under $HOME)"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeStateDir(
            f"state dir {str(p)!r} is writable by other users (mode {stat.S_IMODE(st.st_mode):o}): "
            f"chmod go-w it or give another directory"
        )
    return p


def write_private_file(path: str | os.PathLike[str], text: str, mode: int = 0o600) -> Path:
    """Atomically write ``text`` to ``path`` (mode ``mode``, 0600 by default).

    :param path: target file; its directory must pass :func:`prepare_state_dir`
    :param text: the content
    :param mode: file mode of the result
    """
    target = Path(path)
    directory = prepare_state_dir(target.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target
