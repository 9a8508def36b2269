"""Terminal styling: colour only on a TTY, never when NO_COLOR is set (no-color.org) or on a
dumb terminal (TERM=dumb); the width text reports wrap at."""

from __future__ import annotations

import os
import shutil
import sys

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
