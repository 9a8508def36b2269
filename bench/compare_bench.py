"""Benchmark: `envcheck compare` on a fleet of 1000 doctor snapshots (issue 17: <= 5 s).

Writes ``--nodes`` synthetic snapshots (tests/fixtures/fleet.py: the key-contract example with
per-node noise and four planted differences) to a temporary folder, then times, ``--repeats``
times each:

  cli      the real command, a fresh process: python -m envcheck compare FOLDER --format json
           (import, reading and validating every file, the doctor rules on each, comparison,
           rendering)
  inproc   the same work in this process (envcheck.compare.from_files + the JSON renderer)

and checks that exactly the planted nodes are named. Target: the CLI median <= 5 s
(``--check`` exits 1 otherwise).

    python3 bench/compare_bench.py [--nodes 1000] [--repeats 3] [--check]
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))

import fleet  # noqa: E402

from envcheck import compare as cmp  # noqa: E402
from envcheck.report import compare as render  # noqa: E402

TARGET_S = 5.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--check", action="store_true", help=f"exit 1 when the CLI median exceeds {TARGET_S:g} s")
    args = ap.parse_args()
    n = args.nodes
    plants = {3: "driver", n // 4: "nccl_ib", n // 2: "missing_gpu", n - 1: "torch"}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        fleet.write(folder, fleet.fleet(n, plants))
        cli, inproc = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            p = subprocess.run([sys.executable, "-m", "envcheck", "compare", str(folder), "--format", "json"],
                               capture_output=True, text=True, cwd=ROOT)
            cli.append(time.perf_counter() - t0)
            doc = json.loads(p.stdout)
            t0 = time.perf_counter()
            render.to_json(cmp.from_files([str(folder)]))
            inproc.append(time.perf_counter() - t0)
    named = sorted(x["name"] for x in doc["nodes"] if x["weighty"])
    expected = sorted(f"node-{i:04d}" for i in plants)
    med_cli, med_in = statistics.median(cli), statistics.median(inproc)
    print(f"envcheck compare on {n} snapshots ({doc['summary']['fields']} fields), exit {p.returncode}")
    print(f"  cli     median {med_cli:.2f} s  (runs: {', '.join(f'{t:.2f}' for t in cli)})")
    print(f"  inproc  median {med_in:.2f} s  (runs: {', '.join(f'{t:.2f}' for t in inproc)})")
    print(f"  odd nodes named: {', '.join(named)} ({'as planted' if named == expected else 'NOT as planted'})")
    ok = med_cli <= TARGET_S and named == expected
    print(f"target <= {TARGET_S:g} s: {'OK' if med_cli <= TARGET_S else 'OVER'}")
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
