"""Leak scan: every operator and sensor path with DEBUG logging for the package, httpx and httpcore.

Known secrets — every token the emulator issued (DeleteTokens included), every consumer secret, the
private key — must not appear in logs, exception messages, return values/XCom, reports or the
token cache files. (The example DAGs are scanned the same way in tests/examples and tests/e2e.)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from tests.airflow_compat import AirflowException

from sf_oauth_provider.client.token import fingerprint
from sf_oauth_provider.operators.audit import SalesforceTokenAuditOperator
from sf_oauth_provider.operators.revoke import SalesforceRevokeTokenOperator
from sf_oauth_provider.sensors.token import SalesforceTokenSensor
from tests.operators.test_audit import context


def test_every_operator_path_leaks_nothing(emulator, sf_connections, set_connection, cache_dir, tmp_path, caplog, capfd):
    for name in ("sf_oauth_provider", "httpx", "httpcore", "airflow.task"):
        caplog.set_level(logging.DEBUG, logger=name)
    org = emulator.org
    seen: list[str] = []  # return values, XCom, exception texts

    def run(op, expect_error: bool = False):
        ctx = context()
        try:
            result = op.execute(ctx)
        except AirflowException as exc:  # AirflowFailException is a subclass
            assert expect_error, repr(exc)
            seen.append(f"{exc!s} {exc!r} {exc.__cause__!r}")
            result = None
        seen.append(json.dumps([result, ctx["ti"].xcom], default=str))
        return result

    # sensor: poke mode, a transient fault first, then success
    org.set_faults("introspect", sequence=["html503", "reset"])
    run(SalesforceTokenSensor(task_id="sense", poke_interval=0.01, timeout=30, mode="poke", retry_backoff=0.01))
    # audit: a connection, raw tokens, the whole inventory, with an introspection fault on the way
    raw = org.mint_tokens(5)
    org.set_faults("introspect", sequence=["json503"])
    audit = run(SalesforceTokenAuditOperator(
        task_id="audit", conn_ids=["salesforce_oauth_default", "salesforce_oauth_cc", "salesforce_oauth_refresh"],
        tokens=raw, report_dir=str(tmp_path / "report"), max_concurrency=4, retry_backoff=0.01,
    ))
    reports = [Path(p).read_text(encoding="utf-8") for p in audit["report_files"].values()]
    stale = audit["stale_token_fingerprints"][:3]
    # revoke: dry run, by fingerprint, raw tokens (one already invalid), the current token, a cap refusal
    run(SalesforceRevokeTokenOperator(task_id="dry", token_fingerprints=stale, dry_run=True))
    run(SalesforceRevokeTokenOperator(task_id="by_fp", token_fingerprints=stale))
    org.revoke_token(raw[0])
    run(SalesforceRevokeTokenOperator(task_id="raw", tokens=raw[:3]))
    run(SalesforceRevokeTokenOperator(task_id="current", revoke_current=True))
    run(SalesforceRevokeTokenOperator(task_id="cap", token_fingerprints=audit["stale_token_fingerprints"],
                                      max_revocations=1), expect_error=True)
    # a permanent error and a partial failure
    org.set_faults("revoke", sequence=["500"] * 5)
    run(SalesforceRevokeTokenOperator(task_id="partial", tokens=raw[3:], retry_attempts=2, retry_backoff=0.01),
        expect_error=True)
    bad = json.loads(json.dumps(sf_connections["salesforce_oauth_default"]))
    bad["extra"]["username"] = org.demo.analyst_username
    set_connection("sf_bad", bad)
    run(SalesforceTokenSensor(task_id="bad", salesforce_oauth_conn_id="sf_bad", timeout=30), expect_error=True)

    out, err = capfd.readouterr()
    logs = "\n".join([caplog.text, out, err])
    assert "HTTP Request" in logs and "connect_tcp" in logs  # httpx and httpcore DEBUG really captured
    cache_files = b"".join(p.read_bytes() for p in cache_dir.rglob("*") if p.is_file())
    blob = "\n".join([logs, *seen, *reports])
    secrets = [*org.issued_tokens(), *(app.consumer_secret for app in org.apps.values()),
               *(ln for ln in org.demo.jwt_private_key_pem.splitlines() if len(ln) > 40)]
    assert len(secrets) > 60
    leaked = [fingerprint(s) for s in secrets if s and (s in blob or s.encode() in cache_files)]
    assert not leaked, f"secrets found (by fingerprint): {leaked}"
    assert "eyJ" not in blob  # no JWT assertion
