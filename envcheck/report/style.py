"""Terminal styling: colour only on a TTY, never when NO_COLOR is set (no-color.org) or on a
dumb terminal (TERM=dumb); the width text reports wrap at."""

from __future__ import annotations

import os
import re
import shutil
import sys
import textwrap

import click

_SEVERITY_COLOURS = {"error": "red", "warn": "yellow", "info": "cyan", "ok": "green"}


def _isatty(stream) -> bool:
    try:
        return bool(getattr(stream, "isatty", lambda: False)())
    except (OSError, ValueError):  # a closed or detached stream
        return False


def use_color(flag: bool | None = None, stream=None) -> bool:
    """``--color/--no-color`` wins; else NO_COLOR (any value) disables; else FORCE_COLOR
    enables; else TERM=dumb disables (a terminal that cannot show escape sequences: Emacs
    shell buffers, some CI logs); else colour iff a TTY."""
    if flag is not None:
        return flag
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    if os.environ.get("TERM") == "dumb":
        return False
    return _isatty(stream or sys.stdout)


MIN_WIDTH = 40


def text_width(stream=None, default: int = 100) -> int:
    """Columns a text report wraps at: the terminal's width (COLUMNS, else the terminal's own
    size) when ``stream`` is a terminal, else ``default`` (files and pipes get a stable layout).
    Never below MIN_WIDTH."""
    if not _isatty(stream or sys.stdout):
        return default
    columns = shutil.get_terminal_size((default, 24)).columns
    return max(columns, MIN_WIDTH) if columns > 0 else default


def paint(text: str, color: bool, fg: str | None = None, bold: bool = False) -> str:
    return click.style(text, fg=fg, bold=bold) if color else text


def severity(label: str, sev: str, color: bool) -> str:
    return paint(label, color, fg=_SEVERITY_COLOURS.get(sev), bold=sev == "error")


# Kept on one line when wrapping: a number and its unit, an option and its metavar.
_UNIT = re.compile(r"(\d|--[a-z][a-z-]*) (B|KiB|MiB|GiB|TiB|s|ms|W|MHz|GB/s|TFLOPS|[A-Z]{2,})\b")
MIN_ROOM = 20  # a wrapped column never gets narrower than this, however narrow the terminal


def wrap(text: str, room: int) -> list[str]:
    """``text`` in lines of at most ``room`` characters, broken at spaces only (a word longer
    than ``room`` stays whole on its own line), never between a number and its unit nor an
    option and its metavar (``--python PATH``). An indented line (a traceback's) continues
    indented under itself."""
    glued = _UNIT.sub("\\1\u00a0\\2", text)  # textwrap breaks at ASCII whitespace only
    lead = " " * (len(glued) - len(glued.lstrip(" ")) + 2) if glued.startswith(" ") else ""
    lines = textwrap.wrap(glued, max(room, MIN_ROOM), subsequent_indent=lead,
                          break_long_words=False, break_on_hyphens=False)
    return [line.replace("\u00a0", " ") for line in lines] or [""]


def wrap_lines(prefix: str, text: str, width: int | None) -> list[str]:
    """``prefix + text`` wrapped at ``width`` with the continuation under the text (None: one line)."""
    if not width:
        return [prefix + text]
    room = width - len(prefix)
    return [(prefix if i == 0 else " " * len(prefix)) + line for i, line in enumerate(wrap(text, room))]
