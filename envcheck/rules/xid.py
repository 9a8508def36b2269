"""Rules about NVIDIA XID (GPU) and SXid (NVSwitch) errors in this boot's kernel log
(``host.kernel_log``, probes/kernel_log.py), triaged with NVIDIA's XID catalog
(recipes/xids.json).

Triage, built in because it is what the users of other health checkers ask for most
(node-health-anchors.md §3 rows 1-2):

- application XIDs (13, 31, 43, 45, 68, 109: NVIDIA's k8s-device-plugin's default ignore list)
  never give an error by themselves: a crashed job must not drain a good node;
- only this boot is read (``/dev/kmsg`` / ``journalctl -b``): errors from before the last
  reboot cannot keep a node drained; ``--xid-window`` narrows it further for health checks,
  and older XIDs of this boot are reported as history (info);
- each GPU's XIDs are counted with first/last time and NVIDIA's action for the worst one.

Severity by the catalog's immediate action: reset GPU, reboot, a workflow (XID 48 DBE, 74
NVLink), contact support, check hardware, update software -> error; restart the app or an XID
the catalog lacks -> warn; none (IGNORE, XID 154's "see the message") -> info. This gives
DCGM's devastating XIDs (48, 74, 79, 95, 119, 120, 140: error) and its warning XID 94 (warn)
(NVIDIA/DCGM modules/health/DcgmHealthWatch.cpp::BuildXidMappings).
"""

from __future__ import annotations

from envcheck import recipes
from envcheck.findings import Finding, Severity
from envcheck.rules import option, rule
from envcheck.rules._util import as_dict, dicts, emits, gpu_present, gpus, num
from envcheck.snapshot import get

_CATALOG = recipes.load("xids")

_ERROR_ACTIONS = {"reset_gpu", "reboot", "workflow", "contact_support", "check_hardware",
                  "update_software"}
_INFO_ACTIONS = {"none", "see_xid_154_message"}

# What to do, per action word (recipes/xids.json _about).
_DO = {
    "reset_gpu": "drain the GPU and reset it with nothing running on it (`sudo nvidia-smi -r -i {i}`) or reboot",
    "reboot": "drain the node and reboot it; if it recurs, reseat or replace the GPU (RMA)",
    "workflow": "drain the GPU and follow NVIDIA's workflow for XID {x} "
                "(https://docs.nvidia.com/deploy/xid-errors/)",
    "contact_support": "drain the GPU and contact the vendor (RMA candidate)",
    "check_hardware": "check the GPU's power cables and seating",
    "update_software": "update the NVIDIA driver / firmware",
    "restart_app": "restart the application; if it recurs with no application at fault, follow "
                   "NVIDIA's catalog for XID {x} (https://docs.nvidia.com/deploy/xid-errors/)",
    "unknown": "look XID {x} up in NVIDIA's catalog (https://docs.nvidia.com/deploy/xid-errors/)",
}
_RANK = ["reboot", "contact_support", "workflow", "reset_gpu", "check_hardware", "update_software",
         "restart_app", "unknown"]


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_window(text: str) -> float:
    """'90', '90s', '30m', '2h', '1d' -> seconds (a finite number > 0), else ValueError."""
    raw = str(text).strip().lower()
    unit = _UNITS.get(raw[-1:]) if raw else None
    number = raw[:-1] if unit is not None else raw
    try:
        value = float(number) * (unit or 1.0)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration (e.g. 90s, 30m, 2h, 1d)") from None
    if not (value > 0 and value < float("inf")):
        raise ValueError(f"{text!r} must be a finite duration above 0")
    return value


def _entry(code: int) -> dict:
    return as_dict(as_dict(_CATALOG.get("xids")).get(str(code)))


def _action(code: int) -> str:
    return _entry(code).get("action") or "unknown"


def _bus(nvml_bus_id: object) -> str | None:
    """NVML '00000000:18:00.0' -> '0000:18:00' (the kernel log's form, probes/kernel_log.py)."""
    if not isinstance(nvml_bus_id, str) or nvml_bus_id.count(":") != 2:
        return None
    domain, bus, dev = nvml_bus_id.lower().split(":")
    return f"{domain[-4:]:0>4}:{bus}:{dev[:2]}"


def _gpu_names(snapshot: dict) -> dict[str, str]:
    out = {}
    for g in gpus(snapshot):
        bus = _bus(g.get("pci_bus_id"))
        if bus and isinstance(g.get("index"), int):
            out[bus] = f"GPU {g['index']}"
    return out


def _window(snapshot: dict) -> tuple[float | None, float | None]:
    """(window in s, the boot time from which XIDs are recent) from --xid-window."""
    window = num(option("xid_window_s"))
    uptime = num(get(snapshot, "host.kernel_log.uptime_s"))
    if window is None or uptime is None:
        return window, None
    return window, uptime - window


def _ago(uptime: float | None, ts: float | None) -> str:
    if ts is None:
        return "time unknown"
    if uptime is None:
        return f"{ts:.0f} s after boot"
    ago = max(uptime - ts, 0.0)
    if ago < 120:
        return f"{ago:.0f} s ago"
    if ago < 7200:
        return f"{ago / 60:.0f} min ago"
    return f"{ago / 3600:.1f} h ago"


def _describe(x: dict, where: str, uptime: float | None) -> dict:
    code = int(x["code"])
    entry = _entry(code)
    return {"gpu": where, "xid": code,
            "meaning": entry.get("description") or "not in NVIDIA's catalog",
            "count": x.get("count"),
            "first": _ago(uptime, num(x.get("first_s"))),
            "last": _ago(uptime, num(x.get("last_s"))),
            "nvidia_action": entry.get("immediate_action") or "unknown"}


def _fix(items: list[tuple[dict, str]], names: dict[str, str]) -> str:
    steps = []
    for x, action in sorted(items, key=lambda t: _RANK.index(t[1]) if t[1] in _RANK else 99):
        where = names.get(x.get("pci"), f"PCI {x.get('pci')}")
        index = where.split()[-1] if where.startswith("GPU ") else "<index>"
        step = f"{where} (XID {x['code']}): " + _DO.get(action, _DO["unknown"]).format(i=index, x=x["code"])
        if step not in steps:
            steps.append(step)
    return "; ".join(steps[:6]) + ("; …" if len(steps) > 6 else "")


@rule
@emits("xid.gpu-error", "xid.application", "xid.earlier-in-boot")
def xid_errors(snapshot: dict):
    """XIDs of this boot per GPU, triaged (module docstring)."""
    log = as_dict(get(snapshot, "host.kernel_log"))
    if log.get("readable") is not True:
        return
    names = _gpu_names(snapshot)
    uptime = num(log.get("uptime_s"))
    window, since = _window(snapshot)
    errors, warns, infos, earlier = [], [], [], []
    for x in dicts(log.get("xids")):
        code = num(x.get("code"))
        if code is None:
            continue
        pci = x.get("pci") if isinstance(x.get("pci"), str) else "unknown"
        x = {**x, "code": int(code), "pci": pci}
        action = _action(int(code))
        application = _entry(int(code)).get("application") is True
        last = num(x.get("last_s"))
        if since is not None and last is not None and last < since and not application:
            earlier.append((x, action))
        elif application or action in _INFO_ACTIONS:
            infos.append((x, action))
        elif action in _ERROR_ACTIONS:
            errors.append((x, action))
        else:
            warns.append((x, action))

    def evidence(items):
        return {f"{names.get(x.get('pci'), 'PCI ' + str(x.get('pci')))} xid {x['code']}":
                _describe(x, names.get(x.get("pci"), f"PCI {x.get('pci')}"), uptime) for x, _ in items}

    def label(items):
        where = sorted({names.get(x.get("pci"), f"PCI {x.get('pci')}") for x, _ in items})
        codes = sorted({x["code"] for x, _ in items})
        return f"{', '.join(where)}: XID {', '.join(map(str, codes))}"

    scope = f" in the last {window:g} s" if window is not None else " since boot"
    for items, sev, what in ((errors, Severity.ERROR, "GPU errors that need action"),
                             (warns, Severity.WARN, "GPU errors")):
        if items:
            yield Finding(
                id="xid.gpu-error", severity=sev,
                title=f"{label(items)}: {what}{scope} (kernel log)",
                evidence=evidence(items), fix=_fix(items, names))
    if infos:
        yield Finding(
            id="xid.application", severity=Severity.INFO,
            title=f"{label(infos)}{scope}: raised by applications or informational, not a "
                  "fault of this node by itself",
            evidence=evidence(infos), fix=None)
    if earlier:
        yield Finding(
            id="xid.earlier-in-boot", severity=Severity.INFO,
            title=f"{label(earlier)}: earlier in this boot, before the {window:g} s window",
            evidence=evidence(earlier), fix=None)


@rule
@emits("xid.nvswitch-error")
def sxid_errors(snapshot: dict):
    """NVSwitch SXid errors: a Fatal one leaves the fabric (and NCCL over NVLink) broken until
    the node is reset; Non-fatal ones were corrected (NVIDIA Fabric Manager User Guide)."""
    log = as_dict(get(snapshot, "host.kernel_log"))
    if log.get("readable") is not True:
        return
    uptime = num(log.get("uptime_s"))
    _, since = _window(snapshot)
    found = [s for s in dicts(log.get("sxids")) if num(s.get("code")) is not None
             and (since is None or num(s.get("last_s")) is None or num(s.get("last_s")) >= since)]
    for fatal, sev in ((True, Severity.ERROR), (False, Severity.WARN)):
        items = [s for s in found if (s.get("fatal") is True) == fatal]
        if not items:
            continue
        yield Finding(
            id="xid.nvswitch-error", severity=sev,
            title=f"NVSwitch {'fatal' if fatal else 'non-fatal'} SXid errors: "
                  f"{', '.join(sorted({str(int(s['code'])) for s in items}))}",
            evidence={f"nvswitch {s.get('pci')} sxid {int(s['code'])}": {
                "count": s.get("count"), "first": _ago(uptime, num(s.get("first_s"))),
                "last": _ago(uptime, num(s.get("last_s"))), "line": s.get("sample")} for s in items},
            fix=("drain the node and reboot it (a fatal NVSwitch error needs the fabric reset); "
                 "if it recurs, contact the vendor" if fatal else
                 "nothing now; watch for recurrence (`sudo dmesg | grep SXid`)"),
        )


@rule
@emits("xid.log-unreadable")
def log_unreadable(snapshot: dict):
    """On a machine with NVIDIA GPUs, say when XIDs could not be checked (a silent "no XID"
    would be a check that cannot fail)."""
    log = as_dict(get(snapshot, "host.kernel_log"))
    if log.get("readable") is not False or gpu_present(snapshot) is not True:
        return
    yield Finding(
        id="xid.log-unreadable", severity=Severity.INFO,
        title="GPU XID errors not checked: the kernel log is not readable here",
        evidence={"why": log.get("error")},
        fix=None,
    )
