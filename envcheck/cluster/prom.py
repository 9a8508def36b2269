"""``--prom-file``: envcheck's results as node_exporter textfile-collector metrics.

Pure: plain dicts in (doctor: the snapshot and its findings; validate: its JSON report),
text exposition format out. :func:`envcheck.outfile.write_text` puts it on disk.

Conventions followed:

* node_exporter's textfile collector reads ``*.prom`` files in the text exposition format and
  does not support timestamps, so none are written; the run time is a metric of its own,
  ``envcheck_last_run_timestamp_seconds`` (prometheus/node_exporter README, Textfile Collector).
* https://prometheus.io/docs/practices/naming: one ``envcheck_`` prefix, base units in the
  name (``_seconds``, ``_bytes``, ``_bytes_per_second``), ratios not percentages, dimensions
  in labels, ``envcheck_build_info{version=...} 1`` for metadata, no ``_total`` (these are
  gauges: each run replaces the file).
* Enumerations are written as state sets, one series per possible value with 1 on the current
  one (``envcheck_check_status{check="gemm",status="fail"} 1``), so an alert is a plain
  ``== 1`` and a series never disappears when the state changes.

Metrics (labels in braces):

=====================================================  ===================================================
``envcheck_build_info{version}``                         1, envcheck's version
``envcheck_last_run_timestamp_seconds{command}``         Unix time the run finished
``envcheck_doctor_findings{severity}``                   findings per severity (error, warn, info)
``envcheck_doctor_finding{id,severity}``                 1 per finding that is not ok
``envcheck_gpus{source}``                                GPUs seen by NVML (``nvml``) and by torch (``torch``)
``envcheck_torch_info{version,cuda,status}``             1, the torch build doctor found
``envcheck_nvidia_driver_info{driver_version,cuda}``     1, the driver and the CUDA it supports
``envcheck_probe_duration_seconds{probe}``               time each doctor probe took
``envcheck_validate_verdict{verdict}``                   state set: certified, passed, degraded, failed
``envcheck_check_status{check,status}``                  state set: pass, warn, fail, skip
``envcheck_check_duration_seconds{check}``               time each validate check took
``envcheck_<check>_<figure>{device,dtype,size_bytes}``   each numeric figure a check reports, e.g.
                                                         ``envcheck_gemm_tflops{device="0",dtype="bf16"}``
``envcheck_figure_<unit>{check,metric,device}``          each judged figure in base units, e.g.
                                                         ``envcheck_figure_tflops{check="gemm",metric="bf16"}``,
                                                         ``envcheck_figure_bytes_per_second{...}``
``envcheck_figure_floor_<unit>``, ``..._spec_<unit>``    its pass floor and spec, same labels
``envcheck_figure_below_floor{check,metric,device}``     1 when the figure is below its floor
``envcheck_node_verdict{node,verdict}``                  cluster run: state set per node
``envcheck_node_straggler{node}``                        cluster run: 1 when the node was flagged
``envcheck_node_pairwise_bad{node}``                     ``--pairwise``: 1 when the node was blamed
``envcheck_world_size``                                  cluster run: ranks that took part
``envcheck_cluster_nodes{verdict}``                      cluster run: nodes per verdict
``envcheck_cluster_ranks{verdict}``                      cluster run: ranks per verdict
``envcheck_cluster_missing_ranks``                       cluster run: ranks that sent no result
=====================================================  ===================================================

Validate figures get their unit from the key's suffix: ``*_s`` / ``*_seconds`` -> ``_seconds``,
``*_ms`` -> ``_seconds`` (divided by 1000), ``*_gbps`` / ``*_gb_s`` -> ``_bytes_per_second``
(times 1e9), ``*_bytes``, ``*_ratio``, ``*_tflops`` kept. Keys that are device indices, dtypes or
sizes become labels instead of name parts.

A cluster report is exported per node, not per rank (issue 10, class 11: 2.6 M series at 32768
ranks before): each node's check states (its worst rank's), the durations of its slowest rank,
and its key figures (its worst rank's value per check and metric, labelled ``node``, ``check``,
``metric``, without ``device``; their floors and specs once, without ``node``), plus the cluster
totals; the per-rank detail is in the JSON report. About 70 series per node.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from envcheck import __version__

PREFIX = "envcheck_"
SEVERITIES = ("error", "warn", "info")
VERDICTS = ("certified", "passed", "degraded", "failed")
CHECK_STATUSES = ("pass", "warn", "fail", "skip")


@dataclass
class Family:
    """One metric family: HELP, TYPE and its samples (labels, value)."""

    name: str
    help: str
    type: str = "gauge"
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, **labels: Any) -> Family:
        self.samples.append(({k: str(v) for k, v in labels.items() if v is not None}, float(value)))
        return self


# ---- text exposition format (pure) ---------------------------------------------------------


def metric_name(text: str) -> str:
    """A valid metric name: [a-zA-Z_:][a-zA-Z0-9_:]*, lower case, runs of other characters -> _."""
    name = re.sub(r"[^a-zA-Z0-9_:]+", "_", str(text)).strip("_").lower()
    name = re.sub(r"_+", "_", name)
    return name if name and not name[0].isdigit() else f"_{name}"


@functools.lru_cache(maxsize=1024)
def _label_name(text: str) -> str:
    name = re.sub(r"[^a-zA-Z0-9_]+", "_", str(text))
    return name if name and not name[0].isdigit() else f"_{name}"


@functools.lru_cache(maxsize=1 << 16)  # node names and check names, repeated in every family
def _escape_label(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("\n", "\\n")


def _value(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)


def render(families: Iterable[Family]) -> str:
    """The text exposition format; families merged by name, duplicate series dropped, no timestamps."""
    merged: dict[str, Family] = {}
    for fam in families:
        if fam.name in merged:
            merged[fam.name].samples.extend(fam.samples)
        else:
            merged[fam.name] = Family(fam.name, fam.help, fam.type, list(fam.samples))
    lines: list[str] = []
    for fam in merged.values():
        if not fam.samples:
            continue
        lines.append(f"# HELP {fam.name} {_escape_help(fam.help)}")
        lines.append(f"# TYPE {fam.name} {fam.type}")
        seen: set = set()
        for labels, value in fam.samples:
            key = tuple(sorted(labels.items()))
            if key in seen:
                continue
            seen.add(key)
            lbl = ",".join(f'{_label_name(k)}="{_escape_label(v)}"' for k, v in labels.items())
            lines.append(f"{fam.name}{{{lbl}}} {_value(value)}" if lbl else f"{fam.name} {_value(value)}")
    return "\n".join(lines) + "\n" if lines else ""


# ---- common ---------------------------------------------------------------------------------


def _common(command: str, now: float) -> list[Family]:
    return [
        Family(PREFIX + "build_info", "envcheck version that wrote this file (always 1).").add(1, version=__version__),
        Family(PREFIX + "last_run_timestamp_seconds", "Unix time at which the envcheck run finished.")
        .add(now, command=command),
    ]


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _na(v: Any) -> bool:
    return isinstance(v, dict) and set(v) == {"unavailable"}


# ---- doctor --------------------------------------------------------------------------------


def doctor_families(snapshot: Mapping, findings: Iterable[Any], now: float) -> list[Family]:
    """Metrics of one ``envcheck doctor`` run (findings as Finding objects or dicts)."""
    items = [f.to_dict() if hasattr(f, "to_dict") else dict(f) for f in findings]
    fams = _common("doctor", now)
    counts = Family(PREFIX + "doctor_findings", "Findings of the last envcheck doctor run, by severity.")
    for sev in SEVERITIES:
        counts.add(sum(1 for f in items if f.get("severity") == sev), severity=sev)
    each = Family(PREFIX + "doctor_finding", "1 for each finding of the last envcheck doctor run (id is stable).")
    for f in items:
        if f.get("severity") in SEVERITIES:
            each.add(1, id=f.get("id"), severity=f.get("severity"))
    fams += [counts, each]

    gpus = Family(PREFIX + "gpus", "GPUs envcheck doctor saw, by who saw them (NVML or torch).")
    nvidia = snapshot.get("nvidia") if isinstance(snapshot.get("nvidia"), Mapping) else {}
    torch = snapshot.get("torch") if isinstance(snapshot.get("torch"), Mapping) else {}
    if _is_num(nvidia.get("gpu_count")):
        gpus.add(nvidia["gpu_count"], source="nvml")
    if _is_num(torch.get("device_count")):
        gpus.add(torch["device_count"], source="torch")
    fams.append(gpus)
    if torch.get("status") is not None:
        fams.append(Family(PREFIX + "torch_info", "The torch build envcheck doctor found (always 1).").add(
            1, status=torch.get("status"),
            version=torch.get("version") if isinstance(torch.get("version"), str) else "",
            cuda=torch.get("cuda") if isinstance(torch.get("cuda"), str) else "",
        ))
    if isinstance(nvidia.get("driver_version"), str):
        fams.append(Family(PREFIX + "nvidia_driver_info", "NVIDIA driver and the CUDA version it supports (always 1).")
                    .add(1, driver_version=nvidia["driver_version"],
                         cuda=nvidia.get("cuda_driver_version") if isinstance(nvidia.get("cuda_driver_version"), str) else ""))
    probe = Family(PREFIX + "probe_duration_seconds", "Seconds each envcheck doctor probe took.")
    for name, secs in (snapshot.get("probe_seconds") or {}).items():
        if _is_num(secs):
            probe.add(secs, probe=name)
    fams.append(probe)
    return fams


# ---- validate --------------------------------------------------------------------------------

_UNITS = (  # (key suffix, name suffix, factor); matched longest suffix first (_gb_s before _s)
    ("_seconds", "_seconds", 1.0), ("_ms", "_seconds", 1e-3), ("_us", "_seconds", 1e-6), ("_s", "_seconds", 1.0),
    ("_gb_s", "_bytes_per_second", 1e9), ("_gbps", "_bytes_per_second", 1e9),
    ("_gib", "_bytes", 2.0**30), ("_mib", "_bytes", 2.0**20), ("_bytes", "_bytes", 1.0),
    ("_pct", "_ratio", 1e-2), ("_percent", "_ratio", 1e-2), ("_ratio", "_ratio", 1.0),
)
def _unit(key: str) -> tuple[str, float]:
    k = key.lower()
    for suffix, unit, factor in sorted(_UNITS, key=lambda u: -len(u[0])):
        if k.endswith(suffix) and len(k) > len(suffix):
            return k[: -len(suffix)] + unit, factor
    return k, 1.0


def _metric_families(check: str, metrics: Any, labels: dict[str, str], out: dict[str, Family]) -> None:
    """A check's own flat numeric metrics (``{"bf16_tflops": 410.0, "copy_time_s": 0.2}``), one
    family each, in base units; strings, booleans, nested values and na() markers are skipped
    (the judged figures, with floors and specs, are the figure families)."""
    if not isinstance(metrics, Mapping) or _na(metrics):
        return
    for key, value in metrics.items():
        if not _is_num(value):
            continue
        stem, factor = _unit(str(key))
        name = metric_name(PREFIX + f"{check}_{stem}")
        out.setdefault(name, Family(name, f"Figure {key} of envcheck validate check {check}.")).add(
            value * factor, **labels)


# validate's Figure.unit -> (metric name suffix, factor to the base unit)
_FIGURE_UNITS = {
    "tflops": ("tflops", 1.0), "tflop/s": ("tflops", 1.0),
    "tb/s": ("bytes_per_second", 1e12), "gb/s": ("bytes_per_second", 1e9), "gbps": ("bytes_per_second", 1e9), "gib/s": ("bytes_per_second", 2.0**30),
    "mb/s": ("bytes_per_second", 1e6), "mib/s": ("bytes_per_second", 2.0**20), "b/s": ("bytes_per_second", 1.0),
    "s": ("seconds", 1.0), "ms": ("seconds", 1e-3), "us": ("seconds", 1e-6),
    "x": ("ratio", 1.0), "ratio": ("ratio", 1.0), "%": ("ratio", 1e-2),
    "samples/s": ("samples_per_second", 1.0), "bytes": ("bytes", 1.0), "b": ("bytes", 1.0),
}


def _figure_families(figures: Iterable[Mapping], labels: dict[str, str], out: dict[str, Family],
                     device: bool = True) -> None:
    """validate's judged figures: value, floor and spec in base units, and whether it is below its floor."""
    for fig in figures:
        if not isinstance(fig, Mapping) or not _is_num(fig.get("value")):
            continue
        unit = str(fig.get("unit") or "").strip()
        suffix, factor = _FIGURE_UNITS.get(unit.lower(), (metric_name(unit) or "value", 1.0))
        lbl = {**labels, "check": str(fig.get("check")), "metric": str(fig.get("metric"))}
        if device:
            lbl["device"] = str(fig.get("device"))
        for kind, what in (("value", "Measured"), ("floor", "Pass floor of"), ("spec", "Spec of")):
            if kind != "value" and not device:
                continue  # per node: the value; the floor and spec once for the cluster (validate_families)
            v = fig.get(kind)
            if not _is_num(v):
                continue
            name = PREFIX + ("figure_" if kind == "value" else f"figure_{kind}_") + suffix
            out.setdefault(name, Family(name, f"{what} an envcheck validate figure, in {suffix.replace('_', ' ')}.")
                           ).add(v * factor, **lbl)
        if fig.get("status") in ("ok", "below"):
            name = PREFIX + "figure_below_floor"
            out.setdefault(name, Family(name, "1 when an envcheck validate figure is below its pass floor.")
                           ).add(1 if fig.get("status") == "below" else 0, **lbl)


def _floor_spec_families(figures: Iterable[Mapping], out: dict[str, Family]) -> None:
    """Cluster run: each figure's floor and spec, once (the same for every node of a GPU model)."""
    for fig in figures:
        unit = str(fig.get("unit") or "").strip()
        suffix, factor = _FIGURE_UNITS.get(unit.lower(), (metric_name(unit) or "value", 1.0))
        for kind, what in (("floor", "Pass floor of"), ("spec", "Spec of")):
            if _is_num(fig.get(kind)):
                name = PREFIX + f"figure_{kind}_" + suffix
                out.setdefault(name, Family(name, f"{what} an envcheck validate figure, in {suffix.replace('_', ' ')}.")
                               ).add(fig[kind] * factor, check=str(fig.get("check")), metric=str(fig.get("metric")))


def _check_families(checks: Iterable[Mapping], labels: dict[str, str], out: dict[str, Family]) -> None:
    status = out.setdefault(PREFIX + "check_status", Family(
        PREFIX + "check_status", "State set of each envcheck validate check: 1 on its status (pass, warn, fail, skip)."))
    duration = out.setdefault(PREFIX + "check_duration_seconds", Family(
        PREFIX + "check_duration_seconds", "Seconds each envcheck validate check took."))
    for c in checks:
        if not isinstance(c, Mapping) or not c.get("name"):
            continue
        name = str(c["name"])
        for s in CHECK_STATUSES:
            status.add(1 if c.get("status") == s else 0, **labels, check=name, status=s)
        for key in ("duration_s", "seconds", "elapsed_s", "duration_seconds"):
            if _is_num(c.get(key)):
                duration.add(c[key], **labels, check=name)
                break
        _metric_families(metric_name(name), c.get("metrics") or {}, dict(labels), out)


def validate_families(report: Mapping, now: float) -> list[Family]:
    """Metrics of one ``envcheck validate`` run from its JSON report (one node or a cluster)."""
    fams = _common("validate", now)
    verdict = Family(PREFIX + "validate_verdict", "State set of the envcheck validate verdict: 1 on the current one.")
    for v in VERDICTS:
        verdict.add(1 if report.get("verdict") == v else 0, verdict=v)
    fams.append(verdict)
    out: dict[str, Family] = {}
    _check_families(report.get("checks") or [], {}, out)
    _figure_families(report.get("figures") or [], {}, out)
    nodes = [n for n in report.get("nodes") or [] if isinstance(n, Mapping)]
    if nodes:
        if _is_num(report.get("world_size")):
            fams.append(Family(PREFIX + "world_size", "Ranks that took part in the cluster run.").add(report["world_size"]))
        nv = Family(PREFIX + "node_verdict", "State set of each node's verdict in a cluster run.")
        st = Family(PREFIX + "node_straggler", "1 when the cluster run flagged the node as a straggler.")
        node_counts = dict.fromkeys(VERDICTS, 0)
        rank_counts = dict.fromkeys(VERDICTS, 0)
        for n in nodes:
            node = str(n.get("hostname") or n.get("node_rank"))
            for v in VERDICTS:
                nv.add(1 if n.get("verdict") == v else 0, node=node, verdict=v)
            st.add(1 if n.get("straggler") else 0, node=node)
            _check_families(n.get("checks") or [], {"node": node}, out)
            _figure_families(n.get("figures") or [], {"node": node}, out, device=False)
            if n.get("verdict") in node_counts:
                node_counts[n["verdict"]] += 1
            for r in n.get("ranks") or []:
                if isinstance(r, Mapping) and r.get("verdict") in rank_counts:
                    rank_counts[r["verdict"]] += 1
        # each (check, metric)'s floor and spec once, from the first node that has them
        firsts: dict = {}
        for n in nodes:
            for f in n.get("figures") or []:
                if isinstance(f, Mapping):
                    firsts.setdefault((f.get("check"), f.get("metric")), f)
        _floor_spec_families(firsts.values(), out)
        cn = Family(PREFIX + "cluster_nodes", "Nodes of the cluster run per verdict.")
        cr = Family(PREFIX + "cluster_ranks", "Ranks of the cluster run per verdict.")
        for v in VERDICTS:
            cn.add(node_counts[v], verdict=v)
            cr.add(rank_counts[v], verdict=v)
        missing = Family(PREFIX + "cluster_missing_ranks", "Ranks of the cluster run that sent no result.")
        missing.add(len(report.get("missing_ranks") or []))
        fams += [nv, st, cn, cr, missing]
        pw = report.get("pairwise")
        if isinstance(pw, Mapping) and pw.get("rounds"):
            blamed = {b.get("node_rank") for b in pw.get("bad_nodes") or []}
            pb = Family(PREFIX + "node_pairwise_bad", "1 when --pairwise blamed the node for failed node pairs.")
            for n in nodes:
                pb.add(1 if n.get("node_rank") in blamed else 0, node=str(n.get("hostname") or n.get("node_rank")))
            fams.append(pb)
    return fams + list(out.values())


def doctor_text(snapshot: Mapping, findings: Iterable[Any], now: float) -> str:
    return render(doctor_families(snapshot, findings, now))


def validate_text(report: Mapping, now: float) -> str:
    return render(validate_families(report, now))
