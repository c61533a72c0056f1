"""The README's code runs as written (issue 27: the hook snippet used an undefined ``token``)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _block_after(heading: str, lang: str = "python") -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index(heading):]
    return re.search(rf"```{lang}\n(.*?)```", section, re.S).group(1)


def test_the_hook_snippet_runs_against_the_emulator(emulator, sf_connections):
    code = _block_after("## The hook\n")
    namespace: dict = {}
    exec(compile(code, "README.md (The hook)", "exec"), namespace)  # noqa: S102 — our own README
    assert namespace["tok"].fingerprint.startswith("sha256:")
    assert emulator.org.count("revoke") == 1 and emulator.org.count("query") >= 2  # query, query_iter, revoke ran


def test_the_framework_free_snippet_names_real_arguments():
    code = _block_after("**In a plain Python shell**")
    assert "OAuthConfig.from_connection_fields(" in code and "TokenProvider(config).get_token()" in code
    compile(code, "README.md (plain Python shell)", "exec")
