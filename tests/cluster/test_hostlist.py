"""Slurm host list expansion, checked against what `scontrol show hostnames` prints."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from envcheck.cluster import hostlist
from envcheck.cluster.hostlist import HostlistError, expand, expand_counts


@pytest.mark.parametrize("text, hosts", [
    ("node01", ["node01"]),
    ("node[01-03,07]", ["node01", "node02", "node03", "node07"]),
    ("gnode[10,20,25,37]", ["gnode10", "gnode20", "gnode25", "gnode37"]),
    ("n[8-11]", ["n8", "n9", "n10", "n11"]),
    ("n[008-010]", ["n008", "n009", "n010"]),
    ("a1,b[2-3],c", ["a1", "b2", "b3", "c"]),
    ("r[1-2]n[1-2]", ["r1n1", "r1n2", "r2n1", "r2n2"]),
    ("gpu-[1-2]-ib", ["gpu-1-ib", "gpu-2-ib"]),
    ("node[1-2],node[1]", ["node1", "node2", "node1"]),
    ("host.example.com", ["host.example.com"]),
    ("", []),
    (" node[1-2] ", ["node1", "node2"]),
])
def test_expand(text, hosts):
    assert expand(text) == hosts


@pytest.mark.parametrize("text", [
    "node[1-", "node]1[", "node[a-b]", "node[3-1]", "node[[1]]", "node[1-2", "node[]", "n[1-99999999]",
])
def test_malformed_lists_raise_with_the_text(text):
    with pytest.raises(HostlistError) as err:
        expand(text)
    assert text.strip() in str(err.value) or "range" in str(err.value)


def test_first_host():
    assert hostlist.first("gpu[03-05],cpu1") == "gpu03"
    assert hostlist.first("") is None


@pytest.mark.parametrize("text, counts", [
    ("2", [2]), ("2(x3),1", [2, 2, 2, 1]), ("8(x2)", [8, 8]), ("", []), ("4,2(x2)", [4, 2, 2]),
])
def test_expand_counts(text, counts):
    assert expand_counts(text) == counts


@pytest.mark.parametrize("text", ["x", "2(3)", "2(x)"])
def test_bad_counts_raise(text):
    with pytest.raises(HostlistError):
        expand_counts(text)


@pytest.mark.skipif(shutil.which("scontrol") is None, reason="scontrol (slurm-wlm) is not installed")
@pytest.mark.parametrize("text", ["node[01-03,07]", "r[1-2]n[1-2]", "a1,b[2-3],c", "n[008-010]"])
def test_matches_scontrol_show_hostnames(text, tmp_path):
    # `scontrol show hostnames` expands locally, without a running slurmctld, but wants a config.
    conf = tmp_path / "slurm.conf"
    conf.write_text("ClusterName=x\nSlurmctldHost=localhost\nNodeName=n1 CPUs=1\nPartitionName=p Nodes=n1\n")
    out = subprocess.run(["scontrol", "show", "hostnames", text], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "SLURM_CONF": str(conf)})
    assert out.returncode == 0, out.stderr
    assert expand(text) == out.stdout.split()
