"""Run get_token() in many separate processes (forked from one that imported Airflow once).

Importing Airflow costs seconds of CPU here, so this script imports the hook once and then forks
one child process per caller; every child has its own memory (an empty in-process cache) and
shares only the file cache, like task processes on one host.

    python -m tests.helpers.token_procs sequential 20
    python -m tests.helpers.token_procs together 16
    python -m tests.helpers.token_procs stress 8 200   # 8 processes x 200 calls, random forced
                                                      # refreshes and invalidations

Prints one JSON line: {"fingerprints": [...], "failures": [...]}.

    python -m tests.helpers.token_procs serve 3 CONN_ID

keeps 3 long-lived processes (like a triggerer and two workers), each with one hook for its
whole life, and relays commands: a line ``<n> <command>`` on stdin runs ``command`` in process
``n`` and prints one line: :data:`ANSWER` and JSON (see :data:`COMMANDS`).
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


#: marks the relay's answer lines (the processes' log lines go to the same stdout)
ANSWER = "@answer "

#: what a served process can be asked to do with its one hook (``last``: the token it got last)
COMMANDS = {
    "get": "hook.get_token()",
    "force": "hook.get_token(force_refresh=True)",
    "aget": "await hook.aget_token()  (the triggerer's path)",
    "aforce": "await hook.aget_token(force_refresh=True)",
    "revoke": "hook.revoke(last.access_token) — what revoke_current=True does",
    "rest": "a REST call through hook.get_conn(): a 401 refreshes with get_token(stale_token=...)",
    "arest": "the same REST call through the async path (hook.aget_token(stale_token=...) on a 401)",
}


def _served(conn_id: str, commands: int, answers: int) -> None:
    """One long-lived process: run each command with the same hook, answer in JSON."""
    import asyncio

    import httpx

    from sf_oauth_provider.client.token import fingerprint
    from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

    hook = SalesforceOAuthHook(conn_id)
    last = None
    query = {"q": "SELECT Id FROM User LIMIT 1"}

    async def arest():
        token = await hook.aget_token()
        async with httpx.AsyncClient(base_url=token.instance_url) as http:
            reply = await http.get("/services/data/v63.0/query", params=query,
                                   headers={"Authorization": f"Bearer {token.access_token}"})
            if reply.status_code == 401:
                token = await hook.aget_token(stale_token=token.access_token)
                reply = await http.get("/services/data/v63.0/query", params=query,
                                       headers={"Authorization": f"Bearer {token.access_token}"})
        return token, reply.status_code

    with os.fdopen(commands) as inbox:
        for line in inbox:
            command = line.strip()
            try:
                status = None
                if command == "get":
                    last = hook.get_token()
                elif command == "force":
                    last = hook.get_token(force_refresh=True)
                elif command == "aget":
                    last = asyncio.run(hook.aget_token())
                elif command == "aforce":
                    last = asyncio.run(hook.aget_token(force_refresh=True))
                elif command == "revoke":
                    status = hook.revoke(last.access_token)
                elif command == "rest":
                    with hook.get_conn() as http:
                        status = http.get("/services/data/v63.0/query", params=query).status_code
                    last = hook.get_token()
                elif command == "arest":
                    last, status = asyncio.run(arest())
                else:
                    raise ValueError(f"unknown command {command!r}")
                answer = {"ok": True, "status": status, "fingerprint": last.fingerprint if last else None,
                          "refresh": fingerprint(last.refresh_token) if last and last.refresh_token else None}
            except Exception as exc:  # reported to the test
                answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            os.write(answers, (json.dumps(answer) + "\n").encode())


def serve(count: int, conn_id: str) -> None:
    """Fork ``count`` long-lived processes and relay ``<n> <command>`` lines to them."""
    channels = []
    for _ in range(count):
        cmd_r, cmd_w = os.pipe()
        ans_r, ans_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(cmd_w)
            os.close(ans_r)
            for other in channels:
                for fd in other[1:]:
                    os.close(fd)
            code = 0
            try:
                _served(conn_id, cmd_r, ans_w)
            except BaseException:
                code = 1
            os._exit(code)
        os.close(cmd_r)
        os.close(ans_w)
        channels.append((pid, cmd_w, ans_r))
    answers = [os.fdopen(ans_r) for _, _, ans_r in channels]
    print(ANSWER + json.dumps({"ready": count}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        n, command = line.split(None, 1)
        _, cmd_w, _ = channels[int(n)]
        os.write(cmd_w, command.strip().encode() + b"\n")
        print(ANSWER + answers[int(n)].readline().strip(), flush=True)
    for pid, cmd_w, _ in channels:
        os.close(cmd_w)
        os.waitpid(pid, 0)


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
    if sys.argv[1] == "serve":
        import sf_oauth_provider.client.oauth  # noqa: F401  (import everything before forking)
        import sf_oauth_provider.hooks.salesforce_oauth  # noqa: F401

        serve(int(sys.argv[2]), sys.argv[3])
        sys.exit(0)
    main(sys.argv[1], int(sys.argv[2]), *[int(a) for a in sys.argv[3:4]], *sys.argv[4:])
