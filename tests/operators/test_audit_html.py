"""audit.html in a real browser: headless Chromium with JavaScript off renders the whole page
from the file alone (no request leaves it). The screenshot goes to the test's temporary folder; with
SF_OAUTH_UPDATE_DOCS=1 it replaces docs/audit-report.png (the suite never rewrites a tracked file
unasked)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from sf_oauth_provider.operators.audit import SalesforceTokenAuditOperator
from tests.operators.test_audit import context

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[2]
DOCS_SCREENSHOT = REPO / "docs" / "audit-report.png"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def test_audit_page_renders_in_chromium_without_javascript(sf_connections, emulator, tmp_path):
    screenshot = DOCS_SCREENSHOT if os.environ.get("SF_OAUTH_UPDATE_DOCS") == "1" else tmp_path / "audit-report.png"
    from playwright.sync_api import expect, sync_playwright

    org = emulator.org
    report_dir = tmp_path / "audit"
    SalesforceTokenAuditOperator(task_id="audit", report_dir=str(report_dir)).execute(context())
    token = org.mint_tokens(1, app="Legacy ETL", user="integration@demo.example", kind="refresh")[0]
    org.approvals[token].created = org.clock.now() - 400 * 86400
    org.app_by_name_or_key("Tableau").name = "Tableau <script>document.title='pwned'</script>"
    result = SalesforceTokenAuditOperator(task_id="audit", report_dir=str(report_dir)).execute(context())
    page_url = Path(result["report_files"]["html"]).as_uri()

    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 1000}).new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_url, wait_until="load")
            expect(page.get_by_role("heading", name="Salesforce OAuth token audit")).to_be_visible()
            header = page.locator("header").inner_text()
            assert org.org_id in header and emulator.base_url in header
            assert re.search(r"Compared with the audit of .*: 1 new", header)
            expect(page.get_by_role("img", name="Token age by app")).to_be_visible()
            rows = page.locator("main table").last.locator("tbody tr")
            assert rows.count() == result["counts"]["findings"]
            first = page.locator("h2:has-text('Findings') + table tbody tr").first
            assert first.locator(".badge").first.inner_text() in ("critical", "high")
            new_rows = page.locator("tr:has(.badge.new)")
            assert new_rows.count() == 1 and token not in page.content()
            # the hostile app name is text, not a script
            assert page.title().startswith("Salesforce OAuth token audit")
            assert page.locator("script").count() == 0
            expect(page.get_by_text("Tableau <script>", exact=False).first).to_be_visible()
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=False)
        finally:
            browser.close()
    assert [u for u in requests if not u.startswith("file://")] == []
    assert requests == [page_url]  # one file, no external assets
    assert screenshot.stat().st_size > 20_000
