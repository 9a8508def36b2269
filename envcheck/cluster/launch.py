"""Which distributed launcher started this process, and where this process sits in the job.

Pure: an environment mapping in, a :class:`Launch` (or None) out. The distributed mode of
``envcheck validate`` uses it to join the job as one rank instead of spawning its own
processes (issue 5).

Precedence (the order in which launchers' variables are trusted):

1. **torchrun / torch.distributed.elastic** (or any launcher using the ``env://`` convention):
   ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` are set; torchrun also sets
   ``LOCAL_WORLD_SIZE``, ``GROUP_RANK``, ``MASTER_ADDR``/``MASTER_PORT`` and
   ``TORCHELASTIC_RUN_ID`` (pytorch ``torch/distributed/run.py`` docstring). Checked first,
   because ``srun torchrun ...`` leaves the Slurm variables of the *agent* in the workers.
2. **srun job step**: ``SLURM_STEP_ID`` and ``SLURM_PROCID`` are set. ``SLURM_STEP_ID`` matters:
   a plain ``sbatch`` batch script also has ``SLURM_PROCID=0`` and ``SLURM_NTASKS=N`` but no
   step id (seen with slurm-wlm 22.05.8), and treating it as rank 0 of N would wait for
   ranks that never come. Rank = ``SLURM_PROCID``, world = ``SLURM_STEP_NUM_TASKS``
   (falling back to ``SLURM_NTASKS``), local rank = ``SLURM_LOCALID``; the rendezvous
   address is the first host of the step's node list (rank 0 runs there under srun's
   default block distribution) and the port is derived from ``SLURM_JOB_ID``, unless
   ``MASTER_ADDR`` / ``MASTER_PORT`` are set, which always win.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

from envcheck.cluster import hostlist

# Default port of torch.distributed's env:// rendezvous (torchrun --master-port default).
DEFAULT_MASTER_PORT = 29500
# srun ports: 20000 + job id mod 10000 keeps them below Linux's ephemeral range
# (32768-60999 by default, net.ipv4.ip_local_port_range) so they do not collide with
# outgoing connections, and differ between concurrent jobs sharing a node.
SLURM_PORT_BASE = 20000
SLURM_PORT_SPAN = 10000


class LaunchError(ValueError):
    """The launcher's variables are present but inconsistent; the message names them."""


@dataclass(frozen=True)
class Launch:
    launcher: str  # "torchrun" | "env" (RANK/WORLD_SIZE without torchrun) | "srun"
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    node_rank: int
    num_nodes: int
    master_addr: str
    master_port: int
    hosts: tuple[str, ...] = ()  # the step's node names (srun); () when the launcher does not say
    job_id: str | None = None  # SLURM_JOB_ID, or torchrun's TORCHELASTIC_RUN_ID
    hostname: str | None = None  # SLURMD_NODENAME when Slurm set it

    def torch_env(self) -> dict[str, str]:
        """Variables ``init_process_group(init_method="env://")`` reads, for this rank."""
        return {
            "MASTER_ADDR": self.master_addr,
            "MASTER_PORT": str(self.master_port),
            "RANK": str(self.rank),
            "WORLD_SIZE": str(self.world_size),
            "LOCAL_RANK": str(self.local_rank),
            "LOCAL_WORLD_SIZE": str(self.local_world_size),
            "GROUP_RANK": str(self.node_rank),
        }

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hosts"] = list(self.hosts)
        return d


def _int(env: Mapping[str, str], name: str, minimum: int = 0) -> int:
    raw = env.get(name, "")
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise LaunchError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise LaunchError(f"{name}={value} must be >= {minimum}")
    return value


def _opt_int(env: Mapping[str, str], name: str, minimum: int = 0) -> int | None:
    return _int(env, name, minimum) if str(env.get(name, "")).strip() else None


def slurm_port(job_id: str | None) -> int:
    """Rendezvous port for a Slurm job: the same on every node of the job, no communication needed."""
    if job_id is None or not str(job_id).strip().isdigit():
        return DEFAULT_MASTER_PORT
    return SLURM_PORT_BASE + int(job_id) % SLURM_PORT_SPAN


def _check(rank: int, world: int, local_rank: int, local_world: int, node_rank: int, nodes: int) -> None:
    if rank >= world:
        raise LaunchError(f"rank {rank} is not below the world size {world}")
    if local_rank >= local_world:
        raise LaunchError(f"local rank {local_rank} is not below the local world size {local_world}")
    if node_rank >= nodes:
        raise LaunchError(f"node rank {node_rank} is not below the node count {nodes}")


def _port(env: Mapping[str, str], fallback: int) -> int:
    port = _opt_int(env, "MASTER_PORT", 1)
    if port is not None and port > 65535:
        raise LaunchError(f"MASTER_PORT={port} is not a TCP port")
    return fallback if port is None else port


def _torchrun(env: Mapping[str, str]) -> Launch:
    rank = _int(env, "RANK")
    world = _int(env, "WORLD_SIZE", 1)
    local_rank = _int(env, "LOCAL_RANK")
    local_world = _opt_int(env, "LOCAL_WORLD_SIZE", 1) or world
    node_rank = _opt_int(env, "GROUP_RANK")
    if node_rank is None:
        node_rank = rank // local_world
    nodes = _opt_int(env, "GROUP_WORLD_SIZE", 1) or max(1, -(-world // local_world))
    addr = str(env.get("MASTER_ADDR", "")).strip()
    if not addr:
        raise LaunchError("RANK and WORLD_SIZE are set but MASTER_ADDR is not (env:// needs it)")
    _check(rank, world, local_rank, local_world, node_rank, nodes)
    run_id = env.get("TORCHELASTIC_RUN_ID")
    return Launch(
        launcher="torchrun" if run_id is not None else "env",
        rank=rank, world_size=world, local_rank=local_rank, local_world_size=local_world,
        node_rank=node_rank, num_nodes=nodes, master_addr=addr,
        master_port=_port(env, DEFAULT_MASTER_PORT),
        job_id=run_id, hostname=env.get("SLURMD_NODENAME") or None,
    )


def _srun(env: Mapping[str, str]) -> Launch:
    rank = _int(env, "SLURM_PROCID")
    world = _opt_int(env, "SLURM_STEP_NUM_TASKS", 1) or _int(env, "SLURM_NTASKS", 1)
    local_rank = _opt_int(env, "SLURM_LOCALID") or 0
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST") or ""
    try:
        hosts = tuple(hostlist.expand(nodelist))
        counts = hostlist.expand_counts(
            env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE") or ""
        )
    except hostlist.HostlistError as exc:
        raise LaunchError(str(exc)) from None
    nodes = _opt_int(env, "SLURM_STEP_NUM_NODES", 1) or len(hosts) or _opt_int(env, "SLURM_NNODES", 1) or 1
    me = env.get("SLURMD_NODENAME") or None
    # SLURM_NODEID counts nodes of the *job*; a step may run on a subset, so prefer our
    # position in the step's node list.
    node_rank = hosts.index(me) if me and me in hosts else (_opt_int(env, "SLURM_NODEID") or 0)
    if counts and node_rank < len(counts):
        local_world = counts[node_rank]
    else:
        local_world = max(1, -(-world // nodes))
    addr = str(env.get("MASTER_ADDR", "")).strip() or (hosts[0] if hosts else "")
    if not addr:
        raise LaunchError("srun step without SLURM_STEP_NODELIST/SLURM_JOB_NODELIST; set MASTER_ADDR")
    job_id = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID") or None
    _check(rank, world, local_rank, local_world, node_rank, nodes)
    return Launch(
        launcher="srun",
        rank=rank, world_size=world, local_rank=local_rank, local_world_size=local_world,
        node_rank=node_rank, num_nodes=nodes, master_addr=addr,
        master_port=_port(env, slurm_port(job_id)), hosts=hosts, job_id=job_id, hostname=me,
    )


def detect(env: Mapping[str, str]) -> Launch | None:
    """This process's place in a distributed launch, or None when no launcher started it.

    Raises :class:`LaunchError` when a launcher's variables are present but unusable
    (non-integers, rank outside the world, no rendezvous address).
    """
    if all(str(env.get(k, "")).strip() for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")):
        return _torchrun(env)
    if str(env.get("SLURM_PROCID", "")).strip() and (env.get("SLURM_STEP_ID") or env.get("SLURM_STEPID")):
        return _srun(env)
    return None
