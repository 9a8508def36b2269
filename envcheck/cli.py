"""Command line: parses options and wires probes -> rules/engines -> renderers. No logic lives here."""

from __future__ import annotations

import os
import sys
import time
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
# Health-check plumbing shared by doctor and validate (envcheck/cluster/).
EXIT_CODES = click.option(
    "--exit-codes", "exit_codes", type=click.Choice(["default", "nagios", "npd", "binary"]),
    default="default", show_default=True,
    help="Exit-code scheme: nagios (0 OK/1 WARN/2 CRIT/3 UNKNOWN, one status line), npd "
         "(node-problem-detector: 0/1, one line <= 80 chars), binary (0/1, for a Slurm prolog).",
)


def _existing_dir(ctx, param, value):
    # Checked up front (exit 2): a missing textfile directory found after a long run is lost work.
    if value and not os.path.isdir(os.path.dirname(os.path.abspath(value))):
        raise click.BadParameter(f"the directory of {value} does not exist", ctx=ctx, param=param)
    return value


PROM_FILE = click.option(
    "--prom-file", "prom_file", type=click.Path(dir_okay=False, writable=True), metavar="PATH",
    callback=_existing_dir,
    help="Also write Prometheus metrics to PATH (node_exporter textfile collector; written atomically).",
)
DRAIN = click.option(
    "--drain", is_flag=True,
    help="Slurm HealthCheckProgram mode: drain this node on failure (reason 'envcheck: ...'), "
         "resume it on success if envcheck drained it; never touches a reason set by someone else.",
)


def _health_outputs(outcome, prom_text, prom_file: str | None, drain: bool) -> None:
    """--prom-file and --drain: done after the report; a failure here is a line on stderr."""
    if prom_file:
        from envcheck.cluster import atomic

        try:
            atomic.write_text(prom_file, prom_text())
        except OSError as exc:
            _progress(f"envcheck: cannot write --prom-file {prom_file}: {exc.strerror or exc}")
    if drain:
        from envcheck.cluster import slurm

        _progress(slurm.apply(outcome).message)


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
            # --exit-codes nagios|npd|binary: envcheck's own failure in that scheme's terms.
            mode = (ctx.obj or {}).get("exit_codes", "default")
            if mode != "default":
                from envcheck.cluster import exitmodes

                decision = exitmodes.decide(exitmodes.internal_error_outcome(type(exc).__name__), mode)
                if decision.line is not None:
                    click.echo(decision.line)
                ctx.exit(decision.code)
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
@click.option("--python", "python", metavar="PATH", type=click.Path(exists=True),
              help="Inspect the torch of another interpreter or venv (default: this one).")
@click.option("--timeout", type=click.FloatRange(min=1), default=30.0, show_default=True,
              help="Seconds to wait for the torch probe before calling it hung.")
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too, not only on errors.")
@EXIT_CODES
@PROM_FILE
@DRAIN
@click.pass_context
def doctor(ctx, fmt, color, save_path, snapshot_path, python, timeout, strict, exit_codes, prom_file, drain):
    """Inspect Python, PyTorch, the NVIDIA driver, every GPU and the host; explain what is wrong.

    Probes run in isolation (torch in a subprocess with a timeout), so doctor works where
    torch is missing, broken or hangs, and where there is no driver or no GPU.
    """
    from envcheck import rules
    from envcheck.cluster import exitmodes, prom
    from envcheck.report import doctor as render

    if snapshot_path and python:
        raise click.UsageError("--snapshot and --python exclude each other: a saved snapshot is not probed")
    if fmt == "json" and exit_codes in ("nagios", "npd"):
        raise click.UsageError(f"--format json and --exit-codes {exit_codes} exclude each other: "
                               f"{exit_codes} prints one status line on stdout")
    ctx.ensure_object(dict)["exit_codes"] = exit_codes
    if snapshot_path:
        snapshot = _load_snapshot(snapshot_path)
    else:
        from envcheck import probes

        snapshot = probes.collect(python=python, torch_timeout=timeout, progress=_progress)
    if save_path:
        snap.save(snapshot, save_path)
        _progress(f"snapshot saved to {save_path}")
    findings = rules.evaluate(snapshot)
    outcome = exitmodes.doctor_outcome(findings, strict=strict)
    decision = exitmodes.decide(outcome, exit_codes)
    if decision.line is not None:
        _write(decision.line)
    elif fmt == "json":
        _write(render.to_json(snapshot, findings, strict=strict))
    else:
        _write(render.to_text(snapshot, findings, color=style.use_color(color), strict=strict))
    _health_outputs(outcome, lambda: prom.doctor_text(snapshot, findings, time.time()), prom_file, drain)
    sys.exit(rules.exit_code(findings, strict=strict) if exit_codes == "default" else decision.code)


def main() -> None:
    """Console entry point (``envcheck`` and ``python -m envcheck``)."""
    cli.main(prog_name="envcheck")
