"""Salesforce API versions: which the org lists, which are retired, and what a call on each gets.

Salesforce numbers releases three a year from v20.0 = Winter '11 (Winter, Spring, Summer). The
current release is Winter '27 = v68.0 (Apex Reference Guide, "Release Notes"; SOQL and SOSL
Reference, "Previous PDF Versions": 68.0 Winter '27, 67.0 Summer '26, 66.0 Spring '26). Versions
7.0-20.0 were retired in Summer '22 and 21.0-30.0 in Summer '25 ("API End-of-Life Policy";
knowledge article 000354473): REST answers them ``410 GONE``, Bulk API ``400 InvalidVersion``, and
``GET /services/data`` no longer lists them.
"""

from __future__ import annotations

import re

from starlette.responses import JSONResponse, Response

__all__ = [
    "FIRST_SUPPORTED",
    "LATEST_VERSION",
    "bulk_version_error",
    "rest_version_error",
    "version_of",
    "versions",
]

LATEST_VERSION = 68
FIRST_SUPPORTED = 31
_FIRST_EVER = 7
_SEASONS = ("Winter", "Spring", "Summer")
_VERSION_RE = re.compile(r"^v?(\d{1,3})\.(\d)$")


def _label(n: int) -> str:
    k = n - 20  # v20.0 = Winter '11
    return f"{_SEASONS[k % 3]} '{11 + k // 3:02d}"


def versions() -> list[dict[str, str]]:
    """What ``GET /services/data`` lists: every supported version, oldest first."""
    return [
        {"label": _label(n), "url": f"/services/data/v{n}.0", "version": f"{n}.0"}
        for n in range(FIRST_SUPPORTED, LATEST_VERSION + 1)
    ]


def version_of(segment: str) -> tuple[str, str] | None:
    """``("63.0", "supported" | "retired")`` for a path segment like ``v63.0``; ``None`` for a
    segment that names no version Salesforce ever had (``v99.0``, ``v63.5``, ``latest``)."""
    m = _VERSION_RE.match(segment)
    if m is None or not segment.startswith("v") or m.group(2) != "0":
        return None
    n = int(m.group(1))
    if n < _FIRST_EVER or n > LATEST_VERSION:
        return None
    return f"{n}.0", ("retired" if n < FIRST_SUPPORTED else "supported")


def _retired_message(version: str) -> str:
    return (
        f"API version {version} is retired and no longer available; use API version "
        f"{FIRST_SUPPORTED}.0 or later (see GET /services/data)"
    )


def rest_version_error(segment: str) -> Response | None:
    """The REST answer for a version segment that cannot be served: ``410`` for a retired version
    (Salesforce documents the status, not the body: the REST error format is used), ``404
    NOT_FOUND`` for one that never existed; ``None`` for a supported version."""
    found = version_of(segment)
    if found is None:
        return JSONResponse(
            [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}], status_code=404
        )
    version, status = found
    if status == "retired":
        return JSONResponse([{"message": _retired_message(version), "errorCode": "GONE"}], status_code=410)
    return None


def bulk_version_error(segment: str) -> Response | None:
    """The Bulk API answer for a retired or unknown version: ``400`` ``InvalidVersion`` (Bulk API
    2.0's JSON error format); ``None`` for a supported version."""
    found = version_of(segment)
    if found is not None and found[1] == "supported":
        return None
    shown = found[0] if found else segment.lstrip("v")
    return JSONResponse(
        [{"errorCode": "InvalidVersion", "message": f"Invalid API version: {shown}"}], status_code=400
    )
