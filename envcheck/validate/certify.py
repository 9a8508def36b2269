"""Certification: the checks' figures + the recipes -> a verdict. Pure: no torch, no I/O.

Verdicts (issue 4):
- ``failed``: a check failed (a correctness failure, a crash, a hang) or the run was
  interrupted;
- ``degraded``: everything correct, but a figure is below its floor (or a check warned);
- ``certified``: all six checks ran and passed, every judged figure at or above its floor,
  on hardware whose specs are known;
- ``passed``: all correct, but nothing to judge against (CPU, a GPU not in
  recipes/gpu_specs.json) or not every check ran: figures reported, not judged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from envcheck.validate.config import CORE_CHECKS
from envcheck.validate.results import (
    CERTIFIED,
    DEGRADED,
    FAIL,
    FAILED,
    PASSED,
    SKIP,
    WARN,
    CheckResult,
    Figure,
)


@dataclass
class Certification:
    verdict: str
    reasons: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    gpu_models: dict[str, str | None] = field(default_factory=dict)


def match_model(name: str | None, specs: dict[str, Any]) -> dict[str, Any] | None:
    """The gpu_specs entry whose ``match`` patterns fully match ``name`` (case-insensitive)."""
    if not name:
        return None
    name = " ".join(name.split())
    for gpu in specs.get("gpus", []):
        for pattern in gpu.get("match", []):
            if re.fullmatch(pattern, name, flags=re.IGNORECASE):
                return gpu
    return None


def _judge(fig: Figure) -> Figure:
    if fig.value is None or fig.floor is None:
        fig.status = "unjudged"
    else:
        fig.status = "ok" if fig.value >= fig.floor else "below"
    return fig


def _floor(spec: float | None, fraction: float | None) -> float | None:
    if spec is None or fraction is None:
        return None
    return round(spec * fraction, 4)


def _cap_tuple(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        return tuple(int(v) for v in str(text).split("."))
    except ValueError:
        return None


def _gemm_figures(gemm: CheckResult, models: dict, f: dict) -> list[Figure]:
    out = []
    for row in gemm.details.get("devices", []):
        model = models.get(row.get("device"))
        for dt, m in (row.get("dtypes") or {}).items():
            if m.get("tflops") is None:
                continue
            rule = f.get("gemm", {}).get(dt, {})
            spec = (model or {}).get("peak_tflops", {}).get(rule.get("spec_key", dt)) if model else None
            out.append(_judge(Figure("gemm", f"{dt}_tflops", row["device"], m["tflops"], "TFLOPS", spec,
                                     _floor(spec, rule.get("fraction_of_spec")), note=f"n={m.get('n')}")))
    return out


def _memory_figures(mem: CheckResult, models: dict, f: dict) -> list[Figure]:
    out = []
    for row in mem.details.get("devices", []):
        model = models.get(row.get("device"))
        for key in ("d2d_GBps", "h2d_GBps", "d2h_GBps"):
            if row.get(key) is None:
                continue
            rule = f.get("memory", {}).get(key, {})
            spec = model.get(rule.get("spec_key", "")) if model else None
            out.append(_judge(Figure("memory", key, row["device"], row[key], "GB/s", spec,
                                     _floor(spec, rule.get("fraction_of_spec")))))
    return out


def _allreduce_figure(ar: CheckResult, models: dict, f: dict, world_size: int) -> Figure:
    rule = f.get("allreduce", {}).get("busbw_GBps", {})
    distinct = {m["id"] if m else None for m in models.values()}
    model = next(iter(models.values())) if len(distinct) == 1 else None
    spec = None
    note = f"{ar.metrics.get('world_size')} ranks, largest message {ar.metrics.get('max_bytes')} B"
    nvlink = (model or {}).get("nvlink") or {}
    if model and str(nvlink.get("class", "")).startswith("NVLink") and world_size >= int(rule.get("min_ranks", 2)):
        spec = nvlink.get("unidirectional_GBps")
    elif model:
        note += "; not judged (needs NVLink-class GPUs and >= 2 ranks)"
    return _judge(Figure("allreduce", "busbw_GBps", "all", ar.metrics["busbw_GBps"], "GB/s", spec,
                         _floor(spec, rule.get("fraction_of_spec")), note=note))


def _amp_figures(amp: CheckResult, models: dict, f: dict) -> list[Figure]:
    rule = f.get("amp", {}).get("speedup", {})
    first = next(iter(models), None)
    model = models.get(first) if first else None
    tensor_cores = bool(model) and (_cap_tuple(model.get("compute_capability")) or (0,)) >= (
        _cap_tuple(rule.get("min_compute_capability")) or (7, 0))
    floor = float(rule["minimum"]) if tensor_cores and "minimum" in rule else None
    return [_judge(Figure("amp", f"{mode}_speedup", first or "cpu", row["speedup"], "x", None, floor,
                          note="over fp32 (TF32 off)"))
            for mode, row in (amp.details.get("modes") or {}).items() if row.get("speedup") is not None]


def figures_for(checks: list[CheckResult], models: dict[str, dict[str, Any] | None],
                floors: dict[str, Any], world_size: int) -> list[Figure]:
    """Every figure of the checks, next to the spec and floor of its device's model."""
    f = floors.get("floors", {})
    out: list[Figure] = []
    by_name = {c.name: c for c in checks}
    ran = {n: c for n, c in by_name.items() if c.status != SKIP}
    if "gemm" in ran:
        out += _gemm_figures(ran["gemm"], models, f)
    if "memory" in ran:
        out += _memory_figures(ran["memory"], models, f)
    if "allreduce" in ran and ran["allreduce"].metrics.get("busbw_GBps") is not None:
        out.append(_allreduce_figure(ran["allreduce"], models, f, world_size))
    if "amp" in ran:
        out += _amp_figures(ran["amp"], models, f)
    first = next(iter(models), "cpu")
    cnn = by_name.get("cnn")
    if cnn is not None and cnn.metrics.get("samples_per_s") is not None:
        out.append(Figure("cnn", "samples_per_s", first, cnn.metrics["samples_per_s"], "samples/s"))
    comp = by_name.get("compile")
    if comp is not None and comp.metrics.get("speedup") is not None:
        out.append(Figure("compile", "compile_s", first, comp.metrics.get("compile_s"), "s"))
        out.append(Figure("compile", "speedup", first, comp.metrics["speedup"], "x", note="eager / compiled step time"))
    return out


def certify(
    checks: list[CheckResult],
    devices: list[dict[str, Any]],
    *,
    device_type: str,
    world_size: int,
    specs: dict[str, Any],
    floors: dict[str, Any],
    interrupted: bool = False,
    required: tuple[str, ...] = CORE_CHECKS,
) -> Certification:
    """Judge the figures and decide the verdict. ``devices``: [{"index", "name", ...}]."""
    models: dict[str, dict[str, Any] | None] = {}
    if device_type == "cuda":
        for d in devices:
            models[f"cuda:{d.get('index', len(models))}"] = match_model(d.get("name"), specs)
    figures = figures_for(checks, models, floors, world_size) + extended_figures(checks, models, floors)
    cert = Certification(PASSED, figures=figures,
                         gpu_models={k: (m["id"] if m else None) for k, m in models.items()})
    failed = [c for c in checks if c.status == FAIL]
    if interrupted:
        cert.reasons.append("the run was interrupted before every check finished")
    for c in failed:
        cert.reasons.append(f"{c.name} failed: {c.message}")
    if interrupted or failed:
        cert.verdict = FAILED
        return cert
    below = [fig for fig in figures if fig.status == "below"]
    warned = [c for c in checks if c.status == WARN]
    for fig in below:
        cert.reasons.append(f"{fig.check} {fig.metric} on {fig.device}: {fig.value:g} {fig.unit} is below its "
                            f"floor {fig.floor:g}" + (f" (spec {fig.spec:g})" if fig.spec is not None else ""))
    for c in warned:
        cert.reasons.append(f"{c.name} warned: {c.message}")
    if below or warned:
        cert.verdict = DEGRADED
        return cert
    known = bool(models) and all(m is not None for m in models.values())
    if not known:
        if device_type != "cuda":
            what = "the CPU"
        else:
            unknown = sorted({d.get("name") or "?" for d in devices
                              if models.get(f"cuda:{d.get('index')}") is None})
            what = "GPU model(s) " + ", ".join(repr(u) for u in unknown) + " (not in recipes/gpu_specs.json)"
        cert.reasons.append(f"no pass floors are known for {what}: figures are reported, not judged")
        return cert
    ran = {c.name for c in checks if c.status != SKIP}
    missing = [n for n in required if n not in ran]
    if missing:
        cert.reasons.append("certification needs all six checks; not run or skipped: " + ", ".join(missing))
        return cert
    cert.verdict = CERTIFIED
    judged = sum(1 for fig in figures if fig.status == "ok")
    cert.reasons.append(f"all checks passed; {judged} figure(s) at or above their floors")
    return cert


# --------------------------------------------------------------------------- issue 16


def _when(gpu: dict[str, Any], counter: str) -> str:
    t = next((e["t"] for e in gpu.get("events") or [] if e.get("counter") == counter), None)
    return f" at {t:g} s into the check" if t is not None else ""


def _gpu_label(gpu: dict[str, Any]) -> str:
    return f"GPU {gpu.get('index')}" + (f" ({gpu['name']})" if gpu.get("name") else "")


def judge_watch(summary: dict[str, Any], floors: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(fail reasons, degrade reasons) from one check's NVML watch summary (watch.py)."""
    if not summary or not summary.get("available"):
        return [], []
    rules = floors.get("watch", {})
    fail_rule, xid_rule = rules.get("fail", {}), rules.get("xids", {})
    thr, rep = rules.get("throttle", {}), rules.get("pcie_replay", {})
    fails: list[str] = []
    warns: list[str] = []
    seconds = float(summary.get("seconds") or 0.0)
    for g in summary.get("gpus") or []:
        who = _gpu_label(g)
        dbe = g.get("dbe_volatile_delta")
        if dbe is not None and dbe >= int(fail_rule.get("dbe_volatile_delta", 1)):
            fails.append(f"{who}: {dbe} new double-bit ECC error(s) (volatile DBE counter){_when(g, 'dbe_volatile')}")
        if g.get("remap_failure") and fail_rule.get("row_remap_failure", True):
            fails.append(f"{who}: row remapping failed (remapped rows: failure){_when(g, 'remap_failure')}")
        if g.get("remap_pending") and fail_rule.get("row_remap_pending", True):
            before = " (already pending before the check)" if g.get("remap_pending_before") else ""
            fails.append(f"{who}: a row remap is pending, the GPU needs a reset{before}{_when(g, 'remap_pending')}")
        for x in g.get("xids") or []:
            if x.get("xid") in xid_rule.get("fail", []):
                fails.append(f"{who}: hardware XID {x['xid']} at {x.get('t', 0):g} s into the check")
            elif x.get("xid") in xid_rule.get("warn", []):
                warns.append(f"{who}: XID {x['xid']} at {x.get('t', 0):g} s into the check")
        for reason, n in sorted((g.get("clock_event_samples") or {}).items()):
            if reason in thr.get("degrade_reasons", []) and n >= int(thr.get("min_samples", 2)):
                first = (g.get("clock_event_first_t") or {}).get(reason)
                peak = f", peak {g['temp_c_peak']:g} C" if g.get("temp_c_peak") is not None else ""
                warns.append(f"{who}: clocks slowed by {reason.replace('_', ' ')} under load in {n} of "
                             f"{summary.get('samples')} samples (from {first:g} s{peak})")
        replays = g.get("pcie_replay_delta")
        per_lane = (rep.get("per_lane_per_minute") or {}).get(str(g.get("pcie_gen") or 5))
        if replays and per_lane is not None:
            window = max(seconds, float(rep.get("min_window_s", 60)))
            limit = float(per_lane) * int(g.get("pcie_width") or 16) * window / 60.0
            if replays > limit:
                warns.append(f"{who}: PCIe replay burst, {replays} replays in {seconds:g} s (limit {limit:.3g} for "
                             f"gen{g.get('pcie_gen') or '?'} x{g.get('pcie_width') or '?'}){_when(g, 'pcie_replay')}")
    return fails, warns


def extended_figures(checks: list[CheckResult], models: dict[str, dict[str, Any] | None],
                     floors: dict[str, Any]) -> list[Figure]:
    """Figures of the transformer, collectives and p2p checks (issue 16).

    transformer: achieved TFLOPS next to the dense bf16 (or fp32) spec, so the ratio is the
    model-FLOPs utilisation; reported, not judged. collectives: busbw of each collective at
    its largest size; reported. p2p: each ordered pair's copy GB/s against the floor of its
    NVLink class (validate_floors.json "p2p"), so a slow pair degrades the verdict by name."""
    out: list[Figure] = []
    by_name = {c.name: c for c in checks}
    tr = by_name.get("transformer")
    if tr is not None and tr.metrics.get("tflops") is not None:
        dev = tr.details.get("device") or next(iter(models), "cpu")
        model = models.get(dev)
        dtype = tr.metrics.get("dtype") or "fp32"
        spec = (model or {}).get("peak_tflops", {}).get(dtype) if model else None
        out.append(Figure("transformer", "tflops", dev, tr.metrics["tflops"], "TFLOPS", spec,
                          note=f"{dtype}, model FLOPs 6N+12LdT; of spec = MFU"))
        if tr.metrics.get("tokens_per_s") is not None:
            out.append(Figure("transformer", "tokens_per_s", dev, tr.metrics["tokens_per_s"], "tokens/s"))
    co = by_name.get("collectives")
    if co is not None and co.status != SKIP:
        for op, res in (co.details.get("ops") or {}).items():
            rows = res.get("rows") or []
            if rows and rows[-1].get("busbw_GBps") is not None:
                out.append(Figure("collectives", f"{op}_busbw_GBps", "all", rows[-1]["busbw_GBps"], "GB/s",
                                  note=f"{co.metrics.get('world_size')} ranks, {rows[-1]['bytes']} B"))
    pp = by_name.get("p2p")
    if pp is not None and pp.status != SKIP:
        rule = floors.get("p2p", {}).get("copy_GBps", {})
        for row in pp.details.get("pairs") or []:
            model = models.get(f"cuda:{row.get('src')}")
            nvlink = (model or {}).get("nvlink") or {}
            floor = (rule.get("by_nvlink_class") or {}).get(str(nvlink.get("class")))
            out.append(_judge(Figure("p2p", "copy_GBps", f"cuda:{row.get('src')}->cuda:{row.get('dst')}",
                                     row.get("GBps"), "GB/s", nvlink.get("unidirectional_GBps"),
                                     float(floor) if floor is not None else None,
                                     note="" if row.get("peer_access") else "no peer access")))
    return out
