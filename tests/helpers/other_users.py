"""Run Python code as another real Unix user (``setpriv``), with this run's interpreter and package.

The permission tests (tests/security/test_shared_host.py, tests/interop/test_ca_bundle.py) run
code as uid 1000 and ``nobody``. Those users cannot reach what lies under a private folder: a
clone in ``mktemp -d`` (0700) with its virtualenv, or a pyenv interpreter under ``/root`` (0700) —
whose binary the kernel may still start, but whose ``libpython`` the loader then cannot read, so
the process silently runs on the system's libpython, another CPython.

:func:`stage` therefore puts what such a process needs into one world-readable folder of its own
(under ``/tmp``, made per test session, removed after it): this interpreter's binary and
libpython, its standard library, the third-party distributions the given modules import (whole,
as installed), and the package's source. Files already readable by everybody are hard-linked
(no copy, no space), others are copied as 0644 files; nothing outside that folder changes mode.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

__all__ = ["OtherUserPython", "stage"]

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "sf_oauth_provider"

#: parts of the standard library no child process of the tests uses (Tk, IDLE, CPython's own tests)
_STDLIB_SKIP = {"site-packages", "dist-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3"}

# Run by this interpreter (as root) to learn what the child code needs: the files of every module
# the given imports load, which distribution each site-packages module belongs to, where things are.
_PROBE = r"""
import importlib, importlib.metadata as md, json, sys, sysconfig
for name in sys.argv[1:]:
    importlib.import_module(name)
files = sorted({m.__file__ for m in list(sys.modules.values()) if getattr(m, "__file__", None)})
top_level_dists = {}  # from each RECORD: packages_distributions() of 3.10 reads only top_level.txt
for dist in md.distributions():
    for entry in dist.files or ():
        top_level_dists.setdefault(entry.parts[0].split(".")[0], set()).add(dist.metadata["Name"])
print(json.dumps({
    "files": files,
    "top_level_dists": {top: sorted(names) for top, names in top_level_dists.items()},
    "site": sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}),
}))
"""


@dataclass(frozen=True)
class OtherUserPython:
    """A Python that other users can run, with the package importable.

    :param python: the interpreter
    :param env: what the interpreter needs in its environment
    """

    python: str
    env: dict[str, str]

    def run(
        self, user: tuple[int, int], args: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 30,
        cwd: str = "/",
    ) -> subprocess.CompletedProcess[str]:
        """``python *args`` as ``user`` (uid, gid), with no capabilities and no other groups.

        :param user: (uid, gid)
        :param args: the interpreter's arguments, e.g. ``["-c", code, arg1]``
        :param env: more environment (``PATH`` and ``HOME`` are set already)
        :param timeout: seconds
        :param cwd: working directory
        """
        full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent", **self.env, **(env or {})}
        return subprocess.run(
            ["setpriv", f"--reuid={user[0]}", f"--regid={user[1]}", "--clear-groups", self.python, *args],
            capture_output=True, text=True, timeout=timeout, cwd=cwd, env=full_env,
        )


def _place(src: Path, dst: Path) -> None:
    """``dst`` becomes ``src``'s content, readable by everybody, without touching ``src``."""
    if dst.exists():  # placed already (stdlib and platstdlib can be one folder)
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    st = src.stat()
    if st.st_mode & 0o004:
        try:
            os.link(src, dst)  # same inode, same (world-readable) mode: nothing is changed
            return
        except OSError:  # another file system, or links refused: copy
            pass
    shutil.copy2(src, dst)
    os.chmod(dst, 0o755 if st.st_mode & 0o111 else 0o644)


def _place_tree(src: Path, dst: Path, skip: Iterable[str] = ()) -> None:
    skipped = set(skip)
    for folder, dirs, files in os.walk(src):
        dirs[:] = [d for d in dirs if d not in skipped and not d.startswith("config-")]
        here = Path(folder)
        for name in files:
            path = here / name
            if path.is_file():  # a dangling or odd entry is not something a child can use either
                _place(path, dst / path.relative_to(src))


def _python_version_dir() -> str:
    return f"python{sys.version_info.major}.{sys.version_info.minor}"


def stage(dest: Path, imports: Sequence[str]) -> OtherUserPython:
    """Build, in ``dest`` (an empty folder), a Python that other users can run and that can
    import ``imports`` and the package.

    :param dest: the folder; made world-readable (0755) here
    :param imports: modules the child code imports (what they import in turn is found by running them)
    """
    dest.chmod(0o755)
    lib = dest / "lib"
    stdlib = lib / _python_version_dir()
    site = stdlib / "site-packages"

    # the interpreter, and its libpython when it is a shared build (pyenv's are)
    python = dest / "bin" / _python_version_dir()
    _place(Path(os.path.realpath(getattr(sys, "_base_executable", sys.executable))), python)
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
        if libdir and soname and (Path(libdir) / soname).exists():
            _place(Path(libdir) / soname, lib / soname)
    # the standard library (pure and compiled modules) of this interpreter
    for key in ("stdlib", "platstdlib"):  # lib-dynload is in platstdlib
        _place_tree(Path(sysconfig.get_paths()[key]), stdlib, _STDLIB_SKIP)
    (stdlib / "lib-dynload").mkdir(parents=True, exist_ok=True)  # getpath's landmark for exec_prefix

    # the third-party distributions the imports load, each whole (dist-info included)
    probe = subprocess.run([sys.executable, "-c", _PROBE, PACKAGE, *imports], capture_output=True, text=True,
                           check=True, timeout=120, cwd=ROOT)
    found = json.loads(probe.stdout)
    sites = [Path(p) for p in found["site"]]
    dists: set[str] = set()
    for file in map(Path, found["files"]):
        for base in sites:
            if file.is_relative_to(base):
                top = file.relative_to(base).parts[0].split(".")[0]
                dists.update(found["top_level_dists"].get(top, []))
    from importlib import metadata

    for name in sorted(dists):
        dist = metadata.distribution(name)
        if dist.metadata["Name"].lower().replace("_", "-") == PACKAGE.replace("_", "-"):
            continue  # the package itself is an editable install: its source is staged below
        for entry in dist.files or ():
            path = Path(dist.locate_file(entry))
            if entry.parts[0] != ".." and path.is_file():
                _place(path, site / Path(*entry.parts))
    # the package, as it is in this checkout now
    _place_tree(ROOT / PACKAGE, site / PACKAGE, {"__pycache__"})

    for folder, _dirs, _files in os.walk(dest):
        os.chmod(folder, 0o755)
    env = {"PYTHONHOME": str(dest), "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    if (lib / str(sysconfig.get_config_var("INSTSONAME"))).exists():
        env["LD_LIBRARY_PATH"] = str(lib)  # searched before the binary's RUNPATH (the original, unreadable lib)
    return OtherUserPython(str(python), env)


def staged_for_session(imports: Sequence[str]) -> tuple[OtherUserPython, Path]:
    """:func:`stage` into a new folder under ``/tmp`` (``mkdtemp``); the caller removes it."""
    dest = Path(tempfile.mkdtemp(prefix="sf-oauth-other-users-", dir="/tmp"))
    try:
        return stage(dest, imports), dest
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
