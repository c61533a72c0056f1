"""The compatibility seam (sf_oauth_provider._compat) on whichever Airflow 3 release is installed.

`make test-compat` runs this file (with the rest of the suite) on 3.0.6, 3.1.8, 3.2.2 and 3.3.2;
each test asserts what a user of the installed release sees.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.metadata
import importlib.util
import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sf_oauth_provider import _compat
from tests.airflow_compat import redact

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "sf_oauth_provider"

# Airflow names whose home differs between releases: only _compat.py may import them directly.
_MOVED = {
    "airflow.sdk": {"BaseHook", "conf"},
    "airflow.sdk.exceptions": None,  # every name in it (AirflowFailException first exists there in 3.2)
    "airflow.sdk.log": {"amask_secret", "mask_secret", "redact"},
    "airflow.exceptions": None,
    "airflow.configuration": None,
    "airflow.hooks.base": None,
}


def _forbidden_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("airflow.sdk._shared") or node.module.startswith("airflow._shared"):
                found.append(f"{path.relative_to(REPO)}:{node.lineno} from {node.module}")
            elif node.module in _MOVED:
                names = _MOVED[node.module]
                bad = [a.name for a in node.names if names is None or a.name in names]
                if bad:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} from {node.module} import {', '.join(bad)}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in _MOVED and _MOVED[alias.name] is None:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} import {alias.name}")
    return found


def test_release_specific_airflow_names_are_imported_only_through_the_seam():
    offenders = [
        hit
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "_compat.py"
        for hit in _forbidden_imports(path)
    ]
    assert not offenders, "import these through sf_oauth_provider._compat:\n" + "\n".join(offenders)


def test_tests_reach_release_specific_names_through_their_helper():
    """A test importing ``airflow.sdk.exceptions`` directly cannot even be collected on 3.0/3.1."""
    tests = REPO / "tests"
    skip = {tests / "airflow_compat.py", tests / "test_compat.py"}
    offenders = [
        hit
        for path in sorted(tests.rglob("*.py"))
        if path not in skip
        for hit in _forbidden_imports(path)
        if not hit.endswith("import AirflowNotFoundException")  # airflow.exceptions has it on every 3.x
    ]
    assert not offenders, "import these through tests/airflow_compat.py:\n" + "\n".join(offenders)


def test_the_seam_finds_the_classes_the_installed_task_runner_handles():
    # airflow.exceptions holds, on every 3.x release, the classes its task runner catches (3.0 and
    # 3.1 define them there; 3.2+ re-export the SDK's): the provider must raise those very classes,
    # or a permanent failure is retried and a skip becomes a failure.
    import airflow.exceptions as core

    for name in ("AirflowFailException", "AirflowSkipException", "AirflowSensorTimeout", "TaskDeferred"):
        assert getattr(_compat, name) is getattr(core, name), name
    assert issubclass(_compat.AirflowFailException, _compat.AirflowException)


def test_every_airflow_facing_module_imports():
    # what `airflow providers hooks` and the DAG parser do first; an ImportError here is what
    # users of an older release saw
    for module in ("hooks.salesforce_oauth", "operators.revoke", "operators.audit", "sensors.token",
                   "triggers.token", "masking"):
        assert importlib.import_module(f"sf_oauth_provider.{module}")


def test_airflow_providers_hooks_lists_the_hook_without_an_import_error(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(AIRFLOW_HOME=str(tmp_path / "airflow"), AIRFLOW__CORE__LOAD_EXAMPLES="False")
    done = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "hooks", "--output", "json"],
        env=env, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert "Error when importing" not in output and "Exception when importing" not in output, output[-3000:]
    # 3.0 prints its own log lines to stdout too: the JSON is the line that starts with '[{'
    (listing,) = [line for line in done.stdout.splitlines() if line.startswith("[{")]
    hooks = {h["connection_type"]: h for h in json.loads(listing)}
    hook = hooks["salesforce_oauth"]
    assert hook["class"] == "sf_oauth_provider.hooks.salesforce_oauth.SalesforceOAuthHook"
    assert hook["package_name"] == "sf-oauth-provider" and hook["hook_name"] == "Salesforce OAuth"


def test_mask_secret_masks_in_this_process():
    value = "sf-compat-" + secrets.token_hex(12)
    _compat.mask_secret(value)
    assert redact(f"token={value}!") == "token=***!"


def test_the_masker_secrets_masker_gives_is_the_one_airflow_redacts_with():
    # under `airflow dags test`, mask_secret adds to it directly (no MaskSecret request)
    value = "sf-compat-direct-" + secrets.token_hex(12)
    _compat.secrets_masker().add_mask(value)
    assert redact(f"token={value}!") == "token=***!"


async def test_amask_secret_masks_before_it_returns():
    value = "sf-compat-async-" + secrets.token_hex(12)
    await _compat.amask_secret(value)
    assert redact(f"token={value}!") == "token=***!"


class _TriggererComms:
    """Stands in for the triggerer's supervisor channel (``TriggerCommsDecoder`` of 3.0–3.3): its
    sync ``send`` goes through asgiref's ``async_to_sync``, which refuses to run on the event
    loop's own thread. A real triggerer runs in tests/e2e; this one shows what was told to it."""

    def __init__(self) -> None:
        self.told: list[Any] = []
        self.loop = asyncio.get_running_loop()

    def send(self, msg: Any) -> None:
        from asgiref.sync import async_to_sync

        return async_to_sync(self.asend)(msg)

    async def asend(self, msg: Any) -> None:
        assert asyncio.get_running_loop() is self.loop  # bridged onto the trigger's loop
        self.told.append(msg)


async def test_amask_secret_in_a_triggerer_tells_the_supervisor_and_masks(monkeypatch: pytest.MonkeyPatch):
    from airflow.sdk.execution_time import task_runner

    comms = _TriggererComms()
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", comms, raising=False)
    value = "sf-compat-trigger-" + secrets.token_hex(12)
    await _compat.amask_secret(value)
    assert [m.value for m in comms.told] == [value]
    assert redact(f"token={value}!") == "token=***!"


async def test_aget_connection_on_an_event_loop(set_connection):
    set_connection("sf_compat_async", {"conn_type": "salesforce_oauth", "host": "https://login.example",
                                       "login": "3MVG9compat"})
    conn = await _compat.BaseHook.aget_connection("sf_compat_async")
    assert conn.login == "3MVG9compat" and conn.conn_type == "salesforce_oauth"


def test_a_feature_needing_a_newer_release_says_which():
    with pytest.raises(_compat.AirflowVersionError) as err:
        _compat.requires_airflow("99.1.0", "Frobnicating tokens")
    message = str(err.value)
    assert "Frobnicating tokens needs Apache Airflow 99.1.0 or newer" in message
    assert _compat.AIRFLOW_VERSION in message
    _compat.requires_airflow(_compat.AIRFLOW_VERSION, "anything the installed release has")
    _compat.requires_airflow("3.0.0", "anything 3.0 has")


# ---- the declared range is the matrix ----------------------------------------------------------
def _matrix_rows() -> list[Any]:
    spec = importlib.util.spec_from_file_location("compat_matrix", REPO / ".ci" / "compat_matrix.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["compat_matrix"] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop("compat_matrix", None)
    return list(module.ROWS)


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def test_classifiers_readme_and_floors_agree_with_the_matrix():
    rows = _matrix_rows()
    meta = importlib.metadata.metadata("sf-oauth-provider")
    pythons = sorted({c.rsplit(" :: ", 1)[1] for c in meta.get_all("Classifier") or []
                      if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)}, key=lambda v: int(v.split(".")[1]))
    assert pythons == [_minor(r.python) for r in rows]
    assert meta["Requires-Python"] == f">={pythons[0]}"
    airflow_req = [r for r in meta.get_all("Requires-Dist") or [] if re.match(r"apache-airflow\b(?!-)", r)]
    assert airflow_req and set(re.sub(r"\s|apache-airflow", "", airflow_req[0]).split(",")) == {
        f">={_minor(rows[0].airflow)}", "<4"}
    assert [_minor(r.airflow) for r in rows] == [f"3.{i}" for i in range(len(rows))]  # no minor left out

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Supported versions", 1)[1].split("\n## ", 1)[0]
    table = [[c.strip().strip("`") for c in line.strip().strip("|").split("|")]
             for line in section.splitlines() if line.startswith("| 3.")]
    assert [(t[0], t[1], t[2]) for t in table] == [(_minor(r.airflow), r.airflow, _minor(r.python)) for r in rows]
