"""Benchmark: `envcheck doctor` against a bare `import torch` on the same machine, in one run.

Measures (median of --repeats after one warm-up each, the commands interleaved round by round
so that a noisy neighbour hurts all of them alike):

  bare         python -c "import torch; torch.cuda.is_available()"
  bare_no_teardown  the same, ending with os._exit(0)       (reference, see below)
  collect_env  python -m torch.utils.collect_env            (reference: PyTorch's own dump)
  doctor       envcheck doctor --format json
  doctor_notorch  envcheck doctor --format json --python <venv without torch>

and the peak resident memory of the doctor *process itself*: the envcheck process reports
its own ``getrusage(RUSAGE_SELF).ru_maxrss`` at exit. That figure excludes the torch
subprocess (RUSAGE_SELF never counts children), which is the point: importing torch costs
~200 MiB in whatever process does it, and doctor keeps it out of its own. For contrast the
table also shows ``RUSAGE_CHILDREN`` as seen from this benchmark, which is the largest
process of doctor's whole tree, i.e. the torch subprocess.

Why bare_no_teardown: after ``import torch`` the interpreter's own shutdown (module teardown,
atexit hooks) costs about a third of the bare command here. doctor's torch subprocess skips it
(``os._exit`` once its facts are flushed), so doctor can beat "bare"; the ratio against
bare_no_teardown is the stricter, import-only comparison and is reported next to the target.

Targets (issue 2): doctor <= 1.10x bare, doctor process <= 60 MiB, doctor without torch
<= 0.5 s. Every command uses the real interpreter binary (sys.executable), never a pyenv or
conda shim, whose own start-up would be billed to whichever command used it; in a venv, the
venv's python (a link to that binary) so that the venv's torch and envcheck are the ones run.

    python3 bench/doctor_bench.py [--repeats 7] [--json out.json] [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

TARGET_RATIO = 1.10
TARGET_RSS_MIB = 60.0
TARGET_NOTORCH_S = 0.5

# Runs envcheck's console entry point and reports the process's own peak RSS at exit
# (after click's sys.exit), on stderr, in KiB (Linux ru_maxrss unit; bytes on macOS).
RSS_WRAPPER = (
    "import atexit, resource, sys\n"
    "def _report():\n"
    "    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "    kib = r / 1024 if sys.platform == 'darwin' else r\n"
    "    sys.stderr.write('ENVCHECK_BENCH_MAXRSS_KIB=%d\\n' % kib)\n"
    "atexit.register(_report)\n"
    "sys.argv[0] = 'envcheck'\n"
    "from envcheck.cli import main\n"
    "main()\n"
)


def envcheck_command(python: str) -> list[str]:
    """The installed console script when it sits next to this interpreter, else ``-m``."""
    script = Path(sysconfig.get_path("scripts")) / ("envcheck.exe" if os.name == "nt" else "envcheck")
    if script.is_file():
        return [str(script)]
    return [python, "-m", "envcheck"]


def run(cmd: list[str], cwd: str) -> tuple[float, int, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, stdin=subprocess.DEVNULL, check=False)
    elapsed = time.perf_counter() - start
    return elapsed, proc.returncode, proc.stderr.decode("utf-8", "replace")


def peak_rss_doctor(python: str, cwd: str, repeats: int) -> tuple[float, float]:
    """(doctor process's own peak RSS, largest process of its tree), both MiB, max over runs."""
    own, tree = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        _, rc, err = run([python, "-c", RSS_WRAPPER, "doctor", "--format", "json"], cwd)
        after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if rc > 1:
            raise SystemExit(f"doctor failed (exit {rc}):\n{err}")
        line = [x for x in err.splitlines() if x.startswith("ENVCHECK_BENCH_MAXRSS_KIB=")]
        own.append(int(line[-1].split("=")[1]) / 1024)
        tree.append(max(before, after) / 1024)
    return max(own), max(tree)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", dest="json_path", help="also write the results to this file")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="envcheck-bench-")  # neutral cwd: no torch/ folder to shadow
    try:
        return _bench(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def real_interpreter() -> str:
    """The interpreter the commands use: in a venv, the venv's own python (resolving its link
    would give the base interpreter, without the venv's torch and envcheck); elsewhere the
    real binary behind sys.executable, never a pyenv/conda shim."""
    if sys.prefix != sys.base_prefix:
        return sys.executable
    return os.path.realpath(sys.executable)


def _bench(args: argparse.Namespace, work: str) -> int:
    python = real_interpreter()
    venv = Path(work) / "notorch"
    subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True)
    doctor = envcheck_command(python)
    commands = {
        "bare": [python, "-c", "import torch; torch.cuda.is_available()"],
        "bare_no_teardown": [python, "-c",
                             "import os, torch; torch.cuda.is_available(); os._exit(0)"],
        "collect_env": [python, "-m", "torch.utils.collect_env"],
        "doctor": doctor + ["doctor", "--format", "json"],
        "doctor_notorch": doctor + ["doctor", "--format", "json", "--python", str(venv)],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for name, cmd in commands.items():  # warm-up: page cache, .pyc files
        _, rc, err = run(cmd, work)
        if rc != 0 and not (name.startswith("doctor") and rc == 1):
            raise SystemExit(f"{name} failed (exit {rc}): {' '.join(cmd)}\n{err[-2000:]}")
    for _ in range(args.repeats):
        for name, cmd in commands.items():
            times[name].append(run(cmd, work)[0])
    own_mib, tree_mib = peak_rss_doctor(python, work, max(3, args.repeats // 2))

    med = {name: statistics.median(v) for name, v in times.items()}
    ratio = med["doctor"] / med["bare"]
    results = {
        "machine": {"python": python, "cpus": os.cpu_count(), "platform": sys.platform},
        "repeats": args.repeats,
        "commands": {name: " ".join(cmd) for name, cmd in commands.items()},
        "seconds": {name: {"median": round(med[name], 3), "min": round(min(v), 3),
                           "max": round(max(v), 3), "runs": [round(x, 3) for x in v]}
                    for name, v in times.items()},
        "ratio_doctor_to_bare": round(ratio, 3),
        "ratio_doctor_to_bare_no_teardown": round(med["doctor"] / med["bare_no_teardown"], 3),
        "ratio_collect_env_to_bare": round(med["collect_env"] / med["bare"], 3),
        "doctor_peak_rss_mib": round(own_mib, 1),
        "doctor_tree_largest_rss_mib": round(tree_mib, 1),
        "targets": {
            "doctor_vs_bare": {"target": f"<= {TARGET_RATIO}x", "ok": ratio <= TARGET_RATIO},
            "doctor_rss": {"target": f"<= {TARGET_RSS_MIB:g} MiB", "ok": own_mib <= TARGET_RSS_MIB},
            "doctor_notorch": {"target": f"<= {TARGET_NOTORCH_S} s",
                               "ok": med["doctor_notorch"] <= TARGET_NOTORCH_S},
        },
    }

    print(f"{'command':<18}{'median s':>10}{'min s':>9}{'max s':>9}{'x bare':>9}")
    for name in commands:
        s = results["seconds"][name]
        print(f"{name:<18}{s['median']:>10.3f}{s['min']:>9.3f}{s['max']:>9.3f}"
              f"{med[name] / med['bare']:>9.2f}")
    print(f"doctor / bare_no_teardown: {results['ratio_doctor_to_bare_no_teardown']:.2f}x")
    print(f"doctor process peak RSS: {own_mib:.1f} MiB (its torch subprocess: {tree_mib:.1f} MiB)")
    for name, t in results["targets"].items():
        print(f"target {name:<18}{t['target']:<14}{'ok' if t['ok'] else 'MISSED'}")
    print(json.dumps(results, indent=2))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2) + "\n")
    return 1 if args.check and not all(t["ok"] for t in results["targets"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
