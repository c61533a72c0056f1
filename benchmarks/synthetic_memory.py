"""The emulator's memory while it serves the synthetic large object through Bulk API 2.0 query
jobs: RSS of an emulator process (``/proc/<pid>/status``) after extracting 100k and then 1M
synthetic Opportunities page by page. Flat means the rows are made on demand, never stored.

    python -m benchmarks.synthetic_memory [--sizes 100000,1000000] [--page 50000]

Prints one JSON object: per size the rows read, seconds, rows per second and the emulator's RSS
(KiB) before and after, and the RSS growth between the smallest and the largest size.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks._common import admin, emit, emulator_process

__all__ = ["extract", "main", "rss_kib"]

SOQL = "SELECT Id, Name, Account.Name, Amount, StageName, CloseDate, SystemModstamp FROM Opportunity"


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def extract(client: httpx.Client, base: str, token: str, page: int) -> int:
    """Run one query job to the end, reading every page as a stream; the rows read."""
    auth = {"Authorization": f"Bearer {token}"}
    jobs = f"{base}/services/data/v63.0/jobs/query"
    job_id = client.post(jobs, json={"operation": "query", "query": SOQL}, headers=auth).json()["id"]
    for _ in range(6000):
        if client.get(f"{jobs}/{job_id}", headers=auth).json()["state"] == "JobComplete":
            break
        time.sleep(0.05)
    rows, locator = 0, ""
    for _ in range(10_000):
        params = {"maxRecords": page, **({"locator": locator} if locator else {})}
        with client.stream("GET", f"{jobs}/{job_id}/results", params=params, headers=auth) as r:
            r.raise_for_status()
            for _chunk in r.iter_bytes():
                pass
            rows += int(r.headers["Sforce-NumberOfRecords"])
            locator = r.headers["Sforce-Locator"]
        if locator == "null":
            return rows
    raise RuntimeError("the locator never became null")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", default="100000,1000000")
    p.add_argument("--page", type=int, default=50_000)
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-synthetic-") as tmp, emulator_process(tmp) as emu:
        assert emu.pid is not None
        token = admin(emu.base_url, "tokens/mint", {"n": 1})["tokens"][0]
        admin(emu.base_url, "settings", {"bulk_query_delay": 0})
        with httpx.Client(timeout=600) as client:
            for n in sizes:
                admin(emu.base_url, "synthetic", {"object": "Opportunity", "rows": n})
                before = rss_kib(emu.pid)
                start = time.perf_counter()
                rows = extract(client, emu.base_url, token, args.page)
                seconds = time.perf_counter() - start
                results.append({"synthetic_rows": n, "rows_read": rows, "seconds": round(seconds, 2),
                                "rows_per_s": round(rows / seconds), "rss_kib_before": before,
                                "rss_kib_after": rss_kib(emu.pid)})
    growth = results[-1]["rss_kib_after"] - results[0]["rss_kib_after"]
    emit({"section": "synthetic_memory", "sizes": results, "rss_growth_kib_smallest_to_largest": growth})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
