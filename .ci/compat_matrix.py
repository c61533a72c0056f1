"""`make test-compat`: the whole test suite on every Airflow 3 release the package admits.

One fresh virtualenv per row under ``.venv-compat/<row>``, installed the way a user of that
release installs it: this package and that Airflow in one resolve, with only what PyPI had the
day after the release came out (``uv pip install --exclude-newer``), standing in for the
release's constraint file. Rows run one after the other (the machines have 2 cores); each prints
its passed/failed counts; a summary table comes last; the exit status is non-zero if any row
failed. Usage::

    python .ci/compat_matrix.py [--uv PATH] [--only 3.1.8 ...] [-- extra pytest args]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENVS = REPO / ".venv-compat"


@dataclass(frozen=True)
class Row:
    """One matrix row.

    :param airflow: the Airflow release
    :param python: the CPython version under ``$(pyenv root)/versions``
    :param exclude_newer: the day after the release's publication (``--exclude-newer``)
    """

    airflow: str
    python: str
    exclude_newer: str

    @property
    def name(self) -> str:
        return f"af{self.airflow}-py{'.'.join(self.python.split('.')[:2])}"


# Kept in step with pyproject.toml (classifiers, floors) and README "Supported versions"
# (tests/test_compat.py checks that they agree).
ROWS = (
    Row("3.0.6", "3.10.13", "2025-08-30"),  # published 2025-08-29
    Row("3.1.8", "3.11.7", "2026-03-12"),  # published 2026-03-11
    Row("3.2.2", "3.12.1", "2026-05-30"),  # published 2026-05-29
    Row("3.3.2", "3.13.0", "2026-09-18"),  # published 2026-09-17
)


@dataclass
class Result:
    """What a row did."""

    row: Row
    python: str = ""  # the CPython version the row really ran on
    note: str = ""
    install_s: float = 0.0
    suite_s: float = 0.0
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    returncode: int | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.failed == 0 and self.errors == 0 and self.passed > 0


def pyenv_root() -> Path | None:
    try:
        out = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=30, check=True)
        return Path(out.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
        return Path(root) if Path(root).is_dir() else None


def interpreter_for(row: Row) -> tuple[str, str, str]:
    """The row's CPython (path, version, note), or the default Python with a note saying so: a row
    whose interpreter is missing still runs."""
    root = pyenv_root()
    if root is not None:
        candidate = root / "versions" / row.python / "bin" / "python"
        if candidate.exists():
            return str(candidate), row.python, ""
    fallback = shutil.which("python3") or sys.executable
    version = subprocess.run([fallback, "-c", "import platform; print(platform.python_version())"],
                             capture_output=True, text=True, check=True).stdout.strip()
    return (fallback, f"{version} (default)",
            f"CPython {row.python} not found under pyenv: ran on the default Python {version}")


def clean_env() -> dict[str, str]:
    """The caller's environment minus anything that would leak one row's Airflow into another."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "SF_OAUTH", "VIRTUAL_ENV", "PYTHONPATH", "PYTEST_"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # rows share the source tree; keep it clean
    return env


def run_row(row: Row, uv: str, pytest_args: list[str]) -> Result:
    result = Result(row)
    python, result.python, result.note = interpreter_for(row)
    venv = VENVS / row.name
    log_dir = VENVS / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"\n=== {row.name}: Airflow {row.airflow} on {python}"
          f"{' (' + result.note + ')' if result.note else ''}", flush=True)
    env = clean_env()

    started = time.monotonic()
    shutil.rmtree(venv, ignore_errors=True)
    steps = [
        [uv, "venv", "-q", "--python", python, str(venv)],
        [uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), "--exclude-newer", row.exclude_newer,
         "-e", ".[test]", f"apache-airflow=={row.airflow}"],
    ]
    for step in steps:
        done = subprocess.run(step, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            result.install_s = time.monotonic() - started
            result.returncode = done.returncode
            result.failures.append(f"install failed: {' '.join(step)}\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
            print(result.failures[-1], flush=True)
            return result
    result.install_s = time.monotonic() - started
    print(f"installed in {_took(result.install_s)}", flush=True)

    junit = log_dir / f"{row.name}.xml"
    junit.unlink(missing_ok=True)
    started = time.monotonic()
    with (log_dir / f"{row.name}.log").open("w") as log:
        proc = subprocess.Popen(
            [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE",
             f"--junitxml={junit}", "tests", *pytest_args],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
        )
        assert proc.stdout is not None
        for line in proc.stdout:  # live progress in CI, full copy in the log
            log.write(line)
            sys.stdout.write(line)
            sys.stdout.flush()
        result.returncode = proc.wait()
    result.suite_s = time.monotonic() - started
    if junit.exists():
        for case in ET.parse(junit).getroot().iter("testcase"):
            outcome = {child.tag for child in case}
            test_id = f"{case.get('classname')}::{case.get('name')}"
            if "failure" in outcome:
                result.failed += 1
                result.failures.append(test_id)
            elif "error" in outcome:
                result.errors += 1
                result.failures.append(test_id)
            elif "skipped" in outcome:
                result.skipped += 1
            else:
                result.passed += 1
    print(f"--- {row.name}: {result.passed} passed, {result.failed} failed, {result.errors} errors, "
          f"{result.skipped} skipped (exit {result.returncode}); install {_took(result.install_s)} + suite "
          f"{_took(result.suite_s)} = {_took(result.install_s + result.suite_s)}", flush=True)
    return result


def _took(seconds: float) -> str:
    return f"{int(seconds) // 60}m{int(seconds) % 60:02d}s"


def summary(results: list[Result]) -> str:
    head = ("row", "Airflow", "Python", "install", "suite", "row time", "passed", "failed", "errors", "skipped",
            "result")
    rows = [head] + [
        (r.row.name, r.row.airflow, r.python, _took(r.install_s), _took(r.suite_s), _took(r.install_s + r.suite_s),
         str(r.passed), str(r.failed), str(r.errors), str(r.skipped), "ok" if r.ok else "FAILED")
        for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    notes = [f"{r.row.name}: {r.note}" for r in results if r.note]
    notes += [f"{r.row.name} failed: {f}" for r in results for f in r.failures[:20]]
    return "\n".join(lines + notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uv", default=shutil.which("uv") or "uv", help="the uv executable")
    parser.add_argument("--only", nargs="*", default=[], help="Airflow releases to run (default: all rows)")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    rows = [r for r in ROWS if not args.only or r.airflow in args.only]
    started = time.monotonic()
    results = [run_row(row, args.uv, args.pytest_args) for row in rows]
    print(f"\n=== make test-compat: {len(results)} rows in {_took(time.monotonic() - started)}")
    print(summary(results), flush=True)
    return 0 if results and all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
