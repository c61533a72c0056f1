"""The status page on a real Airflow API server: mounted by the provider's plugin, refused to an
anonymous caller, its data free of secrets, rendered in Chromium, linked in the menu (>= 3.1).

One api-server (127.0.0.1, its own temp ``AIRFLOW_HOME``) for the module. A "task" — a separate
Python process with the stack's environment — fetches a token from the emulator into the shared
file store first, and another one fails permanently; the page must show both without asking
Salesforce anything itself.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from sf_oauth_provider.demo import airflow_env, migrate
from sf_oauth_provider.emulator import RunningEmulator
from sf_oauth_provider.emulator.connections import write_connections_file
from tests.airflow_compat import airflow_release
from tests.e2e.stack import AirflowStack, free_port, stack_settings
from tests.e2e.test_stack import CHROMIUM, CHROMIUM_ARGS
from tests.operators.test_audit import all_secrets, assert_no_secret, context

pytestmark = [pytest.mark.stack, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
ADMIN = "admin"
SCREENSHOT = REPO / "docs" / "ui-page.png"
SCREENSHOT_RELEASE = (3, 3)
MENU = airflow_release() >= (3, 1)
# 3.0's API reads only the bearer header (its UI keeps the JWT in local storage and deletes the
# `_token` cookie), so a browser that opens the page has no credential to send: there the page is
# rendered with the header set, as a script would; from 3.1 the browser's cookie is enough
BROWSER_COOKIE = airflow_release() >= (3, 1)
WRONG_USER = "sf_wrong_user"

_TASK = """
import sys
from sf_oauth_provider.hooks.salesforce_oauth import SalesforceOAuthHook
try:
    print(SalesforceOAuthHook(sys.argv[1]).get_token().fingerprint)
except Exception as exc:
    print(type(exc).__name__)
"""


@dataclass
class PageStack:
    stack: AirflowStack
    emulator: RunningEmulator
    connections: dict[str, dict[str, Any]]
    fingerprint: str
    audit_counts: dict[str, Any]


def _task(env: dict[str, str], conn_id: str) -> str:
    done = subprocess.run([sys.executable, "-c", _TASK, conn_id], env=env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def _audit(report_dir: Path, env_conns: dict[str, str]) -> dict[str, Any]:
    from sf_oauth_provider.operators.audit import SalesforceTokenAuditOperator

    with pytest.MonkeyPatch.context() as mp:
        for name, value in env_conns.items():
            mp.setenv(name, value)
        return SalesforceTokenAuditOperator(task_id="audit", report_dir=str(report_dir)).execute(
            context())["counts"]


@pytest.fixture(scope="module")
def page_stack(emulator_server: RunningEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PageStack]:
    emulator = emulator_server
    emulator.org.reset()
    base = tmp_path_factory.mktemp("ui-stack")
    connections = write_connections_file(emulator, base / "connections.json", base / "demo_private_key.pem")
    default = connections["salesforce_oauth_default"]
    wrong = {**default, "extra": {**default["extra"], "username": "nobody@example.com"}}
    port = free_port()
    settings, password = stack_settings(base, port, ADMIN)
    env = airflow_env(base / "airflow", REPO / "dags_examples",
                      {"salesforce_oauth_default": default, WRONG_USER: wrong}, base / "token-cache", base / "out")
    env.update({
        **settings, "AIRFLOW__SF_OAUTH__AUDIT_REPORT_DIR": str(base / "audit"),
        # Airflow (3.3.2: plugins_manager._get_plugins) loads provider plugins only when providers
        # are discovered eagerly; the README says so
        "AIRFLOW__CORE__LAZY_DISCOVER_PROVIDERS": "False",
    })
    migrate(env)
    fingerprint = _task(env, "salesforce_oauth_default")
    assert fingerprint.startswith("sha256:"), fingerprint
    assert _task(env, WRONG_USER) == "SalesforceAuthError"
    counts = _audit(base / "audit", {k: v for k, v in env.items() if k.startswith("AIRFLOW_CONN_")})
    stack = AirflowStack(base / "airflow", env, port, components={"api-server": ["api-server", "-H", "127.0.0.1",
                                                                                 "-p", "{port}"]})
    try:
        stack.start()
        stack.wait_healthy(required=())
        stack.login(ADMIN, password)
        # one more connection, stored in the metadata DB only
        resp = stack.api.post("/api/v2/connections", json={
            "connection_id": "sf_in_db", "conn_type": "salesforce_oauth", "host": default["host"],
            "login": default["login"], "password": default["password"], "extra": json.dumps(default["extra"]),
        })
        assert resp.status_code == 201, resp.text
        yield PageStack(stack, emulator, connections, fingerprint, counts)
    finally:
        stack.stop()


def test_an_anonymous_or_forged_request_is_refused(page_stack: PageStack) -> None:
    base = page_stack.stack.base_url
    for path in ("/sf-oauth/api/status", "/sf-oauth/", "/sf-oauth/audit.html"):
        anonymous = httpx.get(base + path, timeout=30)
        assert anonymous.status_code in (401, 403), (path, anonymous.status_code, anonymous.text[:300])
        assert "salesforce_oauth_default" not in anonymous.text
        forged = httpx.get(base + path, headers={"Authorization": "Bearer not-a-jwt"}, timeout=30)
        assert forged.status_code in (401, 403), (path, forged.status_code)
        cookie = httpx.get(base + path, cookies={"_token": "not-a-jwt"}, timeout=30)
        assert cookie.status_code in (401, 403), (path, cookie.status_code)


def test_logged_in_status_has_the_rows_and_no_secret(page_stack: PageStack) -> None:
    requests_before = page_stack.emulator.org.count("token")
    resp = page_stack.stack.api.get("/sf-oauth/api/status")
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "no-store"
    data = resp.json()
    rows = {r["conn_id"]: r for r in data["connections"]}
    assert set(rows) == {"salesforce_oauth_default", WRONG_USER, "sf_in_db"}
    ok = rows["salesforce_oauth_default"]
    assert (ok["state"], ok["fingerprint"], ok["layer"]) == ("valid", page_stack.fingerprint, "file")
    assert ok["expires_in_seconds"] > 300 and ok["last_error"] is None
    bad = rows[WRONG_USER]
    assert bad["state"] == "failing" and bad["fingerprint"] is None
    assert bad["last_error"]["error"] == "SalesforceAuthError" and "username" in bad["last_error"]["hint"]
    assert rows["sf_in_db"]["state"] == "valid"  # same credentials: the same cached token
    assert data["audit"]["summary"] == page_stack.audit_counts and data["audit"]["html"] is True
    audit_html = page_stack.stack.api.get("/sf-oauth/audit.html")
    assert audit_html.status_code == 200 and "<html" in audit_html.text.lower()
    page = page_stack.stack.api.get("/sf-oauth/")
    assert page.status_code == 200 and page_stack.fingerprint in page.text
    # nothing here asked Salesforce for a token
    assert page_stack.emulator.org.count("token") == requests_before
    secrets = all_secrets(page_stack.emulator.org) + [page_stack.connections["salesforce_oauth_default"]["password"]]
    assert_no_secret([resp.text, page.text, audit_html.text, page_stack.stack.output("api-server")], secrets)


def test_the_page_renders_in_chromium(page_stack: PageStack, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    stack = page_stack.stack
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            if BROWSER_COOKIE:
                ctx = browser.new_context(viewport={"width": 1200, "height": 700})
                ctx.add_cookies([{"name": "_token", "value": stack.token, "url": stack.base_url}])
            else:
                ctx = browser.new_context(viewport={"width": 1200, "height": 700},
                                          extra_http_headers={"Authorization": f"Bearer {stack.token}"})
            page = ctx.new_page()
            outside: list[str] = []
            page.on("request", lambda r: None if r.url.startswith(stack.base_url) else outside.append(r.url))
            page.goto(f"{stack.base_url}/sf-oauth/", wait_until="networkidle")
            table = page.get_by_role("table")
            row = table.get_by_role("row").filter(has_text="salesforce_oauth_default")
            assert "valid" in row.inner_text() and page_stack.fingerprint in row.inner_text()
            failing = table.get_by_role("row").filter(has_text=WRONG_USER)
            assert "failing" in failing.inner_text()
            assert "invalid_grant" in failing.inner_text()
            assert "extra 'username'" in failing.locator(".hint").inner_text()
            link = page.get_by_role("link", name="open the report")
            assert link.get_attribute("href") == "/sf-oauth/audit.html"
            assert outside == [], outside
            shot = tmp_path / SCREENSHOT.name
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    # the README's picture: the newest release's page, written when missing or asked for
    if airflow_release() == SCREENSHOT_RELEASE and (
        not SCREENSHOT.exists() or os.environ.get("SF_OAUTH_UPDATE_DOCS") == "1"
    ):
        shutil.copyfile(shot, SCREENSHOT)


def test_the_menu_links_the_page(page_stack: PageStack) -> None:
    plugins = page_stack.stack.api.get("/api/v2/plugins").json()["plugins"]
    (ours,) = [p for p in plugins if p["name"] == "sf_oauth"]
    assert [a["url_prefix"] for a in ours["fastapi_apps"]] == ["/sf-oauth"]
    if not MENU:  # 3.0: no external views; the page is reached by its URL (README)
        assert not ours.get("external_views")
        return
    (view,) = ours["external_views"]
    assert (view["name"], view["href"], view["category"]) == ("Salesforce OAuth", "/sf-oauth/", "browse")

    from playwright.sync_api import sync_playwright

    stack = page_stack.stack
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            ctx = browser.new_context(viewport={"width": 1200, "height": 800})
            ctx.add_cookies([{"name": "_token", "value": stack.token, "url": stack.base_url}])
            page = ctx.new_page()
            page.goto(f"{stack.base_url}/", wait_until="networkidle")
            page.get_by_role("button", name=re.compile("^Browse$", re.I)).click()
            page.get_by_role("menuitem", name="Salesforce OAuth").click()
            page.wait_for_url(re.compile(r"/plugin/sf-oauth$"), timeout=20_000)
            frame = page.frame_locator("iframe")
            frame.get_by_role("heading", name="Salesforce OAuth").wait_for(timeout=20_000)
            assert page_stack.fingerprint in frame.locator("table").inner_text()
        finally:
            browser.close()
