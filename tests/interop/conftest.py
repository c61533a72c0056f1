"""Fixtures for third-party clients: one emulator in ``--tls`` mode (these clients build
``https://`` URLs themselves), and a requests session that trusts its CA."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from requests.adapters import HTTPAdapter

from sf_oauth_provider.emulator import RunningEmulator, seed_demo_org, serve


@pytest.fixture(scope="session")
def tls_emulator_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    """One https emulator (seed 42) for the session; its CA is ``.ca_bundle``."""
    with serve(seed_demo_org(42), tls_dir=tmp_path_factory.mktemp("tls-emulator")) as running:
        yield running


@pytest.fixture
def tls_emulator(tls_emulator_server: RunningEmulator) -> RunningEmulator:
    """The https emulator, freshly reset for this test."""
    tls_emulator_server.org.reset()
    return tls_emulator_server


class SalesforceHostsToEmulator(HTTPAdapter):
    """Stands in for DNS: simple-salesforce logs in at ``https://{domain}.salesforce.com``, so
    requests for login./test.salesforce.com go to the emulator's ``/login`` and ``/test``, and
    a My Domain (``*.my.salesforce.com``) to its root. Everything after login goes to the
    ``instance_url`` the emulator returned, without this adapter."""

    def __init__(self, base_url: str, ca_bundle: str) -> None:
        super().__init__()
        self.base = urlsplit(base_url)
        self.ca_bundle = ca_bundle

    def send(self, request: requests.PreparedRequest, **kwargs):  # type: ignore[override]
        url = urlsplit(request.url or "")
        if url.hostname and url.hostname.endswith(".salesforce.com"):
            prefix = {"login.salesforce.com": "/login", "test.salesforce.com": "/test"}.get(url.hostname, "")
            request.url = urlunsplit((self.base.scheme, self.base.netloc, prefix + url.path, url.query, ""))
        # requests lets REQUESTS_CA_BUNDLE override Session.verify: insist on the emulator's CA
        kwargs["verify"] = self.ca_bundle
        return super().send(request, **kwargs)


@pytest.fixture
def sf_session(tls_emulator: RunningEmulator) -> Iterator[requests.Session]:
    """A requests session for simple-salesforce: trusts the emulator's CA; *.salesforce.com → emulator."""
    session = requests.Session()
    adapter = SalesforceHostsToEmulator(tls_emulator.base_url, tls_emulator.ca_bundle)
    for host in ("login.salesforce.com", "test.salesforce.com", "demo.my.salesforce.com"):
        session.mount(f"https://{host}", adapter)
    session.mount(tls_emulator.base_url, adapter)
    yield session
    session.close()


@pytest.fixture
def key_file(tls_emulator: RunningEmulator, tmp_path: Path) -> Path:
    """The demo JWT app's private key as a file."""
    path = tmp_path / "demo_private_key.pem"
    path.write_text(tls_emulator.org.demo.jwt_private_key_pem)
    path.chmod(0o600)
    return path


JSFORCE_VERSION = "3.10.16"


@pytest.fixture(scope="session")
def jsforce_dir() -> Path:
    """jsforce installed with npm into the checkout's ``.cache/jsforce`` (once; reused by later runs).
    ``make test`` installs Node.js and npm when missing; without them the test fails (a skipped
    interop test would pass for nothing)."""
    import shutil
    import subprocess

    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        pytest.fail("npm/node not installed: the jsforce interop tests need Node.js and npm (make test installs "
                    "the Debian packages nodejs and npm)")
    target = Path(__file__).resolve().parents[2] / ".cache" / "jsforce"
    if not (target / "node_modules" / "jsforce" / "package.json").exists():
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--silent", "--prefix", str(target),
                        f"jsforce@{JSFORCE_VERSION}"], check=True, timeout=300, capture_output=True)
    return target
