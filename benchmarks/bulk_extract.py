"""Bulk extracts of the emulator's synthetic Opportunities to a local CSV file (issue 24).

Contenders, each in its own process (fresh interpreter; it measures its own wall time, peak RSS
(``ru_maxrss``) and the CPU seconds it spent in the extract, which a busy machine changes less than
wall time; the parent also samples ``VmRSS`` so that a contender it stops still has a figure), on
the same SOQL of 10 columns, at every size of ``--sizes``:

* ``ours`` — ``SalesforceOAuthHook(conn).bulk_extract(soql, path, max_records=50000)``, the
  connection from the emulator's ``connections.json`` as an ``AIRFLOW_CONN_`` variable;
* ``ours_parallel`` — the same job through ``hook.bulk_queries()``, its pages listed by
  ``…/resultPages`` (API ≥ 58.0) and fetched by a pool of ``--parallel`` threads, written in
  order (header once) — does downloading pages side by side help?;
* ``plain`` — the machine's limit: a minimal httpx loop that creates the same job and streams
  each ``…/results`` page (same ``maxRecords``) straight to a file (headers not deduplicated);
* ``simple_salesforce`` — ``Salesforce(instance_url=…, session_id=…).bulk2.Opportunity.download``
  (one file per page, its default 50,000 records a page);
* ``theirs`` — apache-airflow-providers-salesforce: ``SalesforceHook.make_query(soql)`` then
  ``write_object_to_file(records, path, fmt="csv")`` (REST query, all records in memory, pandas),
  stopped after ``--theirs-timeout`` seconds or at ``--rss-cap-mib`` of resident memory.

The job takes no time in the emulator (``bulk_query_delay`` 0, so no contender waits on a poll);
the emulator, one process on 127.0.0.1 over plain http, makes the rows as they are read, so every
contender also measures the emulator (``plain`` is the ceiling on this machine). The
simple-salesforce and provider clients build ``https://`` URLs from the instance URL: a requests
adapter sends them to the emulator's http address instead (as ``token_requests`` does).

    python -m benchmarks.bulk_extract --base-url URL --state-dir DIR [--sizes 100000,1000000]
    python -m benchmarks.bulk_extract --child ours --base-url URL --state-dir DIR --out FILE   # one run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from benchmarks._common import admin, emit, load_connections, stats

__all__ = ["CONTENDERS", "SOQL", "main"]

SOQL = ("SELECT Id, Name, AccountId, Account.Name, Amount, StageName, CloseDate, IsWon, IsClosed, SystemModstamp "
        "FROM Opportunity")
PAGE = 50_000
OURS_CONN_ID = "salesforce_oauth_default"
THEIRS_CONN_ID = "salesforce_bench_bulk"
CONTENDERS = ("ours", "ours_parallel", "plain", "simple_salesforce", "theirs")
API = "63.0"


# --- children -------------------------------------------------------------------------------------------------

def _ours(args: argparse.Namespace, out: Path) -> Callable[[], int]:
    from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

    def run() -> int:
        result = SalesforceOAuthHook(OURS_CONN_ID).bulk_extract(SOQL, str(out), max_records=PAGE,
                                                                 poll_interval=0.1, timeout=args.timeout)
        return result.rows

    return run


def _ours_parallel(args: argparse.Namespace, out: Path) -> Callable[[], int]:
    from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook

    return lambda: _parallel_extract(SalesforceOAuthHook, args, out)


def _parallel_extract(hook_class: Any, args: argparse.Namespace, out: Path) -> int:
    """Our job, then ``…/resultPages`` fetched by a thread pool, written in order (header once)."""
    from concurrent.futures import Future, ThreadPoolExecutor

    import httpx

    hook = hook_class(OURS_CONN_ID)
    bulk = hook.bulk_queries()
    job = bulk.wait(bulk.submit(SOQL), poll_interval=0.1, timeout=args.timeout)
    token = hook.get_token()
    auth = {"Authorization": f"Bearer {token.access_token}", "Accept-Encoding": "gzip"}
    with httpx.Client(base_url=token.instance_url, timeout=args.timeout, trust_env=False) as client:
        urls: list[str] = []
        nxt: str | None = f"/services/data/v{job.api_version}/jobs/query/{job.id}/resultPages"
        while nxt:
            listing = client.get(nxt, headers=auth)
            listing.raise_for_status()
            body = listing.json()
            urls += [p["resultUrl"] for p in body["resultPages"]]
            nxt = body.get("nextRecordsUrl")

        def fetch(url: str) -> tuple[bytes, int]:
            r = client.get(url, headers=auth)
            r.raise_for_status()
            return r.content, int(r.headers["Sforce-NumberOfRecords"])

        rows, window = 0, args.parallel
        with ThreadPoolExecutor(args.parallel) as pool, open(out, "wb") as sink:
            pending: list[Future[tuple[bytes, int]]] = [pool.submit(fetch, u) for u in urls[:window]]
            for i in range(len(urls)):  # at most `window` pages in memory
                data, n = pending.pop(0).result()
                if i + window < len(urls):
                    pending.append(pool.submit(fetch, urls[i + window]))
                sink.write(data if i == 0 else data[data.index(b"\n") + 1:])
                rows += n
    return rows


def _plain(args: argparse.Namespace, out: Path) -> Callable[[], int]:
    import httpx

    return lambda: _plain_extract(httpx, args, out)


def _plain_extract(httpx: Any, args: argparse.Namespace, out: Path) -> int:
    """Create, poll, stream every page to the file as it arrives: the least a client can do."""
    auth = {"Authorization": f"Bearer {args.token}"}
    jobs = f"/services/data/v{API}/jobs/query"
    with httpx.Client(base_url=args.base_url, timeout=args.timeout, trust_env=False) as client, \
            open(out, "wb") as sink:
        job_id = client.post(jobs, json={"operation": "query", "query": SOQL}, headers=auth).json()["id"]
        for _ in range(100_000):
            if client.get(f"{jobs}/{job_id}", headers=auth).json()["state"] == "JobComplete":
                break
            time.sleep(0.1)
        rows, locator = 0, ""
        while locator != "null":
            params = {"maxRecords": PAGE, **({"locator": locator} if locator else {})}
            with client.stream("GET", f"{jobs}/{job_id}/results", params=params, headers=auth) as r:
                r.raise_for_status()
                for chunk in r.iter_bytes(1 << 16):
                    sink.write(chunk)
                rows += int(r.headers["Sforce-NumberOfRecords"])
                locator = r.headers["Sforce-Locator"]
    return rows


def _https_to_emulator(base_url: str) -> Any:
    """A requests session that sends ``https://<emulator host:port>`` to the emulator's http address."""
    import requests
    from requests.adapters import HTTPAdapter

    https = "https://" + base_url.split("://", 1)[1]

    class ToEmulator(HTTPAdapter):
        def send(self, request: Any, **kwargs: Any) -> Any:  # noqa: D102
            if request.url.startswith(https):
                request.url = base_url + request.url[len(https):]
            return super().send(request, **kwargs)

    session = requests.Session()
    session.trust_env = False
    session.mount(https, ToEmulator())
    return session


def _simple_salesforce(args: argparse.Namespace, out: Path) -> Callable[[], int]:
    from simple_salesforce import Salesforce

    def run() -> int:
        sf = Salesforce(instance_url=args.base_url, session_id=args.token, version=API,
                        session=_https_to_emulator(args.base_url))
        out.mkdir()
        results = sf.bulk2.Opportunity.download(SOQL, path=str(out), max_records=PAGE, wait=0)
        return sum(int(r["number_of_records"]) for r in results)

    return run


def _theirs(args: argparse.Namespace, out: Path) -> Callable[[], int]:
    os.environ["AIRFLOW_CONN_" + THEIRS_CONN_ID.upper()] = json.dumps(
        {"conn_type": "salesforce", "extra": {"instance_url": args.base_url, "version": API}})
    import pandas  # noqa: F401  (imported by write_object_to_file; an import, not the extract)
    from airflow.providers.salesforce.hooks.salesforce import SalesforceHook

    def run() -> int:
        hook = SalesforceHook(THEIRS_CONN_ID, session_id=args.token, session=_https_to_emulator(args.base_url))
        records = hook.make_query(SOQL)["records"]
        hook.write_object_to_file(records, str(out), fmt="csv")
        return len(records)

    return run


#: name -> prepare(args, out): imports done, returns the extract to time
CHILDREN: dict[str, Callable[[argparse.Namespace, Path], Callable[[], int]]] = {
    "ours": _ours, "ours_parallel": _ours_parallel, "plain": _plain, "simple_salesforce": _simple_salesforce,
    "theirs": _theirs,
}


def _child(args: argparse.Namespace) -> int:
    if args.child in ("ours", "ours_parallel"):
        os.environ["AIRFLOW_CONN_" + OURS_CONN_ID.upper()] = json.dumps(load_connections(args.state_dir)[OURS_CONN_ID])
    started = time.perf_counter()
    extract = CHILDREN[args.child](args, Path(args.out))
    imported = time.perf_counter()
    ready = resource.getrusage(resource.RUSAGE_SELF)
    rows = extract()
    seconds = time.perf_counter() - imported
    done = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (done.ru_utime + done.ru_stime) - (ready.ru_utime + ready.ru_stime)
    ready_kib = ready.ru_maxrss
    emit({"rows": rows, "seconds": seconds, "import_seconds": imported - started, "cpu_seconds": cpu,
          "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "ready_rss_kib": ready_kib})
    return 0


# --- parent ---------------------------------------------------------------------------------------------------

def _vmrss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _csv_rows(path: Path) -> int:
    """Data rows in a CSV file, or in every CSV file of a folder (one header each)."""
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    total = 0
    for f in files:
        with open(f, "rb") as fh:
            total += sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b"")) - 1
    return total


def _bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir()) if path.is_dir() else path.stat().st_size


def _cpu_seconds(pid: int | None) -> float:
    """CPU seconds (user + system) of ``pid`` from ``/proc/PID/stat``; 0 without a pid."""
    if not pid:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _remove(path: Path) -> None:
    if path.is_dir():
        for f in path.iterdir():
            f.unlink()
        path.rmdir()
    elif path.exists():
        path.unlink()


def run_one(name: str, n: int, args: argparse.Namespace, token: str, tmp: Path, timeout: float) -> dict[str, Any]:
    """One contender in its own process: its figures, or how it was stopped."""
    cpu_before = _cpu_seconds(args.emulator_pid)
    load = [round(x, 2) for x in os.getloadavg()]
    out = tmp / f"{name}-{n}.csv"
    _remove(out)
    cmd = [sys.executable, "-m", "benchmarks.bulk_extract", "--child", name, "--base-url", args.base_url,
           "--state-dir", args.state_dir, "--out", str(out), "--token", token, "--timeout", str(timeout),
           "--parallel", str(args.parallel)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampled, stopped = 0, None
    while proc.poll() is None:
        rss = _vmrss_kib(proc.pid) or 0
        sampled = max(sampled, rss)
        elapsed = time.perf_counter() - started
        if elapsed > timeout:
            stopped = f"did not finish in {timeout:.0f} s"
        elif rss > args.rss_cap_mib * 1024:
            stopped = f"stopped at {rss / 1024:.0f} MB RSS after {elapsed:.0f} s"
        if stopped:
            proc.kill()
            break
        time.sleep(0.2)
    out_text, err_text = proc.communicate()
    base: dict[str, Any] = {"contender": name, "synthetic_rows": n, "process_seconds": time.perf_counter() - started,
                            "sampled_peak_rss_kib": sampled, "loadavg_before": load,
                            "emulator_cpu_seconds": round(_cpu_seconds(args.emulator_pid) - cpu_before, 2)}
    if stopped or proc.returncode != 0:
        tail = err_text.strip().splitlines()[-3:]
        return {**base, "ok": False, "stopped": stopped or f"exit {proc.returncode}: {' | '.join(tail)}"}
    result = json.loads(out_text.strip().splitlines()[-1])
    written = _csv_rows(out)
    if name == "plain":  # every page repeats the header row: not deduplicated
        written -= max(0, -(-result["rows"] // PAGE) - 1)
    size = _bytes(out)
    _remove(out)
    return {**base, **result, "ok": result["rows"] == written, "rows_in_file": written, "file_bytes": size,
            "rows_per_s": result["rows"] / result["seconds"]}


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per ``"<contender> <rows>"``: seconds (min / median), rows/s at the median, peak RSS (KiB, largest of
    the runs), RSS once imported, rows, whether every run wrote every row, and how a stopped run ended."""
    out: dict[str, dict[str, Any]] = {}
    for key in dict.fromkeys(f"{r['contender']} {r['synthetic_rows']}" for r in runs):
        mine = [r for r in runs if f"{r['contender']} {r['synthetic_rows']}" == key]
        done = [r for r in mine if "seconds" in r]
        secs = stats([r["seconds"] for r in done])
        out[key] = {
            "seconds": secs, "runs": len(mine),
            "rows": done[0]["rows"] if done else None,
            "rows_per_s": done[0]["rows"] / secs["median"] if done else None,
            "peak_rss_kib": max(r["peak_rss_kib"] if "peak_rss_kib" in r else r["sampled_peak_rss_kib"] for r in mine),
            "ready_rss_kib": stats([r["ready_rss_kib"] for r in done])["median"],
            "emulator_cpu_seconds": stats([r["emulator_cpu_seconds"] for r in done])["median"],
            "cpu_seconds": stats([r["cpu_seconds"] for r in done]),
            "ok": bool(done) and all(r["ok"] for r in mine),
            "stopped": next((r["stopped"] for r in mine if "stopped" in r), None),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base-url", required=True)
    p.add_argument("--state-dir", required=True)
    p.add_argument("--sizes", default="100000,1000000")
    p.add_argument("--contenders", default=",".join(CONTENDERS))
    p.add_argument("--timeout", type=float, default=600.0, help="seconds for each of ours and the baselines")
    p.add_argument("--theirs-timeout", type=float, default=600.0)
    p.add_argument("--rss-cap-mib", type=int, default=8192, help="stop a contender above this resident memory")
    p.add_argument("--parallel", type=int, default=4, help="threads of ours_parallel")
    p.add_argument("--repeats", type=int, default=3, help="runs of each contender at each size (interleaved)")
    p.add_argument("--theirs-max-repeats-above", type=int, default=200_000,
                   help="above this many rows the provider's path runs once (it takes minutes)")
    p.add_argument("--emulator-pid", type=int, default=None, help="record the emulator's CPU seconds per run")
    p.add_argument("--child", choices=CONTENDERS)
    p.add_argument("--out")
    p.add_argument("--token")
    args = p.parse_args(argv)
    if args.child:
        return _child(args)

    delay = admin(args.base_url, "settings")["bulk_query_delay"]
    admin(args.base_url, "settings", {"bulk_query_delay": 0})
    token = admin(args.base_url, "tokens/mint", {"n": 1})["tokens"][0]
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sf-bench-bulk-") as tmp:
        for n in [int(s) for s in args.sizes.split(",")]:
            admin(args.base_url, "synthetic", {"object": "Opportunity", "rows": n})
            for rep in range(args.repeats):
                for name in args.contenders.split(","):
                    if name == "theirs" and rep > 0 and n > args.theirs_max_repeats_above:
                        continue
                    timeout = args.theirs_timeout if name == "theirs" else args.timeout
                    run = run_one(name, n, args, token, Path(tmp), timeout)
                    figures = (f"{run['seconds']:.1f} s, CPU {run['cpu_seconds']:.1f} s, "
                               f"{run['rows_per_s']:,.0f} rows/s, "
                               f"peak RSS {run['peak_rss_kib'] / 1024:.0f} MB, emulator CPU "
                               f"{run['emulator_cpu_seconds']:.1f} s" if "seconds" in run else run["stopped"])
                    print(f"# bulk {name} {n:,} rows, run {rep + 1}: {figures}", file=sys.stderr, flush=True)
                    runs.append(run)
    admin(args.base_url, "synthetic", {"object": "Opportunity", "rows": 0})
    admin(args.base_url, "settings", {"bulk_query_delay": delay})
    emit({"section": "bulk", "soql": SOQL, "page_records": PAGE, "parallel": args.parallel, "repeats": args.repeats,
          "theirs_timeout": args.theirs_timeout,
          "summary": summarize(runs), "runs": runs})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
