"""validate's one output stage, for both launch modes: files, stdout, --drain, exit code.

Everything a run hands out leaves through here: the report on stdout (text or JSON, or the
one status line of ``--exit-codes nagios|npd``), ``--report`` (JSON), ``--junit``,
``--prom-file``, ``--html``, ``--drain`` and the exit code. The report is passed through
:func:`envcheck.redact.scrub` once, before any of them, and every file goes through the one
writer :mod:`envcheck.outfile`. A node report (local mode, one rank) and a cluster report
(rank 0) differ only in their renderers and in how ``--drain`` acts (this node, or each node
by its own verdict).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from envcheck import outfile, redact
from envcheck.cluster import exitmodes, prom, slurm

Say = Callable[[str], None]


@dataclass(frozen=True)
class Outputs:
    """Where and how the report goes (the CLI's output options)."""

    fmt: str = "text"
    color: bool = False
    report_path: str | None = None
    junit_path: str | None = None
    prom_file: str | None = None
    drain: bool = False
    exit_codes: str = "default"
    html_path: str | None = None
    columns: int | None = None  # a terminal's width: the text report wraps there (None: no wrapping)

    def paths(self) -> list[str]:
        return [p for p in (self.report_path, self.junit_path, self.prom_file, self.html_path) if p]

    def check(self) -> None:
        """Before any work: every output path can be written (OutputError otherwise), and the
        format fits the exit-code scheme (ValueError)."""
        problem = exitmodes.format_conflict(self.fmt, self.exit_codes)
        if problem:
            raise ValueError(problem)
        for path in self.paths():
            outfile.check(path)


@dataclass(frozen=True)
class _View:
    """The renderers of one kind of report (all take the report dict)."""

    to_json: Callable[[dict], str]
    to_text: Callable[[dict, bool, int | None], str]
    to_junit: Callable[[dict], str]


def _node_view() -> _View:
    from envcheck.report import validate as render
    from envcheck.validate.results import ValidationReport

    def obj(doc: dict) -> ValidationReport:
        return ValidationReport.from_dict(doc)

    return _View(lambda d: render.to_json(obj(d)), lambda d, c, w: render.to_text(obj(d), color=c, columns=w),
                 lambda d: render.to_junit(obj(d)))


def _cluster_view() -> _View:
    from envcheck.report import cluster as render

    return _View(render.to_json, lambda d, c, _w: render.to_text(d, color=c), render.to_junit)


def write_files(doc: dict, outputs: Outputs, on_error: Say, *, cluster: bool = False, final: bool = True,
                said: set | None = None, scrubbed: bool = False) -> None:
    """--report, --junit and (``final``) --prom-file and --html; a failure is one line via ``on_error``
    (once per line when ``said`` is shared between calls), never the end of the run. ``scrubbed``:
    the caller already ran the scrubber on ``doc`` (emit: once, not twice, on a cluster report)."""
    view = _cluster_view() if cluster else _node_view()
    if not scrubbed:
        doc = redact.scrub(doc)
    jobs = [(outputs.report_path, view.to_json), (outputs.junit_path, view.to_junit)]
    if final:
        jobs.append((outputs.prom_file, lambda d: prom.validate_text(d, time.time())))
        jobs.append((outputs.html_path, _html))
    for path, render in jobs:
        if not path:
            continue
        try:
            outfile.write_text(path, render(doc))
        except OSError as exc:
            line = f"envcheck: cannot write {path}: {exc.strerror or exc}"
            if said is None or line not in said:
                on_error(line)
                if said is not None:
                    said.add(line)


def _html(doc: dict) -> str:
    from envcheck.report.html import render_html

    return render_html(doc)


def persister(outputs: Outputs, on_error: Say) -> Callable[[Any], None]:
    """persist(report): the report and JUnit files kept current while a local run goes on."""
    said: set[str] = set()

    def persist(report) -> None:
        write_files(report.to_dict(), outputs, on_error, final=False, said=said)

    return persist


def drain_nodes(report: dict[str, Any], apply=None) -> list:
    """--drain in a cluster run: each node by its own verdict (rank 0 runs scontrol for all)."""
    apply = apply or slurm.apply
    done = []
    for n in report.get("nodes") or []:
        host = n.get("hostname")
        if not host:
            continue
        bad = n.get("verdict") in ("failed", "degraded")
        why = [f["metric"] for f in n.get("straggler_figures") or []]
        why += [str(r["rank"]) for r in n.get("ranks") or [] if r.get("error") or r.get("verdict") == "failed"]
        outcome = exitmodes.Outcome("fail" if bad else "ok", bad, f"validate {n.get('verdict')}" +
                                    (" (straggler)" if n.get("straggler") else ""), tuple(
                                        f"rank {w}" if w.isdigit() else w for w in why) if bad else ())
        done.append(apply(outcome, node=str(host)))
    return done


def emit(doc: dict, outputs: Outputs, *, write: Say, progress: Say, cluster: bool = False,
         launcher: str | None = None) -> int:
    """Write every output of a finished run and return the exit code."""
    if cluster:  # a cluster report: no cyclic GC walking rank 0's heap while it is rendered
        from envcheck.validate.distributed.aggregate import gc_paused

        with gc_paused():
            return _emit(doc, outputs, write=write, progress=progress, cluster=cluster, launcher=launcher)
    return _emit(doc, outputs, write=write, progress=progress, cluster=cluster, launcher=launcher)


def _emit(doc: dict, outputs: Outputs, *, write: Say, progress: Say, cluster: bool, launcher: str | None) -> int:
    doc = redact.scrub(doc)
    view = _cluster_view() if cluster else _node_view()
    write_files(doc, outputs, progress, cluster=cluster, scrubbed=True)
    outcome = exitmodes.validate_outcome(doc)
    decision = exitmodes.decide(outcome, outputs.exit_codes)
    if decision.line is not None:
        write(decision.line)
    else:
        write(view.to_json(doc) if outputs.fmt == "json" else view.to_text(doc, outputs.color, outputs.columns))
    if outputs.drain:
        for res in drain_nodes(doc) if cluster else [slurm.apply(outcome)]:
            progress(res.message)
    return exit_code(doc, outputs.exit_codes, decision.code, cluster=cluster, launcher=launcher, progress=progress)


def exit_code(doc: dict, exit_codes: str, scheme_code: int, *, cluster: bool, launcher: str | None,
              progress: Say) -> int:
    """0 certified/passed, 1 otherwise, 130 for an interrupted local run (or the scheme's code);
    rank 0 under torchrun exits 0 (the verdict is in the report)."""
    code = scheme_code
    if exit_codes == "default":
        code = 0 if doc.get("verdict") in ("certified", "passed") else 1
        if doc.get("interrupted") and not cluster:
            code = 130
    if cluster and code and launcher == "torchrun":
        # A failed worker makes torchrun's other agents wait at its exit barrier (300 s, not
        # configurable from the torchrun command line) before they give up: the verdict is in
        # the report, and the job ends now.
        progress(f"envcheck: verdict {doc.get('verdict')} (exit {code} without torchrun); exiting 0 so "
                 "torchrun's other agents are not held at its exit barrier")
        return 0
    return code
