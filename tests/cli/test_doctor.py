"""``sf-oauth doctor`` on a healthy connection and on broken ones: each ✗ names the cause and the fix,
later checks that depend on it are skipped, the exit status says whether all passed, and no secret
is printed. The console script runs for real against the emulator (and a real redis-server)."""

from __future__ import annotations

import copy
import datetime
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from tests.cli.conftest import SF_OAUTH, Cli, issued_secrets
from tests.keys import ec_pem, pem, rsa_key


def _check(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in report["checks"] if c["name"] == name)


def _jwt(cli: Cli, **extra: Any) -> dict[str, Any]:
    """The demo JWT connection with ``extra`` changed (None removes a field)."""
    conn = copy.deepcopy(cli.connections["salesforce_oauth_default"])
    for name, value in extra.items():
        if value is None:
            conn["extra"].pop(name, None)
        else:
            conn["extra"][name] = value
    return conn


def _doctor(cli: Cli, conn: dict[str, Any], human: bool = False) -> tuple[int, dict[str, Any], str]:
    """Run doctor on ``conn`` (``--json``; with ``human`` also the table): exit status, report, table."""
    cli.connections["sf_broken"] = conn
    as_json = cli.run("doctor", "sf_broken", "--json")
    cli.last = as_json
    table = cli.run("doctor", "sf_broken") if human else None
    if table is not None:
        assert as_json.returncode == table.returncode
    return as_json.returncode, as_json.json(), table.stdout if table is not None else ""


def _certificate(key: Any, days: tuple[int, int]) -> str:
    """A self-signed certificate of ``key`` valid from ``days[0]`` to ``days[1]`` days from now."""
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "doctor-test")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now + datetime.timedelta(days=days[0]))
            .not_valid_after(now + datetime.timedelta(days=days[1])).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _demo_key(cli: Cli) -> Any:
    path = Path(cli.connections["salesforce_oauth_default"]["extra"]["jwt_key_file"])
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


# ---- healthy -------------------------------------------------------------------------------------
def test_healthy_connection_passes_every_check_with_redis(cli: Cli, emulator, redis_url: str) -> None:
    cli.env["SF_OAUTH_REDIS_URL"] = redis_url
    cli.connections["salesforce_oauth_default"]["extra"]["jwt_certificate"] = _certificate(_demo_key(cli), (-1, 400))
    result = cli.run("doctor")
    assert result.returncode == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith(("✓", "✗", "–"))]
    assert len(lines) == 12 and not any(line.startswith("✗") for line in lines), result.stdout
    for title in ("connection found", "private key", "certificate vs key", "host (https, DNS, TLS)",
                  "clock skew", "token exchange", "introspection", "userinfo", "Redis", "cache directory"):
        assert any(title in line and line.startswith("✓") for line in lines), (title, result.stdout)
    text = " ".join(result.stdout.split())  # the result column wraps to the terminal's width
    assert "lock works" in text and "all checks passed" in text
    cli.secrets |= issued_secrets(emulator.org)
    cli.assert_no_secret(result)


def test_console_script_is_installed_and_runs(cli: Cli, emulator) -> None:
    """The installed ``sf-oauth`` executable itself (the other tests fork ``main()`` for speed)."""
    result = cli.run("doctor", "--json", program=SF_OAUTH)
    assert result.returncode == 0, result.output
    checks = result.json()["checks"]
    assert len(checks) == 12 and {c["status"] for c in checks} <= {"ok", "n/a"} and checks[0]["status"] == "ok", checks
    cli.secrets |= issued_secrets(emulator.org)
    cli.assert_no_secret(result)


# ---- broken: the connection's own fields ---------------------------------------------------------
def test_missing_consumer_key_names_the_field_and_skips_what_needs_it(cli: Cli) -> None:
    conn = copy.deepcopy(cli.connections["salesforce_oauth_default"])
    conn["login"] = ""
    code, report, human = _doctor(cli, conn, human=True)
    assert code == 1 and not report["ok"]
    fields = _check(report, "fields")
    assert fields["status"] == "fail" and "'login' (Consumer Key) is required" in fields["detail"]
    assert "Manage Consumer Details" in fields["fix"]
    assert _check(report, "token")["status"] == "skip" and "fields valid" in _check(report, "token")["detail"]
    assert "✗" in human and "fix: copy the consumer key" in " ".join(human.split())


def test_unreadable_key_file(cli: Cli, tmp_path: Path) -> None:
    code, report, _ = _doctor(cli, _jwt(cli, jwt_key_file=str(tmp_path / "missing.pem")))
    key = _check(report, "key")
    assert code == 1 and key["status"] == "fail"
    assert "'jwt_key_file' cannot be read" in key["detail"] and "missing.pem" in key["detail"]
    assert "readable by the worker" in key["fix"]
    assert _check(report, "token")["status"] == "skip"


def test_key_that_is_not_rsa(cli: Cli) -> None:
    code, report, _ = _doctor(cli, _jwt(cli, jwt_key_file=None, private_key=ec_pem()))
    key = _check(report, "key")
    assert code == 1 and key["status"] == "fail" and "not an RSA key" in key["detail"]
    assert "generate an RSA key" in key["fix"]


def test_wrong_passphrase(cli: Cli) -> None:
    encrypted = pem(rsa_key(2048, 7), passphrase="the-right-one")
    cli.secrets |= {"the-wrong-one", *[line for line in encrypted.splitlines() if len(line) > 40]}
    code, report, _ = _doctor(cli, _jwt(cli, jwt_key_file=None, private_key=encrypted,
                                        private_key_passphrase="the-wrong-one"))
    key = _check(report, "key")
    assert code == 1 and key["status"] == "fail"
    assert "does not decrypt" in key["detail"] and key["fix"] == "check the passphrase"


def test_certificate_of_another_key(cli: Cli) -> None:
    other = _certificate(rsa_key(2048, 8), (-1, 365))
    code, report, _ = _doctor(cli, _jwt(cli, jwt_certificate=other))
    cert = _check(report, "certificate")
    assert code == 1 and cert["status"] == "fail" and "does not belong to the private key" in cert["detail"]
    assert "Use digital signatures" in cert["fix"]


def test_expired_certificate(cli: Cli) -> None:
    expired = _certificate(_demo_key(cli), (-400, -3))
    code, report, _ = _doctor(cli, _jwt(cli, jwt_certificate=expired))
    cert = _check(report, "certificate")
    assert code == 1 and cert["status"] == "fail" and "expired on" in cert["detail"]
    assert "create a new key and certificate" in cert["fix"]


def test_plain_http_host(cli: Cli) -> None:
    conn = copy.deepcopy(cli.connections["salesforce_oauth_default"])
    conn["host"] = "http://acme.my.salesforce.com"
    code, report, _ = _doctor(cli, conn)
    host = _check(report, "host")
    assert code == 1 and host["status"] == "fail" and "plain http" in host["detail"]
    assert "use https://" in host["fix"]
    assert _check(report, "token")["status"] == "skip"


def test_dns_failure_in_process(cli: Cli, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The resolver is patched (never a real lookup): ``main()`` runs in this process."""
    from sf_oauth_provider.cli import main

    asked: list[str] = []

    def no_such_host(host: str, *args: Any, **kwargs: Any) -> Any:
        asked.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    conn = copy.deepcopy(cli.connections["salesforce_oauth_default"])
    conn["host"] = "https://acme-doctor-test.my.salesforce.com"
    cli.connections["sf_broken"] = conn
    for name, value in cli.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    code = main(["doctor", "sf_broken"])
    out = capsys.readouterr()
    assert code == 1
    assert asked == ["acme-doctor-test.my.salesforce.com"]
    line = next(line for line in out.out.splitlines() if "host (https, DNS, TLS)" in line)
    assert line.startswith("✗") and "acme-doctor-test.my.salesforce.com does not resolve" in " ".join(out.out.split())
    assert "Setup → My Domain" in " ".join(out.out.split())
    token_line = next(line for line in out.out.splitlines() if "token exchange" in line)
    assert token_line.startswith("–") and "skipped" in token_line
    for secret in cli.secrets:
        assert secret not in out.out + out.err


# ---- broken: what Salesforce (the emulator) says ---------------------------------------------------
def test_audience_that_does_not_fit_the_host(cli: Cli, emulator) -> None:
    code, report, _ = _doctor(cli, _jwt(cli, audience="https://test.salesforce.com"))
    audience = _check(report, "audience")
    assert code == 1 and audience["status"] == "fail"
    assert "does not fit host" in audience["detail"] and "https://login.salesforce.com" in audience["fix"]
    token = _check(report, "token")
    assert token["status"] == "fail" and "audience is invalid" in token["detail"]


def test_clock_skew_from_the_servers_date(cli: Cli, emulator) -> None:
    httpx.post(emulator.base_url + "/__emulator/clock", json={"advance": 900}).raise_for_status()
    code, report, _ = _doctor(cli, _jwt(cli))
    clock = _check(report, "clock")
    assert code == 1 and clock["status"] == "fail"
    assert "ahead of this host" in clock["detail"] and "NTP" in clock["fix"]
    seconds = int(clock["detail"].split("clock is ")[1].split(" s ")[0])
    assert 880 <= seconds <= 920
    token = _check(report, "token")
    assert token["status"] == "fail" and "expired authorization code" in token["detail"]
    assert "clock" in token["fix"]


def test_unknown_consumer_key(cli: Cli) -> None:
    conn = _jwt(cli)
    conn["login"] = "3MVG9doctor.unknown.consumer.key"
    code, report, _ = _doctor(cli, conn)
    token = _check(report, "token")
    assert code == 1 and token["status"] == "fail" and "invalid_client_id" in token["detail"]
    assert "Manage Consumer Details" in token["fix"] and "External Client App" in token["fix"]


def test_user_not_pre_authorised(cli: Cli, emulator) -> None:
    code, report, _ = _doctor(cli, _jwt(cli, username="analyst@demo.example"))
    token = _check(report, "token")
    assert code == 1 and "user hasn't approved this consumer" in token["detail"]
    assert "Admin approved users are pre-authorized" in token["fix"] and "Manage Profiles" in token["fix"]


def test_app_for_admin_approved_users_only(cli: Cli, emulator) -> None:
    httpx.post(emulator.base_url + "/__emulator/settings",
               json={"apps": {"Airflow Integration": {"admin_approved_only": True}}}).raise_for_status()
    code, report, _ = _doctor(cli, _jwt(cli, username="analyst@demo.example"))
    token = _check(report, "token")
    assert code == 1 and "invalid_app_access" in token["detail"]
    assert "admin-approved users only" in token["fix"] and "Permission Sets" in token["fix"]


# ---- broken: the token stores --------------------------------------------------------------------
def test_redis_unreachable(cli: Cli, emulator) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    cli.env["SF_OAUTH_REDIS_URL"] = f"redis://:hunter2-redis@127.0.0.1:{closed_port}/0"
    cli.secrets.add("hunter2-redis")
    code, report, _ = _doctor(cli, _jwt(cli))
    redis = _check(report, "redis")
    assert code == 1 and redis["status"] == "fail" and "unreachable" in redis["detail"]
    assert f"127.0.0.1:{closed_port}" in redis["detail"] and "start Redis" in redis["fix"]
    assert _check(report, "token")["status"] == "ok"  # a cache never fails a task


def test_redis_that_evicts_refresh_tokens(cli: Cli, emulator, redis_server, redis_url: str) -> None:
    redis_server.client().config_set("maxmemory-policy", "allkeys-lru")
    cli.env["SF_OAUTH_REDIS_URL"] = redis_url
    code, report, _ = _doctor(cli, copy.deepcopy(cli.connections["salesforce_oauth_refresh"]))
    redis = _check(report, "redis")
    assert code == 1 and redis["status"] == "fail"
    assert "maxmemory-policy allkeys-lru may evict the newest rotated refresh token" in redis["detail"]
    assert "rotates refresh tokens" in redis["fix"]
    cli.secrets |= issued_secrets(emulator.org)
    cli.assert_no_secret(cli.last)


def test_cache_directory_others_can_write(cli: Cli, emulator, tmp_path: Path) -> None:
    shared = tmp_path / "shared-cache"
    shared.mkdir()
    shared.chmod(0o777)  # writable by everyone, no sticky bit: another user could plant tokens
    cli.env["SF_OAUTH_CACHE_DIR"] = str(shared)
    code, report, _ = _doctor(cli, _jwt(cli))
    cache_dir = _check(report, "cache_dir")
    assert code == 1 and cache_dir["status"] == "fail"
    assert str(shared) in cache_dir["detail"] and "others" in cache_dir["detail"]
    assert "mode 0700" in cache_dir["fix"]
    assert _check(report, "token")["status"] == "ok"  # tasks still get tokens (memory only, one warning)


def test_credentials_in_the_host_are_refused_and_never_echoed(cli: Cli) -> None:
    conn = copy.deepcopy(cli.connections["salesforce_oauth_default"])
    conn["host"] = "https://integration:Sup3r-s3cret-pw@acme.my.salesforce.com"
    cli.secrets.add("Sup3r-s3cret-pw")  # checked by every run
    code, report, human = _doctor(cli, conn, human=True)
    host = _check(report, "host")
    assert code == 1 and host["status"] == "fail" and "contains '@'" in host["detail"]
    assert "[redacted]" in host["detail"] and "never in the host" in host["fix"]


def test_tls_that_does_not_verify_and_the_ca_bundle_that_fixes_it(cli: Cli, tmp_path: Path) -> None:
    from sf_oauth_provider.emulator import seed_demo_org, serve
    from sf_oauth_provider.emulator.connections import connection_dicts, write_private_key

    with serve(seed_demo_org(42), tls_dir=tmp_path / "tls") as running:
        key = write_private_key(running.org, tmp_path / "tls-key.pem")
        conn = connection_dicts(running, key)["salesforce_oauth_default"]
        assert conn["host"].startswith("https://")
        with_ca = copy.deepcopy(conn)
        conn["extra"].pop("ca_bundle")
        code, report, _ = _doctor(cli, conn)
        host = _check(report, "host")
        assert code == 1 and host["status"] == "fail" and host["detail"].startswith("TLS:")
        assert "'ca_bundle'" in host["fix"]
        assert _check(report, "token")["status"] == "skip"

        code, report, _ = _doctor(cli, with_ca)
        assert code == 0, report
        assert "TLS certificate verified" in _check(report, "host")["detail"]


def test_unknown_connection_id_suggests_the_closest_and_skips_the_rest(cli: Cli) -> None:
    result = cli.run("doctor", "salesforce_oauth_defualt", "--json")
    report = result.json()
    assert result.returncode == 1
    found = _check(report, "connection")
    assert found["status"] == "fail" and "did you mean 'salesforce_oauth_default'" in found["detail"]
    assert "set CONN_ID to 'salesforce_oauth_default'" in found["fix"]
    assert {c["status"] for c in report["checks"][1:]} == {"skip"}
