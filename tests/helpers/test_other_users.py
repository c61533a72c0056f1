"""The Python the permission tests run as other Unix users is this test run's: the same CPython
build and this checkout's package — wherever the checkout, its virtualenv and the interpreter live
(a clone in ``mktemp -d`` is 0700; pyenv interpreters live under ``/root``, 0700)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.helpers.other_users import OtherUserPython

ROOT = Path(__file__).resolve().parents[2]
USERS = {"nobody": (65534, 65534), "uid 1000": (1000, 1000)}

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv to switch users"
)

PROBE = r"""
import hashlib, json, sys
import cryptography.fernet, httpx, jwt
import sf_oauth_provider.client.cache as cache
from sf_oauth_provider.client import OAuthConfig
print(json.dumps({"version": sys.version, "cache_py": hashlib.sha256(open(cache.__file__, "rb").read()).hexdigest()}))
"""


@pytest.mark.parametrize("user", list(USERS), ids=list(USERS))
def test_other_users_run_this_interpreter_and_this_checkout(other_user_python: OtherUserPython, user: str) -> None:
    done = other_user_python.run(USERS[user], ["-c", PROBE])
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    cache_py = (ROOT / "sf_oauth_provider" / "client" / "cache.py").read_bytes()
    assert seen == {"version": sys.version, "cache_py": hashlib.sha256(cache_py).hexdigest()}
