"""collect(probe_python=False) (doctor --scope node) starts no interpreter; target is recorded."""

from envcheck import probes
from envcheck import snapshot as snap
from envcheck.probes import torch as torch_probe


def test_no_python_probe_means_no_subprocess(monkeypatch):
    calls = []
    monkeypatch.setattr(torch_probe, "probe", lambda *a, **k: calls.append(a) or {})
    said = []
    s = probes.collect(probe_python=False, progress=said.append)
    snap.validate(s)
    assert calls == [] and said == []
    reason = {"unavailable": "not probed: --scope node judges the node alone"}
    assert s["python"] == reason and s["torch"] == reason
    assert set(s["probe_seconds"]) == {"host", "env", "nvidia", "network"}
    assert "target" not in s


def test_the_target_is_recorded(monkeypatch):
    monkeypatch.setattr(torch_probe, "probe", lambda *a, **k: {"python": {"status": "ok"},
                                                               "torch": {"status": "not_installed"}})
    target = {"executable": "/venv/bin/python", "chosen_by": "virtual_env", "reason": "active venv /venv",
              "choose_another": "--python PATH"}
    s = probes.collect(target=target)
    assert s["target"] == target and s["python"] == {"status": "ok"}
