"""Every form in which a secret can show up in text, so that masking one masks them all."""

from __future__ import annotations

import json

__all__ = ["secret_forms"]

#: Shorter fragments are not masked on their own: masking "END" or a short word would mangle logs.
MIN_FRAGMENT = 16


def secret_forms(secret: str | None) -> list[str]:
    """The secret as given, JSON-escaped, and — for multi-line values such as a PEM key — each
    line, the newline-flattened forms a web form produces (spaces, literal ``\\n``, none).
    """
    if not secret:
        return []
    forms = {secret}
    escaped = json.dumps(secret)[1:-1]
    forms.add(escaped)
    text = secret.replace("\\r", "").replace("\\n", "\n").replace("\r", "")
    lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
    if len(lines) > 1:
        forms.add(text)
        forms.update(ln for ln in lines if len(ln) >= MIN_FRAGMENT and not ln.startswith("-----"))
        body = [ln for ln in lines if not ln.startswith("-----") and ":" not in ln]
        for sep in ("", " ", "\\n", "\n"):
            joined = sep.join(body)
            if len(joined) >= MIN_FRAGMENT:
                forms.add(joined)
        for sep in (" ", "\\n", "\r\n"):
            forms.add(sep.join(lines))
    return sorted(f for f in forms if f)
