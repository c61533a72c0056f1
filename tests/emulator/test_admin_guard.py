"""The admin API refuses what a web page in a browser on the same machine could send it:
cross-origin requests (CSRF) and requests for a foreign host name (DNS rebinding)."""

from __future__ import annotations

import pytest

from sf_oauth_provider.emulator import RunningEmulator

from ._util import HTTP


def _admin(emu: RunningEmulator, method: str, path: str, **kwargs):
    return HTTP.request(method, f"{emu.base_url}/__emulator/{path}", **kwargs)


def test_cross_origin_text_plain_post_is_refused(emulator: RunningEmulator) -> None:
    # what <form enctype="text/plain"> or fetch(..., {mode: "no-cors"}) on evil.example sends
    r = _admin(
        emulator, "POST", "settings",
        content=b'{"session_timeout": 1}',
        headers={"Content-Type": "text/plain", "Origin": "https://evil.example"},
    )
    assert r.status_code == 403
    assert emulator.org.settings.session_timeout == 7200


def test_text_plain_post_without_origin_is_refused(emulator: RunningEmulator) -> None:
    r = _admin(emulator, "POST", "clock", content=b'{"advance": 9999}', headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert abs(emulator.org.clock.offset) < 5


@pytest.mark.parametrize("ctype", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x"])
def test_form_posts_are_refused_even_when_empty(emulator: RunningEmulator, ctype: str) -> None:
    emulator.org.clock.advance(100)
    r = _admin(emulator, "POST", "reset", content=b"", headers={"Content-Type": ctype})
    assert r.status_code == 415
    assert emulator.org.clock.offset > 50  # not reset


def test_foreign_origin_is_refused_even_with_json(emulator: RunningEmulator) -> None:
    for origin in ("https://evil.example", "http://127.0.0.1:1", "null"):
        r = _admin(emulator, "POST", "settings", json={"page_size": 1}, headers={"Origin": origin})
        assert r.status_code == 403, origin
        assert _admin(emulator, "GET", "tokens", headers={"Origin": origin}).status_code == 403
    assert emulator.org.settings.page_size == 2000


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1:1", "localhost.evil.example:{port}"])
def test_foreign_host_header_is_refused(emulator: RunningEmulator, host: str) -> None:
    # DNS rebinding: evil.example now resolves to 127.0.0.1, the browser still says Host: evil.example
    headers = {"Host": host.format(port=emulator.port)}
    assert _admin(emulator, "GET", "info", headers=headers).status_code == 403
    assert _admin(emulator, "POST", "reset", json={}, headers=headers).status_code == 403


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}"])
def test_own_host_names_and_origin_are_served(emulator: RunningEmulator, host: str) -> None:
    h = host.format(port=emulator.port)
    r = _admin(emulator, "POST", "settings", json={"page_size": 7}, headers={"Host": h, "Origin": f"http://{h}"})
    assert r.status_code == 200, r.text
    assert emulator.org.settings.page_size == 7
    assert _admin(emulator, "GET", "info", headers={"Host": h}).status_code == 200


def test_scripts_without_a_body_or_content_type_still_work(emulator: RunningEmulator) -> None:
    # curl -X POST .../reset and urllib's DELETE send neither a body nor a Content-Type
    emulator.org.set_faults("token", sequence=["500"])
    assert _admin(emulator, "DELETE", "faults").status_code == 200
    assert _admin(emulator, "POST", "reset").status_code == 200
