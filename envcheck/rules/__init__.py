"""Rules: pure functions snapshot -> findings. Facts they need come from recipes/, not constants.

Add a rule: write a function in the module of its area (torch.py, nvidia.py, host.py, env.py),
decorate it with ``@rule``, give it fixtures in tests/fixtures/ and a test in tests/rules/.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable
from typing import Any, Callable

from envcheck import exitcodes
from envcheck.findings import Finding, Severity, sort_findings

RuleFn = Callable[[dict], Iterable[Finding]]
REGISTRY: list[RuleFn] = []

# Doctor options a rule reads (e.g. ``xid_window_s`` from ``--xid-window``): set by evaluate()
# for the duration of one evaluation, so rules stay functions of (snapshot, options).
_OPTIONS: contextvars.ContextVar[dict | None] = contextvars.ContextVar("envcheck_rule_options",
                                                                      default=None)


def option(name: str, default: Any = None) -> Any:
    """The value of a doctor option for the evaluation in progress."""
    return (_OPTIONS.get() or {}).get(name, default)


# doctor --scope: the areas (the part of a finding id before the dot) a run judges.
#   full: everything.
#   node: the machine alone - driver, GPUs, NVML health, host, fabric - for node health checks
#         (Slurm HealthCheckProgram/Prolog, Kubernetes NPD). No finding about a Python
#         environment (torch.*) nor about the process environment of whoever runs envcheck
#         (env.*: slurmd's or the prolog's variables, not a job's), so a node is never drained
#         because of which torch sits in the tool's own venv. "envcheck" keeps rule-failed.
SCOPES: dict[str, frozenset[str] | None] = {
    "full": None,
    "node": frozenset({"host", "nvidia", "xid", "fabric", "net", "envcheck"}),
}


def area(finding_id: str) -> str:
    """The area of a finding id: ``"nvidia"`` for ``"nvidia.ecc-uncorrectable"``."""
    return finding_id.split(".", 1)[0]


def _in_scope(finding_id: str, areas: frozenset[str] | None) -> bool:
    return areas is None or area(finding_id) in areas


def rule(fn: RuleFn) -> RuleFn:
    """Register a rule: a function snapshot -> iterable of findings (empty when nothing applies)."""
    REGISTRY.append(fn)
    return fn


def _load_rule_modules() -> None:
    # Imported for their @rule side effect; kept here so REGISTRY is complete before use.
    from envcheck.rules import env, fabric, host, network, node, nvidia, torch, xid  # noqa: F401


def evaluate(snapshot: dict, options: dict | None = None, scope: str = "full") -> list[Finding]:
    """Every rule's findings, worst first. A rule that raises becomes an envcheck.rule-failed
    finding. ``options``: doctor options some rules read (:func:`option`). ``scope`` (a key of
    SCOPES) keeps the findings of its areas: a rule none of whose declared ids (``@emits``) is
    in scope is not run, and a finding out of scope is dropped."""
    _load_rule_modules()
    token = _OPTIONS.set(dict(options or {}))
    try:
        return _evaluate(snapshot, SCOPES[scope])
    finally:
        _OPTIONS.reset(token)


def _evaluate(snapshot: dict, areas: frozenset[str] | None) -> list[Finding]:
    out: list[Finding] = []
    for fn in REGISTRY:
        ids = getattr(fn, "finding_ids", ())
        if ids and not any(_in_scope(i, areas) for i in ids):
            continue
        try:
            out.extend(fn(snapshot) or ())
        except Exception as exc:  # noqa: BLE001 - a buggy rule must not hide the others
            out.append(Finding(
                id="envcheck.rule-failed", severity=Severity.WARN,
                title=f"rule {fn.__module__}.{fn.__name__} failed on this snapshot",
                evidence={"error": f"{type(exc).__name__}: {exc}"},
                fix="report this envcheck bug with the saved snapshot (envcheck doctor --save FILE)",
            ))
    return sort_findings([f for f in out if _in_scope(f.id, areas)])


def exit_code(findings: list[Finding], strict: bool = False) -> int:
    """1 when any error finding (or warning, with --strict), else 0."""
    bad = {Severity.ERROR, Severity.WARN} if strict else {Severity.ERROR}
    return exitcodes.FINDINGS if any(f.severity in bad for f in findings) else exitcodes.OK
