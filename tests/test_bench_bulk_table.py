"""The bulk benchmark's table (benchmarks/run.py, section 5): a missed target reads **no**, a provider run that
was stopped is reported as stopped with a lower bound, never as a figure. Measurements themselves are not tested."""

from __future__ import annotations

from typing import Any

from benchmarks.bulk_extract import summarize
from benchmarks.run import markdown_table


def _run(contender: str, n: int, seconds: float, rss_mib: int, cpu: float = 1.0) -> dict[str, Any]:
    return {"contender": contender, "synthetic_rows": n, "rows": n + 30, "seconds": seconds, "cpu_seconds": cpu,
            "peak_rss_kib": rss_mib * 1024, "ready_rss_kib": 100 * 1024, "sampled_peak_rss_kib": rss_mib * 1024,
            "emulator_cpu_seconds": 1.5, "ok": True, "rows_in_file": n + 30}


def _table(runs: list[dict[str, Any]]) -> list[str]:
    bulk = {"summary": summarize(runs), "parallel": 4, "theirs_timeout": 600.0}
    return markdown_table({"bulk": bulk}).splitlines()[2:]


def _row(lines: list[str], *words: str) -> list[str]:
    hits = [line for line in lines if all(w in line for w in words)]
    assert len(hits) == 1, (words, lines)
    return [c.strip() for c in hits[0].strip("|").split("|")]


def test_targets_met_and_missed_read_yes_and_no() -> None:
    lines = _table([
        _run("ours", 100_000, 2.0, 120), _run("plain", 100_000, 1.9, 34), _run("theirs", 100_000, 8.0, 500),
        _run("ours", 1_000_000, 30.0, 160), _run("plain", 1_000_000, 20.0, 34), _run("theirs", 1_000_000, 200.0, 4000),
    ])
    assert _row(lines, "100,000 synthetic", "plain httpx")[-1] == "yes"  # 1.05× plain's time
    assert _row(lines, "1,000,000 synthetic", "plain httpx")[-1] == "**no**"  # 1.5×
    assert _row(lines, "100,000 synthetic", "Salesforce provider")[-1] == "**no**"  # 4×
    assert _row(lines, "1,000,000 synthetic", "Salesforce provider")[-1] == "yes"  # 6.7×
    assert _row(lines, "1,000,000 rows: peak RSS")[-1] == "**no**"  # 160 MB > 150 MB
    flat = _row(lines, "our peak RSS from 100,000 to 1,000,000 rows")
    assert flat[4] == "+33.3%" and flat[-1] == "**no**"


def test_a_stopped_provider_run_is_reported_as_stopped_with_a_lower_bound() -> None:
    stopped = {"contender": "theirs", "synthetic_rows": 1_000_000, "process_seconds": 600.5,
               "sampled_peak_rss_kib": 9000 * 1024, "emulator_cpu_seconds": 10.0, "ok": False,
               "stopped": "did not finish in 600 s"}
    lines = _table([_run("ours", 1_000_000, 20.0, 120), _run("plain", 1_000_000, 19.0, 34), stopped])
    row = _row(lines, "1,000,000 synthetic", "Salesforce provider")
    assert row[3] == "did not finish in 600 s (peak RSS ≥ 9000 MB)"
    assert row[4] == "> 30× their rows/s (stopped)" and row[-1] == "yes"
    assert not any("CPU seconds" in line for line in lines)  # no CPU comparison without the provider's figures
