"""Pure functions for bench/gpu_truth.py: read `nvidia-smi -q -x` (and `nvidia-smi nvlink -s`) and
compare every NVML fact of an envcheck snapshot with it, field by field.

nvidia-smi is NVIDIA's own NVML client, so where the two disagree on a fact that does not move
(driver, UUID, bus id, memory size, ECC mode and counters, power limit, max clocks, PCIe max,
MIG, persistence, compute mode), envcheck's NVML layer is the suspect. Fields that move on their
own (temperature, power draw, current clocks, memory used) are compared with a tolerance and
marked ``volatile``.

Element names of the XML (``nvidia-smi -q -x``, DTD ``nvsmi_device_v12.dtd`` and older), checked
against these public sources (no code copied):

* NVIDIA's ``pynvml_utils/smi.py`` (the pynvml package; "attempts to reproduce the output of
  nvidia-smi -q -x"), e.g. the copy in isaac-sim/IsaacLab
  ``venv/lib/python3.10/site-packages/pynvml_utils/smi.py``: ``driver_version``, ``product_name``,
  ``uuid``, ``pci/pci_bus_id``, ``pci/pci_gpu_link_info/pcie_gen/{max,current}_link_gen``,
  ``link_widths/{max,current}_link_width`` ("16x"), ``fb_memory_usage/{total,used}`` ("81559 MiB"),
  ``ecc_mode/{current,pending}_ecc``, ``ecc_errors/{volatile,aggregate}/{single,double}_bit/total``,
  ``temperature/gpu_temp`` ("31 C"), ``clocks/sm_clock``, ``max_clocks/sm_clock`` ("1980 MHz"),
  ``persistence_mode``, ``compute_mode``, ``mig_mode/current_mig``;
* apache/hadoop ``hadoop-yarn-project/hadoop-yarn/hadoop-yarn-server/hadoop-yarn-server-nodemanager/
  src/test/resources/nvidia-smi-sample-output.xml`` (a real v8-DTD dump: ``power_readings``);
* a real ``nvsmi_device_v12.dtd`` dump of driver 530.30.02 in a public exporter's tests:
  ``<gpu id="00000000:09:00.0">``, ``cuda_version``, ``attached_gpus``, ``remapped_rows``,
  ``power_readings/{power_draw,enforced_power_limit}``;
* drivers 535+ renamed ``power_readings`` to ``gpu_power_readings`` with ``current_power_limit``,
  later split ``power_draw`` into ``instant_power_draw``/``average_power_draw``, and Ampere/Hopper
  report ECC as ``sram_*``/``dram_*`` counts (``sram_uncorrectable`` or its ``_parity``/``_secded``
  split) instead of ``single_bit``/``double_bit``: every variant is read here.

``nvidia-smi nvlink -s`` prints one ``GPU i: NAME (UUID: ...)`` line per GPU and one
``Link n: 26.562 GB/s`` (up) or ``Link n: <inactive>`` (down) line per link.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from typing import Any

MIB = 1 << 20
SCHEMA = "envcheck.gpu_truth.agreement"

# Tolerances for facts that move between the two reads (doctor and nvidia-smi run seconds apart).
TOL_TEMP_C = 3
TOL_POWER_W = 15.0
TOL_POWER_FRAC = 0.10
TOL_MEM_USED_MIB = 64
TOL_CLOCK_MHZ = 50


# ------------------------------------------------------------------------------- XML parsing

def _text(node: ET.Element | None, *paths: str) -> str | None:
    """First non-empty, non-N/A text among ``paths`` (tag renames across drivers)."""
    if node is None:
        return None
    for path in paths:
        el = node.find(path)
        if el is not None and el.text is not None:
            t = el.text.strip()
            if t and t.upper() not in ("N/A", "[N/A]", "NOT FOUND", "[NOT SUPPORTED]", "NOT SUPPORTED"):
                return t
    return None


def _num(text: str | None) -> float | None:
    if text is None:
        return None
    m = re.match(r"\s*(-?\d+(?:\.\d+)?)", text)
    return float(m.group(1)) if m else None


def _int(text: str | None) -> int | None:
    v = _num(text)
    return None if v is None else int(v)


def _enabled(text: str | None) -> bool | None:
    if text is None:
        return None
    t = text.strip().lower()
    if t in ("enabled", "yes", "on", "active"):
        return True
    if t in ("disabled", "no", "off", "not active"):
        return False
    return None


def _ecc_count(section: ET.Element | None, kind: str) -> int | None:
    """Total ECC count of ``kind`` (``uncorrectable`` | ``correctable``) in a ``volatile`` or
    ``aggregate`` element, in whichever layout the driver wrote."""
    if section is None:
        return None
    old = "double_bit" if kind == "uncorrectable" else "single_bit"
    total = _int(_text(section, f"{old}/total"))
    if total is not None:
        return total
    parts: list[int | None] = []
    sram = _int(_text(section, f"sram_{kind}"))
    if sram is None and kind == "uncorrectable":
        split = [_int(_text(section, "sram_uncorrectable_parity")),
                 _int(_text(section, "sram_uncorrectable_secded"))]
        sram = None if all(v is None for v in split) else sum(v or 0 for v in split)
    parts += [sram, _int(_text(section, f"dram_{kind}"))]
    if all(v is None for v in parts):
        return None
    return sum(v or 0 for v in parts)


def parse_smi_xml(text: str) -> dict:
    """``nvidia-smi -q -x`` -> plain dict; ``ValueError`` (one line) on anything unreadable.

    Every value is a plain number/str/bool or None (nvidia-smi said N/A or left it out)."""
    if "<!ENTITY" in text:
        raise ValueError("nvidia-smi XML declares entities; refusing to parse it")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ValueError(f"nvidia-smi XML does not parse: {exc}") from None
    if root.tag != "nvidia_smi_log":
        raise ValueError(f"not nvidia-smi -q -x output (root element <{root.tag}>)")
    gpus = []
    for pos, g in enumerate(root.findall("gpu")):
        ecc = g.find("ecc_errors")
        vol = ecc.find("volatile") if ecc is not None else None
        agg = ecc.find("aggregate") if ecc is not None else None
        power = g.find("gpu_power_readings")
        if power is None:
            power = g.find("power_readings")
        remap = g.find("remapped_rows")
        gpus.append({
            "position": pos,
            "id": g.get("id"),
            "minor_number": _int(_text(g, "minor_number")),
            "name": _text(g, "product_name"),
            "uuid": _text(g, "uuid"),
            "pci_bus_id": _text(g, "pci/pci_bus_id") or g.get("id"),
            "vbios_version": _text(g, "vbios_version"),
            "inforom_image": _text(g, "inforom_version/img_version"),
            "memory_total_mib": _int(_text(g, "fb_memory_usage/total")),
            "memory_used_mib": _int(_text(g, "fb_memory_usage/used")),
            "ecc_current": _enabled(_text(g, "ecc_mode/current_ecc")),
            "ecc_pending": _enabled(_text(g, "ecc_mode/pending_ecc")),
            "ecc_volatile_uncorrected": _ecc_count(vol, "uncorrectable"),
            "ecc_volatile_corrected": _ecc_count(vol, "correctable"),
            "ecc_aggregate_uncorrected": _ecc_count(agg, "uncorrectable"),
            "remap_correctable": _int(_text(remap, "remapped_row_corr")),
            "remap_uncorrectable": _int(_text(remap, "remapped_row_unc")),
            "remap_pending": _enabled(_text(remap, "remapped_row_pending")),
            "remap_failure": _enabled(_text(remap, "remapped_row_failure")),
            "temperature_c": _int(_text(g, "temperature/gpu_temp")),
            "power_draw_w": _num(_text(power, "power_draw", "instant_power_draw", "average_power_draw")),
            "power_limit_w": _num(_text(power, "current_power_limit", "enforced_power_limit",
                                        "power_limit")),
            "sm_mhz": _int(_text(g, "clocks/sm_clock")),
            "mem_mhz": _int(_text(g, "clocks/mem_clock")),
            "sm_max_mhz": _int(_text(g, "max_clocks/sm_clock")),
            "mem_max_mhz": _int(_text(g, "max_clocks/mem_clock")),
            "pcie_gen_current": _int(_text(g, "pci/pci_gpu_link_info/pcie_gen/current_link_gen")),
            "pcie_gen_max": _int(_text(g, "pci/pci_gpu_link_info/pcie_gen/max_link_gen")),
            "pcie_width_current": _int(_text(g, "pci/pci_gpu_link_info/link_widths/current_link_width")),
            "pcie_width_max": _int(_text(g, "pci/pci_gpu_link_info/link_widths/max_link_width")),
            "persistence_mode": _enabled(_text(g, "persistence_mode")),
            "compute_mode": _text(g, "compute_mode"),
            "mig_current": _enabled(_text(g, "mig_mode/current_mig")),
            "mig_pending": _enabled(_text(g, "mig_mode/pending_mig")),
        })
    return {
        "driver_version": _text(root, "driver_version"),
        "cuda_version": _text(root, "cuda_version"),
        "attached_gpus": _int(_text(root, "attached_gpus")),
        "gpus": gpus,
    }


def parse_nvlink_status(text: str) -> dict[int, dict[str, int]]:
    """``nvidia-smi nvlink -s`` -> {gpu index: {"up", "down", "total"}}; GPUs without link lines
    are absent (no NVLink, or nvidia-smi printed nothing for them)."""
    out: dict[int, dict[str, int]] = {}
    current: int | None = None
    for line in text.splitlines():
        m = re.match(r"\s*GPU (\d+):", line)
        if m:
            current = int(m.group(1))
            continue
        m = re.match(r"\s*Link (\d+):\s*(.*)$", line)
        if m and current is not None:
            row = out.setdefault(current, {"up": 0, "down": 0, "total": 0})
            state = m.group(2).strip().lower()
            up = bool(re.match(r"\d", state)) and not state.startswith("0 ")
            row["up" if up else "down"] += 1
            row["total"] += 1
    return out


# ------------------------------------------------------------------------------- comparison

def _na(value: Any) -> bool:
    return value is None or (isinstance(value, dict) and set(value) == {"unavailable"})


def _show(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"unavailable"}:
        return f"unavailable: {value['unavailable']}"
    return value


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
        if _na(d):
            return d
    return d


def _row(gpu: Any, field: str, snap: Any, smi: Any, *, equal=None, note: str = "") -> dict:
    if _na(snap) or smi is None:
        status = "missing"
        if _na(snap) and smi is None:
            note = (note + "; " if note else "") + "neither reports it"
    else:
        same = equal(snap, smi) if equal else snap == smi
        status = "agree" if same else "differ"
    return {"gpu": gpu, "field": field, "snapshot": _show(snap), "nvidia_smi": smi, "status": status,
            "note": note}


def _norm_bus(bus: Any) -> str | None:
    """NVML and nvidia-smi both print an 8-digit domain; compare case-insensitively and tolerate a
    4-digit domain (lspci style)."""
    if not isinstance(bus, str):
        return None
    b = bus.strip().lower()
    m = re.match(r"^([0-9a-f]+):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$", b)
    if not m:
        return b
    return f"{int(m.group(1), 16):08x}:{m.group(2)}:{m.group(3)}.{m.group(4)}"


def _within(tol: float, frac: float = 0.0):
    def eq(a: Any, b: Any) -> bool:
        try:
            return abs(float(a) - float(b)) <= max(tol, frac * max(abs(float(a)), abs(float(b))))
        except (TypeError, ValueError):
            return False
    return eq


def _mib_of(snap_bytes: Any) -> Any:
    return snap_bytes if _na(snap_bytes) or not isinstance(snap_bytes, (int, float)) else int(snap_bytes) // MIB


def _match_gpus(snap_gpus: list, smi_gpus: list) -> list[tuple[Any, Any]]:
    """Pair GPUs by PCI bus id, else by position; unpaired ones are kept (compared as missing)."""
    by_bus = {_norm_bus(g.get("pci_bus_id")): g for g in smi_gpus if _norm_bus(g.get("pci_bus_id"))}
    pairs, used = [], set()
    for i, sg in enumerate(snap_gpus):
        hit = by_bus.get(_norm_bus(sg.get("pci_bus_id")))
        if hit is None and i < len(smi_gpus) and id(smi_gpus[i]) not in used:
            hit = smi_gpus[i]
        if hit is not None and id(hit) in used:
            hit = None
        if hit is not None:
            used.add(id(hit))
        pairs.append((sg, hit))
    pairs += [(None, g) for g in smi_gpus if id(g) not in used]
    return pairs


def compare(snapshot: dict, smi: dict, nvlink: dict[int, dict[str, int]] | None = None) -> list[dict]:
    """Every NVML fact of ``snapshot`` next to what nvidia-smi said: rows of
    ``{gpu, field, snapshot, nvidia_smi, status: agree|differ|missing, note}``."""
    nv = snapshot.get("nvidia") if isinstance(snapshot.get("nvidia"), dict) else {}
    rows = [
        _row("-", "driver_version", nv.get("driver_version"), smi.get("driver_version")),
        _row("-", "cuda_driver_version", nv.get("cuda_driver_version"), smi.get("cuda_version")),
        _row("-", "gpu_count", nv.get("gpu_count"), smi.get("attached_gpus")),
    ]
    snap_gpus = [g for g in nv.get("gpus") or [] if isinstance(g, dict)]
    for sg, xg in _match_gpus(snap_gpus, smi.get("gpus") or []):
        if sg is None:
            rows.append(_row(xg.get("pci_bus_id") or xg["position"], "gpu", None, xg.get("name"),
                             note="nvidia-smi lists a GPU the snapshot lacks"))
            continue
        label = sg.get("index", "?")
        if xg is None:
            rows.append(_row(label, "gpu", sg.get("name"), None, note="nvidia-smi does not list this GPU"))
            continue
        x = xg
        pos = x.get("minor_number")
        rows += [
            _row(label, "name", sg.get("name"), x["name"]),
            _row(label, "uuid", sg.get("uuid"), x["uuid"]),
            _row(label, "pci_bus_id", sg.get("pci_bus_id"), x["pci_bus_id"],
                 equal=lambda a, b: _norm_bus(a) == _norm_bus(b)),
            _row(label, "memory.total_mib", _mib_of(_get(sg, "memory", "total_bytes")), x["memory_total_mib"],
                 equal=_within(1)),
            _row(label, "memory.used_mib", _mib_of(_get(sg, "memory", "used_bytes")), x["memory_used_mib"],
                 equal=_within(TOL_MEM_USED_MIB), note="volatile"),
            _row(label, "ecc.mode_current", _get(sg, "ecc", "mode_current"), x["ecc_current"]),
            _row(label, "ecc.mode_pending", _get(sg, "ecc", "mode_pending"), x["ecc_pending"]),
            _row(label, "ecc.volatile_uncorrected", _get(sg, "ecc", "volatile_uncorrected"),
                 x["ecc_volatile_uncorrected"]),
            _row(label, "ecc.volatile_corrected", _get(sg, "ecc", "volatile_corrected"),
                 x["ecc_volatile_corrected"]),
            _row(label, "ecc.aggregate_uncorrected", _get(sg, "ecc", "aggregate_uncorrected"),
                 x["ecc_aggregate_uncorrected"]),
            _row(label, "row_remap.correctable", _get(sg, "row_remap", "correctable"), x["remap_correctable"]),
            _row(label, "row_remap.uncorrectable", _get(sg, "row_remap", "uncorrectable"),
                 x["remap_uncorrectable"]),
            _row(label, "row_remap.pending", _get(sg, "row_remap", "pending"), x["remap_pending"]),
            _row(label, "row_remap.failure", _get(sg, "row_remap", "failure"), x["remap_failure"]),
            _row(label, "temperature_c", sg.get("temperature_c"), x["temperature_c"],
                 equal=_within(TOL_TEMP_C), note="volatile"),
            _row(label, "power.draw_w", _get(sg, "power", "draw_w"), x["power_draw_w"],
                 equal=_within(TOL_POWER_W, TOL_POWER_FRAC), note="volatile"),
            _row(label, "power.limit_w", _get(sg, "power", "limit_w"), x["power_limit_w"], equal=_within(0.5)),
            _row(label, "clocks.sm_mhz", _get(sg, "clocks", "sm_mhz"), x["sm_mhz"],
                 equal=_within(TOL_CLOCK_MHZ), note="volatile"),
            _row(label, "clocks.mem_mhz", _get(sg, "clocks", "mem_mhz"), x["mem_mhz"],
                 equal=_within(TOL_CLOCK_MHZ), note="volatile"),
            _row(label, "clocks.sm_max_mhz", _get(sg, "clocks", "sm_max_mhz"), x["sm_max_mhz"]),
            _row(label, "clocks.mem_max_mhz", _get(sg, "clocks", "mem_max_mhz"), x["mem_max_mhz"]),
            _row(label, "pcie.gen_current", _get(sg, "pcie", "gen_current"), x["pcie_gen_current"],
                 note="idle GPUs lower the generation"),
            _row(label, "pcie.gen_max", _get(sg, "pcie", "gen_max"), x["pcie_gen_max"]),
            _row(label, "pcie.width_current", _get(sg, "pcie", "width_current"), x["pcie_width_current"]),
            _row(label, "pcie.width_max", _get(sg, "pcie", "width_max"), x["pcie_width_max"]),
            _row(label, "persistence_mode", sg.get("persistence_mode"), x["persistence_mode"]),
            _row(label, "compute_mode", sg.get("compute_mode"), x["compute_mode"],
                 equal=lambda a, b: str(a).lower().replace(" ", "_") == str(b).lower().replace(" ", "_")),
            _row(label, "mig_mode.current", _get(sg, "mig_mode", "current"), x["mig_current"]),
            _row(label, "mig_mode.pending", _get(sg, "mig_mode", "pending"), x["mig_pending"]),
        ]
        if nvlink is not None:
            key = pos if pos is not None else sg.get("index")
            links = nvlink.get(key) if isinstance(key, int) else None
            snap_links = sg.get("nvlink")
            for part in ("up", "total"):
                rows.append(_row(label, f"nvlink.{part}", _get(snap_links, part) if not _na(snap_links)
                                 else snap_links, None if links is None else links[part],
                                 note="nvidia-smi nvlink -s"))
    return rows


def counts(rows: list[dict]) -> dict[str, int]:
    out = {"agree": 0, "differ": 0, "missing": 0}
    for r in rows:
        out[r["status"]] += 1
    return out


def to_json(rows: list[dict], meta: dict | None = None) -> str:
    doc = {"schema": SCHEMA, "schema_version": 1, "counts": counts(rows), "rows": rows, **(meta or {})}
    return json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n"


def _cell(v: Any) -> str:
    s = "" if v is None else str(v)
    return s.replace("|", "\\|").replace("\n", " ")


def to_markdown(rows: list[dict], title: str = "envcheck snapshot vs nvidia-smi -q -x") -> str:
    c = counts(rows)
    lines = [f"# {title}", "",
             f"{c['agree']} agree, {c['differ']} differ, {c['missing']} missing", "",
             "| gpu | field | snapshot (NVML) | nvidia-smi | status | note |",
             "|---|---|---|---|---|---|"]
    order = {"differ": 0, "missing": 1, "agree": 2}
    for r in sorted(rows, key=lambda r: (order[r["status"]], str(r["gpu"]))):
        lines.append("| " + " | ".join(_cell(r[k]) for k in ("gpu", "field", "snapshot", "nvidia_smi",
                                                                "status", "note")) + " |")
    return "\n".join(lines) + "\n"
