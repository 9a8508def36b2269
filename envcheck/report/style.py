"""Terminal styling: colour only on a TTY, and never when NO_COLOR is set (no-color.org)."""

from __future__ import annotations

import os
import sys

import click

_SEVERITY_COLOURS = {"error": "red", "warn": "yellow", "info": "cyan", "ok": "green"}


def use_color(flag: bool | None = None, stream=None) -> bool:
    """``--color/--no-color`` wins; else NO_COLOR (any value) disables; else colour iff a TTY."""
    if flag is not None:
        return flag
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    stream = stream or sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)())


def paint(text: str, color: bool, fg: str | None = None, bold: bool = False) -> str:
    return click.style(text, fg=fg, bold=bold) if color else text


def severity(label: str, sev: str, color: bool) -> str:
    return paint(label, color, fg=_SEVERITY_COLOURS.get(sev), bold=sev == "error")
