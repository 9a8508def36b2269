"""Untrusted text made harmless for a terminal and for XML: one place, used by every renderer.

Hostnames, directory names, NVML strings, torch errors, snapshot files and peers' results come
from outside envcheck. Printed raw, an ESC sequence in one of them can set the terminal title,
clear the screen or fake a verdict line, a bidi override can reorder what is read (CVE-2021-42574,
"Trojan Source"), and a C0 control character makes a JUnit file invalid XML. :func:`neutralise`
replaces each such character with a visible escape (``\\x1b``, ``\\u202e``); renderers apply it to
the *data* before they add their own colour codes, so envcheck's styling survives.

Escaped: C0 controls except newline and tab (carriage return included: it overwrites a line),
DEL, C1 controls (U+0080-U+009F; U+009B is a one-byte CSI), the bidi controls U+061C, U+200E,
U+200F, U+202A-U+202E, U+2066-U+2069, the line/paragraph separators U+2028/U+2029, lone
surrogates (JSON can carry them, UTF-8 cannot encode them) and the non-characters U+FFFE/U+FFFF.
What is left is XML 1.0's ``Char`` production (https://www.w3.org/TR/xml/#charsets), so
:func:`xml_text` is the same function with a name that says what it guarantees.
"""

from __future__ import annotations

import re
from typing import Any

_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
    "\ud800-\udfff\ufffe\uffff]"
)
_UNSAFE_ONE_LINE = re.compile(_UNSAFE.pattern[:-1] + "\n\t]")

MAX_DEPTH = 100  # deeper than any report envcheck makes; a deeper subtree is replaced, not walked


def _escape(m: re.Match) -> str:
    code = ord(m.group(0))
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def neutralise(text: str, one_line: bool = False) -> str:
    """``text`` with every control character as a visible escape (see the module docstring).

    Newline and tab are kept (tracebacks, stderr tails) unless ``one_line``, for values that
    must not start a new line (a hostname, a one-line error message).
    """
    if not isinstance(text, str):
        return text
    return (_UNSAFE_ONE_LINE if one_line else _UNSAFE).sub(_escape, text)


def xml_text(text: str) -> str:
    """``text`` made of XML 1.0 characters only (ElementTree escapes ``& < > "`` itself)."""
    return neutralise(str(text))


_PLAIN = frozenset({int, float, bool, type(None)})  # leaves with no text: kept without a call


def neutralise_obj(obj: Any, _depth: int = 0) -> Any:
    """:func:`neutralise` on every string (keys too) of a JSON-like structure; a new structure."""
    if isinstance(obj, str):
        return neutralise(obj)
    if _depth > MAX_DEPTH and isinstance(obj, (dict, list, tuple)):
        return "<too deeply nested>"
    if isinstance(obj, dict):
        return {neutralise(k) if isinstance(k, str) else k: v if type(v) in _PLAIN else neutralise_obj(v, _depth + 1)
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [v if type(v) in _PLAIN else neutralise_obj(v, _depth + 1) for v in obj]
    return obj


def clean_text(text: str, one_line: bool = False) -> str:
    """A message for stderr or a status line: secrets scrubbed (envcheck.redact), then controls
    escaped; ``one_line`` also escapes newlines."""
    from envcheck.redact import scrub_text

    return neutralise(scrub_text(str(text)), one_line=one_line)
