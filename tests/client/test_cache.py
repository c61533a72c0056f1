"""TokenCache: memory, encrypted file, and single-flight across threads, coroutines and processes.

Real files, real locks, real subprocesses: nothing of the cache is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import stat
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from sf_oauth_provider.client.stores import forget_process_memory as forget_namespace
from sf_oauth_provider.client.cache import TokenCache, default_cache_dir
from sf_oauth_provider.client.token import SalesforceToken

REPO_ROOT = Path(__file__).resolve().parents[2]
LOGGER = "sf_oauth_provider.client.cache"

pytestmark = pytest.mark.timeout(60)


def make_token(label: str = "a", ttl: float = 3600.0) -> SalesforceToken:
    now = time.time()
    return SalesforceToken(
        access_token=f"00Dxx!secret-{label}-{uuid.uuid4().hex}",
        instance_url="https://x.my.salesforce.com",
        id_url="https://login.salesforce.com/id/00D/005",
        issued_at=now,
        expires_at=now + ttl,
    )


def usable(token: SalesforceToken) -> bool:
    return token.is_fresh(60)


def new_key() -> str:
    return uuid.uuid4().hex


def forget_process_memory(directory: Path) -> None:
    """Make the next TokenCache on ``directory`` start with empty memory, as a new process would."""
    forget_namespace(os.path.realpath(directory))


class Counter:
    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def fetcher(self, delay: float = 0.0, label: str = "fetched"):
        def fetch(_refresh_token: str | None = None) -> SalesforceToken:
            with self._lock:
                self.calls += 1
            if delay:
                time.sleep(delay)
            return make_token(label)

        return fetch


# ---------------------------------------------------------------- subprocess worker

WORKER = r"""
import json, os, sys, time
from sf_oauth_provider.client.cache import TokenCache
from sf_oauth_provider.client.token import SalesforceToken

cache_dir, key, counter, action, stale, wait = sys.argv[1:7]

def fetch(_refresh_token=None):
    with open(counter, "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(0.3)
    now = time.time()
    return SalesforceToken(
        access_token=f"00Dxx!secret-proc-{os.getpid()}", instance_url="https://x.my.salesforce.com",
        id_url="https://login.salesforce.com/id/00D/005", issued_at=now, expires_at=now + 3600,
    )

cache = TokenCache("file", cache_dir=cache_dir)
if wait == "1":
    print("ready", flush=True)
    sys.stdin.readline()
usable = lambda t: t.is_fresh(60)
if action == "get":
    tok = cache.get(key)
    print(json.dumps({"token": tok.access_token if tok else None}), flush=True)
else:
    tok = cache.get_or_fetch(key, fetch, is_usable=usable, force=action == "force",
                             stale_token=stale or None)
    print(json.dumps({"token": tok.access_token}), flush=True)
"""


@pytest.fixture
def worker(tmp_path: Path) -> Path:
    path = tmp_path / "worker.py"
    path.write_text(WORKER)
    return path


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def run_worker(
    worker: Path, cache_dir: Path, key: str, counter: Path, action: str = "fetch", stale: str = ""
) -> str | None:
    out = subprocess.run(
        [sys.executable, str(worker), str(cache_dir), key, str(counter), action, stale, "0"],
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["token"]


def counted_lines(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


# ---------------------------------------------------------------- memory


def test_memory_hit_miss_put_invalidate() -> None:
    cache = TokenCache("memory")
    key = new_key()
    assert cache.mode == "memory"
    assert cache.get(key) is None
    token = make_token()
    cache.put(key, token)
    assert cache.get(key) is token
    # A second instance in the same process shares the token.
    assert TokenCache("memory").get(key) is token
    cache.invalidate(key)
    assert cache.get(key) is None


def test_invalidate_with_access_token_only_drops_that_token(tmp_path: Path) -> None:
    for cache in (TokenCache("memory"), TokenCache("file", cache_dir=tmp_path / "c")):
        key = new_key()
        old, new = make_token("old"), make_token("new")
        cache.put(key, new)
        cache.invalidate(key, access_token=old.access_token)
        assert cache.get(key) is new
        if cache.mode == "file":
            forget_process_memory(tmp_path / "c")
            assert TokenCache("file", cache_dir=tmp_path / "c").get(key) == new
        cache.invalidate(key, access_token=new.access_token)
        assert cache.get(key) is None
        if cache.mode == "file":
            assert not (tmp_path / "c" / f"{key}.token").exists()


def test_none_mode_always_fetches() -> None:
    cache = TokenCache("none")
    key = new_key()
    counter = Counter()
    cache.put(key, make_token())
    assert cache.get(key) is None
    for _ in range(3):
        cache.get_or_fetch(key, counter.fetcher(), is_usable=usable)
    assert counter.calls == 3


def test_bad_mode_and_bad_key_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="file, memory, none"):
        TokenCache("disk")
    cache = TokenCache("memory")
    for bad in ("", "../etc/passwd", "a" * 129, "a.b", "a b"):
        with pytest.raises(ValueError):
            cache.get(bad)
        with pytest.raises(ValueError):
            cache.get_or_fetch(bad, Counter().fetcher(), is_usable=usable)


def test_default_cache_dir_reads_env_at_call_time(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SF_OAUTH_CACHE_DIR", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "ah"))
    assert default_cache_dir() == tmp_path / "ah" / "sf_oauth_cache"
    monkeypatch.setenv("SF_OAUTH_CACHE_DIR", str(tmp_path / "explicit"))
    assert default_cache_dir() == tmp_path / "explicit"
    assert TokenCache("file").cache_dir == tmp_path / "explicit"
    monkeypatch.delenv("SF_OAUTH_CACHE_DIR")
    monkeypatch.delenv("AIRFLOW_HOME")
    assert default_cache_dir() == Path("~/airflow/sf_oauth_cache").expanduser()


def test_usability_is_the_callers_call() -> None:
    cache = TokenCache("memory")
    key = new_key()
    expired = make_token("expired", ttl=-10)
    cache.put(key, expired)
    assert cache.get(key) is expired  # the cache does not judge expiry
    counter = Counter()
    fresh = cache.get_or_fetch(key, counter.fetcher(), is_usable=usable)
    assert counter.calls == 1 and fresh is not expired
    assert cache.get_or_fetch(key, counter.fetcher(), is_usable=lambda t: True) is fresh


# ---------------------------------------------------------------- file


def test_file_round_trip_two_instances_and_permissions(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    key = new_key()
    token = make_token()
    writer = TokenCache("file", cache_dir=directory)
    assert writer.mode == "file"
    writer.put(key, token)

    forget_process_memory(directory)
    reader = TokenCache("file", cache_dir=directory)
    assert reader.get(key) == token
    counter = Counter()
    assert reader.get_or_fetch(key, counter.fetcher(), is_usable=usable) == token
    assert counter.calls == 0

    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / f"{key}.token").stat().st_mode) == 0o600
    assert stat.S_IMODE((directory / ".cache.key").stat().st_mode) == 0o600
    raw = (directory / f"{key}.token").read_bytes()
    assert token.access_token.encode() not in raw
    assert b"secret" not in raw
    # No temp files left behind.
    assert sorted(p.name for p in directory.iterdir()) == sorted([".cache.key", f"{key}.token"])


def test_file_round_trip_across_a_subprocess(tmp_path: Path, worker: Path) -> None:
    directory = tmp_path / "cache"
    counter = tmp_path / "count"
    key = new_key()
    token = make_token()
    TokenCache("file", cache_dir=directory).put(key, token)
    assert run_worker(worker, directory, key, counter, "get") == token.access_token

    other = new_key()
    from_child = run_worker(worker, directory, other, counter)
    assert counted_lines(counter) == 1
    got = TokenCache("file", cache_dir=directory).get(other)
    assert got is not None and got.access_token == from_child


def test_fernet_key_encrypts_and_local_key_still_decrypts(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    airflow_key = Fernet.generate_key().decode()
    key_a, key_b = new_key(), new_key()
    token_a, token_b = make_token("a"), make_token("b")

    TokenCache("file", cache_dir=directory, fernet_key=airflow_key).put(key_a, token_a)
    raw = (directory / f"{key_a}.token").read_bytes()
    assert Fernet(airflow_key).decrypt(raw)  # encrypted with the Airflow key
    TokenCache("file", cache_dir=directory).put(key_b, token_b)  # a plain script: local key

    forget_process_memory(directory)
    airflow_side = TokenCache("file", cache_dir=directory, fernet_key=airflow_key)
    assert airflow_side.get(key_a) == token_a
    assert airflow_side.get(key_b) == token_b  # reads the plain script's cache


@pytest.mark.parametrize("bad_key", ["{FERNET_KEY}", "garbage", b"\x00\x01"])
def test_invalid_fernet_key_warns_once_and_works(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, bad_key: str | bytes
) -> None:
    directory = tmp_path / "cache"
    key = new_key()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        cache = TokenCache("file", cache_dir=directory, fernet_key=bad_key)
        token = cache.get_or_fetch(key, Counter().fetcher(), is_usable=usable)
        cache.get_or_fetch(key, Counter().fetcher(), is_usable=usable)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Fernet key" in warnings[0].getMessage()
    assert "FERNET_KEY}" not in caplog.text and "garbage" not in caplog.text
    assert cache.mode == "file"
    forget_process_memory(directory)
    assert TokenCache("file", cache_dir=directory).get(key) == token


def test_empty_fernet_key_means_not_configured(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        TokenCache("file", cache_dir=tmp_path / "cache", fernet_key="")
    assert not caplog.records


def _encrypt_with_local_key(directory: Path, payload: bytes) -> bytes:
    return Fernet((directory / ".cache.key").read_bytes().strip()).encrypt(payload)


def _corruptions(directory: Path, key: str, valid: bytes) -> dict[str, bytes]:
    other_key = new_key()
    return {
        "garbage": b"this is not a fernet token at all \x00\xff",
        "truncated": valid[: len(valid) // 2],
        "empty": b"",
        "bad json": _encrypt_with_local_key(directory, b"{not json"),
        "wrong version": _encrypt_with_local_key(
            directory, json.dumps({"v": 99, "key": key, "token": {}}).encode()
        ),
        "key mismatch": _encrypt_with_local_key(
            directory,
            json.dumps({"v": 1, "key": other_key, "token": make_token().to_dict()}).encode(),
        ),
        "incomplete token": _encrypt_with_local_key(
            directory, json.dumps({"v": 1, "key": key, "token": {"access_token": 5}}).encode()
        ),
    }


def test_corrupt_files_warn_miss_and_are_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path / "cache"
    key = new_key()
    seed = TokenCache("file", cache_dir=directory)
    seed.put(key, make_token("seed"))
    valid = (directory / f"{key}.token").read_bytes()

    for what, content in _corruptions(directory, key, valid).items():
        (directory / f"{key}.token").write_bytes(content)
        forget_process_memory(directory)
        cache = TokenCache("file", cache_dir=directory)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            assert cache.get(key) is None, what
            counter = Counter()
            token = cache.get_or_fetch(key, counter.fetcher(label=what.replace(" ", "-")), is_usable=usable)
        assert counter.calls == 1, what
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert warnings and all("rebuilt" in m for m in warnings), (what, warnings)
        assert "secret" not in caplog.text, what
        # Rebuilt: a fresh process view reads the new token from the file.
        forget_process_memory(directory)
        assert TokenCache("file", cache_dir=directory).get(key) == token, what


def test_key_mismatch_from_a_copied_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path / "cache"
    key_a, key_b = new_key(), new_key()
    TokenCache("file", cache_dir=directory).put(key_a, make_token())
    (directory / f"{key_b}.token").write_bytes((directory / f"{key_a}.token").read_bytes())
    forget_process_memory(directory)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert TokenCache("file", cache_dir=directory).get(key_b) is None
    assert "another cache key" in caplog.text


def test_foreign_file_other_fernet_key_and_other_local_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    host_a, host_b = tmp_path / "a", tmp_path / "b"
    key = new_key()
    TokenCache("file", cache_dir=host_a, fernet_key=Fernet.generate_key()).put(key, make_token("a"))
    fernet_b = Fernet.generate_key()
    cache_b = TokenCache("file", cache_dir=host_b, fernet_key=fernet_b)
    assert (host_a / ".cache.key").read_bytes() != (host_b / ".cache.key").read_bytes()
    (host_b / f"{key}.token").write_bytes((host_a / f"{key}.token").read_bytes())

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert cache_b.get(key) is None
        counter = Counter()
        token = cache_b.get_or_fetch(key, counter.fetcher(), is_usable=usable)
    assert counter.calls == 1
    assert "cannot be decrypted" in caplog.text and "rebuilt" in caplog.text
    forget_process_memory(host_b)
    assert TokenCache("file", cache_dir=host_b, fernet_key=fernet_b).get(key) == token


def test_corrupt_local_key_file_is_replaced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path / "cache"
    TokenCache("file", cache_dir=directory)
    (directory / ".cache.key").write_bytes(b"not a key")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        cache = TokenCache("file", cache_dir=directory)
    assert cache.mode == "file" and "replacing it" in caplog.text
    Fernet((directory / ".cache.key").read_bytes())  # valid again


def test_unusable_directory_degrades_to_memory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    key = new_key()
    for directory in (blocker / "cache", blocker):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            cache = TokenCache("file", cache_dir=directory)
        assert cache.mode == "memory"
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
        assert "memory only" in caplog.text
        counter = Counter()
        token = cache.get_or_fetch(key, counter.fetcher(), is_usable=usable)
        assert cache.get_or_fetch(key, counter.fetcher(), is_usable=usable) is token
        cache.invalidate(key)
        assert counter.calls == 1


def test_fetch_error_propagates_and_nothing_is_cached(tmp_path: Path) -> None:
    class Boom(Exception):
        pass

    for cache in (TokenCache("memory"), TokenCache("file", cache_dir=tmp_path / "c")):
        key = new_key()

        def fail(_refresh_token: str | None = None) -> SalesforceToken:
            raise Boom("no token")

        with pytest.raises(Boom, match="no token"):
            cache.get_or_fetch(key, fail, is_usable=usable)
        assert cache.get(key) is None
        counter = Counter()
        cache.get_or_fetch(key, counter.fetcher(), is_usable=usable)
        assert counter.calls == 1


async def test_async_fetch_error_propagates(tmp_path: Path) -> None:
    cache = TokenCache("file", cache_dir=tmp_path / "c")
    key = new_key()

    async def fail(_refresh_token: str | None = None) -> SalesforceToken:
        raise KeyError("nope")

    with pytest.raises(KeyError):
        await cache.aget_or_fetch(key, fail, is_usable=usable)
    assert cache.get(key) is None


def test_force_without_stale_token_always_fetches(tmp_path: Path) -> None:
    cache = TokenCache("file", cache_dir=tmp_path / "c")
    key = new_key()
    counter = Counter()
    first = cache.get_or_fetch(key, counter.fetcher(), is_usable=usable)
    second = cache.get_or_fetch(key, counter.fetcher(), is_usable=usable, force=True)
    assert counter.calls == 2 and second != first
    assert cache.get(key) == second


def test_reentrant_invalidate_inside_fetch(tmp_path: Path) -> None:
    cache = TokenCache("file", cache_dir=tmp_path / "c", lock_timeout=2)
    key = new_key()

    def fetch(_refresh_token: str | None = None) -> SalesforceToken:
        cache.invalidate(key)
        return cache.get_or_fetch(key, lambda _r: make_token("inner"), is_usable=usable)

    started = time.monotonic()
    cache.get_or_fetch(key, fetch, is_usable=usable)
    assert time.monotonic() - started < 1.5  # no wait on our own lock


# ---------------------------------------------------------------- single-flight


@pytest.mark.parametrize("mode", ["memory", "file"])
def test_single_flight_threads(tmp_path: Path, mode: str) -> None:
    cache = TokenCache(mode, cache_dir=tmp_path / "c")
    key = new_key()
    counter = Counter()
    barrier = threading.Barrier(32)
    results: list[SalesforceToken] = []

    def call() -> None:
        # Each thread its own TokenCache, like separate hook objects in one process.
        mine = TokenCache(mode, cache_dir=tmp_path / "c")
        barrier.wait()
        results.append(mine.get_or_fetch(key, counter.fetcher(delay=0.2), is_usable=usable))

    threads = [threading.Thread(target=call) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert counter.calls == 1
    assert len(results) == 32 and len({r.access_token for r in results}) == 1
    assert cache.get(key) == results[0]


@pytest.mark.parametrize("mode", ["memory", "file"])
async def test_single_flight_coroutines(tmp_path: Path, mode: str) -> None:
    cache = TokenCache(mode, cache_dir=tmp_path / "c")
    key = new_key()
    calls = 0

    async def fetch(_refresh_token: str | None = None) -> SalesforceToken:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)
        return make_token("async")

    results = await asyncio.gather(*(cache.aget_or_fetch(key, fetch, is_usable=usable) for _ in range(50)))
    assert calls == 1
    assert len({r.access_token for r in results}) == 1


async def test_async_stale_token_and_memory_fast_path(tmp_path: Path) -> None:
    cache = TokenCache("file", cache_dir=tmp_path / "c")
    key = new_key()
    calls = 0

    async def fetch(_refresh_token: str | None = None) -> SalesforceToken:
        nonlocal calls
        calls += 1
        return make_token(f"n{calls}")

    first = await cache.aget_or_fetch(key, fetch, is_usable=usable)
    assert await cache.aget_or_fetch(key, fetch, is_usable=usable) is first
    second = await cache.aget_or_fetch(key, fetch, is_usable=usable, force=True, stale_token=first.access_token)
    third = await cache.aget_or_fetch(key, fetch, is_usable=usable, force=True, stale_token=first.access_token)
    assert calls == 2 and second == third and second != first


def test_single_flight_threads_and_event_loops_mixed(tmp_path: Path) -> None:
    """Sync threads and coroutines on two event loops exclude each other through the file lock."""
    key = new_key()
    counter = Counter()
    results: list[str] = []
    barrier = threading.Barrier(6)

    def sync_call() -> None:
        cache = TokenCache("file", cache_dir=tmp_path / "c")
        barrier.wait()
        results.append(cache.get_or_fetch(key, counter.fetcher(delay=0.2), is_usable=usable).access_token)

    def loop_call() -> None:
        cache = TokenCache("file", cache_dir=tmp_path / "c")

        async def fetch(_refresh_token: str | None = None) -> SalesforceToken:
            return counter.fetcher(delay=0.2)()

        async def main() -> list[SalesforceToken]:
            barrier.wait()
            return await asyncio.gather(*(cache.aget_or_fetch(key, fetch, is_usable=usable) for _ in range(10)))

        results.extend(t.access_token for t in asyncio.run(main()))

    threads = [threading.Thread(target=sync_call) for _ in range(4)]
    threads += [threading.Thread(target=loop_call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert counter.calls == 1
    assert len(results) == 24 and len(set(results)) == 1


def test_single_flight_16_processes_at_once(tmp_path: Path, worker: Path) -> None:
    directory, counter, key = tmp_path / "cache", tmp_path / "count", new_key()
    procs = [
        subprocess.Popen(
            [sys.executable, str(worker), str(directory), key, str(counter), "fetch", "", "1"],
            env=worker_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(16)
    ]
    try:
        for p in procs:  # every process has imported and opened the cache: start them together
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        tokens = set()
        for p in procs:
            out, err = p.communicate(timeout=30)
            assert p.returncode == 0, err
            tokens.add(json.loads(out.strip().splitlines()[-1])["token"])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert counted_lines(counter) == 1
    assert len(tokens) == 1


def test_sequential_20_processes_fetch_once(tmp_path: Path, worker: Path) -> None:
    directory, counter, key = tmp_path / "cache", tmp_path / "count", new_key()
    tokens = {run_worker(worker, directory, key, counter) for _ in range(20)}
    assert counted_lines(counter) == 1
    assert len(tokens) == 1


def test_force_with_stale_token_reuses_another_process_refresh(tmp_path: Path, worker: Path) -> None:
    directory, counter, key = tmp_path / "cache", tmp_path / "count", new_key()
    cache = TokenCache("file", cache_dir=directory)
    local_counter = Counter()
    old = cache.get_or_fetch(key, local_counter.fetcher(label="old"), is_usable=usable)

    # Another process saw `old` rejected and refreshed.
    new = run_worker(worker, directory, key, counter, "force", old.access_token)
    assert counted_lines(counter) == 1 and new != old.access_token

    # This process still has `old` in memory; its own forced refresh finds the new token instead.
    assert cache.get_or_fetch(key, local_counter.fetcher(), is_usable=usable) is old
    got = cache.get_or_fetch(
        key, local_counter.fetcher(), is_usable=usable, force=True, stale_token=old.access_token
    )
    assert got.access_token == new
    assert local_counter.calls == 1
    # A third process that also saw `old` rejected reuses it too.
    assert run_worker(worker, directory, key, counter, "force", old.access_token) == new
    assert counted_lines(counter) == 1


def test_lock_timeout_fetches_without_the_lock(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import fcntl

    directory, key = tmp_path / "cache", new_key()
    cache = TokenCache("file", cache_dir=directory, lock_timeout=0.2)
    fd = os.open(directory / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a stuck holder
    try:
        counter = Counter()
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            cache.get_or_fetch(key, counter.fetcher(), is_usable=usable)
        assert counter.calls == 1
        assert "without it" in caplog.text
    finally:
        os.close(fd)


async def test_async_lock_wait_does_not_block_the_loop_and_cancel_releases(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import fcntl

    directory, key = tmp_path / "cache", new_key()
    cache = TokenCache("file", cache_dir=directory, lock_timeout=10)
    fd = os.open(directory / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another process is refreshing
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async def fetch(_refresh_token: str | None = None) -> SalesforceToken:
        return make_token()

    tick_task = asyncio.create_task(ticker())
    waiter = asyncio.create_task(cache.aget_or_fetch(key, fetch, is_usable=usable))
    await asyncio.sleep(0.3)
    assert not waiter.done() and ticks >= 10  # waiting in a thread, the loop keeps running
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    tick_task.cancel()
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    await asyncio.sleep(0.2)  # the abandoned polling thread gives up or releases what it won

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        quick = TokenCache("file", cache_dir=directory, lock_timeout=0.5)
        token = await quick.aget_or_fetch(key, fetch, is_usable=usable)
    assert token is not None
    assert "without it" not in caplog.text


# ---------------------------------------------------------------- rotation


def with_refresh(label: str, issued_offset: float, refresh: str) -> SalesforceToken:
    from dataclasses import replace

    token = make_token(label)
    return replace(token, issued_at=token.issued_at + issued_offset, refresh_token=refresh)


@pytest.mark.parametrize("newer_in", ["file", "memory"])
def test_a_refresh_uses_the_refresh_token_issued_last_in_any_layer(tmp_path: Path, newer_in: str) -> None:
    """Process memory may hold a rotated-away refresh token (another process refreshed), and a
    file write may have failed (the newest then lives in memory only): the newest one wins."""
    cache = TokenCache("file", cache_dir=tmp_path / "c")
    memory, file = cache.layers[0], cache.layers[1]
    key = new_key()
    old, new = with_refresh("old", -100, "5Aep-old"), with_refresh("new", 0, "5Aep-new")
    file.put(key, new if newer_in == "file" else old)
    memory.put(key, old if newer_in == "file" else new)
    used: list[str | None] = []

    def fetch(refresh_token: str | None) -> SalesforceToken:
        used.append(refresh_token)
        return make_token("fetched")  # Salesforce did not rotate this time

    token = cache.get_or_fetch(key, fetch, is_usable=usable, force=True)
    assert used == ["5Aep-new"]
    assert token.refresh_token == "5Aep-new"  # carried to the new token, in every layer
    forget_process_memory(tmp_path / "c")
    assert TokenCache("file", cache_dir=tmp_path / "c").get(key).refresh_token == "5Aep-new"


def test_invalidate_keeps_the_refresh_token_in_every_layer(tmp_path: Path) -> None:
    cache = TokenCache("file", cache_dir=tmp_path / "c")
    key = new_key()
    token = with_refresh("t", 0, "5Aep-kept")
    cache.put(key, token)
    cache.invalidate(key, access_token=token.access_token)
    assert cache.get(key) is None  # no access token is handed out any more
    for store in cache.layers:
        kept = store.get(key)
        assert kept is not None and kept.refresh_token == "5Aep-kept" and not kept.access_token
    used: list[str | None] = []
    cache.get_or_fetch(key, lambda r: used.append(r) or make_token("next"), is_usable=usable)
    assert used == ["5Aep-kept"]


class UnreachableSharedStore:
    """A shared layer that is down (as Redis can be): misses, drops writes, cannot lock."""

    name, shared = "unreachable", True

    def get(self, key):
        return None

    def put(self, key, token):
        pass

    def invalidate(self, key, access_token):
        pass

    @contextlib.contextmanager
    def lock(self, key, timeout):
        yield False

    async def aget(self, key):
        return None

    async def aput(self, key, token):
        pass

    async def ainvalidate(self, key, access_token):
        pass

    @contextlib.asynccontextmanager
    async def alock(self, key, timeout):
        yield False


def test_a_shared_layer_that_cannot_lock_falls_back_to_the_file_lock(tmp_path: Path) -> None:
    key, counter = new_key(), Counter()
    barrier = threading.Barrier(8)
    results: list[str] = []

    def call() -> None:
        cache = TokenCache("file", cache_dir=tmp_path / "c", extra_layers=(UnreachableSharedStore(),))
        barrier.wait()
        results.append(cache.get_or_fetch(key, counter.fetcher(delay=0.2), is_usable=usable).access_token)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert counter.calls == 1 and len(results) == 8 and len(set(results)) == 1
