"""Benchmark (issue 16): the collectives harness against direct loops, and the NVML watcher's
cost on a GEMM, in one run.

collectives  Two gloo ranks (CPU; NCCL ranks with --device cuda) run, per collective and per
             round, envcheck.validate.checks.collectives.measure at one size (its checked call,
             progress marks, barrier, timed loop, verification) and a bare loop of the same
             torch.distributed call on the same buffers (same warm-up and iteration count,
             barrier, time = the slowest rank's). Rounds interleave the two; each side keeps
             its best. Target: the harness's time is within 5 % of the direct loop's.
watcher      One process times fp32 GEMMs (``--gemm-n``) for ``--seconds`` with the watcher
             off and on, interleaved. Without a GPU the watcher samples the time-scripted fake
             NVML of tests/fixtures (2 GPUs, all counters) at the runner's interval, in the
             GEMM's own process: a harder case than a real run, where the watcher lives in the
             runner process and the GEMM in a worker. Target: <= 2 % of GEMM throughput.

The machine may be shared: read the figures as upper bounds of the overhead.

    python3 bench/collectives_overhead.py [--rounds 3] [--bytes 4194304] [--iters 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_HARNESS = 0.05
TARGET_WATCH = 0.02


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world: int, port: int, device: str, args: dict, out_path: str) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    import torch
    import torch.distributed as dist

    from envcheck.validate.checks import collectives as C
    from envcheck.validate.checks.allreduce import _barrier, rank_device

    dev, backend = rank_device(device, rank)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    size, warmup, iters = int(args["bytes"]), int(args["warmup"]), int(args["iters"])
    results: dict[str, dict[str, list[float]]] = {op: {"harness": [], "direct": []} for op in C.OPS}
    for _ in range(int(args["rounds"])):
        for op in C.OPS:
            got = C.measure(dev, ops=[op], min_bytes=size, max_bytes=size, factor=2, warmup=warmup, iters=iters)
            row = got["ops"][op]["rows"][-1]
            results[op]["harness"].append(row["time_us"])
            c = C._Op(op, row["bytes"], rank, world, dev, None, False)
            for _ in range(warmup):
                c.call()
            _barrier(dev, None)
            t0 = time.perf_counter()
            for _ in range(iters):
                c.call()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t = torch.tensor([(time.perf_counter() - t0) / iters], dtype=torch.float64, device=dev)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            results[op]["direct"].append(round(float(t) * 1e6, 3))
    if rank == 0:
        Path(out_path).write_text(json.dumps(results))
    dist.destroy_process_group()


def bench_collectives(args) -> dict:
    import tempfile

    import torch.multiprocessing as mp

    world = args.world
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "r.json")
        params = {"bytes": args.bytes, "warmup": args.warmup, "iters": args.iters, "rounds": args.rounds}
        mp.spawn(_rank, args=(world, _free_port(), args.device, params, out), nprocs=world, join=True)
        raw = json.loads(Path(out).read_text())
    rows = {}
    for op, r in raw.items():
        h, d = min(r["harness"]), min(r["direct"])
        rows[op] = {"harness_us": h, "direct_us": d, "loss": round(h / d - 1, 4), "rounds": r}
    return rows


def bench_watcher(args) -> dict:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
    import torch

    from envcheck.validate import watch

    torch.set_num_threads(max(1, args.threads))
    n = args.gemm_n
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)

    def gflops(seconds: float) -> float:
        for _ in range(2):
            torch.matmul(a, b, out=out)
        done, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            torch.matmul(a, b, out=out)
            done += 1
        return 2 * n ** 3 * done / (time.perf_counter() - t0) / 1e9

    if args.device == "cuda":
        backend = None  # the real NVML
    else:
        from fake_nvml_watch import scripted

        backend = "fake"
    # CPU cost of the watcher alone (noise-free on a shared machine): CPU seconds per wall second
    handle = watch.begin("cuda", 2, backend=scripted("clean_under_load") if backend == "fake" else None,
                         interval=args.interval)
    if isinstance(handle, str):
        return {"error": handle}
    c0, w0 = time.process_time(), time.perf_counter()
    time.sleep(args.seconds)
    handle.stop()
    cpu_share = (time.process_time() - c0) / (time.perf_counter() - w0)
    off, on, samples = [], [], []
    for _ in range(args.rounds):
        off.append(gflops(args.seconds))
        handle = watch.begin("cuda", 2, backend=scripted("clean_under_load") if backend == "fake" else None,
                             interval=args.interval)
        if isinstance(handle, str):
            return {"error": handle}
        on.append(gflops(args.seconds))
        samples.append(handle.stop()["samples"])
    best_off, best_on = max(off), max(on)
    return {"gflops_off": round(best_off, 3), "gflops_on": round(best_on, 3),
            "loss": round(1 - best_on / best_off, 4), "samples_per_round": samples,
            "cpu_share_alone": round(cpu_share, 5),
            "interval_s": args.interval, "nvml": "fake (tests/fixtures)" if backend == "fake" else "real",
            "rounds": {"off": [round(v, 3) for v in off], "on": [round(v, 3) for v in on]}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--world", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bytes", type=int, default=4 << 20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--gemm-n", type=int, default=512)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--interval", type=float, default=0.25)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args(argv)
    result = {"collectives": bench_collectives(args), "watcher": bench_watcher(args)}
    print(f"collectives at {args.bytes} B, {args.world} ranks ({'gloo' if args.device == 'cpu' else 'nccl'}), "
          f"best of {args.rounds}:")
    for op, r in result["collectives"].items():
        print(f"  {op:<15} harness {r['harness_us']:>10.1f} us  direct {r['direct_us']:>10.1f} us  "
              f"loss {100 * r['loss']:+.1f} %")
    w = result["watcher"]
    if "error" in w:
        print(f"watcher: {w['error']}")
    else:
        print(f"watcher ({w['nvml']} NVML, every {w['interval_s']} s): GEMM {w['gflops_off']:.2f} GFLOPS off, "
              f"{w['gflops_on']:.2f} on: loss {100 * w['loss']:+.2f} %; alone it uses "
              f"{100 * w['cpu_share_alone']:.2f} % of one core")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    missed = [op for op, r in result["collectives"].items() if r["loss"] > TARGET_HARNESS]
    if "loss" in w and w["loss"] > TARGET_WATCH:
        missed.append("watcher")
    if missed:
        print("over target: " + ", ".join(missed))
    return 1 if (missed and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
