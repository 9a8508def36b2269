"""doctor --scope node: the node's findings only (host, nvidia, xid, fabric, net), never a
Python-environment one."""

from __future__ import annotations

import copy

import doctor_scenarios
import pytest
from test_fixtures import EXPECTED

from envcheck import rules
from envcheck import snapshot as snap
from envcheck.findings import Severity
from envcheck.rules._util import emits
from envcheck.snapshot import na

SNAPSHOTS = doctor_scenarios.SNAPSHOTS

NOT_PROBED = na("not probed: --scope node judges the node alone")
# Node rules that need a torch fact as evidence: without the torch probe they do not conclude
# (torch's thread count; nvidia_uvm is loaded on demand, so its absence is a problem only when
# torch's CUDA failed to initialise).
NEEDS_TORCH_FACTS = {"host.cpu-quota-below-torch-threads", "host.nvidia-uvm-missing",
                     "fabric.cuda-error-802"}  # torch's own "Error 802" text is its evidence


def _node_snapshot(s: dict) -> dict:
    """What collect(probe_python=False) gives: no python or torch section."""
    s = copy.deepcopy(s)
    s["python"], s["torch"] = dict(NOT_PROBED), dict(NOT_PROBED)
    return s


def test_the_scopes():
    assert rules.SCOPES["full"] is None
    assert rules.SCOPES["node"] == {"host", "nvidia", "xid", "fabric", "net", "envcheck"}
    assert rules.area("nvidia.ecc-uncorrectable") == "nvidia"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_node_scope_keeps_the_node_findings_and_drops_the_rest(name):
    s = snap.load(SNAPSHOTS / f"{name}.json")
    full = {(f.id, f.severity.value) for f in rules.evaluate(s)}
    node = {(f.id, f.severity.value) for f in rules.evaluate(s, scope="node")}
    assert node == {(i, sev) for i, sev in full if rules.area(i) in rules.SCOPES["node"] - {"envcheck"}}
    # As probed under --scope node (no python/torch sections): the same node findings, except
    # those that also need a torch fact; nothing fails.
    probed = {(f.id, f.severity.value) for f in rules.evaluate(_node_snapshot(s), scope="node")}
    assert probed == {(i, sev) for i, sev in node if i not in NEEDS_TORCH_FACTS}


def test_a_healthy_node_without_torch_is_ready():
    s = snap.load(SNAPSHOTS / "torch_missing.json")
    assert "torch.missing" in {f.id for f in rules.evaluate(s)}
    findings = rules.evaluate(_node_snapshot(s), scope="node")
    assert not [f for f in findings if f.severity == Severity.ERROR]
    assert rules.exit_code(findings) == 0


def test_node_scope_does_not_run_rules_of_other_areas(monkeypatch):
    called = []

    @emits("torch.something")
    def torch_rule(snapshot):
        called.append("torch")
        return []

    monkeypatch.setattr(rules, "REGISTRY", [torch_rule])
    rules.evaluate({}, scope="node")
    assert called == []
    rules.evaluate({}, scope="full")
    assert called == ["torch"]
