"""Refresh-token rotation never bricks a connection (DESIGN §5), across real processes.

The emulator's "Data Loader" app rotates refresh tokens (``salesforce_oauth_refresh``): every
refresh returns a new refresh token and the old one dies. Each test drives long-lived processes
(each with one hook for its whole life, like a triggerer and task workers) sharing one file cache,
and checks that every token request still succeeds after a revoke, after a 401 and after another
process rotated the refresh token.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from sf_oauth_provider.client.token import fingerprint
from tests.helpers.token_procs import ANSWER

ROOT = Path(__file__).resolve().parents[2]
CONN = "salesforce_oauth_refresh"

pytestmark = pytest.mark.timeout(120)


class Processes:
    """``count`` long-lived processes served by ``tests.helpers.token_procs serve``."""

    def __init__(self, count: int, cache_dir: Path) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.helpers.token_procs", "serve", str(count), CONN],
            cwd=ROOT, env=dict(os.environ, SF_OAUTH_CACHE_DIR=str(cache_dir)),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert json.loads(self._readline()) == {"ready": count}

    def _readline(self) -> str:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:  # skip the processes' log lines
            if line.startswith(ANSWER):
                return line[len(ANSWER):]
        raise AssertionError(f"token processes died: {self._proc.stderr.read()[-3000:] if self._proc.stderr else ''}")

    def __call__(self, n: int, command: str) -> dict[str, Any]:
        """Run ``command`` in process ``n``; fail the test if it raised."""
        answer = self.ask(n, command)
        assert answer["ok"], f"process {n}, {command}: {answer['error']}"
        return answer

    def ask(self, n: int, command: str) -> dict[str, Any]:
        assert self._proc.stdin is not None
        self._proc.stdin.write(f"{n} {command}\n")
        self._proc.stdin.flush()
        return json.loads(self._readline())

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=30)
        finally:
            if self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait()


@pytest.fixture
def procs(emulator, sf_connections, cache_dir) -> Iterator[Processes]:
    started = Processes(3, cache_dir)
    try:
        yield started
    finally:
        started.close()


def token_by_fingerprint(emulator, fp: str) -> str:
    return next(t for t in emulator.org.issued_tokens() if fingerprint(t) == fp)


def live_refresh_fingerprints(emulator) -> set[str]:
    org = emulator.org
    return {fingerprint(t) for t, appr in org.approvals.items() if org.approval_valid(appr)}


def test_rotation_is_on_in_the_emulator(procs, emulator):
    first = procs(0, "get")
    assert first["refresh"] and first["refresh"] != fingerprint(emulator.org.demo.refresh_token)


def test_revoking_the_current_access_token_keeps_the_rotated_refresh_token(procs, emulator):
    """(a) hook.revoke(current access token), as revoke_current=True and the nightly example do."""
    first = procs(0, "get")
    assert procs(1, "get")["fingerprint"] == first["fingerprint"]  # shared through the file
    assert procs(1, "revoke")["status"] is True
    after = procs(1, "get")  # the next token request refreshes with the newest refresh token
    assert after["fingerprint"] != first["fingerprint"]
    # the other long-lived process still holds the revoked token: its 401 refresh finds the new one
    assert procs(0, "rest")["status"] == 200
    assert procs(2, "get")["fingerprint"] == after["fingerprint"]  # a new process: same token
    assert emulator.org.count("token", grant="refresh_token") == 2
    assert after["refresh"] in live_refresh_fingerprints(emulator)


@pytest.mark.parametrize("rest", ["rest", "arest"])
def test_a_401_then_the_stale_token_refresh_keeps_working(procs, emulator, rest):
    """(b) Salesforce refuses the cached token (401); get_token(stale_token=...) refreshes."""
    first = procs(0, "get")
    emulator.org.revoke_token(token_by_fingerprint(emulator, first["fingerprint"]))
    second = procs(1, rest)
    assert second["status"] == 200 and second["fingerprint"] != first["fingerprint"]
    # process 0 saw the same 401: it finds process 1's token instead of refreshing again
    assert procs(0, rest)["fingerprint"] == second["fingerprint"]
    # and once more, after a second 401, in a third process
    emulator.org.revoke_token(token_by_fingerprint(emulator, second["fingerprint"]))
    third = procs(2, rest)
    assert third["status"] == 200
    assert emulator.org.count("token", grant="refresh_token") == 3
    assert third["refresh"] in live_refresh_fingerprints(emulator)


@pytest.mark.parametrize("force", ["force", "aforce"])
def test_a_long_lived_process_refreshes_with_the_refresh_token_another_process_rotated(procs, emulator, force):
    """(c) The triggerer holds an older refresh token in memory after a worker rotated it."""
    old = procs(0, "aget" if force == "aforce" else "get")
    rotated = procs(1, "force")  # a worker refreshes: the refresh token in process 0's memory dies
    assert rotated["refresh"] != old["refresh"]
    assert old["refresh"] not in live_refresh_fingerprints(emulator)
    newer = procs(0, force)  # the long-lived process refreshes: it must use the rotated token
    assert newer["fingerprint"] not in (old["fingerprint"], rotated["fingerprint"])
    assert procs(2, "get")["fingerprint"] == newer["fingerprint"]
    assert procs(1, "rest")["status"] == 200
    assert newer["refresh"] in live_refresh_fingerprints(emulator)
