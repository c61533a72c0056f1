"""jsforce (Node), which many Salesforce users run, against the TLS-mode emulator: record create
and upsert, a refused create, and ``bulk2.loadAndWaitForResults``. jsforce is installed with npm
into the repository's ``.cache/`` once; the test skips only when npm (or node) is absent."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import requests

from sf_oauth_provider.emulator import RunningEmulator
from tests.emulator._util import JWT_GRANT, assertion

SCRIPT = Path(__file__).with_name("js") / "jsforce_dml.js"


def test_jsforce_dml_and_bulk2_ingest(tls_emulator: RunningEmulator, jsforce_dir: Path) -> None:
    assert tls_emulator.ca_bundle is not None
    tls_emulator.org.settings.update({"bulk_ingest_delay": 0.2})
    r = requests.post(
        f"{tls_emulator.login_url}/services/oauth2/token",
        data={"grant_type": JWT_GRANT, "assertion": assertion(tls_emulator)},
        verify=tls_emulator.ca_bundle, timeout=10,
    )
    assert r.status_code == 200, r.text
    env = {
        "PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", ""),
        "NODE_EXTRA_CA_CERTS": tls_emulator.ca_bundle, "JSFORCE_DIR": str(jsforce_dir),
        "SF_INSTANCE_URL": tls_emulator.base_url, "SF_ACCESS_TOKEN": r.json()["access_token"],
    }
    proc = subprocess.run(["node", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])

    assert out["created"]["success"] is True and out["created"]["id"].startswith("001")
    assert out["upserted"]["success"] is True and out["upserted"]["created"] is True
    assert out["refused"]["errorCode"] == "REQUIRED_FIELD_MISSING"
    assert out["refused"]["message"] == "Required fields are missing: [StageName, CloseDate]"
    bulk = out["bulk"]
    assert sorted(r["Name"] for r in bulk["successfulResults"]) == ["JS Bulk 1", "JS Bulk 2"]
    assert all(r["sf__Created"] == "true" and r["sf__Id"].startswith("001") for r in bulk["successfulResults"])
    assert [f["sf__Error"] for f in bulk["failedResults"]] == [
        "REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --"
    ]
    assert bulk["unprocessedRecords"] == []
    queried = {q["Name"]: q["Id"] for q in out["queried"]}
    assert queried == {
        "JS Bulk 1": next(r["sf__Id"] for r in bulk["successfulResults"] if r["Name"] == "JS Bulk 1"),
        "JS Bulk 2": next(r["sf__Id"] for r in bulk["successfulResults"] if r["Name"] == "JS Bulk 2"),
        "Jsforce Co": out["created"]["id"],
    }
