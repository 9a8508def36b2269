"""The one writer of every file envcheck writes (--save, --report, --junit, --prom-file).

A reader sees the old content or the new, never half: the text goes to a temporary file in
the target's own folder (``os.replace`` is atomic only within one filesystem), is flushed
and fsync'ed, made 0644 (node_exporter's textfile collector often runs as another user), and
renamed into place, as node_exporter's README asks of textfile writers (Textfile Collector)
and prometheus_client's ``write_to_textfile`` does. The temporary name starts with a dot and
ends in ``.tmp``, so the collector never parses it.

The final path must be absent or a regular file: a symlink there is refused rather than
followed or replaced (it may point at a file the user never meant to give), and so is a
device, FIFO or folder (as root, renaming over ``/dev/full`` would replace the device node).
:func:`check` says so before any work starts, so the CLI can answer with one line, exit 2.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path


class OutputError(OSError):
    """The path cannot be written as asked; ``str()`` is one line naming it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.strerror = message


def check(path: str | os.PathLike) -> Path:
    """Raise OutputError unless ``path`` can be (re)placed as a regular file."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"the directory of {path} does not exist")
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return target
    except OSError as exc:
        raise OutputError(f"{path}: {exc.strerror or exc}") from None
    if stat.S_ISLNK(st.st_mode):
        raise OutputError(f"{path} is a symbolic link; envcheck does not write through links "
                          "(give the real path)")
    if not stat.S_ISREG(st.st_mode):
        raise OutputError(f"{path} exists and is not a regular file (a device, FIFO or folder); "
                          "envcheck only replaces regular files")
    return target


def write_text(path: str | os.PathLike, text: str, mode: int = 0o644) -> Path:
    """Atomically replace ``path`` with ``text`` (UTF-8). Raises OSError (OutputError for a
    path that is not a regular file) with the path in it; never leaves the temporary file."""
    target = check(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
            os.fchmod(fh.fileno(), mode) if hasattr(os, "fchmod") else os.chmod(tmp, mode)
        check(target)  # still not a link or a device (it may have changed while we wrote)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (best effort)
        dfd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return target
