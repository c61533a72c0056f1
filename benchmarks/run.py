"""Run every benchmark section side by side, print a Markdown table, write ``results.json``.

    python -m benchmarks.run [--only tokens,hosts,audit,imports,cache,bulk] [--quick] [--out benchmarks/results.json]
                             [--import-baseline DIR]

Starts one emulator process (``python -m sf_oauth_provider.emulator --port 0``) on 127.0.0.1,
runs each section as its own process with this interpreter (the ``.venv-bench`` one under
``make bench``: it has Airflow, this package and ``apache-airflow-providers-salesforce``), stops
the emulator. Measurements only: nothing here passes or fails on a timing; the ``met`` column
compares medians with DESIGN §7's targets for the reader.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks._common import emulator_process

__all__ = ["machine", "main", "markdown_table"]

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("tokens", "hosts", "audit", "imports", "cache", "bulk")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """nproc, CPU model, RAM, Python, Airflow and comparison-package versions, load average."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "ram_gib": ram_gib,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "apache_airflow": _version("apache-airflow"),
        "apache_airflow_providers_salesforce": _version("apache-airflow-providers-salesforce"),
        "simple_salesforce": _version("simple-salesforce"),
        "httpx": _version("httpx"),
        "sf_oauth_provider": _version("sf-oauth-provider"),
    }


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _env() -> dict[str, str]:
    """The sections' environment: this repo importable; bytecode caching on (as in a deployment)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    return env


def _section(module: str, args: list[str], log_dir: Path) -> dict[str, Any]:
    """Run ``python -m benchmarks.<module> ARGS``; stream its ``# `` progress lines; its JSON."""
    log_path = log_dir / f"{module}.log"
    started = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", f"benchmarks.{module}", *args],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=_env(),
        )

        def pump_err() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                log.write(line)
                if line.startswith("# "):
                    print(line.rstrip(), file=sys.stderr, flush=True)

        t = threading.Thread(target=pump_err, daemon=True)
        t.start()
        assert proc.stdout is not None
        try:
            out = proc.stdout.read()
            proc.wait()
        except BaseException:
            proc.terminate()
            proc.wait(30)
            raise
        t.join(10)
        log.write(out)
    result = None
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            result = json.loads(line)
            break
    if proc.returncode != 0 or result is None:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-20:])
        raise RuntimeError(f"benchmark section {module} failed (exit {proc.returncode}):\n{tail}")
    result["_section_seconds"] = round(time.perf_counter() - started, 1)
    return result


def _ms(s: float | None) -> str:
    return "–" if s is None else f"{s * 1000:.1f} ms"


def _us(s: float | None) -> str:
    return "–" if s is None else f"{s * 1e6:.1f} µs"


def _sec(s: float | None) -> str:
    return "–" if s is None else f"{s:.2f} s"


def _mm(st: dict[str, Any], fmt: Any) -> str:
    return f"{fmt(st['min'])} / {fmt(st['median'])}"


def _times(r: float) -> str:
    return f"{r:.0f}× faster" if r >= 10 else f"{r:.1f}× faster" if r >= 1 else f"{1 / r:.1f}× slower"


def _met(ok: bool | None) -> str:
    return "–" if ok is None else ("yes" if ok else "**no**")


def _mb(kib: float) -> str:
    return f"{kib / 1024:.0f} MB"


def _extract(st: dict[str, Any] | None) -> str:
    """A contender's cell: wall time (min / median), rows/s at the median, peak RSS; or how it was stopped."""
    if st is None:
        return "– (not run)"
    if not st["seconds"]["n"]:
        return f"{st['stopped']} (peak RSS ≥ {_mb(st['peak_rss_kib'])})"
    bad = "" if st["ok"] else " **rows missing**"
    return (f"{_mm(st['seconds'], _sec)}; {st['rows_per_s']:,.0f} rows/s; {_mb(st['peak_rss_kib'])} peak RSS{bad}")


def _vs_theirs(ours: dict[str, Any], theirs: dict[str, Any] | None, timeout: float) -> tuple[str, bool | None]:
    """Our rows/s over the provider's; a lower bound when the provider was stopped (it took longer than that)."""
    if theirs is None:
        return "–", None
    if theirs["seconds"]["n"]:
        r = ours["rows_per_s"] / theirs["rows_per_s"]
        return f"{r:.1f}× their rows/s", r >= 5
    r = timeout / ours["seconds"]["median"]
    return f"> {r:.0f}× their rows/s (stopped)", r >= 5


def _bulk_rows(bulk: dict[str, Any]) -> list[tuple[str, ...]]:
    """Section 5: each size's extract side by side (issue 24's targets), then RSS flatness."""
    out: list[tuple[str, ...]] = []
    summ = bulk["summary"]
    sizes = sorted({int(k.split()[1]) for k in summ})
    sec = "5 Bulk extract"
    for n in sizes:
        ours, plain = summ.get(f"ours {n}"), summ.get(f"plain {n}")
        if ours is None or not ours["seconds"]["n"]:
            out.append((sec, f"{n:,} rows: hook.bulk_extract", _extract(ours), "–", "–", "–", _met(False)))
            continue
        what = f"{n:,} synthetic Opportunities × 10 columns → local CSV (50,000-row pages), hook.bulk_extract"
        if plain and plain["seconds"]["n"]:
            r = ours["seconds"]["median"] / plain["seconds"]["median"]
            out.append((sec, f"{what} vs plain httpx streaming of the same pages (the machine's limit)",
                        _extract(ours), _extract(plain), f"{r:.2f}× plain's time", "≤ 1.25×", _met(r <= 1.25)))
        ratio, ok = _vs_theirs(ours, summ.get(f"theirs {n}"), bulk.get("theirs_timeout", 600.0))
        out.append((sec, f"{what} vs the Salesforce provider (SalesforceHook.make_query + write_object_to_file csv)",
                    _extract(ours), _extract(summ.get(f"theirs {n}")), ratio, "≥ 5×", _met(ok)))
        theirs = summ.get(f"theirs {n}")
        if theirs and theirs["seconds"]["n"]:
            c_ours, c_theirs = ours["cpu_seconds"]["median"], theirs["cpu_seconds"]["median"]
            out.append((sec, f"{n:,} rows: CPU seconds of the extracting process (user + system, imports excluded; "
                        f"the emulator's own: {ours['emulator_cpu_seconds']:.1f} s for ours, "
                        f"{theirs['emulator_cpu_seconds']:.1f} s for theirs)", f"{c_ours:.2f} s",
                        f"{c_theirs:.2f} s (the Salesforce provider)", f"{c_theirs / c_ours:.1f}× less CPU", "–", "–"))
        ss = summ.get(f"simple_salesforce {n}")
        if ss and ss["seconds"]["n"]:
            out.append((sec, f"{what} vs simple-salesforce bulk2 download (one file a page)", _extract(ours),
                        _extract(ss), _times(ours["rows_per_s"] / ss["rows_per_s"]), "–", "–"))
        par = summ.get(f"ours_parallel {n}")
        if par and par["seconds"]["n"]:
            out.append((sec, f"{n:,} rows: our job's resultPages fetched by {bulk['parallel']} threads, in order, "
                        "vs hook.bulk_extract's one stream", _extract(par), _extract(ours),
                        _times(ours["seconds"]["median"] / par["seconds"]["median"]) + " (parallel)", "–", "–"))
        out.append((sec, f"{n:,} rows: peak RSS of the extracting process, incl. Airflow's import "
                    f"({_mb(ours['ready_rss_kib'])} before the extract)", _mb(ours["peak_rss_kib"]),
                    f"{_mb(plain['peak_rss_kib'])} (plain httpx, no Airflow)" if plain else "–", "–", "≤ 150 MB",
                    _met(ours["peak_rss_kib"] <= 150 * 1024)))
    ends = [summ.get(f"ours {n}") for n in (sizes[0], sizes[-1])]
    if len(sizes) >= 2 and all(e is not None and e["seconds"]["n"] for e in ends):
        lo, hi = summ[f"ours {sizes[0]}"]["peak_rss_kib"], summ[f"ours {sizes[-1]}"]["peak_rss_kib"]
        growth = hi / lo - 1
        out.append((sec, f"our peak RSS from {sizes[0]:,} to {sizes[-1]:,} rows", f"{_mb(lo)} → {_mb(hi)}", "–",
                    f"{growth * 100:+.1f}%", "≤ +10%", _met(growth <= 0.10)))
    return out


def rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Table rows: (section, measurement, ours, comparison, ratio, target, met)."""
    out: list[tuple[str, ...]] = []
    tok = results.get("tokens")
    if tok:
        for mode, label in (("sequential", "one after another"), ("together", "started together, cold cache")):
            o, t = tok[f"ours_{mode}"], tok[f"theirs_{mode}"]
            n = o["children"]
            fails = "" if not (o["failures"] or t["failures"]) else f" (failures: {o['failures'] + t['failures']})"
            out.append((
                "1 Token requests", f"{n} task processes, {label}: token requests counted by the emulator{fails}",
                f"{o['token_requests']}", f"{t['token_requests']} (SalesforceHook JWT)",
                f"{t['token_requests'] / max(1, o['token_requests']):.0f}× fewer",
                "1 (theirs: N)", _met(o["token_requests"] == 1),
            ))
    hosts = results.get("hosts")
    if hosts:
        f, r, t = hosts["file"], hosts["redis"], hosts.get("theirs")
        label = f"{r['hosts']} hosts × {r['per_host']} processes started together (separate cache dirs)"
        theirs = f"{t['token_requests']} (SalesforceHook JWT)" if t else "– (salesforce provider not installed)"
        out.append(("1 Token requests", f"{label}, file store vs Redis: token requests",
                    f"{r['token_requests']} (Redis)", f"{f['token_requests']} (file store); {theirs}",
                    f"{f['token_requests'] / max(1, r['token_requests']):.0f}× fewer than the file store",
                    "1", _met(r["token_requests"] == 1)))
        lat = hosts["latency"]
        out.append(("4 Cache", "cache hit from Redis on loopback (RedisStore.get: GET + decrypt)",
                    _mm(lat["store_get"], _ms), _mm(lat["new_host_get_token"], _ms) + " (new host's first get_token)",
                    "–", "≤ 2 ms", _met(lat["store_get"]["median"] <= 2e-3)))
    aud = results.get("audit")
    if aud:
        n, c = aud["tokens"], aud["capacity_concurrency"]
        op, cap, seq, core, raw = aud["operator"], aud["capacity"], aud["sequential"], aud["core"], aud["capacity_raw"]
        out.append((
            "2 Audit", f"introspect {n:,} tokens: audit operator (max_concurrency {aud['operator_max_concurrency']}) "
            f"vs emulator capacity (asyncio+httpx load generator, {c} connections)",
            _mm(op, _sec), _mm(cap, _sec), f"{op['median'] / cap['median']:.2f}× capacity time",
            "≤ 1.5×", _met(op["median"] / cap["median"] <= 1.5),
        ))
        out.append((
            "2 Audit", f"introspect {n:,} tokens: audit operator vs one-at-a-time requests (sync httpx, keep-alive)",
            _mm(op, _sec), _mm(seq, _sec), _times(seq["median"] / op["median"]),
            "≥ 5× faster", _met(seq["median"] / op["median"] >= 5),
        ))
        out.append((
            "2 Audit", "introspection core alone (hook._async_client, same concurrency) vs capacity",
            _mm(core, _sec), _mm(cap, _sec), f"{core['median'] / cap['median']:.2f}× capacity time", "–", "–",
        ))
        out.append((
            "2 Audit", f"emulator capacity with a light client (asyncio streams, {c} connections) vs httpx load generator",
            _mm(raw, _sec), _mm(cap, _sec), f"{cap['median'] / raw['median']:.1f}× (httpx client cost)", "–", "–",
        ))
        lat = aud.get("latency_run")
        if lat:
            out.append((
                "2 Audit", f"same, emulator adds {lat['latency_s'] * 1000:.0f} ms per introspection (WAN-like): "
                f"operator vs one-at-a-time (extrapolated from {lat['sequential_sample_tokens']} tokens)",
                _sec(lat["operator_s"]), f"{_sec(lat['sequential_extrapolated_s'])} (capacity {_sec(lat['capacity_s'])})",
                _times(lat["sequential_extrapolated_s"] / lat["operator_s"]), "≥ 5× faster",
                _met(lat["sequential_extrapolated_s"] / lat["operator_s"] >= 5),
            ))
    imp = results.get("imports")
    if imp:
        ours, theirs = imp["ours"], imp["theirs"]
        dag_mods = [m for m in ours["each_s"] if ".hooks." not in m]
        per = {m: ours["each_s"][m]["median"] for m in ours["each_s"]}
        dag_median = sum(per[m] for m in dag_mods)
        out.append((
            "3 Import cost", "over airflow.sdk: our operator/sensor/trigger modules (sum of incremental medians; "
            "excl. Airflow's airflow.triggers.base) vs the Salesforce provider's hook",
            f"{dag_median * 1000:.1f} ms (median)", _mm(theirs["total_s"], _ms),
            f"{theirs['total_s']['median'] / dag_median:.0f}× less", "≤ 15 ms", _met(dag_median <= 0.015),
        ))
        ratio = ours.get("ratio") or {"median": ours["total_s"]["median"] / theirs["total_s"]["median"]}
        out.append((
            "3 Import cost", "over airflow.sdk: every module of ours incl. the hook, plus airflow.triggers.base "
            f"({_ms(ours['pre_s']['median'])} of it), vs the Salesforce provider's hook; ratio: median over "
            "interleaved rounds",
            _mm(ours["total_s"], _ms), _mm(theirs["total_s"], _ms),
            f"{ratio['median']:.2f}× theirs", "≤ 0.27×", _met(ratio["median"] <= 0.27),
        ))
        base = imp.get("baseline")
        if base:
            out.append((
                "3 Import cost", f"same, sf_oauth_provider from {base['origin']} (--baseline, interleaved)",
                _mm(base["total_s"], _ms), _mm(theirs["total_s"], _ms),
                f"{base['ratio']['median']:.2f}× theirs", "≤ 0.27×", _met(base["ratio"]["median"] <= 0.27),
            ))
    cache = results.get("cache")
    if cache:
        req = cache["token_request"]
        for key, label, fmt, target, limit in (
            ("memory_hit", "cache hit, in-process memory (hook.get_token())", _us, "≤ 50 µs", 50e-6),
            ("file_hit", "cache hit, encrypted file (memory emptied before each read)", _us, "≤ 2 ms", 2e-3),
            ("new_hook_file_hit", "first get_token() of a new hook from the file cache (as a new task process)",
             _ms, "–", None),
            ("assertion", "JWT assertion build + RS256 sign, 2048-bit key", _us, "–", None),
        ):
            st = cache[key]
            out.append((
                "4 Cache", f"{label} vs a token request to the emulator", _mm(st, fmt), _mm(req, _ms),
                _times(req["median"] / st["median"]), target,
                _met(None if limit is None else st["median"] <= limit),
            ))
    bulk = results.get("bulk")
    if bulk:
        out += _bulk_rows(bulk)
    return out


def markdown_table(results: dict[str, Any]) -> str:
    """The Markdown table of :func:`rows` (values are min / median over repeats)."""
    head = ("section", "measurement", "ours (min / median)", "comparison (min / median)", "ratio (medians)",
            "DESIGN §7 target", "met")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows(results)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the selected sections; print the table; write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", default=",".join(SECTIONS), help="comma-separated: " + ",".join(SECTIONS))
    p.add_argument("--quick", action="store_true", help="fewer tokens and repeats (a smoke run)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results.json"))
    p.add_argument("--import-baseline", metavar="DIR",
                   help="imports section: also measure sf_oauth_provider from this source tree, interleaved")
    args = p.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so that the emulator and a running section are stopped too.
    signal.signal(signal.SIGTERM, lambda signum, frame: (_ for _ in ()).throw(KeyboardInterrupt()))
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections: {sorted(unknown)}")

    results: dict[str, Any] = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "loadavg": {"start": _loadavg()},
        "quick": args.quick,
    }
    print(f"# machine: {results['machine']['nproc']} CPU ({results['machine']['cpu_model']}), "
          f"load average {results['loadavg']['start']}", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="sf-bench-") as tmp:
        logs = Path(tmp) / "logs"
        logs.mkdir()
        with emulator_process(Path(tmp) / "emulator") as emu:
            common = ["--base-url", emu.base_url, "--state-dir", str(emu.state_dir)]
            plan = {
                "tokens": ("token_requests", common + (["--sequential", "5", "--together", "4"] if args.quick else [])),
                "hosts": ("multi_host", common + (["--per-host", "3", "--repeats", "100"] if args.quick else [])),
                "audit": ("audit_throughput", common + ["--emulator-pid", str(emu.pid), "--latency", "0.02"]
                          + (["--tokens", "500", "--repeats", "1", "--sequential-repeats", "1",
                              "--latency-sample", "50"] if args.quick else [])),
                "imports": ("import_cost", ["--repeats", "2" if args.quick else "7"]
                            + (["--baseline", args.import_baseline] if args.import_baseline else [])),
                "cache": ("cache_latency", ["--state-dir", str(emu.state_dir)] + (["--repeats", "3"] if args.quick else [])),
                "bulk": ("bulk_extract", common + ["--emulator-pid", str(emu.pid)]
                         + (["--sizes", "20000,100000", "--repeats", "1"] if args.quick else [])),
            }
            for name in SECTIONS:
                if name not in only:
                    continue
                module, section_args = plan[name]
                print(f"# --- {name} ---", file=sys.stderr, flush=True)
                before = _loadavg()
                results[name] = _section(module, section_args, logs)
                results["loadavg"][name] = {"before": before, "after": _loadavg()}
    results["loadavg"]["end"] = _loadavg()
    results["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    table = markdown_table(results)
    results["table_markdown"] = table
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    m = results["machine"]
    print(f"\nMachine: {m['nproc']} × {m['cpu_model']}, {m['ram_gib']} GiB RAM, Python {m['python']}, "
          f"Airflow {m['apache_airflow']}, apache-airflow-providers-salesforce "
          f"{m['apache_airflow_providers_salesforce']} (simple-salesforce {m['simple_salesforce']}); "
          f"load average {results['loadavg']['start']} at start, {results['loadavg']['end']} at end.\n")
    print(table)
    print(f"\nWrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
