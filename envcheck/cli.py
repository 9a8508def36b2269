"""Command line: parses options and wires probes -> rules/engines -> renderers. No logic lives here."""

from __future__ import annotations

import sys
import traceback

import click

from envcheck import __version__, exitcodes
from envcheck import snapshot as snap
from envcheck.report import style


def _progress(message: str) -> None:
    """Progress and logs go to stderr; stdout carries only the report."""
    click.echo(message, err=True)


def _write(text: str) -> None:
    # Renderers already decided on colour (TTY, NO_COLOR, --color); keep what they produced.
    click.echo(text, nl=not text.endswith("\n"), color=True)


def _load_snapshot(path: str) -> dict:
    try:
        return snap.load(path)
    except snap.SnapshotError as exc:
        raise click.UsageError(str(exc)) from None


FORMAT = click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
    help="Report format on stdout.",
)
COLOR = click.option(
    "--color/--no-color", default=None,
    help="Force colour on or off (default: on for a terminal, off when NO_COLOR is set).",
)


class _Group(click.Group):
    """Turns envcheck's own unexpected errors into one line and exit 3 (findings exit 1)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("envcheck: interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            if (ctx.obj or {}).get("debug"):
                traceback.print_exc()
            click.echo(
                f"envcheck: internal error: {type(exc).__name__}: {exc} "
                "(re-run with --debug for the traceback, and please report it)",
                err=True,
            )
            ctx.exit(exitcodes.INTERNAL)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="envcheck")
@click.option("--debug", is_flag=True, help="Show tracebacks of envcheck's own errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Is this machine ready for large-model work with PyTorch?

    \b
      envcheck doctor            what is installed, what is wrong, and the exact fix
      envcheck install           the right PyTorch install command for this machine
      envcheck validate          run a real workload and certify the machine

    Exit codes: 0 fine, 1 problems found, 2 bad usage or input, 3 envcheck failed.
    """
    ctx.obj = {"debug": debug}


@cli.command()
@FORMAT
@COLOR
@click.option("--save", "save_path", type=click.Path(dir_okay=False, writable=True),
              help="Also write the snapshot (all probed facts) to FILE as JSON.")
@click.option("--snapshot", "snapshot_path", type=click.Path(dir_okay=False),
              help="Diagnose a saved snapshot instead of probing this machine.")
@click.option("--python", "python", metavar="PATH",
              help="Inspect the torch of another interpreter or venv (default: this one).")
@click.option("--timeout", type=click.FloatRange(min=1), default=30.0, show_default=True,
              help="Seconds to wait for the torch probe before calling it hung.")
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too, not only on errors.")
def doctor(fmt, color, save_path, snapshot_path, python, timeout, strict):
    """Inspect Python, PyTorch, the NVIDIA driver, every GPU and the host; explain what is wrong.

    Probes run in isolation (torch in a subprocess with a timeout), so doctor works where
    torch is missing, broken or hangs, and where there is no driver or no GPU.
    """
    from envcheck import rules
    from envcheck.report import doctor as render

    if snapshot_path and python:
        raise click.UsageError("--snapshot and --python exclude each other: a saved snapshot is not probed")
    if snapshot_path:
        snapshot = _load_snapshot(snapshot_path)
    else:
        from envcheck import probes

        snapshot = probes.collect(python=python, torch_timeout=timeout, progress=_progress)
    if save_path:
        snap.save(snapshot, save_path)
        _progress(f"snapshot saved to {save_path}")
    findings = rules.evaluate(snapshot)
    if fmt == "json":
        _write(render.to_json(snapshot, findings))
    else:
        _write(render.to_text(snapshot, findings, color=style.use_color(color)))
    sys.exit(rules.exit_code(findings, strict=strict))


def main() -> None:
    """Console entry point (``envcheck`` and ``python -m envcheck``)."""
    cli.main(prog_name="envcheck")
