"""Builders for rule tests: named scenarios (tests/fixtures/doctor_scenarios.py), the contract
example with patches, and shortcuts to evaluate rules and pick findings by id."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
if str(FIXTURES) not in sys.path:
    sys.path.insert(0, str(FIXTURES))

import doctor_scenarios  # noqa: E402

from envcheck import rules  # noqa: E402
from envcheck.snapshot import na  # noqa: E402


class Machine:
    """``machine("driver_too_old_cu130")`` -> fresh snapshot; ``machine.example(**patches)``;
    ``machine.findings(snap)``, ``machine.ids(snap)``, ``machine.one(snap, id)``."""

    DELETE = doctor_scenarios.DELETE

    def __call__(self, name: str, patches: dict | None = None) -> dict:
        if name in doctor_scenarios.SCENARIOS:
            snap = doctor_scenarios.build(name)
        else:  # a recorded fixture (e.g. cpu_only_vm)
            snap = json.loads((doctor_scenarios.SNAPSHOTS / f"{name}.json").read_text(encoding="utf-8"))
        return doctor_scenarios.patch(snap, patches or {})

    def example(self, patches: dict | None = None) -> dict:
        return doctor_scenarios.patch(doctor_scenarios.example(), patches or {})

    @staticmethod
    def patch(snap: dict, patches: dict) -> dict:
        return doctor_scenarios.patch(snap, patches)

    @staticmethod
    def findings(snap: dict):
        out = rules.evaluate(snap)
        failed = [f for f in out if f.id == "envcheck.rule-failed"]
        assert not failed, f"a rule raised: {[f.title + ' ' + str(f.evidence) for f in failed]}"
        return out

    def ids(self, snap: dict) -> set[str]:
        return {f.id for f in self.findings(snap)}

    def by_id(self, snap: dict, fid: str) -> list:
        return [f for f in self.findings(snap) if f.id == fid]

    def one(self, snap: dict, fid: str):
        found = self.by_id(snap, fid)
        assert len(found) == 1, f"expected one {fid}, got {[(f.id, f.severity.value) for f in self.findings(snap)]}"
        return found[0]

    @staticmethod
    def na(reason: str = "simulated") -> dict:
        return na(reason)


@pytest.fixture
def machine() -> Machine:
    return Machine()
