"""Benchmark: wall time of a standard `envcheck validate` run, this envcheck against a base one.

Issue 9 item 7 target: the standard run (cnn, amp, compile, allreduce, gemm, memory) at least
20 % faster than the base commit before the restructure (2edd6d5), measured in the same session.
Runs alternate (base, new, base, new, ...) so a machine whose load drifts penalises both
alike; the medians are compared. Each run is the real command in a fresh process, started in
an empty directory so each interpreter imports its own installed envcheck.

    git worktree add /tmp/base 2edd6d5
    python3 -m venv --system-site-packages /tmp/base-venv
    /tmp/base-venv/bin/pip install -q --no-deps -e /tmp/base
    python3 bench/standard_speed.py --base-python /tmp/base-venv/bin/python \\
        --python .venv/bin/python [--runs 3] [--json out.json] [--check]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHECKS = "cnn,amp,compile,allreduce,gemm,memory"
TARGET = 0.20  # at least 20 % less wall time than the base


def one_run(python: str, checks: str, extra: list[str], cwd: str) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([python, "-m", "envcheck", "validate", "--checks", checks, "--format", "json", *extra],
                         capture_output=True, text=True, cwd=cwd, timeout=1800)
    wall = time.perf_counter() - t0
    try:
        doc = json.loads(out.stdout)
    except ValueError:
        raise SystemExit(f"{python}: no JSON report (exit {out.returncode}): {out.stderr[-2000:]}") from None
    timings = doc.get("timings") or {}
    return {"wall_s": round(wall, 2), "exit": out.returncode, "verdict": doc.get("verdict"),
            "preflight_s": timings.get("preflight_s"), "checks": timings.get("checks") or {},
            "workers": timings.get("workers") or {}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-python", required=True, help="interpreter with the base envcheck installed")
    ap.add_argument("--python", default=sys.executable, help="interpreter with this envcheck (default: this one)")
    ap.add_argument("--runs", type=int, default=3, help="runs of each, alternated (default 3)")
    ap.add_argument("--checks", default=CHECKS)
    ap.add_argument("--json", help="also write every run to this file")
    ap.add_argument("--check", action="store_true", help=f"exit 1 unless the new median is {TARGET:.0%} faster")
    ap.add_argument("extra", nargs="*", help="more `envcheck validate` arguments (after --)")
    args = ap.parse_args()
    runs: dict[str, list[dict]] = {"base": [], "new": []}
    with tempfile.TemporaryDirectory() as cwd:
        for i in range(args.runs):
            for label, python in (("base", args.base_python), ("new", args.python)):
                r = one_run(python, args.checks, args.extra, cwd)
                runs[label].append(r)
                print(f"{label:>4} run {i + 1}: {r['wall_s']:7.2f} s wall, preflight {r['preflight_s']} s, "
                      f"verdict {r['verdict']}; " + ", ".join(f"{k} {v:.2f}" for k, v in r["checks"].items()),
                      flush=True)
    med = {k: statistics.median(r["wall_s"] for r in v) for k, v in runs.items()}
    gain = 1.0 - med["new"] / med["base"]
    print(f"median wall: base {med['base']:.2f} s, new {med['new']:.2f} s: {gain:+.1%} less time "
          f"(target {TARGET:.0%}); {args.runs} alternated runs each")
    workers = runs["new"][-1]["workers"]
    if workers:
        print("new run's workers: " + ", ".join(f"{k} {v}" for k, v in workers.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "median_s": med, "gain": gain}, indent=2) + "\n")
    return 1 if args.check and gain < TARGET else 0


if __name__ == "__main__":
    sys.exit(main())
