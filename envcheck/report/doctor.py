"""Render the doctor report: text for people, JSON (snapshot + findings) for machines (placeholder)."""

from __future__ import annotations

import json

from envcheck.findings import Finding


def to_json(snapshot: dict, findings: list[Finding]) -> str:
    return json.dumps({**snapshot, "findings": [f.to_dict() for f in findings]}, indent=2, sort_keys=True) + "\n"


def to_text(snapshot: dict, findings: list[Finding], color: bool = False) -> str:
    lines = [f"[{f.severity.value}] {f.id}: {f.title}" for f in findings]
    return "\n".join(lines or ["no findings"]) + "\n"
