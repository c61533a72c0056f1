"""jsforce (Node.js), the client of the Salesforce CLI and many integrations, against the
emulator in TLS mode: ``conn.identity()`` (the version's resource list, then the identity URL
with ``format=json``), ``conn.search()`` (SOSL), ``conn.query()``. jsforce is installed with npm
into ``.cache/jsforce`` in the checkout once; the emulator's CA is trusted with
``NODE_EXTRA_CA_CERTS``. Skipped only when npm (Node.js) is not installed."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest

from sf_oauth_provider.emulator import RunningEmulator
from tests.emulator._util import JWT_GRANT, assertion

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
const jsforce = require('jsforce');
(async () => {
  const conn = new jsforce.Connection({
    instanceUrl: process.env.SF_INSTANCE_URL, accessToken: process.env.SF_TOKEN, version: '64.0',
  });
  const identity = await conn.identity();
  const search = await conn.search('FIND {Acme} IN NAME FIELDS RETURNING Account(Id, Name)');
  const query = await conn.query('SELECT Id, Name FROM Account ORDER BY Name LIMIT 3');
  let shortTerm = null;
  try { await conn.search('FIND {a}'); } catch (e) { shortTerm = { name: e.name, message: e.message }; }
  console.log(JSON.stringify({ identity, search, query, shortTerm }));
})().catch((e) => { console.error(e.stack || String(e)); process.exit(1); });
"""


@pytest.fixture
def node_modules(jsforce_dir: Path) -> Path:
    return jsforce_dir / "node_modules"


def _run(node_modules: Path, tmp_path: Path, env: dict[str, str]) -> dict:
    script = tmp_path / "jsforce_check.js"
    script.write_text(SCRIPT)
    proc = subprocess.run(
        [shutil.which("node") or "node", str(script)], capture_output=True, text=True, timeout=60,
        env={**os.environ, "NODE_PATH": str(node_modules), **env},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_jsforce_identity_and_search(node_modules: Path, tls_emulator: RunningEmulator, tmp_path: Path) -> None:
    verify = ssl.create_default_context(cafile=tls_emulator.ca_bundle)
    with httpx.Client(verify=verify, timeout=10) as http:
        r = http.post(f"{tls_emulator.login_url}/services/oauth2/token",
                      data={"grant_type": JWT_GRANT, "assertion": assertion(tls_emulator)})
    login = r.json()
    out = _run(node_modules, tmp_path, {
        "NODE_EXTRA_CA_CERTS": tls_emulator.ca_bundle, "SF_INSTANCE_URL": login["instance_url"],
        "SF_TOKEN": login["access_token"],
    })
    ident = out["identity"]
    assert ident["id"] == login["id"] and ident["username"] == tls_emulator.org.demo.jwt_username
    assert ident["urls"]["rest"].endswith("/services/data/v{version}/")
    acme = next(a for a in tls_emulator.org.accounts if a["Name"] == "Acme Corporation")
    assert out["search"]["searchRecords"] == [{
        "attributes": {"type": "Account", "url": f"/services/data/v64.0/sobjects/Account/{acme['Id']}"},
        "Id": acme["Id"], "Name": "Acme Corporation",
    }]
    names = sorted(a["Name"] for a in tls_emulator.org.accounts)[:3]
    assert [rec["Name"] for rec in out["query"]["records"]] == names
    assert out["shortTerm"]["name"] == "INVALID_SEARCH" and "longer than one character" in out["shortTerm"]["message"]
    # the resource list and the identity URL were each asked once
    assert tls_emulator.org.count("identity") == 1
