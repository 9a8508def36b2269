"""envcheck.snapshot: bad --snapshot files are refused with one line and exit 2 (issue 10,
class 6), and a saved snapshot holds no secret (class 5)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from envcheck import exitcodes
from envcheck import snapshot as snap
from envcheck.cli import cli

SNAPSHOTS = Path(__file__).resolve().parent / "fixtures" / "snapshots"
HEALTHY = SNAPSHOTS / "healthy_8xh100.json"


def run(*args: str):
    return CliRunner().invoke(cli, list(args), env={"NO_COLOR": None, "FORCE_COLOR": None},
                              catch_exceptions=False, prog_name="envcheck")


def _refused(path, *words: str) -> None:
    """Refused by load() with those words, and by doctor and install as one line, exit 2."""
    with pytest.raises(snap.SnapshotError) as err:
        snap.load(path)
    assert all(w in str(err.value) for w in words), str(err.value)
    assert str(path) in str(err.value)
    for command in ("doctor", "install"):
        result = run(command, "--snapshot", str(path))
        assert result.exit_code == exitcodes.USAGE, result.output
        assert result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert all(w in result.stderr for w in words)


def test_a_directory_is_refused(tmp_path):
    _refused(tmp_path, "directory")


def test_a_character_device_is_refused_without_reading_it():
    _refused(Path("/dev/zero"), "character device")  # reading it would never end


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "snap.fifo"
    os.mkfifo(fifo)
    _refused(fifo, "named pipe")
    # The installed command too, in its own process: nothing ever writes to the FIFO, so an
    # open() without O_NONBLOCK would wait forever (the timeout turns that into a failure).
    proc = subprocess.run([sys.executable, "-m", "envcheck", "doctor", "--snapshot", str(fifo)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == exitcodes.USAGE and "named pipe" in proc.stderr


def test_not_utf8_is_refused(tmp_path):
    bad = tmp_path / "latin1.json"
    bad.write_bytes(HEALTHY.read_bytes().replace(b'"schema"', b'"sch\xe9ma"', 1))
    _refused(bad, "not UTF-8")


def test_a_utf8_bom_is_accepted(tmp_path):
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + HEALTHY.read_bytes())
    assert snap.load(bom) == snap.load(HEALTHY)


@pytest.mark.parametrize("depth", [40, 10_000, 200_000])
def test_absurd_nesting_is_refused(tmp_path, depth):
    data = json.loads(HEALTHY.read_text(encoding="utf-8"))
    deep = tmp_path / "deep.json"
    text = json.dumps(data)[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}"
    deep.write_text(text, encoding="utf-8")
    _refused(deep, "nested too deeply")


def test_an_oversized_file_is_refused(tmp_path):
    big = tmp_path / "big.json"
    with open(big, "wb") as fh:  # sparse: costs no disk
        fh.truncate(snap.MAX_BYTES + 1)
    _refused(big, "bytes")


def test_a_huge_integer_is_refused(tmp_path):
    data = HEALTHY.read_text(encoding="utf-8")
    bad = tmp_path / "bigint.json"
    bad.write_text(data.replace('"schema_version": 1', '"schema_version": ' + "9" * 5000), encoding="utf-8")
    _refused(bad, "not a usable JSON document")


@pytest.mark.parametrize("value", [True, False, "1", 1.0, None, [1]])
def test_schema_version_must_be_an_int(tmp_path, value):
    data = json.loads(HEALTHY.read_text(encoding="utf-8"))
    data["schema_version"] = value
    bad = tmp_path / "schema.json"
    bad.write_text(json.dumps(data), encoding="utf-8")
    _refused(bad, "no integer schema_version")


# ------------------------------------------------------------------ secrets in a saved snapshot

SECRET_VALUES = ["hunter2", "s3cr3t-pw", "tok-abcdef", "ghp_" + "Zz9" * 12, "p4ssw0rd", "AKIAIOSFODNN7EXAMPLE"]


def _with_secrets() -> dict:
    data = json.loads(HEALTHY.read_text(encoding="utf-8"))
    data["env"]["vars"].update({
        "PIP_INDEX_URL": "https://pypi.example.com/simple?password=hunter2",
        "PIP_EXTRA_INDEX_URL": "https://alice:s3cr3t-pw@pypi.example.com/simple",
        "HF_TOKEN": "tok-abcdef",  # a hand-made snapshot: the probe would never record it
        "TORCH_CUDA_ARCH_LIST": "8.0",
    })
    data["torch"]["status"] = "import_error"
    data["torch"]["error"] = {
        "message": "OSError: fetching https://h/x?token=tok-abcdef failed; Authorization: Bearer "
                   + "ghp_" + "Zz9" * 12,
        "signal": None, "timeout_s": None,
        "stderr_tail": "requests: {'password': 'p4ssw0rd'}\naws_access_key_id AKIAIOSFODNN7EXAMPLE",
    }
    return data


def test_save_scrubs_env_values_index_urls_and_torch_errors(tmp_path):
    source = tmp_path / "with_secrets.json"
    source.write_text(json.dumps(_with_secrets()), encoding="utf-8")
    saved = tmp_path / "saved.json"
    outputs = {}
    for fmt in ("text", "json"):
        result = run("doctor", "--snapshot", str(source), "--save", str(saved), "--format", fmt)
        assert result.exit_code in (exitcodes.OK, exitcodes.FINDINGS), result.output
        outputs[fmt] = result.output
        outputs[f"saved ({fmt})"] = saved.read_text(encoding="utf-8")
    for where, text in outputs.items():
        for secret in SECRET_VALUES:
            assert secret not in text, f"{secret!r} leaked into {where}"
    doc = snap.load(saved)  # still a snapshot doctor reads
    assert doc["env"]["vars"]["TORCH_CUDA_ARCH_LIST"] == "8.0"
    assert doc["env"]["vars"]["PIP_EXTRA_INDEX_URL"] == "https://***@pypi.example.com/simple"
    assert doc["env"]["vars"]["PIP_INDEX_URL"] == "https://pypi.example.com/simple?password=<redacted>"
    assert doc["env"]["vars"]["HF_TOKEN"] == "<redacted>"


def test_dumps_of_a_clean_snapshot_is_unchanged():
    """Scrubbing never touches the facts of a real snapshot (no false positives in any fixture)."""
    for path in sorted(SNAPSHOTS.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("schema") == snap.SCHEMA:
            assert json.loads(snap.dumps(data)) == data, path.name
