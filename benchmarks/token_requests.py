"""Token requests made by N task processes on one host for one connection (DESIGN §7).

Ours: ``SalesforceOAuthHook(...).get_token()``. Theirs: ``apache-airflow-providers-salesforce``'s
``SalesforceHook(...).get_conn()`` in JWT mode (extras ``consumer_key``, ``private_key_file_path``,
``domain``), which logs in through simple-salesforce on every new hook.

Importing Airflow costs seconds of CPU on a small machine, so this script imports both hooks once
and then ``os.fork()``\\ s one child per "task process". Every child has fresh memory (an empty
in-process cache); ours share only the file cache directory, like task processes on one host.
Two scenarios per provider, each on a cold cache: ``sequential`` (one child after another) and
``together`` (all children forked first, then released at once through a pipe barrier).

simple-salesforce builds ``https://{domain}.salesforce.com/services/oauth2/token``; the child gives
the hook a ``requests.Session`` (the hook's own ``session=`` argument) with a transport adapter
mounted on ``https://login.salesforce.com/`` and ``https://test.salesforce.com/`` that rewrites the
URL to the emulator's ``http://127.0.0.1:PORT/login/...`` / ``/test/...``. Nothing else changes:
the JWT (``aud`` = ``https://login.salesforce.com``) is built and signed by simple-salesforce.

    python -m benchmarks.token_requests --base-url http://127.0.0.1:PORT --state-dir DIR
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Any

from benchmarks._common import admin, emit, load_connections

__all__ = ["main", "run_scenario"]

OURS_CONN_ID = "salesforce_oauth_default"
THEIRS_CONN_ID = "salesforce_default"


def _emulator_session(login_url: str, test_url: str) -> Any:
    """A ``requests.Session`` whose login/test.salesforce.com requests go to the emulator."""
    import requests
    from requests.adapters import HTTPAdapter

    class ToEmulator(HTTPAdapter):
        """Rewrites ``https://<host>.salesforce.com/<path>`` to ``<target>/<path>``."""

        def __init__(self, prefix: str, target: str) -> None:
            super().__init__()
            self.prefix, self.target = prefix, target

        def send(self, request: Any, **kwargs: Any) -> Any:  # noqa: D102
            if request.url.startswith(self.prefix):
                request.url = self.target + request.url[len(self.prefix):]
            return super().send(request, **kwargs)

    session = requests.Session()
    session.trust_env = False  # loopback: never through a proxy
    session.mount("https://login.salesforce.com/", ToEmulator("https://login.salesforce.com", login_url))
    session.mount("https://test.salesforce.com/", ToEmulator("https://test.salesforce.com", test_url))
    return session


def _child(provider: str, login_url: str, test_url: str) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        if provider == "ours":
            from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

            ident = SalesforceOAuthHook(OURS_CONN_ID).get_token().fingerprint
        else:
            from airflow.providers.salesforce.hooks.salesforce import SalesforceHook

            from sf_oauth_provider.client.token import fingerprint

            sf = SalesforceHook(THEIRS_CONN_ID, session=_emulator_session(login_url, test_url)).get_conn()
            ident = fingerprint(sf.session_id)
        return {"fingerprint": ident, "seconds": time.perf_counter() - started}
    except Exception as exc:  # reported, never raised: a child must always answer
        # error code and description only (Salesforce's wording, never a credential)
        detail = " ".join(str(getattr(exc, a)) for a in ("code", "message") if getattr(exc, a, None))
        return {"failure": f"{type(exc).__name__}: {detail}".strip(), "seconds": time.perf_counter() - started}


def run_scenario(provider: str, mode: str, count: int, login_url: str, test_url: str) -> dict[str, Any]:
    """Fork ``count`` children calling ``provider``'s hook; return their answers and timings.

    :param provider: ``ours`` or ``theirs``
    :param mode: ``sequential`` or ``together``
    :param count: number of child processes
    :param login_url: the emulator's login.salesforce.com stand-in
    :param test_url: the emulator's test.salesforce.com stand-in
    """
    out_r, out_w = os.pipe()
    go_r, go_w = os.pipe()
    pids: list[int] = []
    started = time.perf_counter()
    for _ in range(count):
        pid = os.fork()
        if pid == 0:  # child
            code = 0
            try:
                os.close(out_r)
                os.close(go_w)
                if mode == "together":
                    os.read(go_r, 1)  # returns b"" when the parent closes the write end: all go at once
                result = _child(provider, login_url, test_url)
                os.write(out_w, (json.dumps(result) + "\n").encode())
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        pids.append(pid)
        if mode == "sequential":
            os.waitpid(pid, 0)
    if mode == "together":
        started = time.perf_counter()  # the release, not the forking, is the start
    os.close(go_w)
    os.close(go_r)
    for pid in pids if mode == "together" else []:
        os.waitpid(pid, 0)
    elapsed = time.perf_counter() - started
    os.close(out_w)
    with os.fdopen(out_r) as fh:
        answers = [json.loads(line) for line in fh if line.strip()]
    return {
        "children": count,
        "answers": len(answers),
        "failures": sorted({a["failure"] for a in answers if "failure" in a}),
        "distinct_tokens": len({a["fingerprint"] for a in answers if "fingerprint" in a}),
        "elapsed_s": elapsed,
        "child_seconds_median": sorted(a["seconds"] for a in answers)[len(answers) // 2] if answers else None,
    }


def main(argv: list[str] | None = None) -> int:
    """Run both scenarios for both providers against a running emulator; print JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base-url", required=True)
    p.add_argument("--state-dir", required=True)
    p.add_argument("--sequential", type=int, default=20)
    p.add_argument("--together", type=int, default=16)
    args = p.parse_args(argv)

    base = args.base_url.rstrip("/")
    login_url, test_url = base + "/login", base + "/test"
    ours = load_connections(args.state_dir)[OURS_CONN_ID]
    theirs = {
        "conn_type": "salesforce",
        "login": ours["extra"]["username"],  # JWT subject
        "extra": {
            "consumer_key": ours["login"],
            "private_key_file_path": ours["extra"]["jwt_key_file"],
            "domain": "login",
        },
    }
    os.environ["AIRFLOW_CONN_" + OURS_CONN_ID.upper()] = json.dumps(ours)
    os.environ["AIRFLOW_CONN_" + THEIRS_CONN_ID.upper()] = json.dumps(theirs)

    # Import everything once, before forking (each child would otherwise pay seconds of CPU).
    import airflow.providers.salesforce.hooks.salesforce  # noqa: F401
    import requests.adapters  # noqa: F401
    import simple_salesforce  # noqa: F401

    import sf_oauth_provider.client.cache  # noqa: F401
    import sf_oauth_provider.client.oauth  # noqa: F401
    import sf_oauth_provider.hooks.salesforce_oauth  # noqa: F401

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="sf-bench-cache-") as caches:
        for provider in ("ours", "theirs"):
            for mode, count in (("sequential", args.sequential), ("together", args.together)):
                os.environ["SF_OAUTH_CACHE_DIR"] = os.path.join(caches, f"{provider}-{mode}")  # cold cache
                admin(base, "counters/reset", {})
                run = run_scenario(provider, mode, count, login_url, test_url)
                counters = admin(base, "counters")
                run["token_requests"] = counters["endpoints"].get("token", 0)
                run["introspect_requests"] = counters["endpoints"].get("introspect", 0)
                results[f"{provider}_{mode}"] = run
                print(f"# {provider:6} {mode:10} {count:2} processes -> {run['token_requests']} token requests "
                      f"({run['elapsed_s']:.2f} s, failures {run['failures']})", file=sys.stderr, flush=True)
    emit(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
