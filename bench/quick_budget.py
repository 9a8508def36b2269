"""Benchmark: how much of Slurm's 60 s HealthCheckProgram limit `envcheck validate --quick` uses.

Runs the real command ``--runs`` times (cold, as slurmd would: each run starts its fork server,
which imports torch once and forks the check workers) and prints the wall time of the whole process, the run's own
``timings.total_s``, the preflight and every check. Target (issue 5): the slowest run stays under
the 50 s budget that --quick enforces (``--check`` exits 1 otherwise), which leaves healthcheck.sh's
``timeout 55`` and Slurm's 60 s unused.

    python3 bench/quick_budget.py [--runs 3] [--json out.json] [--check] [-- extra validate args]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from envcheck.validate.config import QUICK_BUDGET_S  # noqa: E402

SLURM_LIMIT_S = 60.0


def one_run(extra: list[str]) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "envcheck", "validate", "--quick", "--format", "json", *extra],
                         capture_output=True, text=True, cwd=ROOT, timeout=SLURM_LIMIT_S + 30)
    wall = time.perf_counter() - t0
    doc = json.loads(out.stdout)
    return {"wall_s": round(wall, 2), "exit": out.returncode, "verdict": doc["verdict"],
            "device": doc["device"], "devices": [d.get("name") for d in doc.get("devices") or []],
            "total_s": doc["timings"].get("total_s"), "preflight_s": doc["timings"].get("preflight_s"),
            "checks": doc["timings"].get("checks") or {}, "workers": doc["timings"].get("workers") or {}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", help="also write the runs to this file")
    ap.add_argument("--check", action="store_true", help=f"exit 1 when a run takes {QUICK_BUDGET_S:g} s or more")
    ap.add_argument("extra", nargs="*", help="more `envcheck validate` arguments (after --)")
    args = ap.parse_args()
    runs = [one_run(args.extra) for _ in range(args.runs)]
    print(f"envcheck validate --quick on {runs[0]['device']} {sorted(set(runs[0]['devices']))}")
    names = list(runs[0]["checks"])
    print(f"{'run':>3}  {'wall s':>7}  {'total s':>7}  {'import':>6}  " + "  ".join(f"{n:>9}" for n in names)
          + "  verdict")
    for i, r in enumerate(runs, 1):
        print(f"{i:>3}  {r['wall_s']:>7.2f}  {r['total_s']:>7.2f}  {r['preflight_s']:>6.2f}  "
              + "  ".join(f"{r['checks'].get(n, 0):>9.2f}" for n in names) + f"  {r['verdict']}")
    worst = max(r["wall_s"] for r in runs)
    print(f"median: {statistics.median(r['wall_s'] for r in runs):.2f} s wall (issue 9 target: 14 s on the CI host)")
    workers = runs[-1].get("workers") or {}
    if workers:
        print("workers: " + ", ".join(f"{k} {v}" for k, v in workers.items()))
    print(f"slowest: {worst:.2f} s wall = {worst / SLURM_LIMIT_S:.0%} of Slurm's {SLURM_LIMIT_S:g} s "
          f"(budget {QUICK_BUDGET_S:g} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=2) + "\n")
    return 1 if args.check and worst >= QUICK_BUDGET_S else 0


if __name__ == "__main__":
    sys.exit(main())
