"""Findings: what a rule concludes from a snapshot, with its evidence and its fix."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class Severity(str, Enum):
    OK = "ok"
    INFO = "info"
    WARN = "warn"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.OK: 0, Severity.INFO: 1, Severity.WARN: 2, Severity.ERROR: 3}


@dataclass(frozen=True)
class Finding:
    """One conclusion. ``id`` is stable (``area.what``) so scripts and dashboards can key on it."""

    id: str
    severity: Severity
    title: str
    evidence: dict[str, Any] = field(default_factory=dict)
    fix: str | None = None
    detail: str | None = None  # the root cause in a sentence or two, when the title is not enough

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["severity"] = self.severity.value
        return d


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """Worst first, then by id, so output order is stable."""
    return sorted(findings, key=lambda f: (-f.severity.rank, f.id))


def worst(findings: list[Finding]) -> Severity:
    return max((f.severity for f in findings), key=lambda s: s.rank, default=Severity.OK)
