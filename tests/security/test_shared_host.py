"""The token cache on a host other users share (DESIGN §5 "Files"), with real Unix users.

The attacker is ``nobody``; the victim is uid 1000 (run through ``setpriv``) or this test process
(root, for the cases where the owner of a shared directory is the one running the cache). Files
are planted by the attacker's own processes: no mocks, no faked ``stat`` results.

Threats: a cache directory another user owns or can write (a planted key and a forged token
would send the connection's API calls to the attacker); a FIFO that blocks the cache forever;
a shared sticky directory (``/tmp``) chmodded and cleaned of other users' files; planted
symlinks that redirect our writes.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from cryptography.fernet import Fernet

from sf_oauth_provider.client.cache import TokenCache
from sf_oauth_provider.client.token import SalesforceToken
from tests.helpers.other_users import OtherUserPython

LOGGER = "sf_oauth_provider.client.cache"
ATTACKER = (pwd.getpwnam("nobody").pw_uid, pwd.getpwnam("nobody").pw_gid)
VICTIM = (1000, 1000)
EVIL = "https://evil.example.com"

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv to switch users"),
]


def as_user(user: tuple[int, int], argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (a shell command, not Python: see ``other_user_python``) as a real other user
    (no capabilities left)."""
    return subprocess.run(
        ["setpriv", f"--reuid={user[0]}", f"--regid={user[1]}", "--clear-groups", *argv],
        capture_output=True, text=True, timeout=timeout, cwd="/",
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent"},
    )


def mkdir_of(user: tuple[int, int], path: Path, mode: int) -> Path:
    """A directory that belongs to ``user`` (made here, then given away: the parent is root's)."""
    path.mkdir()
    os.chown(path, *user)
    path.chmod(mode)
    return path


def sh(user: tuple[int, int], script: str) -> None:
    done = as_user(user, ["sh", "-c", script])
    assert done.returncode == 0, done.stderr


# The attacker forges a cache entry in the documented file format with a key of its own.
PLANT = r"""
import json, os, sys, time
from cryptography.fernet import Fernet
os.umask(0o022)  # the attacker's files are readable by the victim, whatever umask the test runs with
directory, key = sys.argv[1:3]
secret = Fernet.generate_key()
with open(os.path.join(directory, ".cache.key"), "wb") as f:
    f.write(secret)
now = time.time()
token = {"access_token": "00Devil!forged", "instance_url": "https://evil.example.com", "id_url": None,
         "issued_at": now, "expires_at": now + 7200, "scope": "api", "token_type": "Bearer",
         "refresh_token": None, "expires_at_source": "introspection"}
blob = Fernet(secret).encrypt(json.dumps({"v": 1, "key": key, "token": token, "written_at": now}).encode())
with open(os.path.join(directory, key + ".token"), "wb") as f:
    f.write(blob)
"""

# The victim: open the cache, look the token up, get one (fetching its own if needed).
VICTIM_CODE = r"""
import json, logging, sys, time
logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
from sf_oauth_provider.client.cache import TokenCache
from sf_oauth_provider.client.token import SalesforceToken
args = json.loads(sys.argv[1])
cache = TokenCache("file", cache_dir=args["dir"], fernet_key=args.get("fernet"))
found = cache.get(args["key"])
def fetch(_refresh=None):
    now = time.time()
    return SalesforceToken(access_token="00Dreal!victim", instance_url="https://acme.my.salesforce.com",
                           id_url=None, issued_at=now, expires_at=now + 3600)
used = cache.get_or_fetch(args["key"], fetch, is_usable=lambda t: t.is_fresh(60))
print(json.dumps({"mode": cache.mode, "cache_dir": str(cache.cache_dir),
                  "found": found.instance_url if found else None, "used": used.instance_url}))
"""


@pytest.fixture
def run_victim(other_user_python: OtherUserPython) -> Callable[..., tuple[dict[str, Any], str]]:
    """``run_victim(directory, key, fernet=None)``: the victim's cache on ``directory`` (in a
    process of uid 1000) → (what it saw, its log). A cache that blocks fails."""

    def run(directory: Path, key: str, fernet: str | None = None) -> tuple[dict[str, Any], str]:
        try:
            done = other_user_python.run(VICTIM, ["-c", VICTIM_CODE,
                                                  json.dumps({"dir": str(directory), "key": key, "fernet": fernet})],
                                         timeout=20)
        except subprocess.TimeoutExpired:
            raise AssertionError("the token cache blocked (e.g. opening a FIFO)") from None
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr

    return run


@pytest.fixture
def plant(other_user_python: OtherUserPython) -> Callable[[Path, str], None]:
    """``plant(directory, key)``: the attacker forges a cache entry for ``key`` in ``directory``."""

    def run(directory: Path, key: str) -> None:
        done = other_user_python.run(ATTACKER, ["-c", PLANT, str(directory), key])
        assert done.returncode == 0, done.stderr

    return run


@pytest.fixture
def base() -> Iterator[Path]:
    """A directory both users can traverse (like a host's shared file system)."""
    path = Path(tempfile.mkdtemp(prefix="sf-shared-host-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def new_key() -> str:
    return uuid.uuid4().hex


def make_token(label: str = "own") -> SalesforceToken:
    now = time.time()
    return SalesforceToken(access_token=f"00Dxx!{label}-{uuid.uuid4().hex}", instance_url="https://acme.my.salesforce.com",
                           id_url=None, issued_at=now, expires_at=now + 3600)


# ---- directories other users own or can write ----------------------------------------------------
def test_a_world_writable_directory_of_another_user_is_refused(base, plant, run_victim):
    shared, key = base / "cache", new_key()
    mkdir_of(ATTACKER, shared, 0o777)
    plant(shared, key)
    result, log = run_victim(shared, key)
    assert result == {"mode": "memory", "cache_dir": "None", "found": None, "used": "https://acme.my.salesforce.com"}
    assert "belongs to user 'nobody'" in log and "memory only" in log
    assert sorted(p.name for p in shared.iterdir()) == sorted([".cache.key", f"{key}.token"])  # nothing of ours


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o733], ids=oct)
def test_a_directory_others_can_write_is_refused_and_not_chmodded(base, mode, plant, run_victim):
    own, key = base / "cache", new_key()
    mkdir_of(VICTIM, own, mode)
    if mode & 0o003 == 0o003:  # plant only where the attacker really can
        plant(own, key)
    result, log = run_victim(own, key)
    assert result["mode"] == "memory" and result["used"] == "https://acme.my.salesforce.com" and result["found"] is None
    assert f"mode {mode:04o}" in log and "memory only" in log
    assert stat.S_IMODE(own.stat().st_mode) == mode  # never chmodded what the user set


@pytest.mark.parametrize("fernet", [True, False], ids=["with-airflow-fernet-key", "without"])
def test_a_planted_key_file_is_never_used_to_decrypt(base, fernet, plant, run_victim):
    own, key = base / "cache", new_key()
    mkdir_of(VICTIM, own, 0o777)  # open for a while: the attacker plants
    plant(own, key)
    sh(VICTIM, f"chmod 0700 {own}")  # the user closes the directory again; the planted files stay
    fernet_key = Fernet.generate_key().decode() if fernet else None
    result, log = run_victim(own, key, fernet_key)
    assert result["found"] is None and result["used"] == "https://acme.my.salesforce.com"
    assert "belongs to user 'nobody'" in log
    if fernet:
        # the file cache still works, encrypted (and decrypted) with Airflow's key only
        assert result["mode"] == "file"
        blob = (own / f"{key}.token").read_bytes()
        assert Fernet(fernet_key).decrypt(blob)
        assert (own / f"{key}.token").stat().st_uid == VICTIM[0]
    else:
        assert result["mode"] == "memory" and "memory only" in log


# ---- FIFOs ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [".cache.key", "{key}.token"])
def test_a_fifo_in_place_of_a_cache_file_does_not_block(base, name, run_victim):
    own, key = base / "cache", new_key()
    mkdir_of(VICTIM, own, 0o700)
    if name == "{key}.token":
        run_victim(own, new_key())  # a working cache with its key file first
    sh(VICTIM, f"mkfifo {own / name.format(key=key)}")
    result, log = run_victim(own, key)
    assert result["used"] == "https://acme.my.salesforce.com"
    assert "not a regular file" in log


# ---- a shared sticky directory such as /tmp -------------------------------------------------------
@pytest.fixture
def sticky(base) -> Path:
    """A directory like /tmp: owned by root, world-writable, sticky."""
    path = base / "tmp"
    path.mkdir()
    path.chmod(0o1777)
    return path


def test_a_sticky_shared_directory_gets_a_private_subdirectory_and_is_left_alone(sticky, caplog):
    # another user's temp file, old enough to look abandoned
    sh(ATTACKER, f"touch -d '2 hours ago' {sticky}/.report.tmp {sticky}/.abc.token.tmp")
    key = new_key()
    cache = TokenCache("file", cache_dir=sticky)  # this process owns the sticky directory (root, like /tmp)
    cache.put(key, make_token())
    assert cache.mode == "file" and cache.cache_dir == sticky / f"sf-oauth-cache-{os.geteuid()}"
    assert stat.S_IMODE(sticky.stat().st_mode) == 0o1777  # not chmodded
    assert (sticky / ".report.tmp").exists() and (sticky / ".abc.token.tmp").exists()  # not cleaned
    assert stat.S_IMODE(cache.cache_dir.stat().st_mode) == 0o700
    assert (cache.cache_dir / f"{key}.token").exists()
    # a second cache (another task) finds the same private subdirectory
    assert TokenCache("file", cache_dir=sticky).cache_dir == cache.cache_dir


def test_the_victims_sticky_subdirectory_cannot_be_planted(sticky, base, run_victim):
    attacker_dir = base / "attacker"
    mkdir_of(ATTACKER, attacker_dir, 0o777)
    sh(ATTACKER, f"ln -s {attacker_dir} {sticky}/sf-oauth-cache-{VICTIM[0]}")
    result, log = run_victim(sticky, new_key())
    assert result["mode"] == "memory" and "symlink" in log
    assert list(attacker_dir.iterdir()) == []  # nothing written through the link

    os.unlink(sticky / f"sf-oauth-cache-{VICTIM[0]}")
    sh(ATTACKER, f"mkdir -m 0777 {sticky}/sf-oauth-cache-{VICTIM[0]}")  # a real directory, the attacker's
    result, log = run_victim(sticky, new_key())
    assert result["mode"] == "memory" and "belongs to user 'nobody'" in log
    assert list((sticky / f"sf-oauth-cache-{VICTIM[0]}").iterdir()) == []


def test_the_victim_works_in_its_own_subdirectory_of_a_sticky_directory(sticky, run_victim):
    key = new_key()
    result, _ = run_victim(sticky, key)
    assert result["mode"] == "file" and result["cache_dir"] == str(sticky / f"sf-oauth-cache-{VICTIM[0]}")
    again, _ = run_victim(sticky, key)
    assert again["found"] == "https://acme.my.salesforce.com"  # shared between the victim's processes
    assert (sticky / f"sf-oauth-cache-{VICTIM[0]}").stat().st_uid == VICTIM[0]


# ---- what the cache did not create stays as it is --------------------------------------------------
def test_an_existing_directory_keeps_its_mode_and_other_temp_files(tmp_path):
    own = tmp_path / "cache"
    own.mkdir(mode=0o750)
    own.chmod(0o750)
    old = time.time() - 7200
    notes = own / ".notes.tmp"  # the user's own file with a temp-like name
    notes.write_text("keep me")
    stale = own / ".sfoauth-abc.token.0123456789abcdef.tmp"  # what a killed writer of ours left
    stale.write_text("x")
    for path in (notes, stale):
        os.utime(path, (old, old))
    TokenCache("file", cache_dir=own)
    assert stat.S_IMODE(own.stat().st_mode) == 0o750
    assert notes.read_text() == "keep me"
    assert not stale.exists()


# ---- planted symlinks --------------------------------------------------------------------------------
def test_planted_symlinks_are_not_followed(tmp_path, caplog):
    own, key = tmp_path / "cache", new_key()
    TokenCache("file", cache_dir=own)
    bashrc = tmp_path / "bashrc"
    bashrc.write_text("original\n")
    (own / f"{key}.token").symlink_to(bashrc)
    (own / f"{key}.lock").symlink_to(bashrc)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        cache = TokenCache("file", cache_dir=own, lock_timeout=0.5)
        assert cache.get(key) is None
        token = cache.get_or_fetch(key, lambda _r: make_token("new"), is_usable=lambda t: t.is_fresh(60))
    assert "symbolic link" in caplog.text
    assert bashrc.read_text() == "original\n"
    assert not (own / f"{key}.token").is_symlink()
    assert TokenCache("file", cache_dir=own).get(key) == token

    (own / ".cache.key").unlink()
    (own / ".cache.key").symlink_to(bashrc)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert TokenCache("file", cache_dir=own).mode == "memory"
    assert "symbolic link" in caplog.text and bashrc.read_text() == "original\n"
