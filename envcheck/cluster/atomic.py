"""Write a file so that a reader sees the old content or the new, never half of it.

node_exporter's textfile collector may read ``*.prom`` at any moment, so its README writes to a
temporary file and renames it into place (prometheus/node_exporter README, Textfile Collector);
prometheus_client's ``write_to_textfile`` does the same. The temporary file lives in the target's
own directory (``os.replace`` is only atomic within one filesystem) and does not end in
``.prom``, so the collector never parses it; it is removed if anything fails.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_text(path: str | os.PathLike, text: str, mode: int = 0o644) -> Path:
    """Atomically replace ``path`` with ``text`` (UTF-8). Raises OSError with the path in it."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates 0600; the collector (often another user) must be able to read it.
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target
