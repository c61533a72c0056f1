"""The status page's FastAPI app: ``/`` (HTML), ``/api/status`` (the same data as JSON) and
``/audit.html`` (the latest audit's own page).

Every route depends on Airflow's authentication and authorization: the caller's JWT (the UI's
``_token`` cookie or an ``Authorization: Bearer`` header) must name a user allowed to read
connections; anything else is answered 401/403 by Airflow's own dependency. Read-only: the
routes never request a token. The page loads nothing from elsewhere (inline CSS, no script),
which its Content-Security-Policy enforces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import HTMLResponse, JSONResponse

from sf_oauth_provider.plugins import URL_PREFIX
from sf_oauth_provider.ui import status

__all__ = ["create_app"]
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    # nothing external; framed only by Airflow's own UI (the menu entry shows it in an iframe)
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                               "frame-ancestors 'self'; base-uri 'none'; form-action 'none'",
}
_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,  # a count missing from an older audit.json renders empty, not a 500
)


def _airflow_auth() -> list[Any]:
    """Airflow's own "may read connections" dependency (it authenticates the user first)."""
    from airflow.api_fastapi.core_api.security import requires_access_connection

    return [Depends(requires_access_connection("GET"))]


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return ""
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{sign}{hours}h {rest // 60:02d}m" if hours else f"{sign}{rest // 60}m {rest % 60:02d}s"


_TEMPLATES.filters["duration"] = _duration


def status_page() -> HTMLResponse:
    """The page: the connections table and the latest audit summary."""
    data = status.page_status()
    html = _TEMPLATES.get_template("status.html.j2").render(data=data, prefix=URL_PREFIX)
    return HTMLResponse(html, headers=_HEADERS)


def status_json() -> JSONResponse:
    """The page's data (what :func:`sf_oauth_provider.ui.status.page_status` returns)."""
    return JSONResponse(status.page_status(), headers=_HEADERS)


def audit_html() -> HTMLResponse:
    """The latest audit's self-contained HTML report (``[sf_oauth] audit_report_dir``)."""
    directory = status.audit_report_dir()
    path = directory / "audit.html" if directory is not None else None
    if path is None or not path.is_file():
        raise HTTPException(status_code=404, detail="no audit.html in [sf_oauth] audit_report_dir")
    return HTMLResponse(path.read_text(encoding="utf-8", errors="replace"), headers=_HEADERS)


def create_app() -> FastAPI:
    """The app the plugin mounts at :data:`URL_PREFIX` (no OpenAPI pages: nothing to try out)."""
    app = FastAPI(title="Salesforce OAuth status", dependencies=_airflow_auth(),
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.add_api_route("/", status_page, methods=["GET"], response_class=HTMLResponse)
    app.add_api_route("/api/status", status_json, methods=["GET"])
    app.add_api_route("/audit.html", audit_html, methods=["GET"], response_class=HTMLResponse)
    return app
