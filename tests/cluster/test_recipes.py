"""The cluster recipes: shipped, syntactically valid, and consistent with what they configure."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from envcheck import recipes

SHELL = ["cluster/certify.sbatch", "cluster/certify-torchrun.sbatch", "cluster/healthcheck.sh", "cluster/prolog.sh"]
YAML = ["cluster/k8s-certify-job.yaml", "cluster/k8s-npd-daemonset.yaml"]
ALL = [*SHELL, *YAML, "cluster/npd-envcheck-plugin.json", "cluster/Dockerfile", "cluster/README.md"]
GO_DURATION = re.compile(r"^\d+(ms|s|m|h)$")


def seconds(d: str) -> float:
    n, unit = re.match(r"^(\d+)(ms|s|m|h)$", d).groups()
    return int(n) * {"ms": 1e-3, "s": 1, "m": 60, "h": 3600}[unit]


@pytest.mark.parametrize("name", ALL)
def test_recipe_is_shipped_and_explained(name):
    text = recipes.text(name)
    if not name.endswith((".json", ".md")):
        # a header comment that explains it and cites its source
        head = "\n".join(line for line in text.splitlines()[:25] if line.startswith("#"))
        assert len(head) > 300, name
        assert re.search(r"https?://|[\w-]+/[\w.-]+ |#\d+|man page", head), name


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
@pytest.mark.parametrize("name", SHELL)
def test_shell_recipes_pass_bash_n(name, tmp_path):
    script = tmp_path / name.split("/")[-1]
    script.write_text(recipes.text(name))
    res = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("name", ["cluster/certify.sbatch", "cluster/certify-torchrun.sbatch"])
def test_sbatch_directives(name):
    text = recipes.text(name)
    assert text.startswith("#!/bin/bash\n")
    directives = re.findall(r"^#SBATCH (\S+)", text, re.M)
    assert {"--nodes=2", "--gpus-per-node=8"} <= set(directives)
    # sbatch stops reading #SBATCH lines at the first command
    first_cmd = next(i for i, line in enumerate(text.splitlines()) if line and not line.startswith("#"))
    last_directive = max(i for i, line in enumerate(text.splitlines()) if line.startswith("#SBATCH"))
    assert last_directive < first_cmd
    assert "envcheck validate" in text


def test_healthcheck_uses_drain_fits_slurms_60_s_and_sets_path():
    text = recipes.text("cluster/healthcheck.sh")
    assert "--drain" in text and "export PATH=" in text
    budget = int(re.search(r"timeout -k (\d+) (\d+)", text).group(2)) + int(re.search(r"timeout -k (\d+)", text).group(1))
    assert budget < 60


def test_prolog_exits_binary():
    text = recipes.text("cluster/prolog.sh")
    assert "--exit-codes binary" in text and "export PATH=" in text
    assert '"$envcheck" doctor --scope node ' in text  # the node, not envcheck's own venv


def test_prolog_exit_codes_with_a_fake_envcheck(tmp_path):
    """Run the prolog for real with a stand-in envcheck: 0 stays 0, anything else becomes 1."""
    script = tmp_path / "prolog.sh"
    script.write_text(recipes.text("cluster/prolog.sh"))
    fake = tmp_path / "envcheck"
    for rc, expected in ((0, 0), (1, 1), (3, 1)):
        fake.write_text(f"#!/bin/bash\necho 'verdict line'\nexit {rc}\n")
        fake.chmod(0o755)
        res = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=30,
                             env={"ENVCHECK": str(fake), "ENVCHECK_LOG": str(tmp_path / "log"), "SLURM_JOB_ID": "7",
                                  "SLURMD_NODENAME": "n1"})
        assert res.returncode == expected, res.stderr
    assert "job=7 node=n1 rc=3 verdict line" in (tmp_path / "log").read_text()


def test_healthcheck_passes_drain_with_a_fake_envcheck(tmp_path):
    script = tmp_path / "healthcheck.sh"
    script.write_text(recipes.text("cluster/healthcheck.sh"))
    fake = tmp_path / "envcheck"
    fake.write_text('#!/bin/bash\necho "$@" > "$(dirname "$0")/args"\necho "ENVCHECK OK - fine"\n')
    fake.chmod(0o755)
    prom = tmp_path / "textfile"
    prom.mkdir()
    res = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=30,
                         env={"ENVCHECK": str(fake), "ENVCHECK_LOG": str(tmp_path / "log"),
                              "ENVCHECK_PROM_DIR": str(prom), "SLURMD_NODENAME": "n1"})
    assert res.returncode == 0, res.stderr
    args = (tmp_path / "args").read_text().split()
    assert args[:3] == ["doctor", "--scope", "node"]
    assert {"--drain", "--exit-codes", "nagios", "--prom-file", f"{prom}/envcheck.prom"} <= set(args)
    assert "n1 rc=0 ENVCHECK OK - fine" in (tmp_path / "log").read_text()


def _docs(name):
    return [d for d in yaml.safe_load_all(recipes.text(name)) if d]


def test_certify_job():
    (job,) = _docs("cluster/k8s-certify-job.yaml")
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == 0
    (c,) = spec["containers"]
    assert c["args"][0] == "validate"
    limits = c["resources"]["limits"]
    assert isinstance(limits["nvidia.com/gpu"], int) and limits["nvidia.com/gpu"] >= 1
    requests = c["resources"].get("requests", {})
    assert requests.get("nvidia.com/gpu", limits["nvidia.com/gpu"]) == limits["nvidia.com/gpu"]


def test_npd_daemonset_and_its_config():
    docs = {d["kind"]: d for d in _docs("cluster/k8s-npd-daemonset.yaml")}
    assert set(docs) == {"ServiceAccount", "ClusterRoleBinding", "ConfigMap", "DaemonSet"}
    ds = docs["DaemonSet"]
    assert ds["spec"]["selector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()
    pod = ds["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == docs["ServiceAccount"]["metadata"]["name"]
    (c,) = pod["containers"]
    # a DaemonSet must not take GPUs away from workloads
    assert "nvidia.com/gpu" not in (c.get("resources", {}).get("limits") or {})
    assert any(e["name"] == "NODE_NAME" for e in c["env"])
    flag = next(a for a in c["command"] if a.startswith("--config.custom-plugin-monitor="))
    cm_file = flag.split("=", 1)[1].rsplit("/", 1)[1]
    embedded = json.loads(docs["ConfigMap"]["data"][cm_file])
    shipped = json.loads(recipes.text("cluster/npd-envcheck-plugin.json"))
    assert embedded == shipped  # one config, two copies: they must not drift


def test_npd_plugin_config_passes_npds_own_validation():
    """What pkg/custompluginmonitor/types/config.go checks, plus envcheck's side of the protocol."""
    cfg = json.loads(recipes.text("cluster/npd-envcheck-plugin.json"))
    assert cfg["plugin"] == "custom" and cfg["source"]
    g = cfg["pluginConfig"]
    for key in ("invoke_interval", "timeout"):
        assert GO_DURATION.match(g[key]), key
    assert g["max_output_length"] == 80  # envcheck --exit-codes npd prints at most 80 characters
    conditions = {c["type"] for c in cfg["conditions"]}
    for rule in cfg["rules"]:
        assert rule["type"] in ("permanent", "temporary")
        assert seconds(rule["timeout"]) <= seconds(g["timeout"])
        if rule["type"] == "permanent":
            assert rule["condition"] in conditions
        assert rule["path"].startswith("/") and rule["args"][:1] == ["doctor"]
        assert rule["args"][rule["args"].index("--exit-codes") + 1] == "npd"
        # a node check: the plugin image's own Python environment never marks a node bad
        assert rule["args"][rule["args"].index("--scope") + 1] == "node"


def test_dockerfile_targets_and_build_arg():
    text = recipes.text("cluster/Dockerfile")
    stages = re.findall(r"^FROM \S+ AS (\S+)", text, re.M)
    assert {"envcheck", "npd"} <= set(stages)
    assert re.search(r"^ARG TORCH_VARIANT=cu\d+", text, re.M)
    assert "download.pytorch.org/whl/${TORCH_VARIANT}" in text
    # the NPD plugin config runs /usr/local/bin/envcheck
    assert "/usr/local/bin/envcheck" in text
