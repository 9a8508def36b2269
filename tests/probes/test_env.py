"""Env probe and redaction: only allowlisted variables, never anything that looks like a secret,
in the probe's result nor in any output of ``envcheck doctor``."""

from __future__ import annotations

import json
import secrets
import uuid

import pytest
from click.testing import CliRunner

from envcheck import redact
from envcheck.cli import cli
from envcheck.probes import env

HF = "hf_abcdefghijklmnopqrstuvwxyz012345"


def test_allowlist_only() -> None:
    facts = env.probe({
        "NCCL_DEBUG": "WARN", "OMP_NUM_THREADS": "8", "LD_LIBRARY_PATH": "/usr/local/lib",
        "CUDA_VISIBLE_DEVICES": "0,1", "TORCHINDUCTOR_CACHE_DIR": "/scratch/inductor",
        "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "my-secret-project", "SLURM_JOB_USER": "alice",
        "PATH": "/usr/bin:/bin", "HOME": "/home/alice", "USER": "alice", "SHELL": "/bin/bash",
    })
    assert facts == {
        "vars": {"CUDA_VISIBLE_DEVICES": "0,1", "LD_LIBRARY_PATH": "/usr/local/lib",
                 "NCCL_DEBUG": "WARN", "OMP_NUM_THREADS": "8", "SLURM_JOB_ID": "4242",
                 "TORCHINDUCTOR_CACHE_DIR": "/scratch/inductor"},
        "redacted": [],
    }


def test_secret_names_are_never_recorded() -> None:
    facts = env.probe({
        "HF_TOKEN": HF, "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "MY_SERVICE_PASSWORD": "hunter2", "NCCL_IB_PKEY": "0x8001", "TORCH_AUTH_HEADER": "x",
        "PYTORCH_SECRET": "s", "NCCL_DEBUG": "INFO",
    })
    assert facts["vars"] == {"NCCL_DEBUG": "INFO"}
    # Listed only when the name was allowlisted (a prefix matched); HF_TOKEN & co. never were.
    assert facts["redacted"] == ["NCCL_IB_PKEY", "PYTORCH_SECRET", "TORCH_AUTH_HEADER"]


def test_token_like_values_are_dropped() -> None:
    facts = env.probe({
        "TORCH_FOO": HF,
        "NCCL_SOCKET_IFNAME": "ghp_" + "a1B2" * 9,
        "TRITON_CACHE_DIR": secrets.token_urlsafe(32),
        "CUDA_HOME": "https://user:pw@example.com/cuda",
        "CUDA_VISIBLE_DEVICES": f"GPU-{uuid.uuid4()},GPU-{uuid.uuid4()}",  # UUIDs are not secrets
        "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True,max_split_size_mb:512",
        "TORCH_CUDA_ARCH_LIST": "8.0;8.6;9.0+PTX",
    })
    assert sorted(facts["vars"]) == ["CUDA_VISIBLE_DEVICES", "PYTORCH_CUDA_ALLOC_CONF",
                                     "TORCH_CUDA_ARCH_LIST"]
    assert facts["redacted"] == ["CUDA_HOME", "NCCL_SOCKET_IFNAME", "TORCH_FOO", "TRITON_CACHE_DIR"]


def test_pip_index_urls_keep_the_host_without_credentials() -> None:
    facts = env.probe({"PIP_INDEX_URL": "https://user:s3cret@pypi.example.com/simple",
                       "PIP_EXTRA_INDEX_URL": "https://download.pytorch.org/whl/cu126"})
    assert facts["vars"] == {"PIP_INDEX_URL": "https://***@pypi.example.com/simple",
                             "PIP_EXTRA_INDEX_URL": "https://download.pytorch.org/whl/cu126"}
    assert facts["redacted"] == []


@pytest.mark.parametrize("value", [
    HF, "ghp_" + "x1" * 18, "github_pat_11ABCDEFG0abcdefghijklmnopqrstuvwxyz", "AKIAIOSFODNN7EXAMPLE",
    "sk-ant-api03-abcdefghijklmnopqrstuvwxyz", "xoxb-1234567890-abcdefghij",
    "https://alice:pw@git.example.com/repo.git", "Bearer " + HF,
    secrets.token_hex(20), secrets.token_urlsafe(32),
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
])
def test_looks_secret(value: str) -> None:
    assert redact.looks_secret(value)


@pytest.mark.parametrize("value", [
    "/usr/local/cuda-12.4/lib64:/home/alice/.venv/lib/python3.11/site-packages/nvidia/cudnn/lib",
    "8.0;8.6;9.0+PTX", "expandable_segments:True", "eth0,ib0", "mlx5_0:1,mlx5_3:1",
    f"GPU-{uuid.uuid4()}", f"MIG-{uuid.uuid4()}", "https://download.pytorch.org/whl/cu126",
    "TORCHINDUCTOR_FX_GRAPH_CACHE_DEFAULT_1234", "x86_64-linux-gnu", "gpu-node-[001-016]", "",
])
def test_not_secret(value: str) -> None:
    assert not redact.looks_secret(value)


def test_scrub_text_keeps_the_useful_part() -> None:
    text = ("KeyError: 'cuda'\nHF_TOKEN=abc123 fetching https://u:p@host/x?token=zz&a=1 "
            f"with {HF}")
    assert redact.scrub_text(text) == (
        "KeyError: 'cuda'\nHF_TOKEN=<redacted> fetching https://***@host/x?token=<redacted>&a=1 "
        "with <redacted>")
    assert redact.scrub({"a": [HF, 3, {"b": "ok"}]}) == {"a": ["<redacted>", 3, {"b": "ok"}]}


SECRETS = {
    "HF_TOKEN": HF.replace("hf_", "hf_Z"),
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "MY_SERVICE_PASSWORD": "correct-horse-battery-staple",
    "NCCL_IB_KEY": "nccl-ib-key-value-42",
    "PIP_INDEX_URL": "https://user:s3cret@pypi.example.com/simple",
    "TORCH_FOO": HF,
}
SECRET_VALUES = [SECRETS[k] for k in SECRETS if k != "PIP_INDEX_URL"] + ["s3cret", "user:s3cret"]


@pytest.mark.slow
def test_doctor_never_prints_or_saves_a_secret(monkeypatch, tmp_path) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    saved = tmp_path / "snap.json"
    runner = CliRunner()
    as_json = runner.invoke(cli, ["doctor", "--format", "json", "--save", str(saved)])
    as_text = runner.invoke(cli, ["doctor", "--no-color"])
    assert as_json.exit_code in (0, 1), as_json.output
    assert as_text.exit_code in (0, 1), as_text.output
    report = json.loads(as_json.stdout)
    assert report["env"]["vars"]["PIP_INDEX_URL"] == "https://***@pypi.example.com/simple"
    assert set(report["env"]["redacted"]) == {"NCCL_IB_KEY", "TORCH_FOO"}
    outputs = {"json": as_json.output, "text": as_text.output, "saved": saved.read_text()}
    for where, text in outputs.items():
        for value in SECRET_VALUES:
            assert value not in text, f"{value!r} leaked into the {where} output"
