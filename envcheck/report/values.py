"""One fact or compared value as compact text: the one formatter the doctor report, ``compare``
and its HTML page share (each adds its own escaping and width limits)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envcheck.snapshot import is_na


def na_text(value: Any) -> str:
    """``n/a (reason)`` for a 'not available' marker: the reason up to its first colon, 48 chars."""
    reason = str(value.get("unavailable", "")) if isinstance(value, Mapping) else ""
    reason = reason.split(":")[0].strip()
    return f"n/a ({reason[:48]})" if reason else "n/a"


def value_text(value: Any, none: str = "-") -> str:
    """Booleans as yes/no, floats as ``%g``, lists and mappings flattened; ``none`` for None."""
    if is_na(value):
        return na_text(value)
    if value is None:
        return none
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(value_text(v, none) for v in value) if value else "(none)"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={value_text(v, none)}" for k, v in value.items())
    return str(value)
