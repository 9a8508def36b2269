"""Command line: parses options and wires probes -> rules/engines -> renderers. No logic lives here."""

from __future__ import annotations

import os
import sys
import time
import traceback

import click

from envcheck import __version__, exitcodes, options, redact
from envcheck import snapshot as snap
from envcheck.report import safe, style


def _progress(message: str) -> None:
    """Progress and logs go to stderr; stdout carries only the report. Scrubbed and neutralised:
    messages quote paths, pip's output and torch errors (envcheck.report.safe.clean_text)."""
    click.echo(safe.clean_text(message), err=True)


def _write(text: str) -> None:
    # Renderers already decided on colour (TTY, NO_COLOR, --color) and neutralised the data they
    # show; the scrubber runs once more on everything that reaches stdout (envcheck.redact).
    text = redact.scrub_text(text)
    click.echo(text, nl=not text.endswith("\n"), color=True)


def _target(python: str | None):
    """The interpreter to judge (envcheck.target): --python, else the user's environment."""
    from envcheck import target

    try:
        return target.resolve(python)
    except target.TargetError as exc:
        raise click.UsageError(str(exc)) from None


def _columns() -> int | None:
    """The terminal's width when stdout is one (text wraps there, never mid-word), else None."""
    return style.text_width() if sys.stdout.isatty() else None


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
    # Checked up front (exit 2): a missing folder, a symlink or a device at the path found
    # after a long run is lost work (envcheck/outfile.py).
    from envcheck import outfile

    if value:
        try:
            outfile.check(value)
        except outfile.OutputError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return value


PROM_FILE = click.option(
    "--prom-file", "prom_file", type=click.Path(dir_okay=False, writable=True), metavar="PATH",
    callback=_existing_dir,
    help="Also write Prometheus metrics to PATH (node_exporter textfile collector; written atomically).",
)
HTML = click.option(
    "--html", "html_path", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
    callback=_existing_dir,
    help="Also write a self-contained HTML report to FILE (no network, no script; written atomically).",
)
DRAIN = click.option(
    "--drain", is_flag=True,
    help="Slurm HealthCheckProgram mode: drain this node on failure (reason 'envcheck: ...'), "
         "resume it on success if envcheck drained it; never touches a reason set by someone else.",
)


def _xid_window(ctx, param, value):
    if value is None:
        return None
    from envcheck.rules.xid import parse_window

    try:
        return parse_window(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _node_profile(ctx, param, value):
    if value is None or value == "none":
        return value
    from envcheck.rules.node import profile_ids

    if value not in profile_ids():
        raise click.BadParameter(f"unknown profile {value!r}; one of: none, {', '.join(profile_ids())}")
    return value


def NODE(fn):  # noqa: N802 - an option group, named like the others
    """Node-health options (issue 13): the XID window and the node profile."""
    for opt in reversed((
        click.option("--xid-window", "xid_window", metavar="DURATION", callback=_xid_window,
                     help="Judge only XIDs of the last DURATION (90s, 30m, 2h, 1d) as current; "
                          "older ones of this boot are history. Default: the whole boot."),
        click.option("--node-profile", "node_profile", metavar="ID|none", callback=_node_profile,
                     help="Node shape to judge against (recipes/node_profiles.json; default: "
                          "detected from the GPUs; none: no shape checks)."),
        click.option("--expect-gpus", "expect_gpus", type=click.IntRange(min=1, max=4096), metavar="N",
                     help="GPUs this node must have (overrides the profile's count)."),
    )):
        fn = opt(fn)
    return fn


def _health_outputs(outcome, prom_text, prom_file: str | None, drain: bool) -> None:
    """--prom-file and --drain: done after the report; a failure here is a line on stderr."""
    if prom_file:
        from envcheck import outfile

        try:
            outfile.write_text(prom_file, prom_text())
        except OSError as exc:
            _progress(f"envcheck: cannot write --prom-file {prom_file}: {exc.strerror or exc}")
    if drain:
        from envcheck.cluster import slurm

        _progress(slurm.apply(outcome).message)


def _html_out(html_path: str | None, doc) -> None:
    """--html FILE: written after the report from its JSON (``doc()``); a failure is one line on stderr."""
    if html_path:
        from envcheck.report import html

        try:
            html.write_html(html_path, doc())
        except OSError as exc:
            _progress(f"envcheck: cannot write --html {html_path}: {exc.strerror or exc}")


class _UsageLine(click.ClickException):
    """A usage error as the README promises it: one line on stderr, exit 2 (Click's own display
    is three: "Usage: ...", "Try ... for help.", "Error: ...")."""

    exit_code = exitcodes.USAGE

    def show(self, file=None) -> None:
        click.echo(self.message, err=True)


def _one_line(exc: click.UsageError) -> click.ClickException:
    if isinstance(exc, getattr(click.exceptions, "NoArgsIsHelpError", ())):
        return exc  # bare `envcheck`: the help text is the answer
    where = exc.ctx.command_path if exc.ctx is not None else "envcheck"
    message = safe.clean_text(" ".join(exc.format_message().split()), one_line=True)
    return _UsageLine(f"Error: {message} (see '{where} --help')")


def _save(snapshot: dict, path: str) -> None:
    """--save: a failure is a line on stderr; the report is still printed."""
    try:
        snap.save(snapshot, path)
        _progress(f"snapshot saved to {path}")
    except OSError as exc:
        _progress(f"envcheck: cannot write --save {path}: {exc.strerror or exc}")


class _Group(click.Group):
    """Turns usage errors into one line (exit 2) and envcheck's own unexpected errors into one
    line and exit 3 (findings exit 1)."""

    def make_context(self, *args, **kwargs) -> click.Context:
        try:  # the top level's own options and arguments
            return super().make_context(*args, **kwargs)
        except click.UsageError as exc:
            raise _one_line(exc) from None

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # a subcommand's parsing, or raised by its body
            raise _one_line(exc) from None
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            from envcheck import proc

            proc.kill_all()  # a child watched on another thread (doctor's torch probe) dies too
            click.echo("envcheck: interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            if (ctx.obj or {}).get("debug"):
                traceback.print_exc()
            click.echo(
                f"envcheck: internal error: {type(exc).__name__}: {safe.clean_text(exc, one_line=True)} "
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
      envcheck compare           what differs between machines (doctor snapshots)

    Exit codes: 0 fine, 1 problems found, 2 bad usage or input, 3 envcheck failed.
    """
    ctx.obj = {"debug": debug}


@cli.command()
@FORMAT
@COLOR
@click.option("--save", "save_path", type=click.Path(dir_okay=False, writable=True), callback=_existing_dir,
              help="Also write the snapshot (all probed facts) to FILE as JSON.")
@click.option("--snapshot", "snapshot_path", type=click.Path(dir_okay=False),
              help="Diagnose a saved snapshot instead of probing this machine.")
@click.option("--python", "python", metavar="PATH", type=click.Path(exists=True),
              help="Judge this interpreter or venv/conda folder (default: the active venv or conda "
                   "env, else envcheck's own if it has torch, else python3 on PATH).")
@click.option("--scope", type=click.Choice(["full", "node"]), default="full", show_default=True,
              help="node: judge the machine alone (driver, GPUs, host, fabric; no Python environment, "
                   "torch not probed) - for node health checks.")
@click.option("--timeout", type=options.seconds(), default=30.0, show_default=True, metavar="S",
              help="Seconds to wait for the torch probe before calling it hung (at most a day).")
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too, not only on errors.")
@EXIT_CODES
@PROM_FILE
@DRAIN
@HTML
@NODE
@click.pass_context
def doctor(ctx, fmt, color, save_path, snapshot_path, python, scope, timeout, strict, exit_codes, prom_file,
           drain, html_path, xid_window, node_profile, expect_gpus):
    """Inspect Python, PyTorch, the NVIDIA driver, every GPU and the host; explain what is wrong.

    Probes run in isolation (torch in a subprocess with a timeout), so doctor works where
    torch is missing, broken or hangs, and where there is no driver or no GPU.
    """
    from envcheck import rules
    from envcheck.cluster import exitmodes, prom

    if snapshot_path and python:
        raise click.UsageError("--snapshot and --python exclude each other: a saved snapshot is not probed")
    if scope == "node" and python:
        raise click.UsageError("--scope node and --python exclude each other: the node scope judges no Python")
    if exitmodes.format_conflict(fmt, exit_codes):
        raise click.UsageError(exitmodes.format_conflict(fmt, exit_codes))
    ctx.ensure_object(dict)["exit_codes"] = exit_codes
    snapshot = _load_snapshot(snapshot_path) if snapshot_path else _probe(python, scope, timeout)
    if save_path:
        _save(snapshot, save_path)
    options = {k: v for k, v in (("xid_window_s", xid_window), ("node_profile", node_profile),
                                 ("expect_gpus", expect_gpus)) if v is not None}
    findings = rules.evaluate(snapshot, options=options or None, scope=scope)
    outcome = exitmodes.doctor_outcome(findings, strict=strict)
    decision = exitmodes.decide(outcome, exit_codes)
    if decision.line is not None:
        _write(safe.neutralise(decision.line, one_line=True))
    else:
        _write(_doctor_report(snapshot, findings, fmt, color, strict, scope, snapshot_path))
    _health_outputs(outcome, lambda: prom.doctor_text(snapshot, findings, time.time()), prom_file, drain)
    _html_out(html_path, lambda: _html_doctor(snapshot, findings, strict))
    sys.exit(rules.exit_code(findings, strict=strict) if exit_codes == "default" else decision.code)


def _probe(python: str | None, scope: str, timeout: float) -> dict:
    """doctor's probes: the judged interpreter's torch (none under --scope node), NVML, host."""
    from envcheck import probes, proc, rules

    judged = _target(python) if scope == "full" else None
    # While the torch subprocess runs, load the rule modules and recipes (pure; ~30-80 ms that
    # would otherwise come after it: bench/doctor_bench.py).
    # SIGTERM/SIGHUP end doctor like Ctrl-C: the probe's process tree is killed, exit 130.
    with proc.sigterm_raises(lambda _signum: KeyboardInterrupt()):
        return probes.collect(python=judged and judged.executable, torch_timeout=timeout, progress=_progress,
                              while_waiting=lambda: rules.evaluate(snap.new({})), probe_python=judged is not None,
                              target=judged and judged.to_dict())


def _doctor_report(snapshot, findings, fmt, color, strict, scope, replayed_from) -> str:
    from envcheck.report import doctor as render

    if fmt == "json":
        return render.to_json(snapshot, findings, strict=strict, scope=scope, replayed_from=replayed_from)
    return render.to_text(snapshot, findings, color=style.use_color(color), strict=strict,
                          width=style.text_width(), scope=scope, replayed_from=replayed_from)


def _html_doctor(snapshot, findings, strict):
    from envcheck.report import html

    return html.doctor_document(snapshot, findings, strict=strict)


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
@click.option("--macos", metavar="X.Y", help="macOS version (macOS wheels carry a minimum), e.g. 13.6.")
@click.option("--online", is_flag=True,
              help="Also check the plan against the live index: the wheel for this platform and "
                   "Python exists, its METADATA agrees, and which newer releases the index has.")
@click.option("--index-url", "index_url", metavar="URL",
              help="With --online: the index (mirror) to check instead of the plan's / PIP_INDEX_URL.")
@click.option("--online-timeout", type=options.seconds(minimum=0.1, maximum=600), default=15.0,
              show_default=True, metavar="SECONDS", help="With --online: give up after this long.")
def install(gpus, no_gpu, driver, python, platform, glibc, torch_spec, with_, fmt, color,
            snapshot_path, run, yes, list_gpus, macos, online, index_url, online_timeout):
    """The right PyTorch install command for this machine (or a described one), and why.

    Picks the newest torch whose wheel exists for the platform and Python, has kernels for
    every GPU, runs on the driver and the glibc. The what-if flags replace probed facts.

    Exit codes: 0 a plan exists, 1 blocked (the blockers name the smallest fix), 2 bad input.
    """
    from envcheck import recommend
    from envcheck.recommend import machine as mach
    from envcheck.report import install as render

    if list_gpus:
        _write(mach.gpu_listing())
        return
    py_version, py_path = _install_python(python, snapshot_path)
    try:
        spec = mach.parse_torch_spec(torch_spec)
        extras = mach.parse_with(with_)
        what_if = dict(gpus=list(gpus), no_gpu=no_gpu, driver=driver, python=py_version,
                       platform=platform, glibc=glibc, macos=macos)
        if index_url:
            from envcheck.recommend import online as online_check

            index_url = online_check.validate_index_url(index_url, online)
        machine, judged = _install_machine(what_if, snapshot_path, py_path,
                                           described=bool(platform and py_version and (gpus or no_gpu)))
    except recommend.InputError as exc:
        raise click.UsageError(str(exc)) from None
    plan = recommend.recommend(machine, spec, extras)
    if online and plan.ok:
        _progress("envcheck: checking the plan against the package index (--online)")
        plan.online = _online_check(plan, index_url, online_timeout)
    use_color = style.use_color(color)
    if not run:
        _write(render.to_json(plan, target=judged) if fmt == "json"
               else render.to_text(plan, color=use_color, target=judged, columns=_columns()))
        sys.exit(render.exit_code(plan))
    _install_run(plan, fmt, use_color, yes)


def _online_check(plan, index_url: str | None, timeout: float) -> dict:
    from envcheck.recommend import online as online_check

    return online_check.check(plan, index_url, os.environ, timeout).to_dict()


def _install_python(python: str | None, snapshot_path: str | None) -> tuple[str | None, str | None]:
    """install --python: a version to plan for (X.Y) or an interpreter path; usage errors."""
    from envcheck.recommend import machine as mach

    py_version = mach.python_version_flag(python)
    py_path = python if python and not py_version else None
    if py_path and not os.path.exists(py_path):
        raise click.UsageError(f"--python {python!r}: no such interpreter or venv; give X.Y "
                               "(e.g. 3.12) or the path of a python executable or venv")
    if snapshot_path and py_path:
        raise click.UsageError("--snapshot and --python PATH exclude each other: a saved snapshot is not probed")
    return py_version, py_path


def _install_machine(what_if: dict, snapshot_path: str | None, py_path: str | None, described: bool):
    """The machine facts a plan is for, and the judged interpreter (None: described, not probed):
    a saved snapshot, a fully described machine (nothing to probe), or this machine's probe."""
    from envcheck import recommend
    from envcheck.recommend import machine as mach

    if snapshot_path:
        loaded = _load_snapshot(snapshot_path)
        judged = loaded.get("target") if isinstance(loaded.get("target"), dict) else None
        return recommend.apply_overrides(mach.machine_from_snapshot(loaded, source="snapshot"), **what_if), judged
    if described:
        return recommend.what_if_machine(**what_if), None
    recommend.what_if_machine(**what_if)  # reject bad flags before a slow probe
    from envcheck import probes

    # The plan needs the interpreter and what is installed, not a torch import.
    chosen = _target(py_path)
    judged = chosen.to_dict()
    snapshot = probes.collect(python=chosen.executable, progress=_progress, import_torch=False, target=judged)
    return recommend.apply_overrides(recommend.machine_from_snapshot(snapshot), **what_if), judged


def _install_run(plan, fmt: str, use_color: bool, yes: bool) -> None:
    """--run: show the command, ask, run pip with the target interpreter, then re-run the doctor."""
    import json

    from envcheck import actions, probes, rules
    from envcheck.report import doctor as doctor_render
    from envcheck.report import install as render

    if fmt != "json":
        _write(render.to_text(plan, color=use_color, columns=_columns()))
    if not plan.ok or render.exit_code(plan):
        _progress("envcheck: nothing to run: " + ("the plan is blocked (see the blockers)" if not plan.ok
                                                  else "the index disagrees with the plan (see Online check)"))
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
    def run_json(doctor_doc) -> str:
        return json.dumps({"install": render.to_dict(plan), "run": {"argv": argv, "returncode": rc},
                           "doctor": doctor_doc}, indent=2, sort_keys=True) + "\n"

    if rc != 0:
        _progress(f"envcheck: pip exited with status {rc}; nothing else was changed")
        if fmt == "json":
            _write(run_json(None))
        sys.exit(exitcodes.FINDINGS)
    _progress("pip finished; re-running the doctor on " + python)
    snapshot = probes.collect(python=python, progress=_progress)
    findings = rules.evaluate(snapshot)
    if fmt == "json":
        _write(run_json(json.loads(doctor_render.to_json(snapshot, findings))))
    else:
        _write(doctor_render.to_text(snapshot, findings, color=use_color))
    sys.exit(rules.exit_code(findings))


@cli.command()
@click.option("--gpus", type=click.IntRange(min=1), metavar="N",
              help="Use the first N CUDA devices, one all-reduce rank each (default: all visible).")
@click.option("--procs", type=options.count(maximum=1024), metavar="N",
              help="CPU path: all-reduce ranks (gloo processes; default 2).")
@click.option("--checks", "checks_spec", metavar="LIST", callback=options.non_empty,
              help="Comma-separated checks to run: cnn, amp, compile, allreduce, gemm, memory, transformer, "
                   "collectives, p2p, ddp (default: all).")
@click.option("--profile", type=click.Choice(["quick", "standard", "burn-in"]),
              help="Workload size (default standard); burn-in repeats the GEMM and memory stress for --duration.")
@click.option("--quick", is_flag=True,
              help="Node health check: cnn, allreduce, gemm and memory at --profile quick within a 50 s "
                   "--budget (inside Slurm's 60 s HealthCheckProgram limit).")
@click.option("--budget", type=options.seconds(maximum=options.WEEK_S), metavar="S",
              help="End the whole run after S seconds: the check running then fails, later ones are "
                   "skipped (default: none; 50 with --quick).")
@click.option("--duration", type=options.seconds(maximum=options.WEEK_S), metavar="S",
              help="Seconds of stress in --profile burn-in (default 600).")
@click.option("--device", type=click.Choice(["cuda", "cpu"]),
              help="Where the checks run (default: cuda when torch sees a GPU, else cpu).")
@FORMAT
@COLOR
@click.option("--report", "report_path", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              callback=_existing_dir, help="Also write the JSON report to FILE (kept current after each check).")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              callback=_existing_dir, help="Also write JUnit XML to FILE (one testcase per check).")
@click.option("--timeout", type=options.seconds(), default=120.0, show_default=True, metavar="S",
              help="Seconds a collective (or any step of a check) may make no progress before it counts as hung.")
@click.option("--allreduce-max-mib", type=options.count(maximum=65536), metavar="MiB",
              help="Largest all-reduce message (default 1024 on GPUs, 64 on CPUs; lowered to fit free memory).")
@click.option("--isolation", type=click.Choice(["subprocess", "inprocess"]), default="subprocess", hidden=True)
@click.option("--straggler-threshold", type=options.fraction(), default=0.10,
              show_default=True, metavar="FRACTION",
              help="Under torchrun/srun: flag a node whose GEMM, memory or intra-node busbw figure is this "
                   "fraction worse than the cluster median (and, with --pairwise, a node pair's busbw "
                   "below the pairs' median).")
@click.option("--pairwise", is_flag=True,
              help="Under torchrun/srun on 2+ nodes: also all-reduce over node pairs (even/odd, then failed "
                   "nodes with known-good ones) to name the bad node, not the bad pair.")
@click.option("--python", "python", metavar="PATH",
              help="Run the workload under this Python interpreter (its torch is the one validated; it "
                   "needs no envcheck installed). Default: this one.")
@EXIT_CODES
@PROM_FILE
@DRAIN
@HTML
@click.pass_context
def validate(ctx, fmt, color, report_path, junit_path, exit_codes, prom_file, drain, html_path, **request):
    """Run a real workload on this machine and certify it for large-model work.

    \b
    Checks: cnn (training converges, bit-reproducible, matches a CPU reference), amp (fp16 +
    GradScaler, bf16), compile (inductor), allreduce (exact sums, busbw per size), gemm (TFLOPS
    per dtype, bit-exact repeats), memory (bandwidths, pattern write/verify), transformer (SDPA,
    bf16, fused AdamW; tokens/s, MFU), collectives (all-gather, reduce-scatter, all-to-all,
    broadcast), p2p (GPU pair copies), ddp (replicas stay identical). NVML is watched during
    every GPU check.

    Verdict: certified, degraded (a figure below its floor), failed, or passed (correct, no
    floors known: CPU or an unknown GPU). Exit codes: 0 certified/passed, 1 degraded/failed,
    2 bad usage, 3 envcheck failed, 130 interrupted (the report is still written).
    """
    from envcheck.report import validate as render
    from envcheck.validate import app, output

    ctx.ensure_object(dict)["exit_codes"] = exit_codes
    outputs = output.Outputs(fmt=fmt, color=style.use_color(color), report_path=report_path, junit_path=junit_path,
                             prom_file=prom_file, drain=drain, exit_codes=exit_codes, html_path=html_path,
                             columns=_columns())
    # On one terminal for both, a finished check's bar is erased: its result is in the report.
    same_terminal = fmt == "text" and exit_codes == "default" and sys.stdout.isatty() and sys.stderr.isatty()
    listener = render.ProgressDisplay(sys.stderr, color=style.use_color(color, sys.stderr), transient=same_terminal)
    try:
        code = app.main(app.Request(**request), outputs, env=os.environ, write=_write, progress=_progress,
                        listener=listener)
    except app.UsageProblem as exc:
        raise click.UsageError(str(exc)) from None
    sys.exit(code)


@cli.command()
@click.argument("snapshots", nargs=-1, metavar="SNAPSHOT...")
@click.option("--golden", "golden_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Compare every snapshot with this reviewed reference instead of with each other.")
@click.option("--write-golden", "golden_out", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              callback=_existing_dir, help="Write a reference (golden file) from ONE snapshot of a good node, "
                                           "to review and keep; nothing is compared.")
@FORMAT
@HTML
@COLOR
def compare(snapshots, golden_path, golden_out, fmt, html_path, color):
    """Compare machines: what differs between doctor snapshots, and which node is the odd one out.

    SNAPSHOT: files from `envcheck doctor --save` or `--format json` (validate and cluster reports
    too), or folders of them. Two: side by side. More: the majority value of each field and the
    nodes that differ from it. --golden: differences from a reviewed reference.

    Exit codes: 0 same, 1 a field of weight differs (driver, CUDA, torch, NCCL, env, GPUs, ...;
    hostname, times and host facts do not weigh), 2 bad input.
    """
    import json

    from envcheck import compare as cmp
    from envcheck.report import compare as render

    try:
        result = cmp.from_files(list(snapshots), golden_path=golden_path, write_golden=bool(golden_out))
    except (cmp.CompareError, snap.SnapshotError) as exc:
        raise click.UsageError(str(exc)) from None
    if golden_out:
        from envcheck import outfile

        try:
            outfile.write_text(golden_out, json.dumps(result, indent=2) + "\n")
        except OSError as exc:
            raise click.UsageError(f"cannot write --write-golden {golden_out}: {exc.strerror or exc}") from None
        _progress(f"golden file written to {golden_out} ({len(result['fields'])} fields from "
                  f"{result['source']['node']}): review it, then `envcheck compare --golden {golden_out} ...`")
        return
    _write(render.to_json(result) if fmt == "json" else render.to_text(result, color=style.use_color(color)))
    _html_out(html_path, lambda: result)
    sys.exit(cmp.exit_code(result))


@cli.command("report")
@click.option("--html", "html_path", required=True, type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              callback=_existing_dir, help="Write the self-contained HTML report to FILE (written atomically).")
@click.argument("report_file", metavar="REPORT.json", type=click.Path())
def report_cmd(html_path, report_file):
    """Render a saved report as one self-contained HTML file (inline SVG and CSS, no network).

    REPORT.json: the JSON of `doctor --format json` (or a `doctor --save` snapshot: its findings
    are evaluated), `validate --format json` / `--report`, or a cluster validate run.
    Exit codes: 0 written, 2 bad input file or output path.
    """
    from envcheck.report import html
    from envcheck.report.html import files

    try:
        text = html.render_html(html.complete(files.load(report_file)))
        files.write(html_path, text)
    except (files.LoadError, html.ReportError, snap.SnapshotError) as exc:
        _progress(f"envcheck: {exc}")  # scrubbed and neutralised like every stderr line
        sys.exit(exitcodes.USAGE)
    except OSError as exc:
        _progress(f"envcheck: cannot write {html_path}: {exc.strerror or exc}")
        sys.exit(exitcodes.USAGE)
    _progress(f"HTML report written to {html_path}")


def main() -> None:
    """Console entry point (``envcheck`` and ``python -m envcheck``)."""
    cli.main(prog_name="envcheck")
