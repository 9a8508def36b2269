"""``--drain``: take this Slurm node out of service when its check fails, back when it passes.

Slurm does nothing with a ``HealthCheckProgram``'s result: "any action to be taken must be
explicitly performed by the program" (slurm.conf man page, HealthCheckProgram). So, like LBNL
NHC's ``node-mark-offline`` / ``node-mark-online`` helpers (mej/nhc ``helpers/``), envcheck:

* drains with ``scontrol update NodeName=<node> State=DRAIN Reason="envcheck: <why>"``;
* never overwrites a reason someone else set (any reason not starting with ``envcheck:``);
* resumes (``State=RESUME``) only a node whose reason starts with ``envcheck:``;
* leaves DOWN / FUTURE nodes and nodes with a reboot pending alone (resuming would cancel
  the reboot, as NHC's helper notes), and does nothing when envcheck itself failed.

The decision is the pure function :func:`decide`; :func:`apply` is the thin edge that reads
the node with ``scontrol show node`` and runs ``scontrol update`` through an injectable runner.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable

from envcheck.cluster.exitmodes import OK, UNKNOWN, WARN, Outcome

PREFIX = "envcheck:"
# Kept short: sinfo -R prints the reason in a narrow column, and one line is what an
# operator reads. Slurm itself does not document a limit.
REASON_MAX = 120
COMMAND_TIMEOUT_S = 15.0

FAIL, PASS = "fail", "pass"
DRAIN, RESUME, NONE = "drain", "resume", "none"

_REBOOT_FLAGS = frozenset({"REBOOT_REQUESTED", "REBOOT_ISSUED", "REBOOT"})
_OUT_OF_SERVICE = frozenset({"DOWN", "FUTURE"})


@dataclass(frozen=True)
class NodeState:
    """A node as ``scontrol show node`` reports it: ``State=IDLE+DRAIN``, ``Reason=...``."""

    name: str
    base: str  # IDLE, ALLOCATED, MIXED, DOWN, FUTURE, UNKNOWN, ...
    flags: frozenset[str] = frozenset()
    reason: str | None = None  # without Slurm's " [user@time]" suffix

    @property
    def drained(self) -> bool:
        # FAIL is an admin's "drain, then down"; older releases print DRAINED/DRAINING as a base.
        return bool(self.flags & {"DRAIN", "FAIL"}) or self.base in ("DRAINED", "DRAINING")

    @property
    def ours(self) -> bool:
        return bool(self.reason) and self.reason.startswith(PREFIX)


@dataclass(frozen=True)
class Action:
    kind: str  # drain | resume | none
    reason: str | None  # the Reason= to set (drain only)
    why: str  # one line for the log


def make_reason(text: str) -> str:
    """``envcheck: <text>`` on one line, at most REASON_MAX characters."""
    body = re.sub(r"\s+", " ", str(text)).strip()
    reason = f"{PREFIX} {body}" if body else f"{PREFIX} check failed"
    return reason if len(reason) <= REASON_MAX else reason[: REASON_MAX - 3] + "..."


def outcome_reason(outcome: Outcome) -> str:
    """The drain reason for a failed outcome: what failed, named."""
    text = outcome.summary
    if outcome.problems:
        text += ": " + ", ".join(outcome.problems)
    return make_reason(text)


def drain_outcome(outcome: Outcome) -> str:
    """Map an outcome to what --drain acts on: fail (a problem), pass, or unknown."""
    if outcome.status not in (OK, WARN, "fail"):
        return UNKNOWN
    return FAIL if outcome.problem else PASS


def decide(state: NodeState | None, result: str, reason: str) -> Action:
    """What to do with the node, given its current state and the check's result.

    ``result`` is ``fail``, ``pass`` or ``unknown``; ``reason`` is the envcheck reason to set
    when draining (see :func:`make_reason`). Pure and exhaustive: every branch is tested.
    """
    if state is None:
        return Action(NONE, None, "node state unknown (scontrol show node failed): not touching it")
    if result not in (FAIL, PASS):
        return Action(NONE, None, "health unknown (envcheck itself failed): node left as it is")
    if state.base in _OUT_OF_SERVICE:
        return Action(NONE, None, f"node is {state.base}: left to Slurm and the administrator")
    if state.flags & _REBOOT_FLAGS:
        return Action(NONE, None, "a reboot is pending: draining or resuming now would interfere")
    if result == FAIL:
        if state.drained:
            if not state.reason:
                return Action(NONE, None, "already drained without a reason: not ours, left as it is")
            if not state.ours:
                return Action(NONE, None, f"already drained by someone else ({state.reason!r}): kept")
            if state.reason == reason:
                return Action(NONE, None, "already drained by envcheck for this reason")
            return Action(DRAIN, reason, "already drained by envcheck: reason updated")
        if state.reason and not state.ours:
            # Same as NHC: drain, but keep the reason an operator wrote; envcheck will then
            # never resume the node on its own (the reason is not ours).
            return Action(DRAIN, state.reason, "draining, keeping the reason someone else set")
        return Action(DRAIN, reason, "check failed: draining")
    # PASS
    if not state.drained:
        return Action(NONE, None, "node is in service: nothing to do")
    if not state.ours:
        return Action(NONE, None, "drained by someone else: only they resume it")
    return Action(RESUME, None, "check passed: resuming the node envcheck drained")


# ---- parsing `scontrol show node` (pure) ---------------------------------------------------

_SUFFIX = re.compile(r"\s*\[[^\[\]]*@[^\[\]]*\]\s*$")  # " [root@2026-11-23T09:04:41]"


def strip_reason(reason: str | None) -> str | None:
    """The reason as it was set, without the `` [user@time]`` Slurm appends when showing it."""
    if reason is None:
        return None
    r = _SUFFIX.sub("", reason).strip()
    return r or None


def parse_state(text: str) -> tuple[str, frozenset[str]]:
    """``IDLE+DRAIN+NOT_RESPONDING`` -> ("IDLE", {"DRAIN", "NOT_RESPONDING"}); sinfo marks stripped."""
    parts = [p.strip().upper().rstrip("*~#!%$@^-") for p in str(text).split("+") if p.strip()]
    if not parts:
        return "UNKNOWN", frozenset()
    return parts[0], frozenset(parts[1:])


def parse_show_node(text: str, name: str | None = None) -> NodeState | None:
    """Parse ``scontrol show node <name>`` (multi-line or ``-o`` output); None if no State=."""
    state_m = re.search(r"(?:^|\s)State=(\S+)", text)
    if not state_m:
        return None
    name_m = re.search(r"(?:^|\s)NodeName=(\S+)", text)
    # Reason runs to the end of its line, or in -o output up to the next known key.
    reason_m = re.search(r"(?:^|\s)Reason=(.*?)(?=\s+(?:Comment|ExtSensors\w*|CapWatts|Partitions|"
                         r"CurrentWatts|AveWatts|LastBusyTime|ResumeAfterTime)=|$)", text, re.M)
    base, flags = parse_state(state_m.group(1))
    reason = strip_reason(reason_m.group(1)) if reason_m else None
    if reason in ("(null)", "none"):
        reason = None
    return NodeState(name=(name_m.group(1) if name_m else name) or "", base=base, flags=flags, reason=reason)


# One node name as scontrol takes it, and nothing it would expand: ``scontrol update
# NodeName=`` accepts a hostlist expression ("node[1-100]", "a,b"), so a name with brackets,
# commas or spaces would act on other nodes (issue 10, class 8: names come from peer ranks).
_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")


def valid_node_name(name: object) -> bool:
    """A single node name: letters, digits, ``.``, ``_``, ``-`` (at most 253), no ``..``."""
    return isinstance(name, str) and bool(_NODE_NAME.match(name)) and ".." not in name


def node_name(env: Mapping[str, str], hostname: str) -> str:
    """Slurm's name for this node: SLURMD_NODENAME (set by slurmd), else the short hostname."""
    return (env.get("SLURMD_NODENAME") or "").strip() or hostname.split(".")[0]


# ---- the edge ------------------------------------------------------------------------------

Runner = Callable[[list, float], "tuple[int, str, str]"]


def run_command(argv: list, timeout: float) -> tuple[int, str, str]:
    """Run a command through envcheck.proc, like every child (127 missing, 124 timed out)."""
    from envcheck import proc

    return proc.run(argv, timeout)


@dataclass(frozen=True)
class DrainResult:
    node: str
    action: str  # drain | resume | none
    ok: bool  # False when scontrol failed
    message: str  # one line for stderr

    def to_dict(self) -> dict:
        return {"node": self.node, "action": self.action, "ok": self.ok, "message": self.message}


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text or "").strip()


def apply(outcome: Outcome, node: str | None = None, runner: Runner | None = None,
          env: Mapping[str, str] | None = None, scontrol: str = "scontrol") -> DrainResult:
    """Read the node, decide, and drain / resume it. Never raises: failures come back as text."""
    runner = runner or run_command
    env = os.environ if env is None else env
    node = node or node_name(env, socket.gethostname())
    if not valid_node_name(node):
        shown = re.sub(r"[^\x20-\x7e]", "?", str(node))[:80]
        return DrainResult(shown, NONE, False, f"--drain: refusing node name {shown!r}: not a single node name "
                           "(scontrol would expand brackets, commas or spaces to other nodes); not touched")
    result = drain_outcome(outcome)
    reason = outcome_reason(outcome)
    rc, out, err = runner([scontrol, "show", "node", node], COMMAND_TIMEOUT_S)
    state = parse_show_node(out, node) if rc == 0 else None
    action = decide(state, result, reason)
    if state is None and result != UNKNOWN:
        detail = _one_line(err or out) or f"exit {rc}"
        return DrainResult(node, NONE, False, f"--drain: cannot read node {node} ({detail}); not touched")
    if action.kind == NONE:
        return DrainResult(node, NONE, True, f"--drain: node {node}: {action.why}")
    argv = [scontrol, "update", f"NodeName={node}"]
    argv += [f"State={action.kind.upper()}"] if action.kind == RESUME else ["State=DRAIN", f"Reason={action.reason}"]
    rc, out, err = runner(argv, COMMAND_TIMEOUT_S)
    if rc != 0:
        detail = _one_line(err or out) or f"exit {rc}"
        return DrainResult(node, action.kind, False, f"--drain: {' '.join(argv[1:3])} {argv[3]} failed: {detail}")
    done = f"drained ({action.reason})" if action.kind == DRAIN else "resumed"
    return DrainResult(node, action.kind, True, f"--drain: node {node} {done}: {action.why}")
