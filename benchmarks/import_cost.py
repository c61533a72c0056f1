"""Import cost added to DAG parsing (DESIGN §7: ≤ 15 ms over ``airflow.sdk`` for every operator
and sensor module; the existing Salesforce provider's hook adds ~65 ms).

Each sample is a fresh interpreter that imports ``airflow.sdk`` (and resolves the names every DAG
file uses: ``DAG``, ``BaseOperator``, ``BaseSensorOperator``, ``BaseHook``), then times, with
``time.perf_counter``, only the imports under test:

* ``ours`` — ``airflow.triggers.base`` (Airflow's own module, which ``airflow.sdk`` does not load
  and our trigger must subclass; timed apart so that it can be told from ours), then every module
  of ours: ``sf_oauth_provider.operators.revoke``, ``.operators.audit``, ``.sensors.token``,
  ``.triggers.token``, ``.hooks.salesforce_oauth`` (each also timed incrementally, in that order:
  the first four are what a DAG file imports, DESIGN's "operator/sensor modules");
* ``theirs`` — ``airflow.providers.salesforce.hooks.salesforce``.

Variants alternate, so that load from elsewhere on the machine hits both alike. Samples run with
bytecode caching on (``PYTHONDONTWRITEBYTECODE`` removed) after one unrecorded warm-up sample per
variant that writes the ``.pyc`` files, as a deployed scheduler / DAG processor has them.

The ratio DESIGN §7 sets (≤ 0.27×) is ``ours`` / ``theirs``: every module of ours with
``airflow.triggers.base``, over the Salesforce provider's hook. It is taken per round (the two
samples of one round ran back to back) and summarised over the rounds (``ratio``), and printed.

``--baseline DIR`` adds a third variant, interleaved with the other two: the same modules of ours
imported from another source tree (e.g. ``git worktree add /tmp/main main``, or ``git archive``
of a commit), to measure a change before and after in one run.

    python -m benchmarks.import_cost [--repeats 7] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

from benchmarks._common import emit, stats

__all__ = ["OUR_MODULES", "THEIR_MODULES", "main", "sample"]

OUR_MODULES = (
    "sf_oauth_provider.operators.revoke",
    "sf_oauth_provider.operators.audit",
    "sf_oauth_provider.sensors.token",
    "sf_oauth_provider.triggers.token",
    "sf_oauth_provider.hooks.salesforce_oauth",
)
THEIR_MODULES = ("airflow.providers.salesforce.hooks.salesforce",)

_CHILD = r"""
import importlib, json, sys, time
t0 = time.perf_counter()
import airflow.sdk
from airflow.sdk import DAG, BaseHook, BaseOperator, BaseSensorOperator  # noqa: F401
t1 = time.perf_counter()
pre, mods = json.loads(sys.argv[1]), json.loads(sys.argv[2])
before = set(sys.modules)
t2 = time.perf_counter()
for m in pre:
    importlib.import_module(m)
t3 = time.perf_counter()
missing, each = [], {}
for m in mods:
    ta = time.perf_counter()
    try:
        importlib.import_module(m)
    except ImportError as exc:
        missing.append(f"{m}: {exc}")
    each[m] = time.perf_counter() - ta
t4 = time.perf_counter()
origin = getattr(sys.modules.get("sf_oauth_provider"), "__file__", None)
print(json.dumps({"sdk_s": t1 - t0, "pre_s": t3 - t2, "mods_s": t4 - t3, "total_s": t4 - t2,
                  "new_modules": len(set(sys.modules) - before), "missing": missing, "each_s": each,
                  "origin": origin}))
"""


def sample(
    pre: tuple[str, ...], mods: tuple[str, ...], python: str | None = None, source: str | None = None
) -> dict[str, Any]:
    """Import ``pre`` then ``mods`` after ``airflow.sdk`` in a fresh interpreter; its timings.

    :param pre: modules timed apart first (e.g. Airflow's own ``airflow.triggers.base``)
    :param mods: the modules under test
    :param python: interpreter (default: this one)
    :param source: a source tree whose ``sf_oauth_provider`` is imported instead of the installed one
    """
    # Bytecode caching on, as in a deployment (uv installs without compiling .pyc files, and a
    # PYTHONDONTWRITEBYTECODE=1 environment would make every sample compile every module).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if source is not None:  # first on sys.path, and the working directory ("" comes first with -c)
        env["PYTHONPATH"] = source
    out = subprocess.run(
        [python or sys.executable, "-c", _CHILD, json.dumps(list(pre)), json.dumps(list(mods))],
        capture_output=True, text=True, check=True, timeout=300, env=env, cwd=source,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Alternate fresh-interpreter samples of both variants; print JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--baseline", metavar="DIR", help="also sample sf_oauth_provider from this source tree")
    args = p.parse_args(argv)

    ours = (("airflow.triggers.base",), OUR_MODULES)
    variants: dict[str, tuple[tuple[str, ...], tuple[str, ...], str | None]] = {
        "ours": (*ours, None), "theirs": ((), THEIR_MODULES, None),
    }
    if args.baseline:
        variants["baseline"] = (*ours, os.path.abspath(args.baseline))
    samples: dict[str, list[dict[str, Any]]] = {k: [] for k in variants}
    for pre, mods, source in variants.values():  # write .pyc files and warm the page cache; not recorded
        sample(pre, mods, source=source)
    for i in range(args.repeats):
        for name, (pre, mods, source) in variants.items():
            samples[name].append(sample(pre, mods, source=source))
        print(f"# import cost {i + 1}/{args.repeats}: "
              + ", ".join(f"{k} {v[-1]['total_s'] * 1000:.1f} ms" for k, v in samples.items()), file=sys.stderr, flush=True)

    result: dict[str, Any] = {
        "sdk_s": stats([s["sdk_s"] for v in samples.values() for s in v]),
        "our_modules": list(OUR_MODULES),
        "their_modules": list(THEIR_MODULES),
    }
    for name, v in samples.items():
        result[name] = {
            "total_s": stats([s["total_s"] for s in v]),
            "pre_s": stats([s["pre_s"] for s in v]),
            "mods_s": stats([s["mods_s"] for s in v]),
            # incremental: each module's import after the ones before it in the list
            "each_s": {m: stats([s["each_s"][m] for s in v]) for m in v[-1]["each_s"]},
            "new_modules": v[-1]["new_modules"],
            "missing": v[-1]["missing"],
            "origin": v[-1]["origin"],
        }
        if name != "theirs":  # per round: this variant's total over theirs, sampled next to it
            result[name]["ratio"] = stats(
                [s["total_s"] / t["total_s"] for s, t in zip(v, samples["theirs"], strict=True)]
            )
    for name in samples:
        if name != "theirs":
            r = result[name]["ratio"]
            print(f"# import cost, {name} / theirs (every module of ours incl. the hook and airflow.triggers.base, "
                  f"over the Salesforce provider's hook): median {r['median']:.2f}× (min {r['min']:.2f}×, "
                  f"max {r['max']:.2f}×, {r['n']} interleaved rounds); DESIGN §7 target ≤ 0.27×",
                  file=sys.stderr, flush=True)
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
