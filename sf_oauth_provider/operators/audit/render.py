"""The audit report in the shapes people read: CSV (one row per finding), Markdown (tabulate),
and one self-contained HTML page (Jinja2 with autoescape, inline SVG chart, no JavaScript).

Every value from Salesforce is escaped for its format: CSV cells through
:func:`~sf_oauth_provider.reporting.cells.csv_cell`, Markdown through
:func:`~sf_oauth_provider.reporting.cells.md_cell`, HTML by Jinja2's autoescape.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import jinja2
from tabulate import tabulate

from sf_oauth_provider.operators.audit.findings import SEVERITIES
from sf_oauth_provider.reporting.cells import csv_text, md_cell

__all__ = ["FINDING_COLUMNS", "TOKEN_COLUMNS", "age_chart", "findings_csv", "html_page", "markdown", "tokens_csv"]

FINDING_COLUMNS = (
    "severity", "new", "kind", "kinds", "fingerprint", "revocable", "app", "user", "source", "conn_id", "detail",
)
TOKEN_COLUMNS = (
    "source", "fingerprint", "app", "user", "user_active", "created", "last_used", "use_count", "active", "scope",
    "expires_at", "client_id",
)


def findings_csv(report: dict[str, Any]) -> str:
    """``audit.csv``: one row per finding row (a token with three kinds is one row)."""
    rows = [{**row, "kinds": " ".join(row["kinds"])} for row in report["findings"]]
    return csv_text(rows, FINDING_COLUMNS)


def tokens_csv(report: dict[str, Any]) -> str:
    """``audit-tokens.csv``: every token audited, with or without findings."""
    return csv_text(report["tokens"], TOKEN_COLUMNS)


def revocation_conf(report: dict[str, Any]) -> str:
    """The ``emergency_revocation`` DAG's run conf for every revocable finding (dry run)."""
    fps = [row["fingerprint"] for row in report["findings"] if row["revocable"] and row["fingerprint"]]
    return json.dumps({"token_fingerprints": fps, "dry_run": True})


def _comparison(report: dict[str, Any]) -> str:
    summary, previous = report["summary"], report.get("previous")
    if not previous:
        return "First audit at this location: every finding counts as new."
    return (f"Compared with the audit of {previous.get('generated_at')}: {summary['new_findings']:,} new, "
            f"{summary['resolved_findings']:,} resolved.")


def _table(rows: list[list[Any]], headers: list[str], align: tuple[str, ...] | None = None) -> str:
    return tabulate(
        [[md_cell(c) for c in row] for row in rows], headers=[md_cell(h) for h in headers], tablefmt="github",
        disable_numparse=True, colalign=align,
    )


def markdown(report: dict[str, Any]) -> str:
    """``audit.md``: header, summary, apps, findings (worst first), failed checks."""
    s, policy = report["summary"], report["policy"]
    scopes = ", ".join(policy["allowed_scopes"]) if policy["allowed_scopes"] is not None else "any but full"
    apps = ", ".join(policy["allowed_apps"]) if policy["allowed_apps"] is not None else "any"
    parts = [
        "# Salesforce OAuth token audit",
        "",
        f"Org {md_cell(report['org_id'] or 'unknown')} at {md_cell(report['instance_url'] or 'unknown instance')}, "
        f"generated {md_cell(report['generated_at'])} with connection {md_cell(report['connection'])}. "
        f"{_comparison(report)}",
        "",
        f"Policy: stale after {policy['stale_after_days']:g} days; allowed scopes: {md_cell(scopes)}; "
        f"allowed apps: {md_cell(apps)}.",
        "",
        "## Summary",
        "",
        _table([
            ["tokens audited", f"{s['tokens']:,}"], ["OauthToken rows", f"{s['inventory']:,}"],
            ["raw tokens", f"{s['raw_tokens']:,}"], ["connections checked", f"{s['connections']:,}"],
            ["apps", f"{s['apps']:,}"], ["users", f"{s['users']:,}"], ["introspected", f"{s['introspected']:,}"],
            ["checks that failed", f"{s['failed']:,}"], ["findings", f"{s['findings']:,}"],
            ["new since the last audit", f"{s['new_findings']:,}"], ["resolved", f"{s['resolved_findings']:,}"],
            *[[f"severity {sev}", f"{s['by_severity'][sev]:,}"] for sev in SEVERITIES],
        ], ["", "count"], ("left", "right")),
        "",
        "## Findings by kind",
        "",
        _table(
            [[k, f"{n:,}", report["finding_kinds"][k]["severity"], report["finding_kinds"][k]["meaning"]]
             for k, n in s["by_kind"].items()] or [["(none)", "0", "", ""]],
            ["finding", "count", "severity", "meaning"], ("left", "right", "left", "left"),
        ),
        "",
        "## By app",
        "",
        _table(
            [[a["app"], f"{a['tokens']:,}", f"{a['users']:,}", a["last_used"] or "", f"{a['findings']:,}",
              a["worst_severity"] or ""] for a in report["apps"]] or [["(none)", "0", "0", "", "0", ""]],
            ["app", "tokens", "users", "last used", "findings", "worst"],
            ("left", "right", "right", "left", "right", "left"),
        ),
    ]
    if report["failed"]:
        parts += ["", "## Checks that failed (the audit is incomplete for these)", "", _table(
            [[f.get("source"), f.get("fingerprint") or "", f.get("conn_id") or "", f.get("error")]
             for f in report["failed"]], ["source", "fingerprint", "connection", "error"],
        )]
    parts += ["", "## Findings", ""]
    if report["findings"]:
        parts.append(_table(
            [[row["severity"], "new" if row["new"] else "", " ".join(row["kinds"]), row["fingerprint"] or "",
              row["app"] or "", row["user"] or "", row["detail"]] for row in report["findings"]],
            ["severity", "new", "kinds", "fingerprint", "app", "user", "detail"],
        ))
        parts += ["", "Revoke with the `emergency_revocation` DAG (a dry run first):", "", "```",
                  f"airflow dags trigger emergency_revocation --conf '{revocation_conf(report)}'", "```"]
    else:
        parts.append("No findings.")
    return "\n".join(parts) + "\n"


def age_chart(report: dict[str, Any], width: int = 760) -> dict[str, Any]:
    """Geometry of the inline-SVG strip chart: per app, one dot per token at its idle age (days
    since last use, or since creation when never used), with the stale threshold as a line.

    :param report: from :func:`~.report.build_report`
    :param width: the SVG's width in pixels
    """
    now = datetime.fromisoformat(report["generated_at"].replace("Z", "+00:00"))
    threshold = float(report["policy"]["stale_after_days"])
    ages: dict[str, list[float]] = {}
    for t in report["tokens"]:
        since = t.get("last_used") or t.get("created")
        if not since:
            continue
        age = max(0.0, (now - datetime.fromisoformat(since.replace("Z", "+00:00"))).total_seconds() / 86400)
        ages.setdefault(t.get("app") or t.get("client_id") or "(unknown app)", []).append(age)
    label_w, right, row_h, top = 220, 20, 30, 24
    top_age = max([threshold * 1.2] + [a for v in ages.values() for a in v])
    step = next(s for s in (7, 30, 90, 180, 365, 730, 1825, 3650, 10**9) if top_age / s <= 8)
    top_age = step * (int(top_age // step) + 1)
    plot_w = width - label_w - right

    def x(age: float) -> float:
        return round(label_w + plot_w * age / top_age, 1)

    rows = []
    for i, (app, values) in enumerate(sorted(ages.items(), key=lambda kv: kv[0].lower())):
        y = top + row_h * i + row_h / 2
        dots = [{"x": x(a), "y": round(y + ((j % 5) - 2) * 3, 1), "age": int(a), "stale": a > threshold}
                for j, a in enumerate(sorted(values))]
        rows.append({"app": app, "y": y, "dots": dots, "count": len(values),
                     "stale": sum(1 for a in values if a > threshold)})
    height = top + row_h * max(1, len(rows)) + 30
    return {
        "width": width, "height": height, "label_w": label_w, "plot_right": width - right, "top": top,
        "bottom": height - 30, "rows": rows, "threshold": threshold, "threshold_x": x(threshold),
        "ticks": [{"x": x(d), "label": str(d)} for d in range(0, int(top_age) + 1, step)],
    }


def html_page(report: dict[str, Any]) -> str:
    """``audit.html``: one self-contained page (no external assets, no JavaScript)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("sf_oauth_provider.operators.audit", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )
    return env.get_template("audit.html.j2").render(
        report=report, summary=report["summary"], severities=SEVERITIES, chart=age_chart(report),
        comparison=_comparison(report), revocation_conf=revocation_conf(report),
    )
