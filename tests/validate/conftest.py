"""Shared helpers for validate's tests.

The pytest process itself stays torch-free (other tests check that doctor never imports
torch in-process): everything that runs torch goes through a worker or CLI subprocess.
"""

from __future__ import annotations

import os
import uuid

import psutil
import pytest


@pytest.fixture
def process_tag(monkeypatch):
    """Tag every process this test starts (inherited env), and return a finder of survivors."""
    tag = uuid.uuid4().hex
    monkeypatch.setenv("ENVCHECK_TEST_TAG", tag)

    def survivors() -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter():
            if proc.pid == os.getpid():
                continue
            try:
                if proc.environ().get("ENVCHECK_TEST_TAG") == tag and proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
            except (psutil.Error, OSError):
                continue
        return found

    return survivors


@pytest.fixture(autouse=True)
def _quiet_cpu(monkeypatch):
    # The checks' torch threads must not spin against other test processes on the CI host.
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.delenv("ENVCHECK_FAULT", raising=False)
    # Fault injection is honoured only with this switch (envcheck/validate/faults.py).
    monkeypatch.setenv("ENVCHECK_TEST_FAULTS", "1")
