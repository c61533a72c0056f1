"""The client is usable from any Python program: importing it loads no Airflow module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_client_modules_import_without_airflow():
    code = (
        "import sys\n"
        "import sf_oauth_provider.client.assertion, sf_oauth_provider.client.auth, sf_oauth_provider.client.cache\n"
        "import sf_oauth_provider.client.config, sf_oauth_provider.client.errors, sf_oauth_provider.client.masking\n"
        "import sf_oauth_provider.client.oauth, sf_oauth_provider.client.responses, sf_oauth_provider.client.token\n"
        "import sf_oauth_provider.client.provider, sf_oauth_provider.client.singleflight, sf_oauth_provider.client.stores\n"
        "import sf_oauth_provider.client.transport, sf_oauth_provider.data.rest\n"
        "from sf_oauth_provider.client import OAuthConfig, TokenProvider\n"
        "print(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
