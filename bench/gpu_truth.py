"""GPU truth: one prepared run that proves every GPU path of envcheck on a real H100/H200 (issue 11).

Run from the repository root on the GPU machine (no network there; wheels travel along):

    python3 bench/gpu_truth.py --wheels .whl            # writes under $OUT, else ./gpu_truth_out

Steps, each with its own time limit, all inside one wall budget (default 540 s = 9 minutes; a
step that would start after the budget is spent is skipped and reported as such):

  install            pip install the carried wheels (--no-index --no-deps) and envcheck itself
                     (editable, --no-deps --no-build-isolation)
  nvidia_smi         nvidia-smi -q -x, nvidia-smi topo -m, nvidia-smi nvlink -s          [GPU]
  doctor             envcheck doctor --format json --save snapshot.json
  compare            every NVML fact of the snapshot against the nvidia-smi XML:
                     agreement.md + agreement.json (bench/smi_compare.py, pure)
  doctor_timing      doctor's wall time vs python -c "import torch; torch.cuda.init()",
                     --repeats each, interleaved, medians                                [GPU]
  pytest_gpu         python -m pytest -m gpu (JUnit XML)                                  [GPU]
  validate_quick     envcheck validate --quick --format json                              [GPU]
  validate_standard  envcheck validate --format json                                      [GPU]
  validate_overhead  bench/validate_overhead.py --rounds 1 --sizes 1048576,67108864 (GEMM and
                     all-reduce vs direct loops, NCCL collectives vs direct loops, watcher on a GEMM) [GPU]
  quick_budget       bench/quick_budget.py --runs 1                                       [GPU]

then a one-screen summary (summary.txt, summary.json; also on stdout): each step's status and
time, each validate figure next to its spec and floor, the overhead table and doctor's ratio.

``--dry-run`` runs the same script here, on a CPU machine: GPU-only steps are skipped with the
reason, and ``--nvidia-smi-xml FILE`` (with ``--nvlink-status FILE``) stands in for nvidia-smi
so the comparison runs. ``--bundle`` (default when writing to $OUT, which returns at most
8 files) packs everything but the headline files into gpu_truth_files.tar.gz.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

import smi_compare  # noqa: E402

DEFAULT_BUDGET_S = 540.0
RESERVE_S = 10.0  # kept for the summary and the bundle
BUNDLE = "gpu_truth_files.tar.gz"
HEADLINE = ("summary.txt", "summary.json", "agreement.md", "snapshot.json", "nvidia_smi.xml",
            "validate_standard.json", BUNDLE)

# Fallback when `pip install -e .` cannot build offline: imported at start-up from PYTHONPATH,
# it maps envcheck._recipes onto <root>/recipes (pyproject's package-dir) for every child.
SHIM = """import importlib.util, os, sys
class _Recipes:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "envcheck._recipes":
            return None
        folder = os.path.join({root!r}, "recipes")
        return importlib.util.spec_from_file_location(
            name, os.path.join(folder, "__init__.py"), submodule_search_locations=[folder])
sys.meta_path.insert(0, _Recipes)
"""

# name -> (default limit in seconds, needs a GPU)
STEPS: dict[str, tuple[float, bool]] = {
    "install": (120, False),
    "nvidia_smi": (45, True),
    "doctor": (90, False),
    "compare": (15, False),
    "doctor_timing": (120, True),
    "pytest_gpu": (150, True),
    "validate_quick": (90, True),
    "validate_standard": (240, True),
    "validate_overhead": (180, True),
    "quick_budget": (100, True),
}


@dataclass
class Step:
    name: str
    status: str = "pending"  # ok | failed | timeout | skipped | error
    seconds: float = 0.0
    limit_s: float = 0.0
    rc: int | None = None
    note: str = ""
    files: list[str] = field(default_factory=list)


@dataclass
class Run:
    """Result of one command: its exit code (None when killed at the limit)."""

    rc: int | None
    seconds: float
    stdout: str
    stderr: str
    timed_out: bool = False
    error: str | None = None


def run_cmd(argv: list[str], limit_s: float, env: dict | None = None, cwd: Path = ROOT) -> Run:
    """Run ``argv`` in its own process group; at ``limit_s`` the whole group is killed, so a hung
    child (a wedged CUDA call, a stuck collective) cannot eat the rest of the run."""
    t0 = time.perf_counter()
    try:
        p = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, errors="replace", start_new_session=True)
    except OSError as exc:
        return Run(None, 0.0, "", "", error=f"cannot start {argv[0]}: {exc.strerror or exc}")
    try:
        out, err = p.communicate(timeout=max(limit_s, 0.1))
        return Run(p.returncode, time.perf_counter() - t0, out, err)
    except subprocess.TimeoutExpired:
        _kill_group(p)
        out, err = p.communicate()
        return Run(None, time.perf_counter() - t0, out or "", err or "", timed_out=True)


def _kill_group(p: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(p.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            p.wait(timeout=3)
            return
        except subprocess.TimeoutExpired:
            continue


class Truth:
    """The run: output folder, budget, child environment, and the steps' records."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.out = Path(args.out).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.t0 = time.monotonic()
        self.deadline = self.t0 + args.budget
        self.steps: list[Step] = []
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.env.pop("ENVCHECK_FAULT", None)
        self.py = sys.executable
        self.limits = dict(_parse_limits(args.limit))

    # ------------------------------------------------------------------ plumbing
    def log(self, msg: str) -> None:
        line = f"[gpu_truth {time.monotonic() - self.t0:6.1f}s] {msg}"
        print(line, file=sys.stderr, flush=True)
        with open(self.out / "gpu_truth.log", "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def remaining(self) -> float:
        return self.deadline - time.monotonic() - RESERVE_S

    def write(self, name: str, text: str) -> str:
        (self.out / name).write_text(text, encoding="utf-8")
        return name

    def envcheck(self, *args: str) -> list[str]:
        return [self.py, "-m", "envcheck", *args]

    def wanted(self, name: str) -> bool:
        sel = self.args.steps
        return (not sel or name in sel) and name not in (self.args.skip or ())

    def step(self, name: str, fn) -> Step:
        limit, gpu_only = STEPS[name]
        limit = float(self.limits.get(name, limit))
        st = Step(name, limit_s=limit)
        self.steps.append(st)
        if not self.wanted(name):
            st.status, st.note = "skipped", "not selected (--steps/--skip)"
        elif gpu_only and self.args.dry_run and not (name == "nvidia_smi" and self.args.nvidia_smi_xml):
            st.status, st.note = "skipped", "dry run: needs a GPU"
        elif self.remaining() < 5:
            st.status, st.note = "skipped", f"wall budget of {self.args.budget:g} s spent"
        else:
            st.limit_s = min(limit, self.remaining())
            self.log(f"{name}: start (limit {st.limit_s:.0f} s)")
            t0 = st._t0 = time.perf_counter()  # command() spends what is left of the limit
            try:
                fn(st)
                if st.status == "pending":
                    st.status = "ok"
            except Exception as exc:  # noqa: BLE001 - one step failing must not end the run
                st.status, st.note = "error", f"{type(exc).__name__}: {exc}"
            st.seconds = round(time.perf_counter() - t0, 2)
        self.log(f"{name}: {st.status} in {st.seconds:.1f} s {st.note}".rstrip())
        return st

    def command(self, st: Step, argv: list[str], stdout_file: str | None = None, log_name: str | None = None,
                ok_codes: tuple[int, ...] = (0,)) -> Run:
        """Run one command for ``st`` inside what is left of its limit; record files and status."""
        budget = st.limit_s - (time.perf_counter() - getattr(st, "_t0", time.perf_counter()))
        r = run_cmd(argv, max(budget, 1.0), env=self.env)
        log = log_name or f"{st.name}.log"
        with open(self.out / log, "a", encoding="utf-8") as fh:
            fh.write(f"$ {' '.join(argv)}\n# rc={r.rc} seconds={r.seconds:.2f} timed_out={r.timed_out}\n")
            if stdout_file is None:
                fh.write(r.stdout)
            fh.write(r.stderr)
            if r.error:
                fh.write(r.error + "\n")
        if log not in st.files:
            st.files.append(log)
        if stdout_file is not None:
            st.files.append(self.write(stdout_file, r.stdout))
        st.rc = r.rc
        if r.error:
            st.status, st.note = "error", r.error
        elif r.timed_out:
            st.status, st.note = "timeout", f"killed at the {st.limit_s:.0f} s limit"
        elif r.rc not in ok_codes:
            st.status = "failed"
            tail = (r.stderr.strip().splitlines() or [""])[-1][:160]
            st.note = f"exit {r.rc}" + (f": {tail}" if tail else "")
        return r

    # ------------------------------------------------------------------ steps
    def do_install(self, st: Step) -> None:
        wheels = sorted(Path(self.args.wheels).glob("*.whl")) if self.args.wheels else []
        if wheels:
            site = Path(self.args.site)
            r = self.command(st, [self.py, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                                  "--no-cache-dir", "--upgrade", "--target", str(site), *map(str, wheels)])
            if r.rc != 0:
                return
            self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), self.env.get("PYTHONPATH")]))
        r = self.command(st, [self.py, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                              "--no-build-isolation", "-e", str(ROOT)])
        if r.rc == 0:
            st.note = f"{len(wheels)} wheel(s) + envcheck (editable)"
            return
        # No usable build backend offline (setuptools < 70.1 without `wheel`): run envcheck from
        # the tree, mapping the package envcheck._recipes onto recipes/ as the wheel does.
        shim = Path(self.args.site) / "envcheck_shim"
        shim.mkdir(parents=True, exist_ok=True)
        (shim / "sitecustomize.py").write_text(SHIM.format(root=str(ROOT)), encoding="utf-8")
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(shim), self.env.get("PYTHONPATH")]))
        check = run_cmd([self.py, "-c", "from envcheck import recipes; recipes.load('cuda')"], 60, env=self.env)
        if check.rc == 0:
            st.status = "ok"
            st.note = f"{len(wheels)} wheel(s); editable install failed, envcheck runs from the tree (shim)"

    def do_nvidia_smi(self, st: Step) -> None:
        if self.args.dry_run:
            shutil.copyfile(self.args.nvidia_smi_xml, self.out / "nvidia_smi.xml")
            st.files.append("nvidia_smi.xml")
            if self.args.nvlink_status:
                shutil.copyfile(self.args.nvlink_status, self.out / "nvlink_status.txt")
                st.files.append("nvlink_status.txt")
            st.note = f"dry run: fixture {Path(self.args.nvidia_smi_xml).name}"
            return
        self.command(st, ["nvidia-smi", "-q", "-x"], stdout_file="nvidia_smi.xml")
        first, notes = (st.status, st.note), []
        for argv, name in ((["nvidia-smi", "topo", "-m"], "topo.txt"),
                           (["nvidia-smi", "nvlink", "-s"], "nvlink_status.txt")):
            st.status, st.note = "pending", ""
            self.command(st, argv, stdout_file=name)
            if st.status != "pending":
                notes.append(f"{' '.join(argv[1:])}: {st.status} {st.note}".strip())
        # Only the XML decides the step; topo/nvlink failures (no NVLink on a PCIe card) are notes.
        st.status, st.note = first[0], "; ".join(filter(None, [first[1], *notes]))

    def do_doctor(self, st: Step) -> None:
        if self.args.snapshot:
            shutil.copyfile(self.args.snapshot, self.out / "snapshot.json")
            st.files.append("snapshot.json")
            argv = self.envcheck("doctor", "--format", "json", "--snapshot", str(self.out / "snapshot.json"))
        else:
            argv = self.envcheck("doctor", "--format", "json", "--save", str(self.out / "snapshot.json"))
            st.files.append("snapshot.json")
        r = self.command(st, argv, stdout_file="doctor.json", ok_codes=(0, 1))
        try:
            summary = json.loads(r.stdout)["summary"]
            st.note = (f"exit {r.rc}: {summary['verdict']}, {summary['errors']} error(s), "
                       f"{summary['warnings']} warning(s)")
        except (ValueError, KeyError, TypeError):
            if st.status == "pending":
                st.status, st.note = "failed", "doctor printed no JSON"

    def do_compare(self, st: Step) -> None:
        xml, snap = self.out / "nvidia_smi.xml", self.out / "snapshot.json"
        if not xml.is_file() or not snap.is_file() or not xml.read_text(errors="replace").strip():
            st.status, st.note = "skipped", "needs nvidia_smi.xml and snapshot.json from the steps before"
            return
        smi = smi_compare.parse_smi_xml(xml.read_text(encoding="utf-8", errors="replace"))
        snapshot = json.loads(snap.read_text(encoding="utf-8"))
        nvl_path = self.out / "nvlink_status.txt"
        nvlink = smi_compare.parse_nvlink_status(nvl_path.read_text(errors="replace")) if nvl_path.is_file() else None
        rows = smi_compare.compare(snapshot, smi, nvlink)
        st.files.append(self.write("agreement.md", smi_compare.to_markdown(rows)))
        st.files.append(self.write("agreement.json", smi_compare.to_json(rows)))
        c = smi_compare.counts(rows)
        st.note = f"{c['agree']} agree, {c['differ']} differ, {c['missing']} missing"
        if c["differ"]:
            st.status = "failed"

    def do_doctor_timing(self, st: Step) -> None:
        bare = [self.py, "-c", "import torch; torch.cuda.init()"]
        doctor = self.envcheck("doctor", "--format", "json")
        times: dict[str, list[float]] = {"bare": [], "doctor": []}
        t_end = time.perf_counter() + st.limit_s
        for _ in range(self.args.repeats):
            for key, argv in (("bare", bare), ("doctor", doctor)):
                left = t_end - time.perf_counter()
                if left < 2:
                    break
                r = run_cmd(argv, left, env=self.env)
                if r.timed_out or r.rc not in (0, 1) or (key == "bare" and r.rc != 0):
                    st.status = "timeout" if r.timed_out else "failed"
                    tail = " ".join(r.stderr.split())[-200:]
                    st.note = f"{key}: " + ("timed out" if r.timed_out else f"exit {r.rc}: {tail}")
                    self.write("doctor_timing.json", json.dumps(times, indent=2) + "\n")
                    return
                times[key].append(round(r.seconds, 3))
        med = {k: round(statistics.median(v), 3) for k, v in times.items() if v}
        ratio = round(med["doctor"] / med["bare"], 2) if "doctor" in med and med.get("bare") else None
        doc = {"runs": times, "median_s": med, "ratio": ratio, "repeats": self.args.repeats,
               "bare": " ".join(bare[1:]), "doctor": "envcheck doctor --format json"}
        st.files.append(self.write("doctor_timing.json", json.dumps(doc, indent=2) + "\n"))
        st.note = f"doctor {med.get('doctor')} s vs import+cuda.init {med.get('bare')} s: {ratio}x"

    def do_pytest_gpu(self, st: Step) -> None:
        junit = self.out / "pytest_gpu.xml"
        self.command(st, [self.py, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider",
                          f"--junitxml={junit}", "tests"])
        st.files.append("pytest_gpu.xml")
        log = (self.out / "pytest_gpu.log").read_text(errors="replace").strip().splitlines()
        last = next((ln for ln in reversed(log) if " in " in ln and ("passed" in ln or "failed" in ln
                                                                       or "skipped" in ln or "error" in ln)), "")
        if last:
            st.note = (st.note + "; " if st.note else "") + last.strip("= ")

    def _validate(self, st: Step, name: str, *extra: str) -> None:
        r = self.command(st, self.envcheck("validate", *extra, "--format", "json"), stdout_file=f"{name}.json",
                         ok_codes=(0, 1))
        try:
            doc = json.loads(r.stdout)
            st.note = f"exit {r.rc}: verdict {doc['verdict']}" + (
                f" ({'; '.join(doc.get('reasons') or [])[:160]})" if doc.get("reasons") else "")
        except (ValueError, KeyError, TypeError):
            if st.status == "pending":
                st.status, st.note = "failed", "validate printed no JSON"

    def do_validate_quick(self, st: Step) -> None:
        self._validate(st, "validate_quick", "--quick")

    def do_validate_standard(self, st: Step) -> None:
        self._validate(st, "validate_standard")

    def do_validate_overhead(self, st: Step) -> None:
        self.command(st, [self.py, str(ROOT / "bench" / "validate_overhead.py"), "--rounds", "1",
                          "--sizes", "1048576,67108864", "--json", str(self.out / "validate_overhead.json")], stdout_file="validate_overhead.txt")
        if (self.out / "validate_overhead.json").is_file():
            st.files.append("validate_overhead.json")

    def do_quick_budget(self, st: Step) -> None:
        self.command(st, [self.py, str(ROOT / "bench" / "quick_budget.py"), "--runs", "1",
                          "--json", str(self.out / "quick_budget.json")], stdout_file="quick_budget.txt")
        if (self.out / "quick_budget.json").is_file():
            st.files.append("quick_budget.json")

    # ------------------------------------------------------------------ the whole run
    def run(self) -> int:
        self.log(f"out {self.out}; budget {self.args.budget:g} s; dry run {self.args.dry_run}")
        for name in STEPS:
            if name == "install" and self.args.dry_run:
                st = Step("install", status="skipped", note="dry run: envcheck used as installed here")
                self.steps.append(st)
                continue
            self.step(name, getattr(self, f"do_{name}"))
        doc = summary_doc(self)
        self.write("summary.json", json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")
        text = render_summary(doc)
        self.write("summary.txt", text)
        if self.args.bundle:
            bundle(self.out)
        print(text, end="")
        return 0


# ---------------------------------------------------------------------------- summary (pure)

def _load(out: Path, name: str):
    try:
        return json.loads((out / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def summary_doc(t: Truth) -> dict:
    out = t.out
    snap = _load(out, "snapshot.json") or {}
    nv = snap.get("nvidia") if isinstance(snap.get("nvidia"), dict) else {}
    gpus = [g.get("name") for g in nv.get("gpus") or [] if isinstance(g, dict)]
    torch = snap.get("torch") if isinstance(snap.get("torch"), dict) else {}
    return {
        "schema": "envcheck.gpu_truth", "schema_version": 1,
        "dry_run": t.args.dry_run, "budget_s": t.args.budget,
        "wall_s": round(time.monotonic() - t.t0, 1),
        "machine": {"gpus": gpus, "driver": _plain(nv.get("driver_version")),
                    "cuda_driver": _plain(nv.get("cuda_driver_version")), "torch": _plain(torch.get("version")), "hostname": (snap.get("host") or {}).get("hostname")
                    if isinstance(snap.get("host"), dict) else None},
        "steps": [asdict(s) for s in t.steps],
        "agreement": (_load(out, "agreement.json") or {}).get("counts"),
        "differ": [r for r in (_load(out, "agreement.json") or {}).get("rows", []) if r["status"] == "differ"],
        "figures": {name: figures_of(_load(out, f"{name}.json"))
                    for name in ("validate_quick", "validate_standard")},
        "overhead": _load(out, "validate_overhead.json"),
        "quick_budget": _load(out, "quick_budget.json"),
        "doctor_timing": _load(out, "doctor_timing.json"),
    }


def _plain(v):
    """A snapshot value for the headline: {"unavailable": why} reads as None."""
    return None if isinstance(v, dict) else v


def figures_of(validate_doc) -> list[dict]:
    """The figures of a validate JSON report, as {check, metric, device, value, unit, spec, floor, status}."""
    if not isinstance(validate_doc, dict):
        return []
    keys = ("check", "metric", "device", "value", "unit", "spec", "floor", "status")
    return [{k: f.get(k) for k in keys} for f in validate_doc.get("figures") or [] if isinstance(f, dict)]


def _fmt(v, width: int = 9) -> str:
    if v is None:
        return f"{'-':>{width}}"
    if isinstance(v, float):
        return f"{v:>{width}.4g}"
    return f"{str(v):>{width}}"


def render_summary(doc: dict) -> str:
    """One screen: machine, steps, agreement, figures vs spec and floor, overhead, doctor ratio."""
    m = doc["machine"]
    lines = [f"gpu_truth{' (dry run)' if doc['dry_run'] else ''}: {', '.join(filter(None, m['gpus'])) or 'no GPU'}"
             f" | driver {m['driver']} | CUDA {m['cuda_driver']} | torch {m['torch']}"
             f" | {doc['wall_s']:g} s of {doc['budget_s']:g} s", ""]
    lines.append(f"{'step':<18}{'status':<9}{'seconds':>8}  note")
    for s in doc["steps"]:
        lines.append(f"{s['name']:<18}{s['status']:<9}{s['seconds']:>8.1f}  {s['note']}"[:160])
    if doc["agreement"]:
        a = doc["agreement"]
        lines += ["", f"NVML vs nvidia-smi: {a['agree']} agree, {a['differ']} differ, {a['missing']} missing"]
        for r in doc["differ"][:6]:
            lines.append(f"  differ  gpu {r['gpu']} {r['field']}: snapshot {r['snapshot']} vs nvidia-smi {r['nvidia_smi']}")
    # One table to stay on one screen: the standard profile's figures, else --quick's.
    shown = [(n, f) for n, f in doc["figures"].items() if f]
    for name, figs in ([shown[-1]] if shown else []):
        lines += ["", f"{name} figures", f"{'check':<10}{'metric':<22}{'device':<8}{'value':>9} {'unit':<7}"
                  f"{'spec':>9}{'floor':>9}  status"]
        for f in figs:
            lines.append(f"{str(f['check']):<10}{str(f['metric']):<22}{str(f['device']):<8}{_fmt(f['value'])} "
                         f"{str(f['unit'] or ''):<7}{_fmt(f['spec'])}{_fmt(f['floor'])}  {f['status']}")
    ov = doc.get("overhead")
    ov = ov if isinstance(ov, dict) else {}
    gemm = ov.get("gemm") or (ov.get("cli") or {}).get("gemm")  # validate_overhead.json: under "cli"
    if isinstance(gemm, dict) and gemm:
        lines += ["", "GEMM: validate vs direct torch.matmul loop (TFLOPS)"]
        for dt, r in gemm.items():
            lines.append(f"  {dt:<6} n={r.get('n')}  validate {r.get('validate_tflops')}  direct "
                         f"{r.get('direct_tflops')}  loss {100 * (r.get('loss') or 0):.1f}%")
    rows = [(f"{op} {size}", r) for op, o in ((ov.get("collectives") or {}).get("ops") or {}).items()
            if isinstance(o, dict) for size, r in (o.get("sizes") or {}).items() if isinstance(r, dict)]
    if rows:
        worst = max(rows, key=lambda x: x[1].get("loss") or 0)
        counts = {v: sum(1 for _n, r in rows if r.get("verdict") == v) for v in ("PASS", "FAIL", "NOISY")}
        lines.append(f"collectives harness vs direct: worst loss {100 * (worst[1].get('loss') or 0):.1f}% "
                     f"({worst[0]} B); " + ", ".join(f"{n} {v}" for v, n in counts.items()))
    w = ov.get("watcher")
    if isinstance(w, dict) and "loss" in w:
        lines.append(f"watcher on a GEMM: loss {100 * w['loss']:.1f}% (target 2%), {w.get('verdict')}")
    qb = doc.get("quick_budget")
    if isinstance(qb, list) and qb:
        lines.append(f"validate --quick cold: {max(r.get('wall_s') or 0 for r in qb):.1f} s wall (budget 50 s)")
    dt_ = doc.get("doctor_timing")
    if isinstance(dt_, dict) and dt_.get("median_s"):
        med = dt_["median_s"]
        lines.append(f"doctor {med.get('doctor')} s vs import torch + cuda.init {med.get('bare')} s "
                     f"(medians of {dt_.get('repeats')}): {dt_.get('ratio')}x")
    return "\n".join(lines) + "\n"


def bundle(out: Path) -> None:
    """Pack every file into one tar.gz and keep only the headline files loose: the device tool
    brings back at most 8 files."""
    files = sorted(p for p in out.iterdir() if p.is_file() and p.name != BUNDLE)
    with tarfile.open(out / BUNDLE, "w:gz") as tar:
        for p in files:
            tar.add(p, arcname=f"gpu_truth/{p.name}")
    for p in files:
        if p.name not in HEADLINE:
            p.unlink()


def _parse_limits(items) -> list[tuple[str, float]]:
    out = []
    for item in items or []:
        name, _, value = item.partition("=")
        if name not in STEPS or not value:
            raise SystemExit(f"--limit {item!r}: expected STEP=SECONDS with STEP in {', '.join(STEPS)}")
        out.append((name, float(value)))
    return out


def _steps_arg(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    bad = [n for n in names if n not in STEPS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown step(s) {', '.join(bad)}; known: {', '.join(STEPS)}")
    return names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Steps: " + ", ".join(STEPS))
    default_out = os.environ.get("OUT") or str(ROOT / "gpu_truth_out")
    ap.add_argument("--out", default=default_out, help="output folder (default $OUT, else ./gpu_truth_out)")
    ap.add_argument("--wheels", default=str(ROOT / ".whl"), help="folder of carried wheels (default .whl)")
    ap.add_argument("--site", default="/tmp/gpu_truth_site", help="where the wheels are installed (--target)")
    ap.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S, help="overall wall budget in seconds")
    ap.add_argument("--limit", action="append", metavar="STEP=S", help="override one step's time limit")
    ap.add_argument("--steps", type=_steps_arg, help="only these steps (comma-separated)")
    ap.add_argument("--skip", type=_steps_arg, help="skip these steps (comma-separated)")
    ap.add_argument("--repeats", type=int, default=3, help="doctor_timing repeats of each command")
    ap.add_argument("--dry-run", action="store_true", help="CPU machine: skip GPU-only steps, say why")
    ap.add_argument("--nvidia-smi-xml", metavar="FILE", help="dry run: use FILE as nvidia-smi -q -x output")
    ap.add_argument("--nvlink-status", metavar="FILE", help="dry run: use FILE as nvidia-smi nvlink -s output")
    ap.add_argument("--snapshot", metavar="FILE", help="use this saved snapshot instead of probing")
    ap.add_argument("--bundle", action=argparse.BooleanOptionalAction, default=None,
                    help="pack all files into one tar.gz, keeping the headline ones (default: on under $OUT)")
    args = ap.parse_args(argv)
    if args.nvidia_smi_xml and not args.dry_run:
        ap.error("--nvidia-smi-xml is for --dry-run (the real run asks nvidia-smi)")
    if args.repeats < 1 or args.budget <= 0:
        ap.error("--repeats and --budget must be positive")
    if args.bundle is None:
        args.bundle = bool(os.environ.get("OUT")) and args.out == os.environ.get("OUT")
    return Truth(args).run()


if __name__ == "__main__":
    sys.exit(main())
