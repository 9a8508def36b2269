"""A stand-in rank for the launcher tests (run by srun / torchrun, not collected by pytest).

Detects its place in the launch, reports a fixed validate-shaped result to rank 0 over the
result channel; rank 0 prints the cluster report as one JSON line. ``SLOW_RANK=<r>`` makes
rank r report half the GEMM figure of the others.
"""

import json
import os
import time

from envcheck.cluster import launch
from envcheck.validate.distributed import aggregate, channel

info = launch.detect(os.environ)
port = channel.report_port(info.master_port)
figures = [{"check": "gemm", "metric": "bf16", "device": "cpu", "unit": "TFLOPS",
            "value": 1.0 if info.rank != int(os.environ.get("SLOW_RANK", -1)) else 0.5}]
report = {"verdict": "passed", "checks": [{"name": "gemm", "status": "pass"}], "figures": figures}
me = dict(hostname=info.hostname or os.uname().nodename, node_rank=info.node_rank, local_rank=info.local_rank)
if info.rank == 0:
    with channel.Collector(info.world_size, port) as col:
        col.submit(report, **me)
        col.wait(deadline=time.monotonic() + 30, join_deadline=time.monotonic() + 20)
        entries = col.entries(channel.expected_hosts(info.hosts, info.world_size, info.local_world_size))
    print(json.dumps(aggregate.cluster_report(entries, info.world_size)))
else:
    with channel.Reporter(info.master_addr, port, info.rank, time.monotonic() + 20, **me) as rep:
        rep.phase("gemm")
        rep.result(report)
