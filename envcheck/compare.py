"""The fleet view: compare doctor snapshots of many machines and name the odd node out (issue 17).

Pure: data in, data out. ``envcheck compare`` (cli.py) reads the files with :func:`load_file`
(the snapshot loader's one-line errors) and renders :func:`compare`'s result with
envcheck/report/compare.py.

Every input becomes a :class:`Node`: a name (the snapshot's hostname, else the file name) and a
flat dict of *facts*, ``{field key: value}``, extracted by :func:`facts_of_snapshot` (doctor
snapshots and ``doctor --format json`` reports) or :func:`facts_of_validate` (``validate``
reports and the nodes of a cluster report, which carry fewer facts). A key a source cannot
tell is absent (the node is "unknown" for that field and not counted); ``None`` is a real
value (an environment variable that is unset).

Fields are grouped by what matters when "it works on node A and fails on node B" (Google's
cluster-health-scanner diffs driver, CUDA, NCCL and NCCL settings against a golden
``qualified_versions.json``; Imbue checks VBIOS and OS versions against a config:
/work/shared/reference/node-health-anchors.md, C4 and I8). Each field *weighs* or not: a
difference in a weighing field makes the exit code 1; hostname, times, temperatures, power draw
and memory in use are not compared at all, and host facts such as the CPU model or RAM are shown
but do not weigh.

Result shape: see :func:`compare` and README "Comparing machines" (schema ``envcheck.compare``).
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envcheck import __version__
from envcheck import snapshot as snap

SCHEMA = "envcheck.compare"
SCHEMA_VERSION = 1
GOLDEN_SCHEMA = "envcheck.golden"
GOLDEN_SCHEMA_VERSION = 1

GROUPS: tuple[tuple[str, str], ...] = (
    ("driver", "Driver and CUDA"),
    ("torch", "PyTorch build"),
    ("nccl", "NCCL"),
    ("cudnn", "cuDNN"),
    ("python", "Python"),
    ("os", "Kernel and OS"),
    ("firmware", "VBIOS and InfoROM"),
    ("gpus", "GPUs"),
    ("interconnect", "NVLink, PCIe, GPUDirect"),
    ("env", "Environment (NCCL_*, CUDA_*, TORCH_*, ...)"),
    ("cgroup", "Container and limits"),
    ("findings", "Doctor findings"),
    ("host", "Host (shown, not weighed)"),
)
_GROUP_ORDER = {g: i for i, (g, _) in enumerate(GROUPS)}


@dataclass(frozen=True)
class FieldSpec:
    key: str
    group: str
    label: str
    weight: bool = True


# Fixed fields in display order. Environment variables add ``env.<NAME>`` fields (weighing).
FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("driver.version", "driver", "NVIDIA driver"),
    FieldSpec("driver.cuda", "driver", "CUDA the driver supports"),
    FieldSpec("driver.nvml", "driver", "NVML status"),
    FieldSpec("driver.kernel_modules", "driver", "kernel modules loaded"),
    FieldSpec("torch.status", "torch", "torch status"),
    FieldSpec("torch.version", "torch", "torch version"),
    FieldSpec("torch.cuda", "torch", "torch built for CUDA"),
    FieldSpec("torch.hip", "torch", "torch built for HIP"),
    FieldSpec("torch.arch_list", "torch", "compiled architectures"),
    FieldSpec("torch.distributions", "torch", "torch distributions installed"),
    FieldSpec("torch.triton", "torch", "triton"),
    FieldSpec("torch.cuda_available", "torch", "torch.cuda.is_available()"),
    FieldSpec("torch.device_count", "torch", "devices torch sees"),
    FieldSpec("nccl.version", "nccl", "NCCL (torch's)"),
    FieldSpec("cudnn.version", "cudnn", "cuDNN (torch's)"),
    FieldSpec("python.version", "python", "Python"),
    FieldSpec("python.implementation", "python", "implementation"),
    FieldSpec("python.free_threaded", "python", "free-threaded build"),
    FieldSpec("os.kernel", "os", "kernel"),
    FieldSpec("os.distro", "os", "OS"),
    FieldSpec("os.glibc", "os", "glibc"),
    FieldSpec("os.arch", "os", "architecture"),
    FieldSpec("firmware.vbios", "firmware", "VBIOS"),
    FieldSpec("firmware.inforom", "firmware", "InfoROM image"),
    FieldSpec("gpus.count", "gpus", "GPUs (NVML)"),
    FieldSpec("gpus.pci_count", "gpus", "NVIDIA devices on the PCI bus"),
    FieldSpec("gpus.models", "gpus", "GPU models"),
    FieldSpec("gpus.memory_total_bytes", "gpus", "memory per GPU (bytes)"),
    FieldSpec("gpus.compute_capability", "gpus", "compute capability"),
    FieldSpec("gpus.errors", "gpus", "GPU errors"),
    FieldSpec("gpus.ecc_mode", "gpus", "ECC enabled"),
    FieldSpec("gpus.mig_mode", "gpus", "MIG enabled"),
    FieldSpec("gpus.persistence_mode", "gpus", "persistence mode"),
    FieldSpec("gpus.compute_mode", "gpus", "compute mode"),
    FieldSpec("gpus.power_limit_w", "gpus", "power limit (W)"),
    FieldSpec("gpus.sm_max_mhz", "gpus", "max SM clock (MHz)", weight=False),
    FieldSpec("interconnect.nvlink", "interconnect", "NVLink links up/total per GPU"),
    FieldSpec("interconnect.pcie_max", "interconnect", "PCIe link (max)"),
    FieldSpec("interconnect.peermem", "interconnect", "nvidia_peermem loaded (GPUDirect RDMA)"),
    FieldSpec("cgroup.container", "cgroup", "container"),
    FieldSpec("cgroup.memory_limit_bytes", "cgroup", "cgroup memory limit (bytes)"),
    FieldSpec("cgroup.cpu_quota_cores", "cgroup", "cgroup CPU quota (cores)"),
    FieldSpec("cgroup.shm_bytes", "cgroup", "/dev/shm size (bytes)"),
    FieldSpec("cgroup.memlock", "cgroup", "ulimit memlock (soft)"),
    FieldSpec("cgroup.nofile", "cgroup", "ulimit nofile (soft)"),
    FieldSpec("findings.problems", "findings", "errors and warnings"),
    FieldSpec("findings.info", "findings", "infos", weight=False),
    FieldSpec("host.cpu", "host", "CPU", weight=False),
    FieldSpec("host.cpu_cores", "host", "logical cores", weight=False),
    FieldSpec("host.ram_bytes", "host", "RAM (bytes)", weight=False),
    FieldSpec("host.envcheck", "host", "envcheck version", weight=False),
)
_SPECS = {f.key: f for f in FIELDS}
_FIELD_ORDER = {f.key: i for i, f in enumerate(FIELDS)}

# Environment variables compared (recorded only if the env probe's allowlist kept them). Slurm
# and torchrun topology names (SLURM_PROCID, LOCAL_RANK, ...) differ per node by design.
ENV_PREFIXES = ("NCCL_", "CUDA_", "TORCH_", "PYTORCH_", "NVIDIA_", "CUBLAS_", "CUDNN_", "TORCHINDUCTOR_")
ENV_NAMES = ("LD_LIBRARY_PATH", "LD_PRELOAD", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "UCX_NET_DEVICES")


class CompareError(ValueError):
    """Input compare cannot use (one line, exit 2)."""


# Logging knobs: shown when they differ, but a different log level is not a different machine.
ENV_COSMETIC = ("NCCL_DEBUG", "NCCL_DEBUG_SUBSYS", "NCCL_DEBUG_FILE", "TORCH_CPP_LOG_LEVEL",
                "TORCH_SHOW_CPP_STACKTRACES")


def spec_of(key: str) -> FieldSpec:
    """The spec of a field key; ``env.<NAME>`` fields weigh, except the logging knobs."""
    if key in _SPECS:
        return _SPECS[key]
    if key.startswith("env."):
        return FieldSpec(key, "env", key[4:], key[4:] not in ENV_COSMETIC)
    return FieldSpec(key, "host", key, False)


def _order(key: str) -> tuple:
    s = spec_of(key)
    return (_GROUP_ORDER.get(s.group, 99), _FIELD_ORDER.get(key, 999), key)


@dataclass
class Node:
    name: str
    source: str
    kind: str  # snapshot | validate | cluster
    facts: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------ extraction

def _key(value: Any) -> str:
    """A hashable, sortable identity of a JSON value (strings skip json.dumps: most facts are)."""
    if isinstance(value, str):
        return "s" + value
    return "j" + json.dumps(value, sort_keys=True, default=str)


def _unique(values: list[Any]) -> Any:
    """Per-GPU values summarised: the sorted distinct values (a list), na() kept."""
    seen: dict[str, Any] = {}
    for v in values:
        seen.setdefault(_key(v), v)
    return [seen[k] for k in sorted(seen)]


def _natural(text: Any) -> tuple:
    """sm_90 before sm_100."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", str(text)))


def _models(names: list[Any]) -> list[str]:
    counts = Counter(str(snap.val(n, "unreadable")) for n in names)
    return [f"{c}x {n}" for n, c in sorted(counts.items())]


def _section(s: dict, name: str) -> dict:
    v = s.get(name)
    return v if isinstance(v, dict) else {}


def facts_of_snapshot(s: dict, findings: list[dict] | None = None) -> dict[str, Any]:
    """The compared facts of one doctor snapshot. ``findings``: [{id, severity}] when the file
    carried them (``doctor --format json``); otherwise the rules are evaluated (pure, a few ms)."""
    host, py, torch, nv, env = (_section(s, k) for k in ("host", "python", "torch", "nvidia", "env"))
    gpus = [g for g in nv.get("gpus") or [] if isinstance(g, dict)] if isinstance(nv.get("gpus"), list) else []
    f: dict[str, Any] = {}

    f["driver.version"] = nv.get("driver_version")
    f["driver.cuda"] = nv.get("cuda_driver_version")
    f["driver.nvml"] = snap.get(nv, "nvml.status")
    mods = host.get("kernel_modules")
    f["driver.kernel_modules"] = (sorted(k for k, v in mods.items() if v is True)
                                  if isinstance(mods, dict) and not snap.is_na(mods) else mods)

    f["torch.status"] = torch.get("status")
    if torch.get("status") == "ok" or "version" in torch:
        f["torch.version"] = torch.get("version")
        f["torch.cuda"] = torch.get("cuda")
        f["torch.hip"] = torch.get("hip")
        arch = torch.get("arch_list")
        f["torch.arch_list"] = sorted(arch, key=_natural) if isinstance(arch, list) else arch
        f["torch.triton"] = snap.get(torch, "compile.triton.version")
        f["torch.cuda_available"] = torch.get("cuda_available")
        f["torch.device_count"] = torch.get("device_count")
        f["nccl.version"] = torch.get("nccl")
        f["cudnn.version"] = torch.get("cudnn")
    dists = torch.get("distributions")
    if isinstance(dists, list):
        f["torch.distributions"] = sorted(f"{d.get('name')}=={d.get('version')}" for d in dists if isinstance(d, dict))

    f["python.version"] = py.get("version")
    f["python.implementation"] = py.get("implementation")
    f["python.free_threaded"] = py.get("free_threaded")

    f["os.kernel"] = host.get("kernel")
    f["os.distro"] = snap.get(host, "os.distro") or snap.get(host, "os.system")
    f["os.glibc"] = host.get("glibc")
    f["os.arch"] = host.get("arch")

    # VBIOS / InfoROM: compared when the snapshot has them (a probe may add them per GPU).
    for key, names in (("firmware.vbios", ("vbios_version", "vbios")),
                       ("firmware.inforom", ("inforom_image", "inforom_version", "inforom"))):
        vals = [next(g[n] for n in names if n in g) for g in gpus if any(n in g for n in names)]
        if vals:
            f[key] = _unique(vals)

    f["gpus.count"] = nv.get("gpu_count")
    pci = host.get("pci_nvidia_devices")
    f["gpus.pci_count"] = len(pci) if isinstance(pci, list) else pci
    f["gpus.models"] = _models([g.get("name") for g in gpus])
    f["gpus.memory_total_bytes"] = _unique([snap.get(g, "memory.total_bytes", None) for g in gpus])
    f["gpus.compute_capability"] = _unique([snap.val(g.get("compute_capability")) for g in gpus])
    f["gpus.errors"] = sorted(str((g.get("error") or {}).get("class")) for g in gpus
                              if isinstance(g.get("error"), dict))
    f["gpus.ecc_mode"] = _unique([snap.get(g, "ecc.mode_current", None) for g in gpus])
    f["gpus.mig_mode"] = _unique([snap.get(g, "mig_mode.current", None) for g in gpus])
    f["gpus.persistence_mode"] = _unique([snap.val(g.get("persistence_mode")) for g in gpus])
    f["gpus.compute_mode"] = _unique([snap.val(g.get("compute_mode")) for g in gpus])
    f["gpus.power_limit_w"] = _unique([snap.get(g, "power.limit_w", None) for g in gpus])
    f["gpus.sm_max_mhz"] = _unique([snap.get(g, "clocks.sm_max_mhz", None) for g in gpus])

    links = []
    for g in gpus:
        nvl = g.get("nvlink")
        links.append(f"{nvl.get('up')}/{nvl.get('total')}" if isinstance(nvl, dict) and not snap.is_na(nvl)
                     else "none")
    f["interconnect.nvlink"] = [f"{c}x {k}" for k, c in sorted(Counter(links).items())]
    f["interconnect.pcie_max"] = _unique([
        f"gen{snap.get(g, 'pcie.gen_max')} x{snap.get(g, 'pcie.width_max')}" if snap.get(g, "pcie.gen_max")
        else None for g in gpus])
    f["interconnect.peermem"] = snap.get(host, "kernel_modules.nvidia_peermem")

    f["cgroup.container"] = snap.get(host, "container.kind")
    f["cgroup.memory_limit_bytes"] = snap.get(host, "cgroup.memory_limit_bytes")
    f["cgroup.cpu_quota_cores"] = snap.get(host, "cgroup.cpu_quota_cores")
    f["cgroup.shm_bytes"] = snap.get(host, "shm.total_bytes")
    f["cgroup.memlock"] = snap.get(host, "ulimits.memlock_soft")
    f["cgroup.nofile"] = snap.get(host, "ulimits.nofile_soft")

    variables = env.get("vars") if isinstance(env.get("vars"), dict) else {}
    for name in variables:
        if name.startswith(ENV_PREFIXES) or name in ENV_NAMES:
            f[f"env.{name}"] = variables[name]

    if findings is None:
        findings = _evaluate(s)
    if isinstance(findings, list):
        sev = [(x.get("id"), x.get("severity")) for x in findings
               if isinstance(x, dict) and isinstance(x.get("id"), str)]
        f["findings.problems"] = sorted({i for i, v in sev if v in ("error", "warn")})
        f["findings.info"] = sorted({i for i, v in sev if v == "info"})
    else:
        f["findings.problems"] = findings  # na(): the rules could not run

    f["host.cpu"] = snap.get(host, "cpu.model")
    f["host.cpu_cores"] = snap.get(host, "cpu.logical_cores")
    f["host.ram_bytes"] = snap.get(host, "ram.total_bytes")
    f["host.envcheck"] = s.get("envcheck_version")
    return f


def _evaluate(s: dict) -> Any:
    try:
        from envcheck import rules

        return [x.to_dict() for x in rules.evaluate(s)]
    except Exception as exc:  # noqa: BLE001 - a snapshot the rules choke on still compares
        return snap.na(f"the doctor rules failed on this snapshot: {type(exc).__name__}")


def facts_of_validate(machine: dict, versions: dict) -> dict[str, Any]:
    """The facts a validate report (or a cluster report's node) carries: its ``machine`` summary
    (validate/runner.py machine_summary) and ``versions``. A section that is absent tells nothing,
    so its keys stay absent (unknown), never None."""
    m = machine if isinstance(machine, dict) else {}
    v = versions if isinstance(versions, dict) else {}
    t = m.get("torch") if isinstance(m.get("torch"), dict) else {}
    f: dict[str, Any] = {}
    for key, name in (("driver.version", "driver_version"), ("driver.cuda", "cuda_driver_version"),
                      ("driver.nvml", "nvml"), ("os.kernel", "kernel"), ("os.distro", "os"),
                      ("cgroup.container", "container"), ("host.cpu", "cpu"), ("host.cpu_cores", "cpu_cores"),
                      ("host.ram_bytes", "ram_bytes"), ("python.version", "python")):
        if name in m:
            f[key] = m[name]
    for key, name in (("torch.status", "status"), ("torch.version", "version"), ("torch.cuda", "cuda")):
        if name in t:
            f[key] = t[name]
    if m and isinstance(m.get("gpus"), list):
        gpus = [g for g in m["gpus"] if isinstance(g, dict)]
        f.update({"gpus.count": len(gpus), "gpus.models": _models([g.get("name") for g in gpus]),
                  "gpus.memory_total_bytes": _unique([g.get("memory_total_bytes") for g in gpus]),
                  "gpus.compute_capability": _unique([g.get("compute_capability") for g in gpus])})
    if v:
        for key, name in (("torch.version", "torch"), ("torch.cuda", "cuda"), ("torch.hip", "hip"),
                          ("torch.triton", "triton"), ("nccl.version", "nccl"), ("cudnn.version", "cudnn"),
                          ("python.version", "python"), ("host.envcheck", "envcheck")):
            if name in v:
                f[key] = v[name]
    return f


# ------------------------------------------------------------------------------ loading

def _safe_name(text: Any) -> str:
    """Node names come from files: no control characters (escape sequences) survive."""
    s = re.sub(r"[\x00-\x1f\x7f-\x9f]", "?", str(text)).strip()
    return s[:80] or "?"


def load_file(path: str | Path) -> list[Node]:
    """One input file -> its node(s). Doctor snapshots (``--save`` or ``--format json``), validate
    reports and cluster reports are recognised by their ``schema``; anything else, or a snapshot
    this envcheck cannot read, raises :class:`envcheck.snapshot.SnapshotError` (one line)."""
    p = Path(path)
    data = snap.read_json(p)
    schema = data.get("schema") if isinstance(data, dict) else None
    if schema == snap.SCHEMA:
        s = snap.validate(data, origin=str(p))
        name = snap.get(s, "host.hostname") or p.stem
        findings = s.get("findings") if isinstance(s.get("findings"), list) else None
        return [Node(_safe_name(name), str(p), "snapshot", facts_of_snapshot(s, findings))]
    if schema == "envcheck.validate":
        _version_ok(data, p)
        m = data.get("machine") if isinstance(data.get("machine"), dict) else {}
        return [Node(_safe_name(m.get("hostname") or p.stem), str(p), "validate",
                     facts_of_validate(m, data.get("versions")))]
    if schema == "envcheck.cluster":
        _version_ok(data, p)
        nodes = []
        for n in data.get("nodes") or []:
            if not isinstance(n, dict):
                continue
            m, v = n.get("machine"), n.get("versions")
            if not isinstance(m, dict) and not isinstance(v, dict):
                continue
            label = n.get("hostname") or f"{p.stem}#node{n.get('node_rank')}"
            nodes.append(Node(_safe_name(label), str(p), "cluster", facts_of_validate(m or {}, v or {})))
        if not nodes:
            raise snap.SnapshotError(f"{p}: this cluster report carries no per-node machine facts to compare "
                                     "(compare the nodes' `envcheck doctor --save` snapshots instead)")
        return nodes
    if schema == GOLDEN_SCHEMA:
        raise snap.SnapshotError(f"{p} is a golden file: pass it with --golden, not as a snapshot")
    raise snap.SnapshotError(f"{p} is not an envcheck snapshot, validate report or cluster report "
                             f"(no \"schema\": \"{snap.SCHEMA}\")")


def _version_ok(data: dict, p: Path) -> None:
    v = data.get("schema_version")
    if not isinstance(v, int) or v < 1:
        raise snap.SnapshotError(f"{p} has no valid integer schema_version")
    if v > 1:
        raise snap.SnapshotError(f"{p} uses {data.get('schema')} schema {v}, newer than the 1 this envcheck "
                                 f"{__version__} reads; upgrade envcheck (pip install -U envcheck)")


def unique_names(nodes: list[Node]) -> list[Node]:
    """Two files with one hostname (a re-collected node, containers all named 'localhost') stay
    apart: the file name is added, then a counter."""
    count = Counter(n.name for n in nodes)
    seen: Counter = Counter()
    for n in nodes:
        if count[n.name] > 1:
            n.name = _safe_name(f"{n.name} ({Path(n.source).name})")
    count = Counter(n.name for n in nodes)
    for n in nodes:
        if count[n.name] > 1:
            seen[n.name] += 1
            n.name = f"{n.name} #{seen[n.name]}"
    return nodes


# ------------------------------------------------------------------------------ golden files

def golden_doc(node: Node) -> dict:
    """A reference to review and keep: every weighing fact of one (good) node."""
    fields = {k: v for k, v in sorted(node.facts.items(), key=lambda kv: _order(kv[0]))
              if spec_of(k).weight or k.startswith("env.")}
    return {
        "schema": GOLDEN_SCHEMA, "schema_version": GOLDEN_SCHEMA_VERSION, "envcheck_version": __version__,
        "source": {"node": node.name, "file": Path(node.source).name},
        "note": "Reviewed reference for `envcheck compare --golden`: edit a value to accept another, delete "
                "a field or add its key (fnmatch patterns: \"env.NCCL_DEBUG*\") to \"ignore\" to stop "
                "checking it. An environment variable not listed here must be unset on the nodes.",
        "ignore": [],
        "fields": fields,
    }


def load_golden(path: str | Path) -> dict:
    """A golden file -> {"source", "fields"}; SnapshotError (one line) when it is not one."""
    p = Path(path)
    data = snap.read_json(p, what="golden file")
    if not isinstance(data, dict) or data.get("schema") != GOLDEN_SCHEMA:
        raise snap.SnapshotError(f"{p} is not an envcheck golden file (no \"schema\": \"{GOLDEN_SCHEMA}\"; "
                                 "write one with --write-golden)")
    _version_ok(data, p)
    if not isinstance(data.get("fields"), dict):
        raise snap.SnapshotError(f"{p}: \"fields\" must be an object")
    ignore = data.get("ignore", [])
    if not isinstance(ignore, list) or not all(isinstance(x, str) for x in ignore):
        raise snap.SnapshotError(f"{p}: \"ignore\" must be a list of field keys or patterns")
    return {"source": data.get("source"), "file": str(p), "fields": data["fields"], "ignore": ignore}


# ------------------------------------------------------------------------------ comparison

def compare(nodes: list[Node], golden: dict | None = None) -> dict:
    """Compare the nodes' facts with each other (2: side by side; 3+: majority and odd nodes) or,
    with ``golden``, with the reference. Returns the ``envcheck.compare`` document:

    ``mode`` pair|fleet|golden; ``nodes[]`` {name, source, kind, differs: [keys], weighty: [keys]}
    in input order; ``golden`` null | {source, file}; ``groups[]`` {id, title}; ``fields[]``
    (every field known to 1+ node, in display order) {key, group, label, weight, status:
    same|differs, reference, reference_from: majority|golden|null, values: [{value, count,
    nodes}] most common first (``nodes`` omitted for the reference value), odd_nodes,
    unknown_nodes}; ``summary`` {nodes, fields, differing_fields, weighty_fields, odd_nodes,
    exit_code}.
    """
    names = [n.name for n in nodes]
    if golden is not None:
        mode = "golden"
        # The good node's environment is the reference: a variable it did not have is expected
        # unset (None) elsewhere, unless the reviewer lists it under "ignore".
        env_seen = {k for n in nodes if n.kind == "snapshot" for k in n.facts if k.startswith("env.")}
        ignore = [str(p) for p in golden.get("ignore") or []]
        keys = sorted((k for k in set(golden["fields"]) | env_seen
                       if not any(fnmatch.fnmatchcase(k, pat) for pat in ignore)), key=_order)
    else:
        mode = "pair" if len(nodes) == 2 else "fleet"
        keys = sorted({k for n in nodes for k in n.facts}, key=_order)
    # env.* fields: a variable set on some node and absent on another is "unset" there (None),
    # not unknown; sources that record no environment (validate reports) stay unknown.
    env_known = {n.name for n in nodes if n.kind == "snapshot"}
    differs: dict[str, list[str]] = {n: [] for n in names}
    weighty: dict[str, list[str]] = {n: [] for n in names}
    rows = []
    for key in keys:
        spec = spec_of(key)
        groups: dict[str, dict] = {}
        unknown = []
        for n in nodes:
            if key in n.facts:
                value = n.facts[key]
            elif key.startswith("env.") and n.name in env_known:
                value = None
            else:
                unknown.append(n.name)
                continue
            g = groups.setdefault(_key(value), {"value": value, "count": 0, "nodes": []})
            g["count"] += 1
            g["nodes"].append(n.name)
        values = sorted(groups.values(), key=lambda g: (-g["count"], _key(g["value"])))
        reference, ref_from, ref_key = None, None, None
        if golden is not None:
            ref = golden["fields"].get(key)
            reference, ref_from, ref_key = ref, "golden", _key(ref)
        elif values and (len(values) == 1 or (mode == "fleet" and values[0]["count"] > values[1]["count"])):
            # one value everywhere, or a strict majority of 3+ nodes (two nodes have none)
            reference, ref_from, ref_key = values[0]["value"], "majority", _key(values[0]["value"])
        if ref_key is not None:
            odd = [nm for g in values if _key(g["value"]) != ref_key for nm in g["nodes"]]
            status = "differs" if odd else "same"
        else:
            odd = []
            status = "differs" if len(values) > 1 else "same"
        out_values = []
        for g in values:
            entry = {"value": g["value"], "count": g["count"]}
            if _key(g["value"]) != ref_key:
                entry["nodes"] = g["nodes"]
            out_values.append(entry)
        if status == "differs":
            marked = odd if ref_key is not None else [nm for g in values for nm in g["nodes"]]
            for nm in marked:
                differs[nm].append(key)
                if spec.weight:
                    weighty[nm].append(key)
        rows.append({"key": key, "group": spec.group, "label": spec.label, "weight": spec.weight,
                     "status": status, "reference": reference, "reference_from": ref_from,
                     "values": out_values, "odd_nodes": odd, "unknown_nodes": unknown})
    differing = [r for r in rows if r["status"] == "differs"]
    heavy = [r for r in differing if r["weight"]]
    return {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "envcheck_version": __version__,
        "mode": mode,
        "nodes": [{"name": n.name, "source": n.source, "kind": n.kind, "differs": differs[n.name],
                   "weighty": weighty[n.name]} for n in nodes],
        "golden": None if golden is None else {"source": golden.get("source"), "file": golden.get("file")},
        "groups": [{"id": g, "title": t} for g, t in GROUPS],
        "fields": rows,
        "summary": {"nodes": len(nodes), "fields": len(rows), "differing_fields": len(differing),
                    "weighty_fields": len(heavy),
                    "odd_nodes": sum(1 for n in names if weighty[n]) if mode != "pair" else 0,
                    "exit_code": 1 if heavy else 0},
    }


def exit_code(result: dict) -> int:
    return int(result["summary"]["exit_code"])



# ------------------------------------------------------------------------------ from files (the edge)

def expand(paths: list[str]) -> list[str]:
    """Arguments -> files: a folder stands for the ``*.json`` files in it (a fleet's snapshots)."""
    out: list[str] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(str(f) for f in path.glob("*.json") if f.is_file())
            if not found:
                raise CompareError(f"folder {p} holds no *.json snapshots")
            out += found
        else:
            out.append(p)
    return out


def from_files(paths: list[str], golden_path: str | None = None, write_golden: bool = False) -> dict:
    """Load every file and compare; with ``write_golden`` return the golden document of the one
    node instead. Raises CompareError / SnapshotError with a one-line reason (exit 2)."""
    files = expand(list(paths))
    if not files:
        raise CompareError("give the snapshots to compare (files from `envcheck doctor --save`, or a folder)")
    if write_golden and golden_path:
        raise CompareError("--write-golden and --golden exclude each other: write the reference first, review it, "
                           "then compare against it")
    nodes = unique_names([n for f in files for n in load_file(f)])
    if write_golden:
        if len(nodes) != 1:
            raise CompareError(f"--write-golden takes exactly one snapshot (of a node known to be good), "
                               f"not {len(nodes)}")
        return golden_doc(nodes[0])
    golden = load_golden(golden_path) if golden_path else None
    if golden is None and len(nodes) < 2:
        raise CompareError("compare needs two or more snapshots, or one with --golden FILE")
    return compare(nodes, golden)
