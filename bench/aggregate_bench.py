"""Benchmark: rank 0's aggregation and report writing for a big cluster (issue 10, class 11).

Targets: 4096 nodes x 8 ranks, every rank *degraded*, with ``--pairwise``: the cluster report
built and every output written in <= 10 s, peak RSS <= 2 GiB (``resource.getrusage``
``ru_maxrss``, the whole process: the received rank reports included) on the 2-core
development VM.

The rank reports are synthetic but shaped like real ones, as they travel after
:func:`envcheck.validate.distributed.mode.shared_once`: the recorded CPU validate report
(tests/fixtures/reports/validate_cpu.json, ``envcheck validate --device cpu --profile quick``)
turned into one GPU rank's report: per-device figures with floors (one below its floor on every
rank: degraded, with its reason), the all-reduce CheckResult from
:func:`mode.allreduce_result` (world sweep rows and the pairwise table on rank 0 only, intra-node
rows on each node's local rank 0, a consensus digest on every rank), the NCCL transport record of
:func:`mode.transport_record` (whole on local rank 0), the node summary
(:func:`drift.node_summary`) on local rank 0, the launch options (:func:`mode.launch_options`).
Each is serialised and parsed back (what rank 0's collector receives), so its memory is real.

Timed, in this process (what rank 0 runs after the last report arrived):

  aggregate   envcheck.validate.distributed.aggregate.cluster_report
  outputs     envcheck.validate.output.emit: the JSON report (--report), JUnit (--junit), the
              Prometheus textfile (--prom-file), each through envcheck.outfile into a temp dir,
              and the text report on stdout (captured, not printed)

Printed: the figures, the sizes of the files, the number of Prometheus series.

    python3 bench/aggregate_bench.py [--nodes 4096] [--ranks-per-node 8] [--check]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from envcheck.validate import output  # noqa: E402
from envcheck.validate.distributed import aggregate, pairwise  # noqa: E402
from envcheck.validate.distributed import mode as dmode  # noqa: E402
from envcheck.validate.distributed.rank import pairwise_summary  # noqa: E402

TARGET_S = 10.0
TARGET_RSS = 2 << 30
TEMPLATE = ROOT / "tests" / "fixtures" / "reports" / "validate_cpu.json"
H100 = "NVIDIA H100 80GB HBM3"
NCCL_LOG = ("gpu0001:2228637:2230195 [0] NCCL INFO NET/IB : Using [0]mlx5_0:1/IB [1]mlx5_1:1/IB ; OOB eth0:10.0.1.2<0>\n"
            "gpu0001:2228637:2230195 [0] NCCL INFO Using network IB\n"
            "gpu0001:2228637:2230195 [0] NCCL INFO Channel 00/0 : 0[0] -> 8[0] [send] via NET/IB/0/GDRDMA\n")
RDMA = {"active_ports": 2, "peermem": "nvidia_peermem", "memory_peers": None,
        "ports": [{"name": f"mlx5_{i}", "port": 1, "state": "ACTIVE", "link_layer": "InfiniBand"} for i in range(2)]}
ENV = {"NCCL_IB_HCA": "mlx5", "NCCL_SOCKET_IFNAME": "eth0", "CUDA_HOME": "/usr/local/cuda"}
# (check, metric, unit, spec, floor, base value): one H100 rank's judged figures
FIGURES = [("gemm", "fp32_tflops", "TFLOPS", 67.0, 33.5, 50.0), ("gemm", "tf32_tflops", "TFLOPS", 494.5, 296.7, 395.0),
           ("gemm", "bf16_tflops", "TFLOPS", 989.0, 593.4, 720.0), ("gemm", "fp16_tflops", "TFLOPS", 989.0, 593.4, 725.0),
           ("memory", "d2d_GBps", "GB/s", 3350.0, 1909.5, 1702.0), ("memory", "h2d_GBps", "GB/s", 64.0, 25.6, 54.0),
           ("memory", "d2h_GBps", "GB/s", 64.0, 25.6, 53.0), ("allreduce", "busbw_GBps", "GB/s", 450.0, 270.0, 360.0)]


def _sweep(peak: float, ranks: int, sizes: int = 12) -> list[dict]:
    rows = []
    for k in range(sizes):
        size = (1 << 10) * 4 ** k
        busbw = round(peak * size / (size + (8 << 20)), 4)
        algbw = round(busbw / (2 * (ranks - 1) / ranks), 4) if ranks > 1 else busbw
        rows.append({"bytes": size, "count": size // 4, "time_us": round(size / (algbw * 1e3), 3),
                     "algbw_GBps": algbw, "busbw_GBps": busbw, "wrong": 0, "first_wrong_index": None})
    return rows


def _pairwise_table(nnodes: int, rnd: random.Random) -> dict:
    """pairwise.run over every node with made-up measurements: about 1 % of nodes slow."""
    slow = set(rnd.sample(range(nnodes), max(1, nnodes // 100))) if nnodes > 2 else set()

    def run_round(pairs, _label):
        return [{"pair": [a, b], "bytes": 64 << 20, "wrong": 0, "error": None, "seconds": 0.4,
                 "busbw_GBps": round((20.0 if a in slow or b in slow else 45.0) + rnd.uniform(-0.5, 0.5), 2)}
                for a, b in pairs]

    return pairwise.run(list(range(nnodes)), run_round, 0.10)


class _Ranks:
    """Builds each rank's report from the template (one copy per rank)."""

    def __init__(self, nnodes: int, per: int, seed: int = 11) -> None:
        self.nnodes, self.per, self.world = nnodes, per, nnodes * per
        self.rnd = random.Random(seed)
        base = json.loads(TEMPLATE.read_text(encoding="utf-8"))
        base["checks"] = [c for c in base["checks"] if c["name"] != "allreduce"]
        base.update(device="cuda", world_size=self.world, profile="standard", verdict="degraded",
                    devices=[{"index": 0, "name": H100}], gpu_models={"cuda:0": "h100-sxm"})
        base["machine"].update(driver_version="580.95.05", cuda_driver_version="13.0", nvml="ok",
                               gpus=[{"index": i, "name": H100, "memory_total_bytes": 85520809984,
                                      "compute_capability": "9.0"} for i in range(per)])
        base["versions"].update(torch="2.13.0+cu130", cuda="13.0", nccl="2.28.3", cudnn=91300)
        self.base = json.dumps(base)  # each rank's copy parsed from it (faster than deepcopy)
        self.world_rows = _sweep(46.0, self.world)
        self.pw = _pairwise_table(nnodes, self.rnd) if nnodes > 1 else None
        self.pw_summary = pairwise_summary(self.pw) if self.pw else None
        self.hosts = tuple(f"gpu{n:04d}" for n in range(nnodes))

    def report(self, node: int, local: int) -> dict[str, Any]:
        from envcheck.cluster.launch import Launch

        rnd, rank = self.rnd, node * self.per + local
        rep = json.loads(self.base)
        rep["machine"]["hostname"] = self.hosts[node]
        figs = []
        for check, metric, unit, spec, floor, value in FIGURES:
            v = round(value * rnd.uniform(0.97, 1.03), 1)
            figs.append({"check": check, "metric": metric, "device": "cuda:0", "value": v, "unit": unit,
                         "spec": spec, "floor": floor, "status": "below" if v < floor else "ok",
                         "note": None, "ratio": round(v / spec, 4)})
        rep["figures"] = figs
        rep["reasons"] = [f"{f['check']} {f['metric']} on cuda:0: {f['value']} {f['unit']} is below its floor "
                          f"{f['floor']} (spec {f['spec']})" for f in figs if f["status"] == "below"]
        child = {"backend": "nccl", "world": {"rows": self.world_rows, "max_bytes": self.world_rows[-1]["bytes"],
                                               "wrong": 0},
                 "intranode": {"rows": _sweep(360.0 * rnd.uniform(0.97, 1.03), self.per), "wrong": 0},
                 "num_nodes": self.nnodes, "nccl_version": "2.28.3", "device_name": H100,
                 "consensus": {"digest": "9f" * 32, "key": {"device": f"{H100} (132 SMs)", "torch": "2.13.0+cu130",
                                                           "cuda": "13.0"}}}
        if self.pw is not None:  # rank.py: the table on rank 0, a count on the others
            child["pairwise" if rank == 0 else "pairwise_summary"] = self.pw if rank == 0 else self.pw_summary
        ar = dmode.allreduce_result(world=self.world, backend="nccl", timeout=120.0, out=child, error=None,
                                    exit_code=0, hung=False, last_mark="done", marks=120)
        ar.seconds = 31.4
        ar.details["nccl_transport"] = dmode.transport_record("nccl", NCCL_LOG, ENV, RDMA)
        ar.details = dmode.shared_once(ar.details, rank, local)
        rep["checks"].insert(3, ar.to_dict())
        # the host list only on rank 0 (mode.launch_options; built once here, not per rank)
        info = Launch("srun", rank, self.world, local, self.per, node, self.nnodes, self.hosts[0], 20011,
                      self.hosts if rank == 0 else (), "4242", self.hosts[node])
        launch = dmode.launch_options(info)
        if rank:
            launch["hosts"] = self.nnodes
        rep["options"] = {**rep["options"], "distributed": launch}
        rep = dmode.with_node_summary(rep, info)
        return rep

    def entries(self) -> tuple[list[dict], int]:
        """Every rank's entry as the collector holds it (each report parsed from its own JSON);
        and the largest report's size in bytes."""
        out, biggest = [], 0
        for node in range(self.nnodes):
            for local in range(self.per):
                wire = json.dumps(self.report(node, local))
                biggest = max(biggest, len(wire))
                out.append({"rank": node * self.per + local, "local_rank": local, "node_rank": node,
                            "hostname": self.hosts[node], "error": None, "report": json.loads(wire)})
        return out, biggest


def _cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def run(entries: list[dict], world: int, folder: Path) -> dict[str, Any]:
    """Rank 0's part after the last report: aggregate, then every output. Returns the figures."""
    cpu0 = _cpu()
    t0 = time.perf_counter()
    rep = aggregate.cluster_report(entries, world)
    t1 = time.perf_counter()
    outs = output.Outputs(fmt="text", report_path=str(folder / "cluster.json"),
                          junit_path=str(folder / "junit.xml"), prom_file=str(folder / "envcheck.prom"))
    stdout: list[str] = []
    errors: list[str] = []
    code = output.emit(rep, outs, write=stdout.append, progress=errors.append, cluster=True, launcher="srun")
    t2 = time.perf_counter()
    cpu = _cpu() - cpu0
    prom_text = (folder / "envcheck.prom").read_text(encoding="utf-8")
    return {"aggregate_s": t1 - t0, "outputs_s": t2 - t1, "total_s": t2 - t0, "cpu_s": cpu, "verdict": rep["verdict"],
            "exit": code, "errors": [e for e in errors if e.startswith("envcheck: cannot write")],
            "nodes": len(rep["nodes"]), "text_bytes": sum(len(s) for s in stdout),
            "sizes": {p.name: p.stat().st_size for p in sorted(folder.iterdir())},
            "prom_series": sum(1 for line in prom_text.splitlines() if line and not line.startswith("#"))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=4096)
    ap.add_argument("--ranks-per-node", type=int, default=8)
    ap.add_argument("--check", action="store_true",
                    help=f"exit 1 when over {TARGET_S:g} s or {TARGET_RSS >> 30} GiB peak RSS")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    entries, biggest = _Ranks(args.nodes, args.ranks_per_node).entries()
    world = args.nodes * args.ranks_per_node
    built = time.perf_counter() - t0
    rss_in = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10  # KiB on Linux
    with tempfile.TemporaryDirectory() as tmp:
        fig = run(entries, world, Path(tmp))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10
    mib = 1 << 20
    print(f"{args.nodes} nodes x {args.ranks_per_node} ranks = {world} ranks, all degraded, --pairwise "
          f"(rank reports built and parsed in {built:.1f} s; largest {biggest / 1024:.1f} KiB)")
    print(f"  aggregate (cluster_report)     {fig['aggregate_s']:7.2f} s")
    print(f"  outputs (JSON, JUnit, prom, text) {fig['outputs_s']:4.2f} s")
    print(f"  total                          {fig['total_s']:7.2f} s   (target <= {TARGET_S:g} s; "
          f"CPU time {fig['cpu_s']:.2f} s: the wall time on a machine others share is more)")
    print(f"  peak RSS                       {rss / mib:7.0f} MiB (after the reports were received: "
          f"{rss_in / mib:.0f} MiB; target <= {TARGET_RSS // mib} MiB)")
    for name, size in fig["sizes"].items():
        print(f"  {name:<30} {size / mib:7.1f} MiB")
    print(f"  text report                    {fig['text_bytes'] / mib:7.1f} MiB")
    print(f"  Prometheus series              {fig['prom_series']:7d}")
    print(f"  verdict {fig['verdict']} on {fig['nodes']} nodes, exit {fig['exit']}"
          + (f"; {fig['errors']}" if fig["errors"] else ""))
    if args.check and (fig["total_s"] > TARGET_S or rss > TARGET_RSS):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
