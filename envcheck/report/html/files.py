"""The two edges of the HTML report: read a saved report JSON, write the HTML file atomically.

Reading is as careful as any input (``snapshot.read_json``): a regular file only (a FIFO or a
device would block or never end), a size cap, strict UTF-8, and JSON without NaN/Infinity.
"""

from __future__ import annotations

import os
from pathlib import Path


class LoadError(ValueError):
    """A report file that cannot be used; the message is one line naming the file."""


def load(path: str | os.PathLike) -> dict:
    """The report dict in ``path``; raises LoadError with a one-line reason (the checks are
    envcheck's one careful JSON reader, ``snapshot.read_json``)."""
    from envcheck import snapshot

    try:
        doc = snapshot.read_json(path, what="report")
    except snapshot.SnapshotError as exc:
        raise LoadError(str(exc)) from None
    if not isinstance(doc, dict):
        raise LoadError(f"{path} is not an envcheck report (not a JSON object)")
    return doc


def write(path: str | os.PathLike, html_text: str) -> Path:
    """Write the page through envcheck's one writer (atomic; refuses to replace anything but a
    regular file, e.g. a device or a FIFO given as the output). Raises OSError."""
    from envcheck import outfile

    return outfile.write_text(str(path), html_text)
