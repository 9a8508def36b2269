"""Actions that change the machine (the only ones envcheck performs, and only when asked).

``envcheck install --run`` installs the planned build with the target interpreter's own pip.
Kept apart from the pure engine (envcheck/recommend) so tests can replace it with a fake.
"""

from __future__ import annotations

from typing import Callable


def pip_install_argv(python: str, args: list[str]) -> list[str]:
    """The exact argv ``--run`` executes: ``<python> -m pip install <args>``."""
    return [python, "-m", "pip", "install", *args]


def run_pip(python: str, args: list[str], echo: Callable[[str], None] | None = None) -> int:
    """Run pip for ``python``; its output goes line by line to ``echo`` (stderr in the CLI).

    Started by envcheck.proc like every child: a ``pip/`` folder in the working directory is
    not what runs (the cwd is off sys.path), and pip dies with envcheck. Returns pip's exit
    status; 127 when the interpreter cannot be started (the reason is echoed).
    """
    from envcheck import proc

    say = echo or (lambda _line: None)
    try:
        child = proc.start(proc.python_argv(python, module="pip", args=["install", *args]), stderr="stdout")
    except OSError as exc:
        say(f"cannot start {python}: {exc.strerror or exc}")
        return 127
    with proc.Supervisor([child]) as sup:
        sup.watch(on_line=lambda _i, line: say(line.decode("utf-8", "replace").rstrip("\n")))
    return child.returncode if child.returncode is not None else 1
