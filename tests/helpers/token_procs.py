"""Run get_token() in many separate processes (forked from one that imported Airflow once).

Importing Airflow costs seconds of CPU here, so this script imports the hook once and then forks
one child process per caller; every child has its own memory (an empty in-process cache) and
shares only the file cache, like task processes on one host.

    python -m tests.helpers.token_procs sequential 20
    python -m tests.helpers.token_procs together 16
    python -m tests.helpers.token_procs stress 8 200   # 8 processes x 200 calls, random forced
                                                      # refreshes and invalidations

Prints one JSON line: {"fingerprints": [...], "failures": [...]}.
"""

from __future__ import annotations

import json
import os
import sys
import time


def _wait_for(go_file: str) -> None:
    deadline = time.monotonic() + 60
    while not os.path.exists(go_file) and time.monotonic() < deadline:
        time.sleep(0.002)


def child(conn_id: str, go_file: str | None, out_fd: int) -> None:
    from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

    if go_file:  # wait until every child is forked, then all call at once
        _wait_for(go_file)
    try:
        result = {"fingerprint": SalesforceOAuthHook(conn_id).get_token().fingerprint}
    except Exception as exc:  # reported to the parent test
        result = {"failure": f"{type(exc).__name__}: {exc}"}
    os.write(out_fd, (json.dumps(result) + "\n").encode())


def stress_child(conn_id: str, go_file: str, out_fd: int, calls: int, seed: int) -> None:
    """``calls`` get_token calls; about 3% forced refreshes and 3% invalidations, at random."""
    import random

    from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

    rng = random.Random(seed)
    hook = SalesforceOAuthHook(conn_id)
    _wait_for(go_file)
    forced = invalidated = 0
    fingerprints: set[str] = set()
    try:
        for _ in range(calls):
            roll = rng.random()
            if roll < 0.03:
                forced += 1
                fingerprints.add(hook.get_token(force_refresh=True).fingerprint)
            elif roll < 0.06:
                invalidated += 1
                hook.invalidate_token()
            else:
                fingerprints.add(hook.get_token().fingerprint)
        result = {"forced": forced, "invalidated": invalidated, "fingerprints": sorted(fingerprints)}
    except Exception as exc:
        result = {"failure": f"{type(exc).__name__}: {exc}"}
    os.write(out_fd, (json.dumps(result) + "\n").encode())


def main(mode: str, count: int, calls: int = 200, conn_id: str = "salesforce_oauth_default") -> None:
    import sf_oauth_provider.client.cache  # noqa: F401  (import everything before forking)
    import sf_oauth_provider.client.oauth  # noqa: F401
    import sf_oauth_provider.hooks.salesforce_oauth  # noqa: F401

    read_fd, write_fd = os.pipe()
    go_file = os.environ["SF_OAUTH_CACHE_DIR"] + ".go" if mode in ("together", "stress") else None
    pids = []
    for n in range(count):
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            code = 0
            try:
                if mode == "stress":
                    stress_child(conn_id, go_file, write_fd, calls, seed=n)
                else:
                    child(conn_id, go_file, write_fd)
            except BaseException:
                code = 1
            os._exit(code)
        pids.append(pid)
        if mode == "sequential":
            os.waitpid(pid, 0)
    if go_file:
        open(go_file, "w").close()
        for pid in pids:
            os.waitpid(pid, 0)
    os.close(write_fd)
    with os.fdopen(read_fd) as fh:
        lines = [json.loads(line) for line in fh if line.strip()]
    if mode == "stress":
        print(json.dumps({
            "failures": [r["failure"] for r in lines if "failure" in r],
            "forced": sum(r.get("forced", 0) for r in lines),
            "invalidated": sum(r.get("invalidated", 0) for r in lines),
            "fingerprints": sorted({fp for r in lines for fp in r.get("fingerprints", [])}),
            "reports": len(lines),
        }))
        return
    print(json.dumps({
        "fingerprints": [r["fingerprint"] for r in lines if "fingerprint" in r],
        "failures": [r["failure"] for r in lines if "failure" in r],
        "children": len(pids),
    }))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), *[int(a) for a in sys.argv[3:4]], *sys.argv[4:])
