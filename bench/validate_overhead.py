"""Benchmark: validate's GEMM and all-reduce figures against a direct timed loop, in one run.

For each round (``--rounds``, interleaved so a noisy neighbour hurts both sides alike):

  validate   envcheck validate --checks gemm,allreduce --format json   (the real CLI path:
             worker process, ring of outputs, bit-exact compares between timed blocks,
             progress marks in the store between collectives)
  direct     the same operations in a bare loop: for GEMM one output buffer, ``warmup`` untimed
             products then ``iters`` timed ones between two synchronisations; for the
             all-reduce the same ranks (gloo on CPU, NCCL on GPUs), same sizes, same warm-up
             and iteration counts, time = the slowest rank's

Sizes, dtypes, warm-up and iteration counts are read from validate's own report, so both sides
do the same work. Each side keeps its best round (highest TFLOPS, lowest time): the harness
overhead is what is left when the noise is taken out. Target (issue 4): validate loses <= 5 %
on every GEMM dtype and on the all-reduce sizes >= 1 MiB whose timed block lasts at least
``--block-s`` (smaller ones are shown for information).

Blocks long enough to judge 5 %: on a shared 2-core host a 17 ms block (the standard profile's
10 CPU bf16 products) varied by 10-24 % between runs (issue 9). validate therefore runs its
GEMM for a duration (``--profile burn-in --duration``, split over the dtypes), so every dtype's
timed products last about ``--gemm-seconds`` (default 0.75 s), and the direct loop times the
same number of products in one block. The all-reduce keeps validate's iteration counts; a size
is judged only when its timed block (iterations x time) lasts ``--block-s`` (0.5 s) or more.

    python3 bench/validate_overhead.py [--rounds 3] [--gemm-seconds 0.75] [--json out.json] [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.05
ALLREDUCE_JUDGED_MIN = 1 << 20


GEMM_DTYPES = 4  # fp32, tf32, bf16, fp16: validate splits the GEMM time over all of them


def _env() -> dict[str, str]:
    sys.path.insert(0, str(ROOT))
    from envcheck.validate import procs

    env = procs.child_env("cpu")
    env.pop("ENVCHECK_FAULT", None)
    return env


def run_validate(gemm_seconds: float, extra: list[str]) -> dict:
    # burn-in gives the GEMM two thirds of --duration (validate/config.py), split over the dtypes.
    duration = gemm_seconds * GEMM_DTYPES * 1.5
    out = subprocess.run([sys.executable, "-m", "envcheck", "validate", "--checks", "gemm,allreduce",
                          "--profile", "burn-in", "--duration", f"{duration:g}", "--format", "json", *extra],
                         capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=1800)
    doc = json.loads(out.stdout)
    bad = [c for c in doc["checks"] if c["status"] != "pass"]
    if bad:
        raise SystemExit(f"validate did not pass: {bad}")
    return doc


# ---------------------------------------------------------------------------- direct loops

_GEMM = r"""
import json, sys, time, torch
spec = json.loads(sys.argv[1])
dev = torch.device(spec["device"])
out = {}
for dt, row in spec["dtypes"].items():
    tdtype = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dt]
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = dt == "tf32"
    n = row["n"]
    g = torch.Generator(device=dev).manual_seed(1234)
    a = torch.randn(n, n, generator=g, device=dev).to(tdtype)
    b = torch.randn(n, n, generator=g, device=dev).to(tdtype)
    c = torch.empty(n, n, device=dev, dtype=tdtype)
    for _ in range(spec["warmup"]):
        torch.matmul(a, b, out=c)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    for _ in range(row["products"]):
        torch.matmul(a, b, out=c)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    sec = time.perf_counter() - t0
    out[dt] = 2.0 * n ** 3 * row["products"] / sec / 1e12
print(json.dumps(out))
"""

_RANK = r"""
import json, sys, time, datetime, torch, torch.distributed as dist
spec = json.loads(sys.argv[1]); rank = int(sys.argv[2])
cuda = spec["device"] == "cuda"
if cuda:
    dev = torch.device("cuda", rank); torch.cuda.set_device(dev)
else:
    dev = torch.device("cpu"); torch.set_num_threads(1)
dist.init_process_group("nccl" if cuda else "gloo", init_method=f"tcp://127.0.0.1:{spec['port']}",
                        rank=rank, world_size=spec["world"], timeout=datetime.timedelta(seconds=300))
def sync():
    if cuda: torch.cuda.synchronize(dev)
buf = torch.zeros(max(spec["sizes"]) // 4, device=dev)
times = {}
for size in spec["sizes"]:
    t = buf[: size // 4]
    for _ in range(spec["warmup"]):
        dist.all_reduce(t)
    sync(); dist.all_reduce(torch.zeros(1, device=dev)); sync()
    t0 = time.perf_counter()
    for _ in range(spec["iters"]):
        dist.all_reduce(t)
    sync()
    x = torch.tensor([(time.perf_counter() - t0) / spec["iters"]], dtype=torch.float64, device=dev)
    dist.all_reduce(x, op=dist.ReduceOp.MAX)
    times[size] = float(x)
if rank == 0:
    print(json.dumps(times))
dist.destroy_process_group()
"""


def direct_gemm(device: str, rows: dict, warmup: int) -> dict:
    spec = {"device": device, "warmup": warmup, "dtypes": rows}
    out = subprocess.run([sys.executable, "-c", _GEMM, json.dumps(spec)], capture_output=True, text=True,
                         env=_env(), timeout=1800)
    if out.returncode:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout)


def direct_allreduce(device: str, world: int, sizes: list[int], warmup: int, iters: int) -> dict[int, float]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = {"device": device, "world": world, "sizes": sizes, "warmup": warmup, "iters": iters, "port": port}
    env = _env()
    env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    ranks = [subprocess.Popen([sys.executable, "-c", _RANK, json.dumps(spec), str(r)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for r in range(world)]
    outs = [p.communicate(timeout=1800) for p in ranks]
    if any(p.returncode for p in ranks):
        raise SystemExit("\n".join(o[1] for o in outs))
    return {int(k): v for k, v in json.loads(outs[0][0]).items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--gemm-seconds", type=float, default=0.75,
                    help="seconds of timed GEMM products per dtype on each side")
    ap.add_argument("--block-s", type=float, default=0.5,
                    help="shortest timed all-reduce block (iterations x time) that is judged")
    ap.add_argument("--json", dest="json_path")
    ap.add_argument("--check", action="store_true", help="exit 1 when an overhead exceeds the target")
    ap.add_argument("validate_args", nargs="*", help="extra validate options, after --")
    args = ap.parse_args()

    best_v_gemm: dict[str, float] = {}
    best_d_gemm: dict[str, float] = {}
    best_v_ar: dict[int, float] = {}
    best_d_ar: dict[int, float] = {}
    setup = None
    t_start = time.time()
    for rnd in range(args.rounds):
        doc = run_validate(args.gemm_seconds, args.validate_args)
        checks = {c["name"]: c for c in doc["checks"]}
        gemm_dev = checks["gemm"]["details"]["devices"][0]
        rows = {dt: {"n": r["n"], "products": r["products"]} for dt, r in gemm_dev["dtypes"].items()
                if r.get("tflops") is not None}
        for dt, r in gemm_dev["dtypes"].items():
            if r.get("tflops") is not None:
                best_v_gemm[dt] = max(best_v_gemm.get(dt, 0.0), r["tflops"])
        opts = doc["options"]
        device = doc["device"]
        from envcheck.validate.config import ValidateConfig

        cfg = ValidateConfig.from_dict(opts)
        gp, ap_ = cfg.check_params("gemm"), cfg.check_params("allreduce")
        ar_rows = checks["allreduce"]["details"]["rows"]
        for r in ar_rows:
            best_v_ar[r["bytes"]] = min(best_v_ar.get(r["bytes"], float("inf")), r["time_us"] * 1e-6)
        d_gemm = direct_gemm(gemm_dev["device"], rows, int(gp["warmup"]))
        for dt, v in d_gemm.items():
            best_d_gemm[dt] = max(best_d_gemm.get(dt, 0.0), v)
        sizes = [r["bytes"] for r in ar_rows]
        d_ar = direct_allreduce(device, int(doc["world_size"]), sizes, int(ap_["warmup"]), int(ap_["iters"]))
        for size, sec in d_ar.items():
            best_d_ar[size] = min(best_d_ar.get(size, float("inf")), sec)
        setup = {"device": device, "world_size": doc["world_size"], "gemm": rows, "gemm_warmup": gp["warmup"],
                 "allreduce_warmup": ap_["warmup"], "allreduce_iters": ap_["iters"], "torch": doc["versions"]["torch"],
                 "host": doc["machine"].get("hostname"), "cpu": doc["machine"].get("cpu")}
        print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr)

    result = {"setup": setup, "rounds": args.rounds, "target_loss": TARGET, "gemm": {}, "allreduce": {},
              "command": " ".join([os.path.basename(sys.executable), *sys.argv]), "seconds": round(time.time() - t_start, 1)}
    worst = 0.0
    print(f"\nvalidate vs direct loop, best of {args.rounds} rounds each ({setup['device']}, torch {setup['torch']})")
    print(f"{'GEMM':<10}{'n':>6}{'validate TFLOPS':>18}{'direct TFLOPS':>16}{'loss':>9}")
    for dt in best_v_gemm:
        v, d = best_v_gemm[dt], best_d_gemm[dt]
        loss = 1 - v / d
        worst = max(worst, loss)
        result["gemm"][dt] = {"n": setup["gemm"][dt]["n"], "validate_tflops": round(v, 4), "direct_tflops": round(d, 4),
                              "loss": round(loss, 4)}
        print(f"{dt:<10}{setup['gemm'][dt]['n']:>6}{v:>18.4f}{d:>16.4f}{100 * loss:>8.1f}%"
              f"   ({setup['gemm'][dt]['products']} products per block)")
    print(f"\n{'all-reduce':<12}{'validate us':>14}{'direct us':>12}{'loss':>9}   "
          f"(judged from 1 MiB with blocks >= {args.block_s:g} s)")
    for size in sorted(best_v_ar):
        v, d = best_v_ar[size], best_d_ar[size]
        loss = 1 - d / v  # bandwidth lost = 1 - t_direct / t_validate
        judged = size >= ALLREDUCE_JUDGED_MIN and d * int(setup["allreduce_iters"]) >= args.block_s
        if judged:
            worst = max(worst, loss)
        result["allreduce"][size] = {"validate_us": round(v * 1e6, 2), "direct_us": round(d * 1e6, 2),
                                     "loss": round(loss, 4), "judged": judged}
        print(f"{size:<12}{v * 1e6:>14.1f}{d * 1e6:>12.1f}{100 * loss:>8.1f}%{'' if judged else '   (info)'}")
    result["worst_loss"] = round(worst, 4)
    ok = worst <= TARGET
    print(f"\nworst judged loss {100 * worst:.1f}% (target <= {100 * TARGET:.0f}%): {'OK' if ok else 'OVER TARGET'}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
