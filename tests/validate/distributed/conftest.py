"""Fixtures for the distributed mode's tests."""

from __future__ import annotations

import pytest

# ---- a small cluster report for the renderer tests (built through aggregate, not by hand) ----


def _rank_entry(r, node, tflops=700.0, fail=False):
    return {"rank": r, "local_rank": r % 2, "node_rank": node, "hostname": f"gpu{node:02d}", "error": None,
            "report": {"verdict": "failed" if fail else "certified",
                       "checks": [{"name": "gemm", "status": "pass", "seconds": 1.5, "message": ""},
                                  {"name": "allreduce", "status": "fail" if fail else "pass",
                                   "message": "wrong sum" if fail else ""},
                                  {"name": "compile", "status": "skip", "message": "no C compiler"}],
                       "figures": [{"check": "gemm", "metric": "bf16", "device": "cuda:0",
                                    "value": tflops, "unit": "TFLOPS"}]}}


@pytest.fixture
def cluster_rep() -> dict:
    """2 nodes x 2 ranks (node 1: a straggler GPU and a failed all-reduce) + rank 4 never joined."""
    from envcheck.validate.distributed.aggregate import cluster_report

    entries = [_rank_entry(0, 0), _rank_entry(1, 0), _rank_entry(2, 1, tflops=400.0), _rank_entry(3, 1, fail=True),
               {"rank": 4, "local_rank": None, "node_rank": None, "hostname": None, "report": None,
                "error": "never joined within 60 s"}]
    return cluster_report(entries, world_size=5)
