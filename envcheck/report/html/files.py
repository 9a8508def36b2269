"""The two edges of the HTML report: read a saved report JSON, write the HTML file atomically.

Reading is as careful as any input: a regular file only (a FIFO or a device would block or never
end), at most ``MAX_BYTES``, strict UTF-8, and JSON without NaN/Infinity (not JSON, RFC 8259 §6).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

MAX_BYTES = 64 * 1024 * 1024  # a 1000-rank cluster report with every sweep is a few MB


class LoadError(ValueError):
    """A report file that cannot be used; the message is one line naming the file."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def load(path: str | os.PathLike) -> dict:
    """The report dict in ``path``; raises LoadError with a one-line reason."""
    p = str(path)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise LoadError(f"cannot read {p}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise LoadError(f"{p} is not a regular file")
        if st.st_size > MAX_BYTES:
            raise LoadError(f"{p} is larger than {MAX_BYTES // (1024 * 1024)} MiB: not an envcheck report")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise LoadError(f"cannot read {p}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise LoadError(f"{p} is larger than {MAX_BYTES // (1024 * 1024)} MiB: not an envcheck report")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LoadError(f"{p} is not UTF-8 (byte {exc.start})") from None
    try:
        doc = json.loads(text.lstrip("\ufeff"), parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise LoadError(f"{p} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except (ValueError, RecursionError) as exc:
        raise LoadError(f"{p} is not valid JSON ({str(exc).splitlines()[0][:80]})") from None
    if not isinstance(doc, dict):
        raise LoadError(f"{p} is not an envcheck report (not a JSON object)")
    return doc


def write(path: str | os.PathLike, html_text: str) -> Path:
    """Write the page atomically (readers see the old file or the new one); refuses to replace
    anything but a regular file (a device or a FIFO given as the output). Raises OSError."""
    from envcheck.cluster import atomic

    p = str(path)
    if os.path.lexists(p) and not os.path.isfile(p):
        raise OSError(f"{p} exists and is not a regular file")
    return atomic.write_text(p, html_text)
