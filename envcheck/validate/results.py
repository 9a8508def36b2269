"""What a validation run produces: one CheckResult per check, gathered in a ValidationReport.

Plain dataclasses with ``to_dict``/``from_dict`` (no torch), so the parent process, the
renderers, certification and the cluster mode all share one JSON-able shape.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass, field
from typing import Any

PASS = "pass"
WARN = "warn"
FAIL = "fail"
SKIP = "skip"
STATUSES = (PASS, WARN, FAIL, SKIP)

# Verdicts (issue 4): every figure judged against its floor / some below / a correctness
# failure or crash / all correct but no floors known for this hardware (CPU, unknown GPU).
CERTIFIED = "certified"
DEGRADED = "degraded"
FAILED = "failed"
PASSED = "passed"
VERDICTS = (CERTIFIED, DEGRADED, FAILED, PASSED)

REPORT_SCHEMA = "envcheck.validate"
REPORT_SCHEMA_VERSION = 1


@dataclass
class CheckResult:
    """The outcome of one check.

    ``metrics`` holds flat headline figures (numbers, bools, short strings), ``details``
    the tables behind them (per device, per size). ``error`` is set when the check crashed
    or raised, as ``{"kind", "type", "message", "traceback"}``.
    """

    name: str
    status: str
    metrics: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {self.status!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        return cls(
            name=str(data["name"]),
            status=str(data["status"]),
            metrics=dict(data.get("metrics") or {}),
            message=str(data.get("message") or ""),
            seconds=float(data.get("seconds") or 0.0),
            details=dict(data.get("details") or {}),
            error=data.get("error"),
        )


@dataclass
class Figure:
    """One measured figure next to the spec of this hardware and its pass floor."""

    check: str
    metric: str
    device: str
    value: float | None
    unit: str
    spec: float | None = None
    floor: float | None = None
    status: str = "unjudged"  # ok | below | unjudged
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.spec:
            return None
        return self.value / self.spec

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        r = self.ratio
        d["ratio"] = None if r is None else round(r, 4)
        return d


@dataclass
class ValidationReport:
    """A whole run: options, versions, machine summary, every check, figures and the verdict."""

    checks: list[CheckResult] = field(default_factory=list)
    verdict: str = PASSED
    reasons: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    gpu_models: dict[str, str | None] = field(default_factory=dict)  # device -> spec id
    device: str = "cpu"
    devices: list[dict[str, Any]] = field(default_factory=list)
    world_size: int = 1
    profile: str = "standard"
    options: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False
    created_at: str = ""
    envcheck_version: str = ""

    def __post_init__(self) -> None:
        if not self.created_at:
            self.created_at = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        if not self.envcheck_version:
            from envcheck import __version__

            self.envcheck_version = __version__

    def check(self, name: str) -> CheckResult | None:
        return next((c for c in self.checks if c.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON (README "validate JSON"); key order is part of the contract."""
        return {
            "schema": REPORT_SCHEMA,
            "schema_version": REPORT_SCHEMA_VERSION,
            "envcheck_version": self.envcheck_version,
            "created_at": self.created_at,
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "interrupted": self.interrupted,
            "profile": self.profile,
            "device": self.device,
            "devices": list(self.devices),
            "world_size": self.world_size,
            "gpu_models": dict(self.gpu_models),
            "checks": [c.to_dict() for c in self.checks],
            "figures": [f.to_dict() for f in self.figures],
            "versions": dict(self.versions),
            "machine": dict(self.machine),
            "timings": dict(self.timings),
            "options": dict(self.options),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ValidationReport:
        figures = []
        for f in data.get("figures") or []:
            f = dict(f)
            f.pop("ratio", None)
            figures.append(Figure(**f))
        return cls(
            checks=[CheckResult.from_dict(c) for c in data.get("checks") or []],
            verdict=data.get("verdict", PASSED),
            reasons=list(data.get("reasons") or []),
            figures=figures,
            gpu_models=dict(data.get("gpu_models") or {}),
            device=data.get("device", "cpu"),
            devices=list(data.get("devices") or []),
            world_size=int(data.get("world_size") or 1),
            profile=data.get("profile", "standard"),
            options=dict(data.get("options") or {}),
            versions=dict(data.get("versions") or {}),
            machine=dict(data.get("machine") or {}),
            timings=dict(data.get("timings") or {}),
            interrupted=bool(data.get("interrupted")),
            created_at=data.get("created_at", ""),
            envcheck_version=data.get("envcheck_version", ""),
        )
