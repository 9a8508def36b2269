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


def _target(python: str | None):
    """The interpreter to judge (envcheck.target): --python, else the user's environment."""
    from envcheck import target

    try:
        return target.resolve(python)
    except target.TargetError as exc:
        raise click.UsageError(str(exc)) from None


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
              help="Judge this interpreter or venv/conda folder (default: the active venv or conda "
                   "env, else envcheck's own if it has torch, else python3 on PATH).")
@click.option("--scope", type=click.Choice(["full", "node"]), default="full", show_default=True,
              help="node: judge the machine alone (driver, GPUs, host; no Python environment, torch "
                   "not probed) - for node health checks.")
@click.option("--timeout", type=click.FloatRange(min=1), default=30.0, show_default=True,
              help="Seconds to wait for the torch probe before calling it hung.")
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too, not only on errors.")
@EXIT_CODES
@PROM_FILE
@DRAIN
@click.pass_context
def doctor(ctx, fmt, color, save_path, snapshot_path, python, scope, timeout, strict, exit_codes, prom_file,
           drain):
    """Inspect Python, PyTorch, the NVIDIA driver, every GPU and the host; explain what is wrong.

    Probes run in isolation (torch in a subprocess with a timeout), so doctor works where
    torch is missing, broken or hangs, and where there is no driver or no GPU.
    """
    from envcheck import rules
    from envcheck.cluster import exitmodes, prom
    from envcheck.report import doctor as render

    if snapshot_path and python:
        raise click.UsageError("--snapshot and --python exclude each other: a saved snapshot is not probed")
    if scope == "node" and python:
        raise click.UsageError("--scope node and --python exclude each other: the node scope judges no Python")
    if fmt == "json" and exit_codes in ("nagios", "npd"):
        raise click.UsageError(f"--format json and --exit-codes {exit_codes} exclude each other: "
                               f"{exit_codes} prints one status line on stdout")
    ctx.ensure_object(dict)["exit_codes"] = exit_codes
    if snapshot_path:
        snapshot = _load_snapshot(snapshot_path)
    else:
        from envcheck import probes

        # While the torch subprocess runs, load the rule modules and recipes (pure; ~30-80 ms
        # that would otherwise come after it: bench/doctor_bench.py).
        judged = _target(python) if scope == "full" else None
        snapshot = probes.collect(python=judged and judged.executable, torch_timeout=timeout,
                                  progress=_progress, while_waiting=lambda: rules.evaluate(snap.new({})),
                                  probe_python=judged is not None, target=judged and judged.to_dict())
    if save_path:
        snap.save(snapshot, save_path)
        _progress(f"snapshot saved to {save_path}")
    findings = rules.evaluate(snapshot, scope=scope)
    outcome = exitmodes.doctor_outcome(findings, strict=strict)
    decision = exitmodes.decide(outcome, exit_codes)
    if decision.line is not None:
        _write(decision.line)
    elif fmt == "json":
        _write(render.to_json(snapshot, findings, strict=strict, scope=scope, replayed_from=snapshot_path))
    else:
        _write(render.to_text(snapshot, findings, color=style.use_color(color), strict=strict,
                              width=style.text_width(), scope=scope, replayed_from=snapshot_path))
    _health_outputs(outcome, lambda: prom.doctor_text(snapshot, findings, time.time()), prom_file, drain)
    sys.exit(rules.exit_code(findings, strict=strict) if exit_codes == "default" else decision.code)


_PLATFORMS = ["linux-x86_64", "linux-aarch64", "windows-x86_64", "macos-arm64", "macos-x86_64"]


@cli.command()
@click.option("--gpu", "gpus", multiple=True, metavar="NAME|sm_XY",
              help="Plan for this GPU instead of the probed ones (repeatable): a name such as "
                   "'RTX 4090', H100, V100, MI300X, or a compute capability (sm_86, 8.6), or gfxNNN.")
@click.option("--no-gpu", is_flag=True, help="Plan for CPU only.")
@click.option("--driver", metavar="VERSION", help="NVIDIA driver version, e.g. 570.124.06.")
@click.option("--python", "python", metavar="X.Y|PATH",
              help="Python version to plan for (3.12, 3.13t), or the interpreter/venv to inspect "
                   "and install into (default: the active venv or conda env, else envcheck's own "
                   "if it has torch, else python3 on PATH).")
@click.option("--platform", type=click.Choice(_PLATFORMS), help="Plan for another platform.")
@click.option("--glibc", metavar="X.Y", help="glibc version (Linux), e.g. 2.28.")
@click.option("--torch", "torch_spec", metavar="SPEC",
              help="Only torch releases matching this specifier, e.g. '>=2.4,<2.8' or 2.7.1.")
@click.option("--with", "with_", multiple=True, metavar="PKGS",
              help="Also install matching companions: torchvision, torchaudio (comma-separated).")
@FORMAT
@COLOR
@click.option("--snapshot", "snapshot_path", type=click.Path(dir_okay=False),
              help="Plan for a saved snapshot (envcheck doctor --save) instead of probing.")
@click.option("--run", is_flag=True,
              help="Run the pip command with the target interpreter (after asking), then re-run the doctor.")
@click.option("--yes", "-y", is_flag=True, help="With --run: do not ask for confirmation.")
@click.option("--list-gpus", is_flag=True, help="List the GPU names --gpu accepts and exit.")
def install(gpus, no_gpu, driver, python, platform, glibc, torch_spec, with_, fmt, color,
            snapshot_path, run, yes, list_gpus):
    """The right PyTorch install command for this machine (or a described one), and why.

    Picks the newest torch whose wheel exists for the platform and Python, has kernels for
    every GPU, runs on the driver and the glibc. The what-if flags replace probed facts.

    Exit codes: 0 a plan exists, 1 blocked (the blockers name the smallest fix), 2 bad input.
    """
    from envcheck import recommend
    from envcheck.recommend import machine as mach
    from envcheck.report import install as render

    if list_gpus:
        _write("\n".join(recommend.gpu_names()) + "\n")
        return
    py_version = mach.python_version_flag(python)
    py_path = python if python and not py_version else None
    if py_path and not os.path.exists(py_path):
        raise click.UsageError(f"--python {python!r}: no such interpreter or venv; give X.Y "
                               "(e.g. 3.12) or the path of a python executable or venv")
    if snapshot_path and py_path:
        raise click.UsageError("--snapshot and --python PATH exclude each other: a saved snapshot is not probed")
    judged = None  # which interpreter the plan is for, and why (None: described, not probed)
    try:
        spec = mach.parse_torch_spec(torch_spec)
        extras = mach.parse_with(with_)
        what_if = dict(gpus=list(gpus), no_gpu=no_gpu, driver=driver, python=py_version,
                       platform=platform, glibc=glibc)
        if snapshot_path:
            loaded = _load_snapshot(snapshot_path)
            judged = loaded.get("target") if isinstance(loaded.get("target"), dict) else None
            machine = mach.machine_from_snapshot(loaded, source="snapshot")
            machine = recommend.apply_overrides(machine, **what_if)
        elif platform and py_version and (gpus or no_gpu):
            machine = recommend.what_if_machine(**what_if)  # fully described: nothing to probe
        else:
            recommend.what_if_machine(**what_if)  # reject bad flags before a slow probe
            from envcheck import probes

            # The plan needs the interpreter and what is installed, not a torch import.
            chosen = _target(py_path)
            judged = chosen.to_dict()
            snapshot = probes.collect(python=chosen.executable, progress=_progress, import_torch=False,
                                      target=judged)
            machine = recommend.machine_from_snapshot(snapshot)
            machine = recommend.apply_overrides(machine, **what_if)
    except recommend.InputError as exc:
        raise click.UsageError(str(exc)) from None
    plan = recommend.recommend(machine, spec, extras)
    use_color = style.use_color(color)
    if not run:
        _write(render.to_json(plan, target=judged) if fmt == "json"
               else render.to_text(plan, color=use_color, target=judged))
        sys.exit(render.exit_code(plan))
    _install_run(plan, fmt, use_color, yes)


def _install_run(plan, fmt: str, use_color: bool, yes: bool) -> None:
    """--run: show the command, ask, run pip with the target interpreter, then re-run the doctor."""
    import json

    from envcheck import actions, probes, rules
    from envcheck.report import doctor as doctor_render
    from envcheck.report import install as render

    if fmt != "json":
        _write(render.to_text(plan, color=use_color))
    if not plan.ok:
        _progress("envcheck: nothing to run: the plan is blocked (see the blockers)")
        sys.exit(exitcodes.FINDINGS)
    python = plan.machine.executable
    if not python:
        raise click.UsageError("--run installs into a probed interpreter: drop --python X.Y, "
                               "--platform and --snapshot, or give --python PATH")
    argv = actions.pip_install_argv(python, plan.pip_args)
    _progress("will run: " + " ".join(argv))
    if not yes:
        click.confirm("Run this pip command now?", abort=True, err=True)
    rc = actions.run_pip(python, plan.pip_args, echo=_progress)
    if rc != 0:
        _progress(f"envcheck: pip exited with status {rc}; nothing else was changed")
        if fmt == "json":
            _write(json.dumps({"install": render.to_dict(plan), "run": {"argv": argv, "returncode": rc},
                               "doctor": None}, indent=2, sort_keys=True) + "\n")
        sys.exit(exitcodes.FINDINGS)
    _progress("pip finished; re-running the doctor on " + python)
    snapshot = probes.collect(python=python, progress=_progress)
    findings = rules.evaluate(snapshot)
    if fmt == "json":
        doctor_doc = json.loads(doctor_render.to_json(snapshot, findings))
        _write(json.dumps({"install": render.to_dict(plan), "run": {"argv": argv, "returncode": rc},
                           "doctor": doctor_doc}, indent=2, sort_keys=True) + "\n")
    else:
        _write(doctor_render.to_text(snapshot, findings, color=use_color))
    sys.exit(rules.exit_code(findings))


@cli.command()
@click.option("--gpus", type=click.IntRange(min=1), metavar="N",
              help="Use the first N CUDA devices, one all-reduce rank each (default: all visible).")
@click.option("--procs", type=click.IntRange(min=1), metavar="N",
              help="CPU path: all-reduce ranks (gloo processes; default 2).")
@click.option("--checks", "checks_spec", metavar="LIST",
              help="Comma-separated checks to run: cnn, amp, compile, allreduce, gemm, memory (default: all).")
@click.option("--profile", type=click.Choice(["quick", "standard", "burn-in"]),
              help="Workload size (default standard); burn-in repeats the GEMM and memory stress for --duration.")
@click.option("--quick", is_flag=True,
              help="Node health check: cnn, allreduce, gemm and memory at --profile quick within a 50 s "
                   "--budget (inside Slurm's 60 s HealthCheckProgram limit).")
@click.option("--budget", type=click.FloatRange(min=1), metavar="S",
              help="End the whole run after S seconds: the check running then fails, later ones are "
                   "skipped (default: none; 50 with --quick).")
@click.option("--duration", type=click.FloatRange(min=1), metavar="S",
              help="Seconds of stress in --profile burn-in (default 600).")
@click.option("--device", type=click.Choice(["cuda", "cpu"]),
              help="Where the checks run (default: cuda when torch sees a GPU, else cpu).")
@FORMAT
@COLOR
@click.option("--report", "report_path", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              callback=_existing_dir, help="Also write the JSON report to FILE (kept current after each check).")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              callback=_existing_dir, help="Also write JUnit XML to FILE (one testcase per check).")
@click.option("--timeout", type=click.FloatRange(min=1), default=120.0, show_default=True, metavar="S",
              help="Seconds a collective (or any step of a check) may make no progress before it counts as hung.")
@click.option("--allreduce-max-mib", type=click.IntRange(min=1), metavar="MiB",
              help="Largest all-reduce message (default 1024 on GPUs, 64 on CPUs; lowered to fit free memory).")
@click.option("--isolation", type=click.Choice(["subprocess", "inprocess"]), default="subprocess", hidden=True)
@click.option("--straggler-threshold", type=click.FloatRange(min=0, max=1, min_open=True), default=0.10,
              show_default=True, metavar="FRACTION",
              help="Under torchrun/srun: flag a node whose GEMM, memory or intra-node busbw figure is this "
                   "fraction worse than the cluster median (and, with --pairwise, a node pair's busbw "
                   "below the pairs' median).")
@click.option("--pairwise", is_flag=True,
              help="Under torchrun/srun on 2+ nodes: also all-reduce over node pairs (even/odd, then failed "
                   "nodes with known-good ones) to name the bad node, not the bad pair.")
@EXIT_CODES
@PROM_FILE
@DRAIN
@click.pass_context
def validate(ctx, gpus, procs, checks_spec, profile, quick, budget, duration, device, fmt, color, report_path,
             junit_path, timeout, allreduce_max_mib, isolation, straggler_threshold, pairwise, exit_codes, prom_file,
             drain):
    """Run a real workload on this machine and certify it for large-model work.

    \b
    Checks: cnn (training converges, bit-reproducible, matches a CPU reference), amp (fp16 +
    GradScaler, bf16), compile (inductor), allreduce (exact sums, busbw per size), gemm (TFLOPS
    per dtype, bit-exact repeats), memory (bandwidths, pattern write/verify).

    Verdict: certified, degraded (a figure below its floor), failed, or passed (correct, no
    floors known: CPU or an unknown GPU). Exit codes: 0 certified/passed, 1 degraded/failed,
    2 bad usage, 3 envcheck failed, 130 interrupted (the report is still written).
    """
    from envcheck.report import validate as render
    from envcheck.validate import app
    from envcheck.validate import runner as vrunner
    from envcheck.validate.config import ValidateConfig

    started = time.perf_counter()
    try:
        plan = app.plan(checks_spec, profile, quick=quick, budget=budget)
        checks, profile = plan.checks, plan.profile
        app.check_static(device=device, gpus=gpus, procs=procs, profile=profile, duration=duration)
    except app.UsageProblem as exc:
        raise click.UsageError(str(exc)) from None
    use_color = style.use_color(color)
    if fmt == "json" and exit_codes in ("nagios", "npd"):
        raise click.UsageError(f"--format json and --exit-codes {exit_codes} exclude each other: "
                               f"{exit_codes} prints one status line on stdout")
    ctx.ensure_object(dict)["exit_codes"] = exit_codes
    # Started by torchrun or srun: join that job as one rank (issue 5, envcheck/cluster/).
    from envcheck.cluster import launch as cluster_launch

    try:
        launched = cluster_launch.detect(os.environ)
    except cluster_launch.LaunchError as exc:
        raise click.UsageError(f"torchrun/srun environment: {exc}") from None
    try:
        app.check_pairwise(pairwise, launched=launched is not None, checks=checks)
    except app.UsageProblem as exc:
        raise click.UsageError(str(exc)) from None
    if launched is not None:
        from envcheck.cluster import validate_mode

        if gpus is not None or procs is not None:
            raise click.UsageError("--gpus/--procs do not apply under torchrun/srun: every task is one rank")
        opts = validate_mode.Options(checks=checks, profile=profile, device=device, duration=duration,
                                     timeout=timeout, allreduce_max_mib=allreduce_max_mib, isolation=isolation,
                                     straggler_threshold=straggler_threshold, budget=plan.budget,
                                     pairwise=pairwise)
        sys.exit(validate_mode.main(launched, opts, fmt=fmt, color=use_color, report_path=report_path,
                                    junit_path=junit_path, exit_codes=exit_codes, prom_file=prom_file,
                                    drain=drain, write=_write, progress=_progress))
    deadline = time.monotonic() + plan.budget if plan.budget else None
    _progress("validate: importing torch and probing the machine..."
              + (f" (budget {plan.budget:g} s)" if plan.budget else ""))
    prep = app.prepare(isolation=isolation, device=device, timeout=plan.budget)
    persist = app.outputs_writer(report_path, junit_path, _progress)
    if not prep.preflight.ok:
        cfg = ValidateConfig(device=device or "cpu", profile=profile, budget=plan.budget)
        report = vrunner.failed_report(cfg, checks, prep.preflight.error or "torch is not usable",
                                       machine=prep.machine)
        _progress(f"envcheck: validate needs a working torch: {prep.preflight.error} "
                  "(`envcheck install` prints the right install command)")
    else:
        try:
            cfg = app.resolve(prep.preflight.info, device=device, gpus=gpus, procs=procs, profile=profile,
                              duration=duration, timeout=timeout, allreduce_max_mib=allreduce_max_mib,
                              budget=plan.budget)
        except app.UsageProblem as exc:
            raise click.UsageError(str(exc)) from None
        listener = render.ProgressDisplay(sys.stderr, color=style.use_color(color, sys.stderr))
        report = vrunner.run(cfg, checks, prep.preflight.info, isolation=isolation, listener=listener,
                             persist=persist, machine=prep.machine, timings=prep.timings, deadline=deadline)
    report.timings["total_s"] = round(time.perf_counter() - started, 3)
    persist(report)
    from envcheck.cluster import exitmodes, prom

    outcome = exitmodes.validate_outcome(report.to_dict())
    decision = exitmodes.decide(outcome, exit_codes)
    if decision.line is not None:
        _write(decision.line)
    else:
        _write(render.to_json(report) if fmt == "json" else render.to_text(report, color=use_color))
    _health_outputs(outcome, lambda: prom.validate_text(report.to_dict(), time.time()), prom_file, drain)
    if exit_codes != "default":
        sys.exit(decision.code)
    sys.exit(130 if report.interrupted else render.exit_code(report))


def main() -> None:
    """Console entry point (``envcheck`` and ``python -m envcheck``)."""
    cli.main(prog_name="envcheck")
