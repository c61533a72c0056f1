"""Cache under stress: 8 processes x 200 get_token calls with random forced refreshes and invalidations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sf_oauth_provider.client.cache import TokenCache

ROOT = Path(__file__).resolve().parents[2]


def test_eight_processes_two_hundred_calls_each(emulator, sf_connections, cache_dir):
    out = subprocess.run(
        [sys.executable, "-m", "tests.helpers.token_procs", "stress", "8", "200"],
        cwd=ROOT, env=dict(os.environ, SF_OAUTH_CACHE_DIR=str(cache_dir)),
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["failures"] == [] and result["reports"] == 8
    assert result["forced"] > 0 and result["invalidated"] > 0  # the run really forced refreshes
    issued = set(emulator.org.issued_tokens())
    requests = emulator.org.count("token")
    # one request for the cold start, at most one per forced refresh or invalidation
    assert 1 <= requests <= 1 + result["forced"] + result["invalidated"], (requests, result)
    assert len(result["fingerprints"]) <= requests
    from sf_oauth_provider.client.token import fingerprint

    assert set(result["fingerprints"]) <= {fingerprint(t) for t in issued}
    # no torn or corrupt file: nothing was ever rebuilt, and what is on disk now reads back
    text = out.stdout + out.stderr
    assert "rebuilt" not in text and "corrupt" not in text.lower(), text[-2000:]
    token_files = list(cache_dir.glob("*.token"))
    assert len(token_files) <= 1
    for path in token_files:
        token = TokenCache("file", cache_dir=cache_dir).get(path.stem)
        assert token is not None and token.access_token in issued
