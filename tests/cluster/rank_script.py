"""A stand-in rank for the launcher tests (run by srun / torchrun, not collected by pytest).

Detects its place in the launch and reports a fixed validate-shaped result to rank 0 through
the distributed mode's own join (the job's store, the authenticated result channel); rank 0
prints the cluster report as one JSON line. ``SLOW_RANK=<r>`` makes rank r report half the
GEMM figure of the others.
"""

import json
import os

from envcheck.cluster import launch
from envcheck.validate.distributed import join

info = launch.detect(os.environ)
figures = [{"check": "gemm", "metric": "bf16", "device": "cpu", "unit": "TFLOPS",
            "value": 1.0 if info.rank != int(os.environ.get("SLOW_RANK", -1)) else 0.5}]
report = {"verdict": "passed", "checks": [{"name": "gemm", "status": "pass"}], "figures": figures}


def work(phase):
    phase("gemm")
    return report


rep = join.run(info, work, timeout=30, join_timeout=20, hostname=info.hostname or os.uname().nodename)
if rep is not None:
    print(json.dumps(rep))
