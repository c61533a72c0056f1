"""Run Python code as another real Unix user (``setpriv``), with this checkout's package.

The permission tests (tests/security/test_shared_host.py, tests/interop/test_ca_bundle.py) run
code as uid 1000 and ``nobody``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

__all__ = ["OtherUserPython", "for_this_checkout"]

ROOT = Path(__file__).resolve().parents[2]


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


def for_this_checkout() -> OtherUserPython:
    """This interpreter with this checkout on ``PYTHONPATH``."""
    return OtherUserPython(sys.executable, {"PYTHONPATH": str(ROOT)})
