"""Run get_token() in many separate processes (forked from one that imported Airflow once).

Importing Airflow costs seconds of CPU here, so this script imports the hook once and then forks
one child process per caller; every child has its own memory (an empty in-process cache) and
shares only the file cache, like task processes on one host.

    python -m tests.helpers.token_procs sequential 20
    python -m tests.helpers.token_procs together 16

Prints one JSON line: {"fingerprints": [...], "failures": [...]}.
"""

from __future__ import annotations

import json
import os
import sys
import time


def child(conn_id: str, go_file: str | None, out_fd: int) -> None:
    from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

    if go_file:  # wait until every child is forked, then all call at once
        deadline = time.monotonic() + 60
        while not os.path.exists(go_file) and time.monotonic() < deadline:
            time.sleep(0.002)
    try:
        result = {"fingerprint": SalesforceOAuthHook(conn_id).get_token().fingerprint}
    except Exception as exc:  # reported to the parent test
        result = {"failure": f"{type(exc).__name__}: {exc}"}
    os.write(out_fd, (json.dumps(result) + "\n").encode())


def main(mode: str, count: int, conn_id: str = "salesforce_oauth_default") -> None:
    import sf_oauth_provider.client.cache  # noqa: F401  (import everything before forking)
    import sf_oauth_provider.client.oauth  # noqa: F401
    import sf_oauth_provider.hooks.salesforce_oauth  # noqa: F401

    read_fd, write_fd = os.pipe()
    go_file = os.path.join(os.environ["SF_OAUTH_CACHE_DIR"] + ".go") if mode == "together" else None
    pids = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            code = 0
            try:
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
    print(json.dumps({
        "fingerprints": [r["fingerprint"] for r in lines if "fingerprint" in r],
        "failures": [r["failure"] for r in lines if "failure" in r],
        "children": len(pids),
    }))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), *sys.argv[3:])
