"""--drain: the pure decision, exhaustively, then the scontrol edge against a fake scontrol."""

from __future__ import annotations

import itertools
import json
import os
import sys
import textwrap

import pytest
from click.testing import CliRunner

from envcheck.cli import cli
from envcheck.cluster import slurm
from envcheck.cluster.exitmodes import Outcome
from envcheck.cluster.slurm import NodeState, decide, make_reason, parse_show_node
from envcheck.findings import Finding, Severity

OURS = make_reason("1 error: torch.missing")
OURS_OLD = make_reason("1 error: nvidia.ecc")
FOREIGN = "ops: replacing fan"
BASES = ("IDLE", "ALLOCATED", "MIXED", "DOWN", "FUTURE", "UNKNOWN")
FLAG_SETS = [frozenset(c) for n in range(3)
             for c in itertools.combinations(("DRAIN", "FAIL", "REBOOT_REQUESTED", "NOT_RESPONDING", "COMPLETING"), n)]
REASONS = (None, OURS, OURS_OLD, FOREIGN)
RESULTS = ("fail", "pass", "unknown")
ALL = [(NodeState("n1", b, f, r), res) for b, f, r, res in itertools.product(BASES, FLAG_SETS, REASONS, RESULTS)]


def after(state: NodeState, action) -> NodeState:
    """What Slurm does with the action (scontrol update State=DRAIN/RESUME)."""
    if action.kind == "drain":
        return NodeState(state.name, state.base, state.flags | {"DRAIN"}, action.reason)
    if action.kind == "resume":
        return NodeState(state.name, state.base, state.flags - {"DRAIN", "FAIL"}, None)
    return state


@pytest.mark.parametrize("state, result", ALL, ids=lambda x: str(x) if isinstance(x, str) else
                         f"{x.base}+{'+'.join(sorted(x.flags))}:{(x.reason or '-')[:12]}")
def test_decision_invariants(state, result):
    action = decide(state, result, OURS)
    assert action.kind in ("drain", "resume", "none") and action.why
    foreign = bool(state.reason) and not state.reason.startswith("envcheck:")
    # never overwrite someone else's reason
    if action.kind == "drain" and foreign:
        assert action.reason == state.reason
    if action.kind == "drain" and not foreign:
        assert action.reason == OURS
    # only resume what envcheck drained, and only when the check passed
    if action.kind == "resume":
        assert result == "pass" and state.drained and state.reason.startswith("envcheck:")
    # fail never resumes, pass never drains, unknown never acts
    assert not (result == "fail" and action.kind == "resume")
    assert not (result == "pass" and action.kind == "drain")
    if result == "unknown":
        assert action.kind == "none"
    # out-of-service nodes and pending reboots are left alone
    if state.base in ("DOWN", "FUTURE") or "REBOOT_REQUESTED" in state.flags:
        assert action.kind == "none"
    # a failing node in service ends up drained; a passing node envcheck drained ends up in service
    end = after(state, action)
    in_service = state.base not in ("DOWN", "FUTURE") and "REBOOT_REQUESTED" not in state.flags
    if result == "fail" and in_service and not (state.drained and not state.reason):
        assert end.drained
        assert end.reason == (state.reason if foreign else OURS)
    if result == "pass" and action.kind == "resume":
        assert not end.drained
    # idempotent: a second run with the same result does nothing
    assert decide(end, result, OURS).kind == "none"


@pytest.mark.parametrize("state, result, kind, reason", [
    (NodeState("n", "IDLE"), "fail", "drain", OURS),
    (NodeState("n", "MIXED"), "fail", "drain", OURS),  # running jobs keep running; no new ones
    (NodeState("n", "IDLE", frozenset({"DRAIN"}), OURS), "fail", "none", None),
    (NodeState("n", "IDLE", frozenset({"DRAIN"}), OURS_OLD), "fail", "drain", OURS),  # our reason, updated
    (NodeState("n", "IDLE", frozenset({"DRAIN"}), FOREIGN), "fail", "none", None),
    (NodeState("n", "IDLE", frozenset({"DRAIN"}), None), "fail", "none", None),
    (NodeState("n", "IDLE", frozenset(), FOREIGN), "fail", "drain", FOREIGN),  # kept, like NHC
    (NodeState("n", "DOWN", frozenset({"DRAIN"}), OURS), "fail", "none", None),
    (NodeState("n", "IDLE", frozenset({"DRAIN"}), OURS), "pass", "resume", None),
    (NodeState("n", "ALLOCATED", frozenset({"DRAIN"}), OURS_OLD), "pass", "resume", None),
    (NodeState("n", "IDLE", frozenset({"DRAIN"}), FOREIGN), "pass", "none", None),
    (NodeState("n", "IDLE", frozenset({"DRAIN", "REBOOT_REQUESTED"}), OURS), "pass", "none", None),
    (NodeState("n", "DOWN", frozenset({"DRAIN"}), OURS), "pass", "none", None),
    (NodeState("n", "IDLE"), "pass", "none", None),
    (NodeState("n", "IDLE"), "unknown", "none", None),
    (None, "fail", "none", None),
])
def test_decision_table(state, result, kind, reason):
    action = decide(state, result, OURS)
    assert (action.kind, action.reason) == (kind, reason)


def test_make_reason_is_one_short_line_with_the_prefix():
    r = make_reason("a\nb   c " + "x" * 500)
    assert r.startswith("envcheck: a b c") and "\n" not in r and len(r) <= slurm.REASON_MAX
    assert make_reason("") == "envcheck: check failed"


def test_drain_outcome_mapping():
    assert slurm.drain_outcome(Outcome("fail", True, "x")) == "fail"
    assert slurm.drain_outcome(Outcome("warn", True, "degraded")) == "fail"
    assert slurm.drain_outcome(Outcome("warn", False, "1 warning")) == "pass"
    assert slurm.drain_outcome(Outcome("ok", False, "fine")) == "pass"
    assert slurm.drain_outcome(Outcome("unknown", True, "crash")) == "unknown"


SHOW = """NodeName=gpu07 Arch=x86_64 CoresPerSocket=1
   CPUAlloc=0 CPUEfctv=2 CPUTot=2 CPULoad=0.38
   State={state} ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A
   Partitions=debug
{reason}   ExtSensorsJoules=n/s ExtSensorsWatts=0 ExtSensorsTemp=n/s
"""


@pytest.mark.parametrize("state, reason, base, flags, parsed", [
    ("IDLE", None, "IDLE", set(), None),
    ("IDLE+DRAIN", "envcheck: x [root@2026-11-23T09:04:41]", "IDLE", {"DRAIN"}, "envcheck: x"),
    ("MIXED+DRAIN+NOT_RESPONDING", "ops: bad fan [x] [alice@2026-01-01T00:00:00]", "MIXED",
     {"DRAIN", "NOT_RESPONDING"}, "ops: bad fan [x]"),
    ("DOWN*", "Not responding [slurm@2026-11-23T09:04:41]", "DOWN", set(), "Not responding"),
])
def test_parse_show_node(state, reason, base, flags, parsed):
    text = SHOW.format(state=state, reason=f"   Reason={reason}\n" if reason else "")
    node = parse_show_node(text)
    assert (node.name, node.base, set(node.flags), node.reason) == ("gpu07", base, flags, parsed)
    one_line = " ".join(text.split("\n"))  # scontrol show node -o
    assert parse_show_node(one_line).reason == parsed


def test_parse_show_node_without_state():
    assert parse_show_node("Node nosuch not found") is None


def test_node_name():
    assert slurm.node_name({"SLURMD_NODENAME": "gpu07"}, "x.example.com") == "gpu07"
    assert slurm.node_name({}, "gpu08.cluster.local") == "gpu08"


# ---- the edge, with a fake scontrol ---------------------------------------------------------

FAKE = textwrap.dedent('''\
    #!{python}
    """Fake scontrol: serves a node state from a JSON file and records every call."""
    import json, sys
    db = {db!r}
    data = json.load(open(db))
    data["calls"].append(sys.argv[1:])
    args = sys.argv[1:]
    rc = 0
    if args[:2] == ["show", "node"]:
        if args[2] != data["name"] or data.get("show_fails"):
            print(f"Node {{args[2]}} not found", file=sys.stderr); rc = 1
        else:
            print(f"NodeName={{data['name']}} Arch=x86_64\\n   State={{data['state']}} ThreadsPerCore=1")
            if data["reason"]:
                print(f"   Reason={{data['reason']}} [root@2026-11-23T09:00:00]")
    elif args[0] == "update":
        kv = dict(a.split("=", 1) for a in args[1:])
        if data.get("update_fails"):
            print("slurm_update error: Access/permission denied", file=sys.stderr); rc = 1
        elif kv["State"] == "DRAIN":
            if not kv.get("Reason"):
                print("You must specify a reason when DOWNING or DRAINING a node. Request denied", file=sys.stderr); rc = 1
            else:
                base = data["state"].split("+")[0]
                data["state"], data["reason"] = base + "+DRAIN", kv["Reason"]
        elif kv["State"] == "RESUME":
            data["state"], data["reason"] = data["state"].split("+")[0], None
    json.dump(data, open(db, "w"))
    sys.exit(rc)
    ''')


@pytest.fixture
def fake_scontrol(tmp_path, monkeypatch):
    """A fake `scontrol` first on PATH; returns a function to set and read the node's state."""
    db = tmp_path / "node.json"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "scontrol"
    script.write_text(FAKE.format(python=sys.executable, db=str(db)))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("SLURMD_NODENAME", "gpu07")

    class Node:
        def set(self, state="IDLE", reason=None, **extra):
            db.write_text(json.dumps({"name": "gpu07", "state": state, "reason": reason, "calls": [], **extra}))

        @property
        def data(self):
            return json.loads(db.read_text())

    node = Node()
    node.set()
    return node


FAILED = Outcome("fail", True, "1 error", ("torch.missing",))
PASSED = Outcome("ok", False, "no problems found")


def test_apply_drains_a_failing_node(fake_scontrol):
    res = slurm.apply(FAILED)
    assert (res.node, res.action, res.ok) == ("gpu07", "drain", True)
    d = fake_scontrol.data
    assert d["state"] == "IDLE+DRAIN" and d["reason"] == "envcheck: 1 error: torch.missing"
    assert d["calls"] == [["show", "node", "gpu07"],
                          ["update", "NodeName=gpu07", "State=DRAIN", "Reason=envcheck: 1 error: torch.missing"]]
    assert "drained" in res.message


def test_apply_keeps_a_foreign_reason_and_never_resumes_it(fake_scontrol):
    fake_scontrol.set("IDLE+DRAIN", FOREIGN)
    for outcome in (FAILED, PASSED):
        res = slurm.apply(outcome)
        assert res.action == "none" and res.ok
    d = fake_scontrol.data
    assert d["reason"] == FOREIGN and d["state"] == "IDLE+DRAIN"
    assert all(c[0] == "show" for c in d["calls"])


def test_apply_resumes_only_its_own_drain(fake_scontrol):
    fake_scontrol.set("IDLE+DRAIN", "envcheck: 1 error: torch.missing")
    res = slurm.apply(PASSED)
    assert res.action == "resume" and res.ok
    assert fake_scontrol.data["state"] == "IDLE" and fake_scontrol.data["calls"][-1] == [
        "update", "NodeName=gpu07", "State=RESUME"]


def test_apply_does_nothing_when_envcheck_failed(fake_scontrol):
    fake_scontrol.set("IDLE+DRAIN", "envcheck: x")
    res = slurm.apply(Outcome("unknown", True, "envcheck failed: KeyError"))
    assert res.action == "none" and fake_scontrol.data["state"] == "IDLE+DRAIN"


def test_apply_reports_scontrol_failures_without_raising(fake_scontrol):
    fake_scontrol.set(show_fails=True)
    res = slurm.apply(FAILED)
    assert not res.ok and res.action == "none" and "cannot read node gpu07" in res.message
    assert "not found" in res.message
    fake_scontrol.set(update_fails=True)
    res = slurm.apply(FAILED)
    assert not res.ok and res.action == "drain" and "permission denied" in res.message


def test_apply_without_scontrol_installed(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    res = slurm.apply(FAILED, node="gpu07")
    assert not res.ok and "command not found" in res.message


def test_apply_with_an_injected_runner_and_a_hung_scontrol():
    calls = []

    def runner(argv, timeout):
        calls.append((argv, timeout))
        return 124, "", "scontrol timed out after 15 s"
    res = slurm.apply(FAILED, node="n9", runner=runner, env={})
    assert not res.ok and "timed out" in res.message
    assert calls == [(["scontrol", "show", "node", "n9"], slurm.COMMAND_TIMEOUT_S)]


def test_doctor_drain_cli(fake_scontrol, monkeypatch):
    import envcheck.rules as rules

    snap = "tests/fixtures/snapshots/example_8xh100.json"
    monkeypatch.setattr(rules, "evaluate", lambda s, **_: [Finding("torch.missing", Severity.ERROR, "t")])
    res = CliRunner().invoke(cli, ["doctor", "--snapshot", snap, "--drain", "--exit-codes", "binary"])
    assert res.exit_code == 1
    assert fake_scontrol.data["reason"] == "envcheck: 1 error: torch.missing"
    assert "--drain: node gpu07 drained" in res.stderr
    # the node is fixed: the next run resumes it
    monkeypatch.setattr(rules, "evaluate", lambda s, **_: [Finding("host.shm-small", Severity.WARN, "s")])
    res = CliRunner().invoke(cli, ["doctor", "--snapshot", snap, "--drain", "--exit-codes", "binary"])
    assert res.exit_code == 0 and fake_scontrol.data["state"] == "IDLE"
    assert "resumed" in res.stderr
