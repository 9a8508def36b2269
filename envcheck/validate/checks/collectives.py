"""collectives: all-gather, reduce-scatter, all-to-all and broadcast, exact, with busbw per size.

The collectives FSDP (all-gather of parameters, reduce-scatter of gradients) and expert /
tensor parallelism (all-to-all) use. :func:`measure` is the per-rank body and runs in any
initialised process group (the local ranks started by :func:`run` through
:func:`allreduce.launch`, or a torchrun/srun job). Per collective and size: one checked
call, ``warmup`` + ``iters`` timed calls on the same buffers, then the output is checked
again; every element is compared with the integer value it must hold.

Payloads are float32 integers below 2^24, exact in float32 (element i of source a is
``(a * 7919 + i) % 65521``, with a encoding the sending rank and, for all-to-all, the
destination; reduce-scatter sums ``1 + (r + i) % K`` like the all-reduce check, exact at any world size), so a
missing, doubled or misplaced block shows in the elements it touches.

Sizes and bandwidths follow nccl-tests (doc/PERFORMANCE.md): S is the total array in bytes
(all-gather: the gathered output, ``sendcount x n``; reduce-scatter: the input,
``recvcount x n``; all-to-all: each rank's send buffer; broadcast: the buffer), algbw =
S / t (GB = 1e9), busbw = algbw x (n-1)/n for all-gather, reduce-scatter and all-to-all, x 1
for broadcast. The time of a size is the slowest rank's. A collective the backend does not
implement (an error saying so on its first call) is skipped with that reason.
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable

from envcheck.validate import faults
from envcheck.validate.checks import CheckContext
from envcheck.validate.config import human_bytes
from envcheck.validate.config import sizes as size_ladder
from envcheck.validate.results import FAIL, PASS, CheckResult

OPS = ("all_gather", "reduce_scatter", "all_to_all", "broadcast")
_PRIME = 65521  # payload values stay below 2^16, far inside float32's exact integers


def bus_factor(op: str, n: int) -> float:
    """nccl-tests' bus-bandwidth factor of ``op`` for ``n`` ranks (doc/PERFORMANCE.md)."""
    if op == "broadcast":
        return 1.0
    return (n - 1) / n if n > 0 else 0.0


def op_sizes(min_bytes: int, max_bytes: int, factor: int, n: int) -> list[int]:
    """The ladder of total sizes S, each rounded down to a whole float32 element per rank."""
    unit = 4 * n
    out = []
    for s in size_ladder(min_bytes, max_bytes, factor):
        s = (s // unit) * unit
        if s and s not in out:
            out.append(s)
    return out


_UNSUPPORTED = re.compile(r"not supported|unsupported|not implemented|does not support", re.IGNORECASE)


def unsupported(error: BaseException) -> str | None:
    """The reason when ``error`` says the backend lacks the collective, else None."""
    text = str(error).strip().splitlines()
    first = text[0] if text else type(error).__name__
    return first[:200] if _UNSUPPORTED.search(str(error)) else None


# --------------------------------------------------------------------------- per rank


def _values(base, count: int, device):
    """float32 ``(base * 7919 + i) % 65521`` for i < count; ``base`` an int or an int64 tensor."""
    import torch

    i = torch.arange(count, dtype=torch.int64, device=device)
    return (i + base * 7919).remainder_(_PRIME).to(torch.float32)


def _blocks(n: int, chunk: int, device, dest: int | None = None):
    """n blocks of ``chunk`` values, block b from source b (all-gather) or b -> dest (all-to-all)."""
    import torch

    src = torch.arange(n, dtype=torch.int64, device=device).repeat_interleave(chunk)
    if dest is not None:
        src = src * n + dest
    i = torch.arange(chunk, dtype=torch.int64, device=device).repeat(n)
    return (i + src * 7919).remainder_(_PRIME).to(torch.float32)


class _Op:
    """Buffers, the call and the expected output of one collective at one size."""

    def __init__(self, op: str, size: int, rank: int, n: int, device, group, corrupt: bool):
        import torch
        import torch.distributed as dist

        from envcheck.validate.checks.allreduce import expected_sum, pattern_modulus

        self.op, self.size = op, size
        chunk = size // 4 // n
        count = size // 4
        if op == "all_gather":
            self.inp = _values(rank, chunk, device)
            self.out = torch.zeros(count, device=device)
            self.expected = _blocks(n, chunk, device)
            # torch 2.13 deprecates all_gather_into_tensor for all_gather_single (same arguments);
            # the deprecated name warns through Python on every call, inside the timed loop
            ag = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
            self.call = lambda: ag(self.out, self.inp, group=group)
        elif op == "reduce_scatter":
            m = pattern_modulus(n)
            j = torch.arange(count, dtype=torch.int64, device=device)
            self.inp = (j + rank).remainder_(m).add_(1).to(torch.float32)
            self.out = torch.zeros(chunk, device=device)
            mine = j[rank * chunk:(rank + 1) * chunk]
            self.expected = expected_sum(n, mine, m).to(torch.float32)
            # torch 2.13 deprecates reduce_scatter_tensor for reduce_scatter_single (same arguments)
            rs = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
            self.call = lambda: rs(self.out, self.inp, group=group)
        elif op == "all_to_all":
            # block d of my input goes to rank d: its values encode (me, d)
            dests = torch.arange(n, dtype=torch.int64, device=device).repeat_interleave(chunk)
            i = torch.arange(chunk, dtype=torch.int64, device=device).repeat(n)
            self.inp = (i + (rank * n + dests) * 7919).remainder_(_PRIME).to(torch.float32)
            self.out = torch.zeros(count, device=device)
            self.expected = _blocks(n, chunk, device, dest=rank)
            self.call = lambda: dist.all_to_all_single(self.out, self.inp, group=group)
        elif op == "broadcast":
            self.expected = _values(12345, count, device)
            self.out = self.expected.clone() if rank == 0 else torch.zeros(count, device=device)
            self.inp = None
            root = dist.get_global_rank(group, 0) if group is not None else 0
            self.call = lambda: dist.broadcast(self.out, root, group=group)
        else:
            raise ValueError(f"unknown collective {op!r}")
        if corrupt:
            target = self.inp if self.inp is not None else self.out
            target[target.numel() // 2] += 1.0

    def wrong(self) -> tuple[int, int | None]:
        bad = self.out != self.expected
        n_bad = int(bad.sum())
        return n_bad, (int(bad.nonzero()[0, 0]) if n_bad else None)


def measure(device, *, ops=OPS, min_bytes: int = 1024, max_bytes: int = 1 << 24, factor: int = 4,
            warmup: int = 5, iters: int = 20, group=None, mark: Callable[[str], None] | None = None,
            memory_share: int = 8, per_rank: bool = False) -> dict[str, Any]:
    """Checked and timed ladder of each collective in an initialised process group.

    Every rank of ``group`` calls it with the same arguments and gets the same rows (times
    reduced with MAX, wrong counts with SUM). The largest size is lowered to ``free memory /
    memory_share`` of the most constrained rank (input, output and expected buffers).
    ``per_rank``: rows also name the ranks whose output was wrong (``wrong_ranks``, one more
    all-gather per size; the distributed mode's rank child, where the rank is a host's GPU).
    """
    import torch
    import torch.distributed as dist

    from envcheck.validate.checks.allreduce import _barrier, _free_bytes
    from envcheck.validate.timing import sync

    device = torch.device(device)
    rank, n = dist.get_rank(group), dist.get_world_size(group)
    say = mark or (lambda _text: None)
    fault = faults.active("collectives", "wrong")
    cap = torch.tensor([min(int(max_bytes), _free_bytes(device) // memory_share)], dtype=torch.int64, device=device)
    dist.all_reduce(cap, op=dist.ReduceOp.MIN, group=group)
    ladder = op_sizes(min_bytes, int(cap.item()), factor, n)
    results: dict[str, Any] = {}
    for op in ops:
        rows: list[dict[str, Any]] = []
        skipped = None
        for size in ladder:
            corrupt = (fault is not None and rank == int(fault.get("rank", 1))
                       and op == fault.get("op", op) and size == ladder[0])
            c = _Op(op, size, rank, n, device, group, corrupt)
            label = f"{op} ({human_bytes(size)})"
            say(f"entering {label}, checked")
            try:
                c.call()
            except RuntimeError as exc:
                skipped = unsupported(exc)
                if skipped is None:
                    raise
                break
            sync(device)
            wrong, first = c.wrong()
            say(f"entering {label}, {warmup}+{iters} timed")
            for _ in range(warmup):
                c.call()
            _barrier(device, group)
            t0 = time.perf_counter()
            for _ in range(iters):
                c.call()
            sync(device)
            elapsed = time.perf_counter() - t0
            after, _ = c.wrong()
            say(f"finished {label}")
            stats = torch.tensor([elapsed / max(1, iters), float(wrong + after)], dtype=torch.float64, device=device)
            dist.all_reduce(stats[:1], op=dist.ReduceOp.MAX, group=group)
            dist.all_reduce(stats[1:], op=dist.ReduceOp.SUM, group=group)
            sec = float(stats[0])
            algbw = size / sec / 1e9 if sec > 0 else None
            rows.append({"bytes": size, "time_us": round(sec * 1e6, 3),
                         "algbw_GBps": None if algbw is None else round(algbw, 4),
                         "busbw_GBps": None if algbw is None else round(algbw * bus_factor(op, n), 4),
                         "wrong": int(stats[1]), "first_wrong_index": first if wrong else None})
            if per_rank:
                rows[-1]["wrong_ranks"] = _wrong_ranks(wrong + after, device, group)
            del c
        results[op] = ({"skipped": skipped} if skipped else
                       {"rows": rows, "wrong": sum(r["wrong"] for r in rows)})
    return {"world_size": n, "ops": results, "max_bytes": ladder[-1] if ladder else 0}


def _wrong_ranks(local_wrong: int, device, group) -> list[int]:
    """The ranks of ``group`` (global rank numbers) whose own output had wrong elements."""
    import torch
    import torch.distributed as dist

    mine = torch.tensor([local_wrong], dtype=torch.int64, device=device)
    every = [torch.zeros_like(mine) for _ in range(dist.get_world_size(group))]
    dist.all_gather(every, mine, group=group)
    ranks = dist.get_process_group_ranks(group) if group is not None else list(range(len(every)))
    return [ranks[i] for i, t in enumerate(every) if int(t.item())]


def _measure_body(device, params: dict[str, Any], mark: Callable[[str], None]) -> dict[str, Any]:
    return measure(device, ops=params["ops"], min_bytes=int(params["min_bytes"]),
                   max_bytes=int(params["max_bytes"]), factor=int(params["factor"]),
                   warmup=int(params["warmup"]), iters=int(params["iters"]), mark=mark)


def rank_main(argv: list[str] | None = None,
              body: Callable[[Any, dict[str, Any], Callable[[str], None]], dict[str, Any]] | None = None) -> int:
    """One local rank (``python -m envcheck.validate.checks.collectives``), started by
    allreduce.launch with the all-reduce ranks' arguments and store protocol (allreduce.rank_main);
    ``body(device, params, mark)`` is the work (default: :func:`measure`; the ddp check passes its own)."""
    from envcheck.validate.checks.allreduce import rank_main as store_rank_main

    return store_rank_main(argv, body or _measure_body)


def summarize(out: dict[str, Any]) -> tuple[dict[str, Any], list[str], list[str]]:
    """(metrics, problems, skipped notes) from one rank's result (pure)."""
    metrics: dict[str, Any] = {}
    problems, skipped = [], []
    for op, res in (out.get("ops") or {}).items():
        if "skipped" in res:
            metrics[f"{op}_skipped"] = res["skipped"]
            skipped.append(f"{op} skipped: {res['skipped']}")
            continue
        rows = res.get("rows") or []
        last = rows[-1] if rows else {}
        metrics[f"{op}_busbw_GBps"] = last.get("busbw_GBps")
        metrics[f"{op}_wrong"] = res.get("wrong", 0)
        if res.get("wrong"):
            bad = next(r for r in rows if r["wrong"])
            problems.append(f"{op}: {res['wrong']} wrong element(s), first at {human_bytes(bad['bytes'])} "
                            f"(index {bad['first_wrong_index']} on rank 0's output)"
                            if bad.get("first_wrong_index") is not None else
                            f"{op}: {res['wrong']} wrong element(s), first at {human_bytes(bad['bytes'])}")
    return metrics, problems, skipped


def run(ctx: CheckContext) -> CheckResult:
    from envcheck.validate.checks.allreduce import _describe_failure, launch_ranks

    faults.at_start("collectives")
    cfg, p = ctx.config, ctx.params
    world = cfg.world_size
    ops = [o for o in p.get("ops", OPS) if o in OPS]
    n_sizes = len(op_sizes(int(p["min_bytes"]), int(p["max_bytes"]), int(p["factor"]), world))
    params = {"ops": ops, "min_bytes": int(p["min_bytes"]), "max_bytes": int(p["max_bytes"]),
              "factor": int(p["factor"]), "warmup": int(p["warmup"]), "iters": int(p["iters"]),
              # launch's progress counts 4 marks per size (3 here per op and size)
              "n_sizes": max(1, (3 * n_sizes * len(ops)) // 4)}
    result, metrics, details = launch_ranks(world, cfg, params, ctx.progress,
                                            module="envcheck.validate.checks.collectives")
    if not result["ok"]:
        msg = _describe_failure(result, world, float(cfg.timeout)).replace("all-reduce", "collectives", 1)
        return CheckResult("collectives", FAIL, metrics, msg, details=details,
                           error={"kind": "hang" if result["hung"] is not None else "rank_failed",
                                  "type": "CollectiveFailure", "message": "", "traceback": ""})
    r0 = result["results"][0]
    details["ops"] = r0["ops"]
    m, problems, skipped = summarize(r0)
    metrics.update(m)
    metrics["max_bytes"] = r0["max_bytes"]
    if problems:
        return CheckResult("collectives", FAIL, metrics, "; ".join(problems + skipped), details=details)
    ran = [o for o in ops if "rows" in r0["ops"].get(o, {})]
    if not ran:
        return CheckResult("collectives", FAIL, metrics, f"{metrics['backend']} supports none of {', '.join(ops)}: "
                           + "; ".join(skipped), details=details)
    bw = ", ".join(f"{o} {metrics[f'{o}_busbw_GBps'] or 0:.2f}" for o in ran)
    single = " (single rank: busbw is 0 by nccl-tests' formula)" if world == 1 else ""
    msg = (f"{world} rank(s) over {metrics['backend']}: {', '.join(ran)} exact at every size up to "
           f"{human_bytes(r0['max_bytes'])}; busbw GB/s at the largest: {bw}{single}")
    return CheckResult("collectives", PASS, metrics, "; ".join([msg] + skipped), details=details)


if __name__ == "__main__":
    from envcheck.proc import exit_now

    exit_now(rank_main())
