"""Operator parameters: converting what Airflow rendered into checked values, and acting right
after rendering.

Imported when a DAG file is parsed (the operators check literal parameters in ``__init__``), so
standard library only; what runs when a task runs lives in :mod:`._common`.
"""

from __future__ import annotations

import ast
import json
import math
import re
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = [
    "FINGERPRINT_RE",
    "RenderedFieldsMixin",
    "as_bool",
    "as_int",
    "as_number",
    "as_optional_list",
    "is_template",
    "is_unset",
    "parse_fingerprints",
    "parse_list",
]

FINGERPRINT_RE = re.compile(r"^sha256:[0-9a-f]{12}$")


# ---- parsing template values -----------------------------------------------------------------
def parse_list(value: Any, what: str) -> list[str]:
    """A list of non-empty strings from a template field, duplicates removed, order kept.

    Accepts ``None``, a list/tuple/set of strings, or one string holding a JSON or Python list
    (what ``{{ ti.xcom_pull(...) }}`` renders to) or items separated by commas/whitespace.
    Error messages never quote the values (they may be tokens).

    :param value: the rendered field
    :param what: the field name, for error messages
    """
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        if text[0] in "[(":
            parsed = _parse_sequence_literal(text)
            if parsed is None:
                raise ValueError(f"{what!r} looks like a list but cannot be parsed as JSON or a Python literal")
            return parse_list(parsed, what)
        return list(dict.fromkeys(p for p in re.split(r"[\s,]+", text) if p))
    if isinstance(value, (list, tuple, set, frozenset)):
        out: list[str] = []
        for item in value:
            if item is None:
                continue
            if not isinstance(item, str):
                raise TypeError(f"{what!r} must hold strings, got an item of type {type(item).__name__}")
            if item.strip():
                out.append(item.strip())
        return list(dict.fromkeys(out))
    raise TypeError(f"{what!r} must be a list of strings or a string, got {type(value).__name__}")


def _parse_sequence_literal(text: str) -> list[Any] | None:
    try:
        parsed = json.loads(text)
    except ValueError:
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
    return list(parsed) if isinstance(parsed, (list, tuple)) else None


def parse_fingerprints(value: Any) -> list[str]:
    """Validated token fingerprints (``sha256:`` + 12 lowercase hex), duplicates removed.

    A malformed fingerprint fails the whole request: a typo must not silently revoke nothing.
    """
    fps = [fp.lower() for fp in parse_list(value, "token_fingerprints")]
    bad = [i for i, fp in enumerate(fps, 1) if not FINGERPRINT_RE.match(fp)]
    if bad:
        # positions only: a raw token pasted here by mistake must not end up in the message
        shown = ", ".join(str(i) for i in bad[:10]) + (", ..." if len(bad) > 10 else "")
        raise ValueError(
            f"{len(bad)} of {len(fps)} values in 'token_fingerprints' are not fingerprints like "
            f"'sha256:0123456789ab' (items {shown}, counting from 1)"
        )
    return list(dict.fromkeys(fps))


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def as_bool(value: Any, what: str) -> bool:
    """A boolean from a (possibly rendered) template value; anything else is an error.

    Empty strings and ``None`` are errors, not ``False``: a template that rendered to nothing
    (``{{ params.dry_run }}`` with no such param) must never switch a safety flag off.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    shown = "empty" if isinstance(value, str) and not value.strip() else f"{value!r}"
    raise ValueError(f"{what!r} must be true or false, got {shown}")


def is_unset(value: Any) -> bool:
    """``None``, or a template that rendered to nothing: an optional parameter left unset."""
    return value is None or (isinstance(value, str) and not value.strip())


def as_number(value: Any, what: str, *, minimum: float | None = None, above: float | None = None) -> float:
    """A number from a (possibly rendered) template value, e.g. ``"90"`` → ``90.0``.

    :param value: the value (a number or a string holding one)
    :param what: the parameter name, for the error message
    :param minimum: smallest allowed value
    :param above: the value must be more than this
    """
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str) and value.strip():
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or math.isnan(number) or math.isinf(number):
        raise ValueError(f"{what!r} must be a number, got {value!r}")
    if minimum is not None and number < minimum:
        raise ValueError(f"{what!r} must be {minimum:g} or more, got {value!r}")
    if above is not None and number <= above:
        raise ValueError(f"{what!r} must be more than {above:g}, got {value!r}")
    return number


def as_int(value: Any, what: str, *, minimum: int | None = None) -> int:
    """A whole number from a (possibly rendered) template value, e.g. ``"16"`` → ``16``.

    :param value: the value
    :param what: the parameter name, for the error message
    :param minimum: smallest allowed value
    """
    try:
        number = as_number(value, what)
    except ValueError:
        raise ValueError(f"{what!r} must be a whole number, got {value!r}") from None
    if number != int(number):
        raise ValueError(f"{what!r} must be a whole number, got {value!r}")
    if minimum is not None and number < minimum:
        raise ValueError(f"{what!r} must be {minimum} or more, got {value!r}")
    return int(number)


def as_optional_list(value: Any, what: str) -> list[str] | None:
    """``None`` (the parameter is not set), or a list of strings as :func:`parse_list` reads it.

    A rendered ``"None"`` or an empty string also mean "not set".

    :param value: the value
    :param what: the parameter name, for the error message
    """
    if value is None or (isinstance(value, str) and value.strip() in ("", "None", "null")):
        return None
    return parse_list(value, what)


def is_template(value: Any) -> bool:
    """Whether ``value`` is a Jinja template that Airflow renders before ``execute()``."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


class RenderedFieldsMixin:
    """Calls :meth:`after_render` as soon as Airflow has rendered the operator's template fields.

    Both rendering paths go through ``_do_render_template_fields`` (``render_template_fields``
    and the one mapped tasks use), so raw tokens can be masked there, before Airflow stores or
    shows the rendered values. Put it before ``BaseOperator`` in the bases.
    """

    def _do_render_template_fields(
        self, parent: Any, template_fields: Iterable[str], context: Context, jinja_env: Any, seen_oids: set[int]
    ) -> None:
        super()._do_render_template_fields(parent, template_fields, context, jinja_env, seen_oids)  # type: ignore[misc]
        if parent is self:
            self.after_render()

    def after_render(self) -> None:
        """Runs after the template fields are rendered (e.g. to mask raw tokens)."""
