"""The connected app's certificate (extra ``jwt_certificate``): the audit reports days until it
expires with a severity that rises as the day nears, and whether it matches the key; the sensor
fails with a clear message, before any login, once it has expired."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from tests.airflow_compat import AirflowFailException

from sf_oauth_provider.operators.audit import SalesforceTokenAuditOperator
from sf_oauth_provider.sensors.token import SalesforceTokenSensor
from tests.keys import rsa_key
from tests.operators.test_audit import by_kind, context, report_of


def certificate_pem(key, days_left: float) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "airflow-integration")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(7).not_valid_before(now - dt.timedelta(days=400))
        .not_valid_after(now + dt.timedelta(days=days_left)).sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _demo_key(sf_connections):
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    extra = sf_connections["salesforce_oauth_default"]["extra"]
    pem = extra.get("private_key") or Path(extra.get("jwt_key_file") or extra["private_key_path"]).read_text()
    return load_pem_private_key(pem.encode(), None)


def _with_certificate(sf_connections, set_connection, conn_id: str, certificate: str) -> None:
    conn = dict(sf_connections["salesforce_oauth_default"])
    conn["extra"] = {**conn["extra"], "jwt_certificate": certificate}
    set_connection(conn_id, conn)


def test_audit_reports_certificate_expiry_and_key_match(sf_connections, set_connection, emulator, tmp_path):
    key = _demo_key(sf_connections)
    flattened = certificate_pem(key, 5).replace("\n", " ")  # as a web form flattens it
    _with_certificate(sf_connections, set_connection, "sf_cert_soon", flattened)
    cert_file = tmp_path / "app.crt"
    cert_file.write_text(certificate_pem(key, 400))
    _with_certificate(sf_connections, set_connection, "sf_cert_fine", str(cert_file))
    _with_certificate(sf_connections, set_connection, "sf_cert_other", certificate_pem(rsa_key(2048, 3), 300))
    _with_certificate(sf_connections, set_connection, "sf_cert_expired", certificate_pem(key, -2))

    result = SalesforceTokenAuditOperator(
        task_id="audit", inventory=False, report_dir=str(tmp_path / "r"),
        conn_ids=["sf_cert_soon", "sf_cert_fine", "sf_cert_other", "sf_cert_expired"],
    ).execute(context())
    report = report_of(result)
    connections = {c["conn_id"]: c["certificate"] for c in report["connections"]}
    assert connections["sf_cert_soon"]["days_left"] in (4, 5) and connections["sf_cert_fine"]["days_left"] >= 399
    assert [connections[c]["matches_key"] for c in ("sf_cert_soon", "sf_cert_fine", "sf_cert_other")] == [True, True, False]
    expiry = {f["conn_id"]: f["severity"] for f in by_kind(report)["certificate_expiry"]}
    assert expiry == {"sf_cert_soon": "high", "sf_cert_expired": "critical"}
    assert [f["conn_id"] for f in by_kind(report)["certificate_mismatch"]] == ["sf_cert_other"]
    html = Path(result["report_files"]["html"]).read_text(encoding="utf-8")
    assert "CN=airflow-integration" in html and "does not match the key" in html


def test_sensor_fails_clearly_when_the_certificate_has_expired(sf_connections, set_connection, emulator):
    _with_certificate(sf_connections, set_connection, "sf_expired", certificate_pem(_demo_key(sf_connections), -3))
    sensor = SalesforceTokenSensor(
        task_id="sense", salesforce_oauth_conn_id="sf_expired", poke_interval=0.01, timeout=5, mode="poke"
    )
    with pytest.raises(AirflowFailException, match=r"'sf_expired'.*jwt_certificate.*expired on .*upload the certificate"):
        sensor.execute(context())
    assert emulator.org.count("token") == 0  # no login attempt that could only fail


def test_sensor_accepts_a_valid_certificate(sf_connections, set_connection, emulator):
    _with_certificate(sf_connections, set_connection, "sf_valid", certificate_pem(_demo_key(sf_connections), 30))
    sensor = SalesforceTokenSensor(task_id="sense", salesforce_oauth_conn_id="sf_valid", poke_interval=0.01, timeout=5, mode="poke")
    assert sensor.execute(context())["fingerprint"].startswith("sha256:")
