"""``.ci/run``, the CI entry point: every stage's time, a table at the end, and a red build when
any stage fails. Runs the real script with bash; ``make`` is a stand-in on ``PATH`` that records
what CI asked for (the real stages take 40 minutes) and fails the stage named in ``FAIL_STAGE``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

FAKE_MAKE = """#!/bin/sh
echo "make $*" >> "$CALLS"
case " $* " in *" $FAIL_STAGE "*) echo "stage broke" >&2; exit 3;; esac
exit 0
"""


def run_ci(tmp_path: Path, fail: str = "", budget: str = "60") -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    make = bin_dir / "make"
    make.write_text(FAKE_MAKE)
    make.chmod(0o755)
    calls = tmp_path / "calls"
    calls.write_text("")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls), "FAIL_STAGE": fail or "-",
           "CI_BUDGET_MIN": budget}
    env.pop("PYTEST_ARGS", None)
    done = subprocess.run(["bash", str(REPO / ".ci" / "run")], capture_output=True, text=True, env=env, timeout=60,
                          stdin=subprocess.DEVNULL)
    return done, calls.read_text().splitlines()


def test_every_stage_runs_with_its_time_and_the_slowest_tests(tmp_path: Path) -> None:
    done, calls = run_ci(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert calls == ["make venv", "make lint", "make test PYTEST_ARGS=--durations=15",
                     "make test-compat PYTEST_ARGS=--durations=15"]
    for stage in ("venv", "lint", "test", "compat"):
        assert f"=== stage {stage}: ok in 0m0" in done.stdout
    table = done.stdout.split("=== CI stages", 1)[1]
    assert [line.split()[:2] for line in table.splitlines()[2:6]] == [
        ["venv", "ok"], ["lint", "ok"], ["test", "ok"], ["compat", "ok"]]
    assert "total: 0m0" in table and "budget 60 min" in table and "CI passed" in table
    assert "WARNING" not in table


@pytest.mark.parametrize("stage,ran", [("lint", 2), ("test", 3), ("test-compat", 4)])
def test_a_failing_stage_fails_ci_with_its_status_and_stops_it(tmp_path: Path, stage: str, ran: int) -> None:
    done, calls = run_ci(tmp_path, fail=stage)
    assert done.returncode == 3
    assert len(calls) == ran  # nothing after the failing stage
    name = "compat" if stage == "test-compat" else stage
    assert f"=== stage {name}: FAILED (exit 3) in " in done.stdout
    table = done.stdout.split("=== CI stages", 1)[1]
    assert f"{name} " in table and "FAILED (exit 3)" in table and "CI FAILED (exit 3)" in table


def test_over_budget_is_said(tmp_path: Path) -> None:
    done, _ = run_ci(tmp_path, budget="-1")
    assert done.returncode == 0
    assert "WARNING: CI took longer than its -1-minute budget" in done.stdout
