"""Benchmark: `envcheck install` offline (issue 15: it stays under 0.5 s on the dev machine).

Measures, the commands interleaved round by round after one warm-up each (a noisy neighbour hurts
all alike), the wall time and the CPU time (user + sys of the process tree, which a busy shared
machine does not inflate) of:

  what_if   envcheck install --platform linux-x86_64 --python 3.12 --gpu H100 --driver 550.90.07 --glibc 2.35
  with      the same with --with torchvision,torchaudio
  probed    envcheck install          (probes this machine: the interpreter, the driver, the host)

Target: median wall <= 0.5 s for what_if and probed (--check exits 1 when missed). On a loaded
machine read the CPU column too: wall minus CPU is time spent waiting for a core.

    python3 bench/install_bench.py [--repeats 11] [--json out.json] [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_S = 0.5
ENVCHECK = [sys.executable, "-m", "envcheck"]
WHAT_IF = ["install", "--platform", "linux-x86_64", "--python", "3.12", "--gpu", "H100",
           "--driver", "550.90.07", "--glibc", "2.35"]
COMMANDS = {
    "what_if": ENVCHECK + WHAT_IF,
    "with": ENVCHECK + WHAT_IF + ["--with", "torchvision,torchaudio"],
    "probed": ENVCHECK + ["install"],
}


def _once(cmd: list[str]) -> tuple[float, float]:
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
                   cwd=Path(__file__).resolve().parent, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--check", action="store_true", help=f"exit 1 when a median wall time > {TARGET_S} s")
    args = ap.parse_args(argv)
    for cmd in COMMANDS.values():  # warm-up (page cache, .pyc)
        _once(cmd)
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in COMMANDS}
    for _ in range(args.repeats):
        for name, cmd in COMMANDS.items():
            runs[name].append(_once(cmd))
    out = {}
    print(f"{'command':8}  {'wall median':>11}  {'wall min':>8}  {'cpu median':>10}")
    for name, rs in runs.items():
        walls, cpus = [w for w, _ in rs], [c for _, c in rs]
        out[name] = {"wall_median_s": statistics.median(walls), "wall_min_s": min(walls),
                     "cpu_median_s": statistics.median(cpus), "repeats": len(rs)}
        print(f"{name:8}  {out[name]['wall_median_s']:11.3f}  {out[name]['wall_min_s']:8.3f}  "
              f"{out[name]['cpu_median_s']:10.3f}")
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; target: median wall <= {TARGET_S} s")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    missed = [k for k in ("what_if", "probed") if out[k]["wall_median_s"] > TARGET_S]
    if args.check and missed:
        print(f"missed the target: {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
