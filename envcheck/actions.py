"""Actions that change the machine (the only ones envcheck performs, and only when asked).

``envcheck install --run`` installs the planned build with the target interpreter's own pip.
Kept apart from the pure engine (envcheck/recommend) so tests can replace it with a fake.
"""

from __future__ import annotations

import subprocess
from typing import Callable


def pip_install_argv(python: str, args: list[str]) -> list[str]:
    """The exact argv ``--run`` executes: ``<python> -m pip install <args>``."""
    return [python, "-m", "pip", "install", *args]


def run_pip(python: str, args: list[str], echo: Callable[[str], None] | None = None) -> int:
    """Run pip for ``python``; its output goes line by line to ``echo`` (stderr in the CLI).

    Returns pip's exit status; 127 when the interpreter cannot be started (the reason is echoed).
    """
    say = echo or (lambda _line: None)
    argv = pip_install_argv(python, args)
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace")
    except OSError as exc:
        say(f"cannot start {python}: {exc.strerror or exc}")
        return 127
    assert proc.stdout is not None
    for line in proc.stdout:
        say(line.rstrip("\n"))
    return proc.wait()
