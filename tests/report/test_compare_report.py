"""envcheck/report/compare.py: exact text for a pair, a fleet and a clean fleet; the JSON shape
(schema envcheck.compare) an HTML renderer draws from."""

from __future__ import annotations

import json

import fleet

from envcheck import compare as cmp
from envcheck.report import compare as render


def nodes(snapshots):
    return [cmp.Node(s["host"]["hostname"], s["host"]["hostname"] + ".json", "snapshot", cmp.facts_of_snapshot(s))
            for s in snapshots]


PAIR = """\
envcheck compare - node-0000 vs node-0001

  FIELD                   node-0000                                        node-0001
PyTorch build
  torch version           2.7.1+cu126                                      2.7.1+cu128
  torch built for CUDA    12.6                                             12.8
  compiled architectures  sm_50, sm_60, sm_70, sm_75, sm_80, sm_86, sm_90  sm_50, sm_60, sm_70, sm_75, sm_80, sm_86, sm_90, sm_100, ...
NCCL
  NCCL (torch's)          2.26.2                                           2.26.5

Verdict: DIFFERENT - 4 fields of weight differ; 48 agree (exit 1)
"""

FLEET = """\
envcheck compare - 9 nodes, majority per field

PyTorch build
  devices torch sees             8 (8 of 9)
                                 7 (1): node-0004
GPUs
  GPUs (NVML)                    8 (8 of 9)
                                 7 (1): node-0004
  GPU models                     8x NVIDIA H100 80GB HBM3 (8 of 9)
                                 7x NVIDIA H100 80GB HBM3 (1): node-0004
NVLink, PCIe, GPUDirect
  NVLink links up/total per GPU  8x 18/18 (8 of 9)
                                 7x 18/18 (1): node-0004
Environment (NCCL_*, CUDA_*, TORCH_*, ...)
  NCCL_IB_DISABLE                unset (8 of 9)
                                 1 (1): node-0007
Doctor findings
  errors and warnings            (none) (8 of 9)
                                 nvidia.gpu-count-unexpected, nvidia.gpus-missing-from-driver (1): node-0004
  infos (not weighed)            (none) (8 of 9)
                                 env.nccl-transport-disabled (1): node-0007

Odd nodes (2 differ in a field of weight)
  node-0004  torch.device_count, gpus.count, gpus.models, interconnect.nvlink, findings.problems
  node-0007  NCCL_IB_DISABLE

Verdict: DIFFERENT - 6 fields of weight differ on 2 nodes; 46 agree (exit 1)
"""


def test_pair_text():
    assert render.to_text(cmp.compare(nodes([fleet.node(0), fleet.node(1, "torch")]))) == PAIR


def test_fleet_text():
    assert render.to_text(cmp.compare(nodes(fleet.fleet(9, {4: "missing_gpu", 7: "nccl_ib"})))) == FLEET


def test_clean_fleet_text_and_colour():
    r = cmp.compare(nodes(fleet.fleet(3)))
    assert render.to_text(r) == ("envcheck compare - 3 nodes, majority per field\n\n"
                                 "Verdict: SAME - 52 fields agree on 3 nodes (exit 0)\n")
    assert "\x1b[" in render.to_text(r, color=True)


def test_many_odd_names_are_shortened():
    plants = {i: "driver" for i in range(1, 10)}
    text = render.to_text(cmp.compare(nodes(fleet.fleet(30, plants))))
    assert ("560.35.03 (9): node-0001, node-0002, node-0003, node-0004, node-0005, node-0006 (+3 more)"
            in text)


def test_fmt():
    assert render.fmt(None) == "-" and render.fmt(None, env=True) == "unset"
    assert render.fmt({"unavailable": "NVML did not start: NVML_ERROR_LIBRARY_NOT_FOUND"}) == "n/a (NVML did not start)"
    assert render.fmt([True, 1.5]) == "yes, 1.5" and render.fmt([]) == "(none)"
    assert render.fmt("x\x1b[31m") == "x?[31m" and len(render.fmt("a" * 200)) == 60


def test_json_shape_for_an_html_renderer():
    r = json.loads(render.to_json(cmp.compare(nodes(fleet.fleet(5, {1: "driver"})))))
    assert set(r) == {"schema", "schema_version", "envcheck_version", "mode", "nodes", "golden", "groups", "fields",
                      "summary"}
    assert (r["schema"], r["schema_version"], r["mode"], r["golden"]) == ("envcheck.compare", 1, "fleet", None)
    assert r["nodes"][1] == {"name": "node-0001", "source": "node-0001.json", "kind": "snapshot",
                             "differs": ["driver.version", "driver.cuda"],
                             "weighty": ["driver.version", "driver.cuda"]}
    assert [g["id"] for g in r["groups"]][:3] == ["driver", "torch", "nccl"]
    row = r["fields"][0]
    assert row == {"key": "driver.version", "group": "driver", "label": "NVIDIA driver", "weight": True,
                   "status": "differs", "reference": "550.90.07", "reference_from": "majority",
                   "values": [{"value": "550.90.07", "count": 4},
                              {"value": "560.35.03", "count": 1, "nodes": ["node-0001"]}],
                   "odd_nodes": ["node-0001"], "unknown_nodes": []}
    assert r["summary"] == {"nodes": 5, "fields": 52, "differing_fields": 2, "weighty_fields": 2, "odd_nodes": 1,
                            "exit_code": 1}
