"""A real single-node Slurm cluster on 127.0.0.1 for the tests that need one.

munged, slurmctld and slurmd (Debian's slurm-wlm and munge packages; .ci/run installs them)
run from a temporary directory with a generated slurm.conf: proctrack/linuxproc and task/none
so no cgroups are needed, accounting off, free ports, ``SlurmdParameters=config_overrides`` so
the declared CPUs/memory do not have to match the machine. Every daemon runs in the
foreground as a child of this fixture and is stopped at the end, together with any
slurmstepd it left; nothing outside the temporary directory is touched (no /etc/slurm,
no /run/munge). Without the binaries, or without root (slurmd must be root to start job
steps as the submitting user), the tests that use it skip and say why.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BINARIES = ("munged", "slurmctld", "slurmd", "scontrol", "sinfo", "srun")
START_TIMEOUT_S = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _slurmstepd_pids() -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "slurmstepd":
                    pids.add(int(entry.name))
            except OSError:
                pass
    return pids


@dataclass
class SlurmCluster:
    root: Path
    conf: Path
    node: str
    env: dict = field(default_factory=dict)
    procs: dict = field(default_factory=dict)

    def run(self, *argv: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        res = subprocess.run(list(argv), capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {res.returncode}: {res.stderr.strip()}\n{self.logs()}")
        return res

    def state(self) -> str:
        return self.run("sinfo", "-h", "-n", self.node, "-o", "%T").stdout.strip()

    def reason(self) -> str:
        """The reason as `sinfo -R` lists it ('' when the node has none)."""
        return self.run("sinfo", "-R", "-h", "-n", self.node, "-o", "%E").stdout.strip()

    def wait_state(self, *states: str, timeout: float = START_TIMEOUT_S) -> str:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            res = self.run("sinfo", "-h", "-n", self.node, "-o", "%T", check=False)
            last = res.stdout.strip()
            if res.returncode == 0 and last in states:
                return last
            time.sleep(0.3)
        raise AssertionError(f"node {self.node} not {'/'.join(states)} after {timeout} s (last: {last!r})\n{self.logs()}")

    def reset(self) -> None:
        """Back to idle with no reason, whoever drained it."""
        if self.reason():
            self.run("scontrol", "update", f"NodeName={self.node}", "State=RESUME")
        self.wait_state("idle")

    def logs(self) -> str:
        out = []
        for name in ("munged.log", "slurmctld.log", "slurmd.log"):
            p = self.root / "log" / name
            if p.exists():
                out.append(f"--- {name} (tail)\n" + "\n".join(p.read_text(errors="replace").splitlines()[-15:]))
        return "\n".join(out)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


ENVCHECK_ROOT = str(Path(__file__).resolve().parents[2])


@pytest.fixture(scope="session", autouse=True)
def _subprocesses_import_this_envcheck():
    """Child processes (ranks, srun tasks, torchrun workers) import the envcheck under test,
    not whatever an editable install elsewhere on this machine points to."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = ENVCHECK_ROOT + (os.pathsep + old if old else "")
    yield
    if old is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = old


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory, _subprocesses_import_this_envcheck):
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        pytest.skip(f"slurm-wlm/munge not installed ({', '.join(missing)} missing): "
                    "apt-get install slurm-wlm munge to run the real-Slurm tests")
    if os.geteuid() != 0:
        pytest.skip("the real-Slurm tests need root (slurmd starts job steps as the submitting user)")

    # Short path: the munge socket path must fit in a unix socket address (108 bytes).
    root = Path(tmp_path_factory.mktemp("slurm"))
    for d in ("munge", "run", "log", "state", "spool"):
        (root / d).mkdir()
    (root / "munge").chmod(0o700)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    sock = root / "run" / "munge.sock"
    node = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    conf.write_text(f"""\
# Generated by tests/cluster/conftest.py: a throw-away single-node cluster on 127.0.0.1.
ClusterName=envchecktest
# Random first job id: envcheck derives the rendezvous port from the job id, and two test
# clusters on one machine (parallel CI runs) must not both start at job 1.
FirstJobId={random.randint(1000, 9_000_000)}
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
AuthInfo=socket={sock}
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
SchedulerType=sched/builtin
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SlurmdParameters=config_overrides
NodeName={node} NodeAddr=127.0.0.1 NodeHostname={node} CPUs=2 RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
""")
    env = {**os.environ, "SLURM_CONF": str(conf)}
    for k in [k for k in env if k.startswith("SLURM_") and k != "SLURM_CONF"]:
        del env[k]  # a test run inside a Slurm job must not leak that job into this cluster
    cluster = SlurmCluster(root=root, conf=conf, node=node, env=env)
    stepd_before = _slurmstepd_pids()

    def start(name: str, argv: list[str]) -> None:
        with open(root / "log" / f"{name}.out", "wb") as log:
            cluster.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                                   start_new_session=True, cwd=root)

    try:
        start("munged", ["munged", "-F", "--force", f"--socket={sock}", f"--key-file={key}",
                         f"--log-file={root}/log/munged.log", f"--pid-file={root}/run/munged.pid",
                         f"--seed-file={root}/munge/seed"])
        deadline = time.monotonic() + 20
        while not sock.exists():
            if time.monotonic() > deadline or cluster.procs["munged"].poll() is not None:
                raise AssertionError("munged did not start:\n" + (root / "log" / "munged.out").read_text())
            time.sleep(0.1)
        start("slurmctld", ["slurmctld", "-D", "-i", "-f", str(conf)])
        start("slurmd", ["slurmd", "-D", "-f", str(conf), "-N", node])
        cluster.wait_state("idle")
        yield cluster
    finally:
        for name in ("slurmd", "slurmctld", "munged"):
            if name in cluster.procs:
                _stop(cluster.procs[name])
        for pid in _slurmstepd_pids() - stepd_before:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def slurm(slurm_cluster):
    """The cluster, with the node idle and reason-free before and after each test."""
    slurm_cluster.reset()
    yield slurm_cluster
    slurm_cluster.reset()
