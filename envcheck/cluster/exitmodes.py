"""Exit-code schemes for the tools that run envcheck as a health check (``--exit-codes``).

Pure: an :class:`Outcome` in, an exit code and (for some modes) one stdout line out.
No single scheme fits every consumer (Nagios plugin guidelines, Kubernetes node-problem-detector
custom plugins, Slurm's HealthCheckProgram), so the caller picks one:

=========== ==== ======================= ======================= ======= ================ ==============================
mode        ok   warning, not a problem  warning that is problem failure envcheck failed  stdout
=========== ==== ======================= ======================= ======= ================ ==============================
``default`` 0    0                       1                       1       3                the normal report
``nagios``  0    1 (WARNING)             1 (WARNING)             2       3 (UNKNOWN)      ``ENVCHECK <STATE> - <text>``
``npd``     0    0                       1                       1       2 (Unknown)      one line, <= 80 characters
``binary``  0    0                       1                       1       1                the normal report
=========== ==== ======================= ======================= ======= ================ ==============================

* **nagios** follows the Nagios plugin API: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, one status
  line on stdout with optional ``|`` performance data
  (https://assets.nagios.com/downloads/nagioscore/docs/nagioscore/3/en/pluginapi.html). The
  plugin guidelines reserve UNKNOWN for invalid arguments and failures internal to the plugin,
  which is what envcheck's own errors are. Nagios has its own warning level, so it maps the
  level (a failure is CRITICAL, any warning WARNING) and ``--strict`` does not change it.
* **npd** follows node-problem-detector's custom plugin protocol (``plugin.go``): 0 OK,
  1 NonOK, anything else Unknown; stdout, cut to ``max_output_length`` (80 by default),
  becomes the condition message. envcheck's own failure exits 2 so the node condition
  becomes *Unknown*, not *True*: a bug in the checker must not mark every node bad.
* **binary** is for a Slurm ``Prolog``, where **any** non-zero exit drains the node
  (slurm.conf, prolog_epilog.html). Warnings that are not problems exit 0. envcheck's own
  failure exits 1 (fail closed): a node on which the health check cannot even run should not
  take the job, and the one-line reason on stderr says it was envcheck, not the node.
* **default** is envcheck's usual scheme (envcheck/exitcodes.py).

What counts as a *problem*: ``doctor`` - an error finding (with ``--strict``, a warning too);
``validate`` - verdict ``failed`` or ``degraded`` (a node below its floors slows every job
scheduled on it, which is what the operator runs the check to catch).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from envcheck import exitcodes

MODES = ("default", "nagios", "npd", "binary")
NPD_MAX_CHARS = 80  # node-problem-detector's default max_output_length (config.go)

OK, WARN, FAIL, UNKNOWN = "ok", "warn", "fail", "unknown"
_NAGIOS = {OK: (0, "OK"), WARN: (1, "WARNING"), FAIL: (2, "CRITICAL"), UNKNOWN: (3, "UNKNOWN")}


@dataclass(frozen=True)
class Outcome:
    """What a run concluded, independent of how it is reported.

    ``status`` is the level (ok / warn / fail / unknown); ``problem`` says whether the 0/1
    schemes treat it as a failure; ``problems`` names what failed (finding ids, check
    names, node names) for one-line outputs and drain reasons; ``perfdata`` is a tuple of
    ``(label, value, unit)`` for Nagios.
    """

    status: str
    problem: bool
    summary: str
    problems: tuple[str, ...] = ()
    perfdata: tuple[tuple[str, float, str], ...] = field(default=())


@dataclass(frozen=True)
class Decision:
    code: int
    line: str | None  # replaces the report on stdout when not None


def _as_dict(item: Any) -> dict:
    return item.to_dict() if hasattr(item, "to_dict") else dict(item)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def doctor_outcome(findings: Iterable[Any], strict: bool = False) -> Outcome:
    """Outcome of ``envcheck doctor`` from its findings (Finding objects or their dicts)."""
    items = [_as_dict(f) for f in findings]
    by_sev: dict[str, list[str]] = {"error": [], "warn": [], "info": [], "ok": []}
    for f in items:
        by_sev.setdefault(str(f.get("severity")), []).append(str(f.get("id")))
    errors, warns = by_sev["error"], by_sev["warn"]
    perf = (("errors", len(errors), ""), ("warnings", len(warns), ""), ("info", len(by_sev["info"]), ""))
    if errors:
        text = _plural(len(errors), "error")
        if warns:
            text += ", " + _plural(len(warns), "warning")
        return Outcome(FAIL, True, text, tuple(errors + (warns if strict else [])), perf)
    if warns:
        return Outcome(WARN, strict, _plural(len(warns), "warning"), tuple(warns), perf)
    return Outcome(OK, False, "no problems found", (), perf)


# validate's verdicts (issue 4): certified / passed are healthy, degraded is a performance
# problem, failed a correctness problem or crash.
_VERDICTS = {"certified": (OK, False), "passed": (OK, False), "degraded": (WARN, True), "failed": (FAIL, True)}


def validate_outcome(report: dict) -> Outcome:
    """Outcome of ``envcheck validate`` from its JSON report dict (single node or cluster)."""
    verdict = str(report.get("verdict", "")).lower()
    status, problem = _VERDICTS.get(verdict, (UNKNOWN, True))
    checks = [c for c in report.get("checks") or [] if isinstance(c, dict)]
    counts: dict[str, int] = {}
    for c in checks:
        counts[str(c.get("status"))] = counts.get(str(c.get("status")), 0) + 1
    bad = [str(c.get("name")) for c in checks if c.get("status") in ("fail", "warn")]
    # A cluster report names nodes: the bad node is what an operator acts on.
    nodes = [n for n in report.get("nodes") or [] if isinstance(n, dict)]
    bad_nodes = [
        str(n.get("hostname") or n.get("node_rank"))
        for n in nodes
        if str(n.get("verdict", "")).lower() in ("failed", "degraded") or n.get("straggler")
    ]
    perf = tuple((f"checks_{s}", counts.get(s, 0), "") for s in ("pass", "warn", "fail", "skip"))
    if status == UNKNOWN:
        return Outcome(UNKNOWN, True, f"no usable verdict in the report ({verdict or 'missing'})", (), perf)
    text = verdict
    if bad_nodes:
        text += f" on {_plural(len(bad_nodes), 'node')}"
    elif bad:
        text += f": {_plural(len(bad), 'check')} not passing"
    return Outcome(status, problem, text, tuple(bad_nodes or bad), perf)


def internal_error_outcome(message: str) -> Outcome:
    """envcheck itself failed: the health of the node is unknown."""
    return Outcome(UNKNOWN, True, f"envcheck failed: {message}")


def _clean(text: str) -> str:
    # One line, no Nagios perfdata separator inside the text.
    return re.sub(r"\s+", " ", str(text)).replace("|", "/").strip()


def _perf_label(label: str) -> str:
    label = str(label).replace("'", "")
    return f"'{label}'" if re.search(r"[\s=]", label) else label


def _perf_value(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{float(v):.6g}"


def nagios_line(outcome: Outcome) -> str:
    """``ENVCHECK OK - no problems found | errors=0;;;0 ...`` (Nagios plugin output)."""
    state = _NAGIOS.get(outcome.status, _NAGIOS[UNKNOWN])[1]
    text = _clean(outcome.summary)
    if outcome.problems:
        text += ": " + ", ".join(_clean(p) for p in outcome.problems)
    line = f"ENVCHECK {state} - {text}"
    if outcome.perfdata:
        # 'label'=value[UOM];[warn];[crit];[min];[max]; counts have min 0 and no thresholds.
        line += " | " + " ".join(f"{_perf_label(lb)}={_perf_value(v)}{uom};;;0" for lb, v, uom in outcome.perfdata)
    return line


def npd_line(outcome: Outcome, limit: int = NPD_MAX_CHARS) -> str:
    """One line of at most ``limit`` characters: NPD turns it into the condition message."""
    head = {OK: "OK", WARN: "WARN", FAIL: "FAIL"}.get(outcome.status, "UNKNOWN")
    line = f"envcheck: {head} {_clean(outcome.summary)}"
    names = [_clean(p) for p in outcome.problems[:50]]
    # As many names as fit, then how many were left out: "(torch.missing,host.shm +3)".
    for shown in range(len(names), 0, -1):
        rest = len(names) - shown
        candidate = f"{line} ({','.join(names[:shown])}{f' +{rest}' if rest else ''})"
        if len(candidate) <= limit:
            return candidate
    return line if len(line) <= limit else line[: limit - 3] + "..."


def decide(outcome: Outcome, mode: str) -> Decision:
    """Exit code (and the one stdout line, for nagios and npd) for ``outcome`` under ``mode``."""
    if mode not in MODES:
        raise ValueError(f"unknown exit-code mode {mode!r}; one of {', '.join(MODES)}")
    unknown = outcome.status not in (OK, WARN, FAIL)
    if mode == "nagios":
        return Decision(_NAGIOS.get(outcome.status, _NAGIOS[UNKNOWN])[0], nagios_line(outcome))
    if mode == "npd":
        return Decision(2 if unknown else int(outcome.problem), npd_line(outcome))
    if mode == "binary":
        return Decision(1 if unknown or outcome.problem else 0, None)
    if unknown:
        return Decision(exitcodes.INTERNAL, None)
    return Decision(exitcodes.FINDINGS if outcome.problem else exitcodes.OK, None)


def format_conflict(fmt: str, mode: str) -> str | None:
    """Why ``--format fmt`` cannot go with ``--exit-codes mode`` (None when it can)."""
    if fmt == "json" and mode in ("nagios", "npd"):
        return (f"--format json and --exit-codes {mode} exclude each other: "
                f"{mode} prints one status line on stdout")
    return None
