"""envcheck compare (issue 17 part 1): facts by group, the odd node out in 2 and 200 synthetic
snapshots with planted differences, golden round trip, bad input, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import fleet
import pytest
from click.testing import CliRunner

from envcheck import compare as cmp
from envcheck import exitcodes
from envcheck import snapshot as snap
from envcheck.cli import cli

PLANTED = {3: "driver", 50: "nccl_ib", 120: "missing_gpu", 199: "torch"}
EXPECTED_FIELDS = {
    "driver": {"driver.version", "driver.cuda"},
    "nccl_ib": {"env.NCCL_IB_DISABLE"},
    "missing_gpu": {"gpus.count", "gpus.models", "torch.device_count", "interconnect.nvlink",
                    "findings.problems"},
    "torch": {"torch.version", "torch.cuda", "torch.arch_list", "nccl.version"},
}


def run(*args: str):
    return CliRunner().invoke(cli, list(args), env={"NO_COLOR": None, "FORCE_COLOR": None},
                              catch_exceptions=False, prog_name="envcheck")


def nodes_of(snapshots: list[dict]) -> list[cmp.Node]:
    return [cmp.Node(s["host"]["hostname"], f"{s['host']['hostname']}.json", "snapshot",
                     cmp.facts_of_snapshot(s)) for s in snapshots]


# ------------------------------------------------------------------------------ facts

def test_facts_of_the_key_contract_example():
    f = cmp.facts_of_snapshot(fleet.base())
    assert f["driver.version"] == "550.90.07" and f["driver.cuda"] == "12.4"
    assert f["torch.version"] == "2.7.1+cu126" and f["nccl.version"] == "2.26.2" and f["cudnn.version"] == 90501
    assert f["gpus.models"] == ["8x NVIDIA H100 80GB HBM3"] and f["gpus.count"] == 8 and f["gpus.pci_count"] == 8
    assert f["interconnect.nvlink"] == ["8x 18/18"] and f["interconnect.pcie_max"] == ["gen5 x16"]
    assert f["env.NCCL_DEBUG"] == "WARN" and "env.OMP_NUM_THREADS" in f
    assert f["findings.problems"] == [] and f["os.kernel"] == "5.15.0-112-generic"
    assert "firmware.vbios" not in f  # not probed: unknown, never "missing"
    # volatile facts are not compared at all
    assert not any(k for k in f if "temperature" in k or "used" in k or "created" in k or "hostname" in k)


def test_arch_list_sorts_naturally_and_vbios_is_read_when_present():
    s = fleet.base()
    s["torch"]["arch_list"] = ["sm_100", "sm_90", "sm_80"]
    for g in s["nvidia"]["gpus"]:
        g["vbios_version"] = "96.00.89.00.01"
    f = cmp.facts_of_snapshot(s)
    assert f["torch.arch_list"] == ["sm_80", "sm_90", "sm_100"]
    assert f["firmware.vbios"] == ["96.00.89.00.01"]


def test_snapshot_without_nvml_or_torch_still_compares():
    s = json.loads((Path(fleet.EXAMPLE).parent / "all_unavailable.json").read_text())
    f = cmp.facts_of_snapshot(s)
    assert f["gpus.models"] == [] and "torch.status" in f


# ------------------------------------------------------------------------------ two machines

def test_two_machines_side_by_side():
    a, b = fleet.node(0), fleet.node(1, "driver")
    r = cmp.compare(nodes_of([a, b]))
    assert r["mode"] == "pair"
    differ = [x["key"] for x in r["fields"] if x["status"] == "differs"]
    assert differ == ["driver.version", "driver.cuda"]
    row = next(x for x in r["fields"] if x["key"] == "driver.version")
    assert row["reference"] is None and row["odd_nodes"] == []
    assert [(v["value"], v["nodes"]) for v in row["values"]] == [("550.90.07", ["node-0000"]),
                                                                   ("560.35.03", ["node-0001"])]
    assert r["summary"]["exit_code"] == 1


def test_two_identical_machines_differ_only_cosmetically():
    r = cmp.compare(nodes_of([fleet.node(0), fleet.node(1)]))  # other hostnames, times, temperatures
    assert r["summary"]["differing_fields"] == 0 and cmp.exit_code(r) == 0


@pytest.mark.parametrize("plant", fleet.PLANTS)
def test_each_planted_difference_between_two(plant):
    r = cmp.compare(nodes_of([fleet.node(0), fleet.node(1, plant)]))
    assert {x["key"] for x in r["fields"] if x["status"] == "differs" and x["weight"]} == EXPECTED_FIELDS[plant]


# ------------------------------------------------------------------------------ a fleet

def test_200_nodes_name_the_odd_ones_and_nothing_else():
    r = cmp.compare(nodes_of(fleet.fleet(200, PLANTED)))
    assert r["mode"] == "fleet" and r["summary"]["nodes"] == 200
    odd = {n["name"]: set(n["weighty"]) for n in r["nodes"] if n["weighty"]}
    assert odd == {f"node-{i:04d}": EXPECTED_FIELDS[p] for i, p in PLANTED.items()}
    for row in r["fields"]:
        if row["status"] == "differs":
            assert row["reference_from"] == "majority"
            assert len(row["odd_nodes"]) == 1 and row["values"][0]["count"] == 199
            assert "nodes" not in row["values"][0]  # the majority is not listed by name
    assert r["summary"]["odd_nodes"] == 4 and cmp.exit_code(r) == 1
    # the NCCL_IB_DISABLE node also raises an info finding: shown, not weighed
    info = next(x for x in r["fields"] if x["key"] == "findings.info")
    assert info["status"] == "differs" and not info["weight"] and info["odd_nodes"] == ["node-0050"]


def test_fleet_tie_has_no_majority():
    r = cmp.compare(nodes_of([fleet.node(0), fleet.node(1), fleet.node(2, "driver"), fleet.node(3, "driver")]))
    row = next(x for x in r["fields"] if x["key"] == "driver.version")
    assert row["status"] == "differs" and row["reference"] is None and row["odd_nodes"] == []
    assert all(row["key"] in n["weighty"] for n in r["nodes"])
    assert cmp.exit_code(r) == 1


def test_unknown_is_not_a_difference():
    """A validate report tells no environment and no kernel modules: those nodes are unknown there."""
    s = fleet.node(0)
    machine = {"hostname": "v1", "driver_version": "550.90.07", "cuda_driver_version": "12.4", "nvml": "ok",
               "gpus": [{"name": "NVIDIA H100 80GB HBM3", "memory_total_bytes": 85520809984,
                         "compute_capability": "9.0"}] * 8,
               "torch": {"status": "ok", "version": "2.7.1+cu126", "cuda": "12.6"}, "python": "3.11.9",
               "kernel": "5.15.0-112-generic", "os": "Ubuntu 22.04.4 LTS", "container": None,
               "cpu": "Intel(R) Xeon(R) Platinum 8480+", "cpu_cores": 224, "ram_bytes": 2164663517184}
    versions = {"torch": "2.7.1+cu126", "cuda": "12.6", "cudnn": 90501, "nccl": "2.26.2", "python": "3.11.9",
                "triton": "3.3.1", "hip": None, "envcheck": "0.1.0"}
    v = cmp.Node("v1", "v1.json", "validate", cmp.facts_of_validate(machine, versions))
    r = cmp.compare(nodes_of([s, fleet.node(1)]) + [v])
    assert r["summary"]["differing_fields"] == 0, [x for x in r["fields"] if x["status"] == "differs"]
    env = next(x for x in r["fields"] if x["key"] == "env.NCCL_DEBUG")
    assert env["unknown_nodes"] == ["v1"]


# ------------------------------------------------------------------------------ golden

def test_golden_round_trip(tmp_path):
    good = fleet.write(tmp_path / "good", [fleet.node(7)])[0]
    golden = tmp_path / "golden.json"
    res = run("compare", "--write-golden", str(golden), str(good))
    assert res.exit_code == 0 and res.stdout == "" and "golden file written" in res.stderr
    doc = json.loads(golden.read_text())
    assert doc["schema"] == "envcheck.golden" and doc["source"] == {"node": "node-0007", "file": "node-0007.json"}
    assert doc["fields"]["driver.version"] == "550.90.07"
    assert not any(k.startswith("host.") for k in doc["fields"])  # host facts do not weigh
    paths = fleet.write(tmp_path / "fleet", fleet.fleet(5, {2: "nccl_ib"}))
    same = run("compare", "--golden", str(golden), *map(str, paths[:2]))
    assert same.exit_code == 0 and "SAME - " in same.stdout
    res = run("compare", "--golden", str(golden), "--format", "json", str(tmp_path / "fleet"))
    assert res.exit_code == 1
    r = json.loads(res.stdout)
    assert r["mode"] == "golden" and r["golden"]["source"]["node"] == "node-0007"
    odd = {n["name"]: n["weighty"] for n in r["nodes"] if n["weighty"]}
    # NCCL_IB_DISABLE was unset on the good node: set elsewhere, it is drift
    assert odd == {"node-0002": ["env.NCCL_IB_DISABLE"]}
    row = next(x for x in r["fields"] if x["key"] == "env.NCCL_IB_DISABLE")
    assert row["reference"] is None and row["reference_from"] == "golden"
    text = run("compare", "--golden", str(golden), str(tmp_path / "fleet")).stdout
    assert text.splitlines()[0] == f"envcheck compare - 5 nodes against {golden} (from node-0007)"
    assert "  NCCL_IB_DISABLE  unset (golden; 4 of 5)" in text
    # the reviewer accepts the variable: "ignore" takes keys or fnmatch patterns
    doc["ignore"] = ["env.NCCL_IB_*"]
    golden.write_text(json.dumps(doc))
    assert run("compare", "--golden", str(golden), str(tmp_path / "fleet")).exit_code == 0


def test_golden_edited_value_accepts_another(tmp_path):
    paths = fleet.write(tmp_path, [fleet.node(0, "driver")])
    g = cmp.golden_doc(nodes_of([fleet.node(9)])[0])
    g["fields"]["driver.version"] = "560.35.03"
    g["fields"]["driver.cuda"] = "12.6"
    (tmp_path / "g.json").write_text(json.dumps(g))
    r = cmp.from_files([str(paths[0])], golden_path=str(tmp_path / "g.json"))
    assert cmp.exit_code(r) == 0


# ------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("content, message", [
    ("{", "is not valid JSON"),
    ('{"schema": "envcheck.snapshot", "schema_version": NaN}', "NaN is not a JSON number"),
    ('{"schema": "something.else"}', "is not an envcheck snapshot, validate report or cluster report"),
    ('{"schema": "envcheck.snapshot", "schema_version": 99, "host": {}}', "newer than the 1"),
    ('{"schema": "envcheck.golden", "schema_version": 1, "fields": {}}', "pass it with --golden"),
    ('{"schema": "envcheck.cluster", "schema_version": 1, "nodes": [{"hostname": "a"}]}',
     "carries no per-node machine facts"),
])
def test_bad_files_exit_2_with_one_line(tmp_path, content, message):
    good = fleet.write(tmp_path / "ok", [fleet.node(0)])[0]
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    res = run("compare", str(good), str(bad))
    assert res.exit_code == exitcodes.USAGE and res.stdout == ""
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("Error: ")]
    assert len(errors) == 1 and message in errors[0]  # Click's usage error: one Error line


def test_bad_usage_exit_2(tmp_path):
    one = fleet.write(tmp_path / "one", [fleet.node(0)])[0]
    two = fleet.write(tmp_path / "two", [fleet.node(1)])[0]
    cases = [
        ((), "give the snapshots to compare"),
        ((str(one),), "needs two or more snapshots"),
        ((str(tmp_path / "missing.json"), str(one)), "cannot read snapshot"),
        (("--write-golden", str(tmp_path / "g.json"), str(one), str(two)), "takes exactly one snapshot"),
        (("--write-golden", str(tmp_path / "g.json"), "--golden", str(one), str(one)), "exclude each other"),
        (("--golden", str(one), str(two)), "is not an envcheck golden file"),
        ((str(tmp_path / "empty_dir"),), "holds no *.json"),
    ]
    (tmp_path / "empty_dir").mkdir()
    for args, message in cases:
        res = run("compare", *args)
        assert res.exit_code == exitcodes.USAGE, (args, res.stdout)
        assert message in res.stderr, (args, res.stderr)


def test_same_hostname_twice_stays_apart(tmp_path):
    a = tmp_path / "a.json"
    b = tmp_path / "b.json"
    a.write_text(json.dumps(fleet.node(0)))
    b.write_text(json.dumps(fleet.node(0, "driver")))
    r = json.loads(run("compare", "--format", "json", str(a), str(b)).stdout)
    assert [n["name"] for n in r["nodes"]] == ["node-0000 (a.json)", "node-0000 (b.json)"]


def test_hostile_hostname_is_neutralised(tmp_path):
    s = fleet.node(0, "driver")
    s["host"]["hostname"] = "evil\x1b]0;pwned\x07host"
    paths = fleet.write(tmp_path, [fleet.node(1)])
    (tmp_path / "evil.json").write_text(json.dumps(s))
    res = run("compare", str(paths[0]), str(tmp_path / "evil.json"))
    assert "\x1b" not in res.stdout and "\x07" not in res.stdout and "evil?]0;pwned?host" in res.stdout


def test_hostname_missing_falls_back_to_the_file_name(tmp_path):
    s = fleet.node(0)
    s["host"]["hostname"] = snap.na("no permission")
    (tmp_path / "rack3-slot4.json").write_text(json.dumps(s))
    nodes = cmp.load_file(tmp_path / "rack3-slot4.json")
    assert nodes[0].name == "rack3-slot4"


# ------------------------------------------------------------------------------ CLI

def test_cli_fleet_folder_text_and_json(tmp_path):
    fleet.write(tmp_path, fleet.fleet(12, {5: "missing_gpu"}))
    res = run("compare", str(tmp_path))
    assert res.exit_code == 1
    assert "envcheck compare - 12 nodes, majority per field" in res.stdout
    assert "Odd nodes (1 differ in a field of weight)" in res.stdout
    assert "  node-0005  torch.device_count, gpus.count, gpus.models, interconnect.nvlink, findings.problems" \
        in res.stdout
    doc = json.loads(run("compare", "--format", "json", str(tmp_path)).stdout)
    assert doc["schema"] == "envcheck.compare" and doc["schema_version"] == 1


def test_cli_doctor_json_reports_are_snapshots_too(tmp_path):
    """`doctor --format json` output carries its findings: compare uses them as they are."""
    s = fleet.node(0)
    s["findings"] = [{"id": "host.shm-small", "severity": "warn"}]
    (tmp_path / "a.json").write_text(json.dumps(s))
    fleet.write(tmp_path, [fleet.node(1)])
    r = json.loads(run("compare", "--format", "json", str(tmp_path / "a.json"), str(tmp_path / "node-0001.json")).stdout)
    row = next(x for x in r["fields"] if x["key"] == "findings.problems")
    assert row["status"] == "differs" and row["values"][0]["value"] in (["host.shm-small"], [])


def test_cli_help():
    res = run("compare", "--help")
    assert res.exit_code == 0 and "--golden FILE" in res.stdout and "--write-golden FILE" in res.stdout
    assert "envcheck compare" in run("--help").stdout


def test_validate_and_cluster_reports_load(tmp_path):
    machine = {"hostname": "gpu-node-017", "driver_version": "550.90.07", "cuda_driver_version": "12.4",
               "gpus": [{"name": "NVIDIA H100 80GB HBM3", "memory_total_bytes": 85520809984,
                         "compute_capability": "9.0"}] * 8, "kernel": "5.15.0-112-generic"}
    versions = {"torch": "2.7.1+cu126", "nccl": "2.26.2", "cudnn": 90501}
    (tmp_path / "v.json").write_text(json.dumps({"schema": "envcheck.validate", "schema_version": 1,
                                                 "machine": machine, "versions": versions}))
    (tmp_path / "c.json").write_text(json.dumps({"schema": "envcheck.cluster", "schema_version": 1, "nodes": [
        {"node_rank": 0, "hostname": "n0", "machine": machine, "versions": versions},
        {"node_rank": 1, "hostname": "n1", "machine": dict(machine, driver_version="560.35.03"),
         "versions": versions}]}))
    v = cmp.load_file(tmp_path / "v.json")
    assert [(n.name, n.kind) for n in v] == [("gpu-node-017", "validate")]
    assert v[0].facts["gpus.models"] == ["8x NVIDIA H100 80GB HBM3"] and v[0].facts["nccl.version"] == "2.26.2"
    assert "env.NCCL_DEBUG" not in v[0].facts and "torch.arch_list" not in v[0].facts
    r = cmp.from_files([str(tmp_path / "v.json"), str(tmp_path / "c.json"), fleet.write(tmp_path / "s", [fleet.node(0)])[0]])
    assert {n["name"]: n["weighty"] for n in r["nodes"] if n["weighty"]} == {"n1": ["driver.version"]}
