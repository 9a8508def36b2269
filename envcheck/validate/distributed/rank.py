"""One rank of the multi-node all-reduce (``python -m envcheck.validate.distributed.rank PARAMS``).

Started by the distributed mode (envcheck/validate/distributed/mode.py) on every rank of a
torchrun / srun launch, with ``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and ``GROUP_RANK`` (the node) in its environment; it joins the job's process
group through ``env://`` (NCCL on GPUs, on the device the rank was bound to: ``index`` in
PARAMS, among the GPUs it sees; gloo on CPUs) and runs validate's all-reduce ladder (:func:`envcheck.validate.checks.allreduce.sweep`)
twice: across the whole world (inter-node) and inside each node (intra-node busbw, compared
between nodes to find stragglers); with ``--pairwise``, then over node pairs to name a bad
node (:func:`run_pairwise`). It runs in its own process so that a hang or a crash in a
collective can be ended by the supervising rank process, which kills it after ``timeout``
seconds without progress.

Protocol: JSON lines on the original stdout - ``{"event": "mark", "text"}`` before and after
every collective, then ``{"event": "result", "result"}`` or ``{"event": "error", "error"}``.
Libraries' own output goes to stderr.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import timedelta
from typing import Any


def _int_env(name: str, default: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        if default is None:
            raise RuntimeError(f"{name} is not set (the distributed mode sets it)")
        return default
    return int(raw)


def nccl_debug_env(environ) -> str:
    """Ask NCCL for its INIT and NET debug lines (which transport it chose; issue 14 point 3),
    unless the user set NCCL_DEBUG: then their setting stays and what it prints is parsed.
    NCCL reads both variables at its first communicator (NCCL docs, Environment Variables)."""
    if environ.get("NCCL_DEBUG"):
        return "user"
    environ["NCCL_DEBUG"] = "INFO"
    environ["NCCL_DEBUG_SUBSYS"] = "INIT,NET"
    return "envcheck"


def gather_json(obj: Any, device) -> list[Any]:
    """Every rank's JSON-able ``obj``, on every rank, through plain tensor all-gathers (bytes
    padded to the longest): ``all_gather_object`` needs numpy, which torch does not depend on
    (issue 10, class 9)."""
    import torch
    import torch.distributed as dist

    data = json.dumps(obj).encode("utf-8")
    world = dist.get_world_size()
    size = torch.tensor([len(data)], dtype=torch.int64, device=device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    lengths = [int(s.item()) for s in sizes]
    buf = torch.zeros(max(lengths), dtype=torch.uint8, device=device)
    buf[: len(data)] = torch.tensor(list(data), dtype=torch.uint8, device=device)
    out = [torch.zeros_like(buf) for _ in range(world)]
    dist.all_gather(out, buf)
    return [json.loads(bytes(t[:n].tolist()).decode("utf-8")) for t, n in zip(out, lengths)]


def run_pairwise(device, nodes: list[int], opts: dict[str, Any], kw: dict[str, int], mark) -> dict[str, Any]:
    """``--pairwise``: 2-node all-reduces over node pairs, two rounds, then blame a node.

    Every rank calls this with the same ``nodes`` (rank -> node), so every rank plans the same
    pairs and waves; each wave's groups are created by all ranks in the same order (new_group
    is collective), each rank runs its own pair's sweep, and the wave's results are shared with
    :func:`gather_json` so that round 2 is planned from the same facts everywhere.
    """
    import torch.distributed as dist

    from envcheck.validate import faults
    from envcheck.validate.checks.allreduce import sweep
    from envcheck.validate.distributed import pairwise
    from envcheck.validate.errors import backend_message

    world = len(nodes)
    me = nodes[dist.get_rank()]
    node_ids = sorted(set(nodes))
    members = {n: [r for r in range(world) if nodes[r] == n] for n in node_ids}
    max_bytes = int(opts.get("max_bytes") or kw["max_bytes"])
    pkw = dict(kw, max_bytes=max_bytes, min_bytes=max(kw["min_bytes"], max_bytes // 64))
    wrong_f, slow_f = faults.active("pairwise", "wrong"), faults.active("pairwise", "slow")
    raise_f = faults.active("pairwise", "raise")
    corrupt = wrong_f is not None and me == int(wrong_f.get("node", 1))
    delay = float(slow_f.get("ms", 50)) / 1000 if slow_f is not None and me == int(slow_f.get("node", 1)) else 0.0
    # gloo: a pair whose partner failed on its side times out at half the stall timeout, so the
    # failure is a pair result and the run goes on (the supervisor kills the child after a full
    # timeout without progress). NCCL's watchdog would abort the process instead: default there.
    group_kw = ({"timeout": timedelta(seconds=max(5.0, float(opts.get("timeout", 120)) / 2))}
                if device.type == "cpu" else {})

    def run_round(pairs: list[tuple[int, int]], label: str) -> list[dict[str, Any]]:
        mark(label)
        done: dict[tuple[int, int], dict[str, Any]] = {}
        for w, wave in enumerate(pairwise.waves(pairs)):
            groups = [dist.new_group(sorted(members[a] + members[b]), **group_kw) for a, b in wave]
            mine: dict[str, Any] | None = None
            for (a, b), group in zip(wave, groups):
                if me not in (a, b):
                    continue
                mark(f"{label} wave {w + 1}: nodes {a}+{b}")
                t0 = time.perf_counter()
                try:
                    if raise_f is not None and me == int(raise_f.get("node", 1)):
                        raise RuntimeError("injected fault: pairwise.raise")
                    out = sweep(device, group=group, mark=mark, corrupt=corrupt, delay_s=delay, **pkw)
                    last = out["rows"][-1] if out["rows"] else {}
                    mine = {"pair": [a, b], "busbw_GBps": last.get("busbw_GBps"), "bytes": last.get("bytes"),
                            "wrong": int(out.get("wrong") or 0), "error": None}
                except Exception as exc:  # noqa: BLE001 - a failed pair is a result, not the end
                    text = backend_message(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
                    mine = {"pair": [a, b], "busbw_GBps": None, "bytes": None, "wrong": 0,
                            "error": f"{type(exc).__name__}: {text[:300]}"}
                mine["seconds"] = round(time.perf_counter() - t0, 3)
            for item in gather_json(mine, device):
                if item is None:
                    continue
                key = (int(item["pair"][0]), int(item["pair"][1]))
                prev = done.get(key)
                # A pair's ranks agree on the figures (MAX/SUM-reduced); an error on any rank wins,
                # and different errors are all kept (the cause and its partner's timeout).
                if prev is None or (item["error"] and not prev["error"]):
                    done[key] = item
                elif item["error"] and item["error"] not in prev["error"]:
                    prev["error"] = f"{prev['error']} / {item['error']}"
        return [done[p] for p in pairs if p in done]

    result = pairwise.run(node_ids, run_round, float(opts.get("threshold", 0.10)))
    result["max_bytes"] = max_bytes
    return result


def pairwise_summary(pw: dict[str, Any]) -> dict[str, Any]:
    """What a rank other than 0 says of --pairwise: how many node pairs ran and passed."""
    runs = [m for r in pw.get("rounds") or [] for m in r]
    return {"pairs": len(runs), "passed": sum(1 for m in runs if m.get("passed")), "skipped": pw.get("skipped"),
            "table": "sent by rank 0"}


def consensus_digest(device, rank: int, mark) -> dict[str, Any]:
    """Issue 17: this rank's digest of the fixed computation (an error is sent, not raised)."""
    from envcheck.validate.distributed import consensus

    mark("consensus computation")
    try:
        return consensus.compute(device, rank)
    except Exception as exc:  # noqa: BLE001 - no digest is no vote, not a failed all-reduce
        return {"error": f"{type(exc).__name__}: {str(exc).strip()[:300]}"}


def run_span(device, span: dict[str, Any], mark) -> dict[str, Any]:
    """The collectives and ddp checks across the job's whole process group (issue 16 point 4),
    after the world all-reduce: ``span`` holds each selected check's parameters. A check that
    raises is that check's error; the next one still runs."""
    from envcheck.validate.errors import backend_message

    out: dict[str, Any] = {}
    for name in ("collectives", "ddp"):
        if name not in span:
            continue
        p = span[name]
        mark(f"{name} (all ranks)")
        try:
            if name == "collectives":
                from envcheck.validate.checks.collectives import measure

                out[name] = measure(device, ops=p["ops"], min_bytes=int(p["min_bytes"]),
                                    max_bytes=int(p["max_bytes"]), factor=int(p["factor"]),
                                    warmup=int(p["warmup"]), iters=int(p["iters"]), mark=mark, per_rank=True)
            else:
                from envcheck.validate.checks.ddp import train

                out[name] = train(device, p, int(p["seed"]), mark)
        except Exception as exc:  # noqa: BLE001 - this check's failure, reported in its result
            text = str(exc).strip()
            out[name] = {"error": f"{type(exc).__name__}: {backend_message(text.splitlines()[0][:300] if text else '')}"}
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    params: dict[str, Any] = json.loads(argv[0])
    events = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything torch or NCCL prints goes to stderr

    def emit(**event: Any) -> None:
        events.write(json.dumps(event, default=str) + "\n")
        events.flush()

    def mark(text: str) -> None:
        emit(event="mark", text=text)

    try:
        import torch
        import torch.distributed as dist

        from envcheck.validate.checks.allreduce import rank_device, sweep

        rank, world = _int_env("RANK"), _int_env("WORLD_SIZE")
        local_rank, node = _int_env("LOCAL_RANK", 0), _int_env("GROUP_RANK", 0)
        timeout = timedelta(seconds=float(params["timeout"]) + 30)
        mark("started")
        device, backend = rank_device(params["device"], int(params.get("index", local_rank)))
        nccl_debug = nccl_debug_env(os.environ) if backend == "nccl" else None
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world, timeout=timeout)
        mark("joined the process group")
        kw = {k: int(params[k]) for k in ("max_bytes", "min_bytes", "factor", "warmup", "iters")}
        result: dict[str, Any] = {"backend": backend, "world": sweep(device, mark=mark, **kw),
                                  "nccl_debug": nccl_debug}
        nodes = [int(n) for n in gather_json(node, device)]
        node_ids = sorted(set(nodes))
        result["num_nodes"] = len(node_ids)
        if len(node_ids) > 1:
            # Every rank creates every group, in the same order (new_group is collective).
            groups = {n: dist.new_group([r for r in range(world) if nodes[r] == n]) for n in node_ids}
            mine = groups[node]
            if dist.get_world_size(mine) > 1:
                mark("intra-node sweep")
                result["intranode"] = sweep(device, group=mine, mark=mark, **kw)
        if params.get("pairwise"):
            pw = run_pairwise(device, nodes, {**params["pairwise"], "timeout": params["timeout"]}, kw, mark)
            # Every rank computed the same table: rank 0 sends it, the others a count (issue 10, class 11).
            result["pairwise" if rank == 0 else "pairwise_summary"] = pw if rank == 0 else pairwise_summary(pw)
        result["consensus"] = consensus_digest(device, rank, mark)
        if params.get("span"):
            result["span"] = run_span(device, params["span"], mark)
        if device.type == "cuda":
            result["nccl_version"] = ".".join(str(v) for v in torch.cuda.nccl.version())
            result["device_name"] = torch.cuda.get_device_name(device)
        dist.destroy_process_group()
        mark("done")
        emit(event="result", result=result)
        return 0
    except Exception as exc:  # noqa: BLE001 - reported to the supervising process
        text = str(exc).strip()
        emit(event="error", error=f"{type(exc).__name__}: {text.splitlines()[0][:500] if text else ''}")
        return 1


if __name__ == "__main__":
    from envcheck.proc import exit_now

    exit_now(main())  # no interpreter teardown: its cost is paid per check otherwise
